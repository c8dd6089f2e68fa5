"""How every long-running process stops: SIGINT or SIGTERM sets one asyncio event.

The daemon, the bus host's asyncio tools, the input adapters and the renderers all end the
same way (flush, say goodbye on the bus, close sockets), so the signal wiring lives here once.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

#: The signals that ask a process to stop cleanly (Ctrl+C, systemd/`razvilka up` stopping it).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


def stop_event(loop: asyncio.AbstractEventLoop | None = None,
               then: Callable[[], object] | None = None) -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets; ``then`` (if given) is called as well.

    Off the main thread (tests driving an app in a worker) or where the loop cannot take
    signal handlers, the event is returned unwired: whoever runs it stops it another way.
    """
    loop = loop or asyncio.get_running_loop()
    event = asyncio.Event()

    def stop() -> None:
        event.set()
        if then is not None:
            then()

    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
    return event


async def serve_until_signal(make: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``make(stop)`` with SIGINT/SIGTERM setting ``stop``; its exit status is returned."""
    return await make(stop_event())
