"""The process around a key source: follow forks on the bus, publish what keys mean, report health.

Shared by ``razvilka input keyboard`` and ``razvilka input footswitch``; the two differ
only in their source (X11 or evdev) and key map. Messages go out on
``input.<type>.<name>.`` (e.g. ``input.select.keyboard.``) and health on
``source.status.<name>.``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from razvilka.inputs.keymap import X11_NAMES, KeyEvent, KeyInterpreter, KeyNames, Reaction, StatusEvent
from razvilka.protocol.client import cancel_and_wait
from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import Message, SourceState, SourceStatus
from razvilka.runtime import serve_until_signal

if TYPE_CHECKING:
    from razvilka.config import Config
    from razvilka.inputs.lslrecord import KeyRecord
    from razvilka.protocol.client import BusClient

log = logging.getLogger("razvilka.inputs.keys")

#: What a key adapter listens to on the bus: forks, and other sources' focus.
SUBSCRIBE = ("fork.", "input.focus.")


class KeySource(Protocol):
    def events(self) -> AsyncGenerator[KeyEvent | StatusEvent, None]: ...


#: Publishes a reaction on the bus and logs it; ``cause`` names what caused it (``key=enter``, ``clock``).
Send = Callable[[Reaction, str], None]


class KeyCompanion(Protocol):
    """A part a :class:`KeyAdapter` runs beside its interpreter (the switch scanner,
    :class:`razvilka.inputs.scanswitch.ScanCompanion`): the adapter's one seam, so nothing subclasses it."""

    #: Topic prefixes it needs on top of :data:`SUBSCRIBE`.
    subscribe: tuple[str, ...]

    def observe(self, msg: Message) -> Reaction:
        """Follow one bus message in the interpreter's stead (it calls the interpreter's ``observe``
        itself); what to publish."""
        ...

    def handle(self, ev: KeyEvent | StatusEvent) -> bool:
        """See a key event before the interpreter does; True when it consumed it (the interpreter never sees it)."""
        ...

    def tasks(self, send: Send, ready: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        """Coroutines to run beside the bus and the keys; ``ready`` is set once the bus snapshot is applied."""
        ...


def subscriptions(companion: KeyCompanion | None) -> list[str]:
    """The topic prefixes a key adapter's client subscribes to, with ``companion``'s."""
    return [*SUBSCRIBE, *(companion.subscribe if companion is not None else ())]


class KeyAdapter:
    """Runs one key source against the bus until ``stop`` is set or the source ends."""

    def __init__(self, client: BusClient, source: KeySource, interpreter: KeyInterpreter, *, name: str,
                 companion: KeyCompanion | None = None) -> None:
        self.client = client
        self.source = source
        self.interp = interpreter
        self.name = name
        self.companion = companion
        self.state = ""
        self.ready = asyncio.Event()
        self.record: KeyRecord | None = None  # --lsl: key events as LSL markers (docs/research.md)

    def _status(self, state: SourceState, detail: str) -> None:
        self.state = state
        self.client.state = "lost" if state == "lost" else "ok"
        self.client.publish(SourceStatus(source=self.name, state=state, detail=detail),
                            subtopic=(self.name,))
        level = logging.WARNING if state in ("lost", "error") else logging.INFO
        log.log(level, "source=%s state=%s detail=%s", self.name, state, detail)

    async def _follow_bus(self) -> None:
        try:
            for msg in await self.client.snapshot(timeout=2.0):
                self._observe(msg)
        except ProtocolError as exc:
            log.warning("no snapshot (%s); following live forks only", exc.detail)
        self.ready.set()
        async for msg in self.client:
            self._observe(msg)

    def _observe(self, msg: Message) -> None:
        """One message from the bus: the interpreter follows it, or the companion does in its stead."""
        if self.companion is None:
            self.interp.observe(msg)
        else:
            self._send(self.companion.observe(msg), f"bus={msg.type}")

    async def _follow_keys(self) -> None:
        await self.ready.wait()
        # aclosing: on stop, the source's finally runs now (ungrab and close the device).
        async with contextlib.aclosing(self.source.events()) as events:
            async for ev in events:
                self._handle(ev)

    def _handle(self, ev: KeyEvent | StatusEvent) -> None:
        if self.companion is not None and self.companion.handle(ev):
            return
        if isinstance(ev, StatusEvent):
            if ev.state == "lost":
                self.interp.release_all()
            self._status(ev.state, ev.detail)
            return
        reaction = self.interp.feed(ev)
        if self.record is not None:
            self.record.push(ev, next((e.fork_id for e in reaction.emits if e.fork_id), None),
                             [e.body.TYPE for e in reaction.emits])
        self._send(reaction, f"key={ev.name}")

    def _send(self, reaction: Reaction, cause: str) -> None:
        """Publish what a key (or the scanner's clock, or a layout) caused, and log it."""
        for emit in reaction.emits:
            header = self.client.publish(emit.body, fork_id=emit.fork_id, subtopic=(self.name,))
            log.info("%s action=%s sent=%s fork=%s seq=%d %s", cause, reaction.action or "-",
                     emit.body.TYPE, emit.fork_id, header.seq, reaction.note)
        if not reaction.emits and reaction.note:
            log.info("%s %s", cause, reaction.note)

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """0 when stopped or the source ran out; 1 when the source failed."""
        stop = stop or asyncio.Event()
        # PUB drops what it sends before the proxy has subscribed to it: the first status and the
        # first key must not be lost, so wait for our own probe to come back first
        if not await self.client.wait_connected(5.0):
            log.warning("the bus did not answer within 5 s; going on (early events may be lost)")
        bus = asyncio.create_task(self._follow_bus(), name=f"{self.name}-bus")
        keys = asyncio.create_task(self._follow_keys(), name=f"{self.name}-keys")
        stopper = asyncio.create_task(stop.wait(), name=f"{self.name}-stop")
        more = [asyncio.create_task(c, name=f"{self.name}-more")
                for c in (self.companion.tasks(self._send, self.ready) if self.companion is not None else [])]
        lost = False
        try:
            done, _ = await asyncio.wait({bus, keys, stopper, *more}, return_when=asyncio.FIRST_COMPLETED)
            lost = keys in done and self.state == "lost"
        finally:
            await cancel_and_wait((bus, keys, stopper, *more))
            with contextlib.suppress(Exception):
                self._status("stopped", "adapter stopped")
        for task in done:
            failure = None if task is stopper or task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        return 1 if lost else 0


def add_lsl_argument(parser: argparse.ArgumentParser) -> None:
    """``--lsl`` for every key adapter (the research record, docs/research.md)."""
    parser.add_argument("--lsl", action="store_true",
                        help="also publish every key going down and up as an LSL marker (docs/research.md)")


def key_names(backend: str) -> KeyNames:
    """The key names ``backend`` can report, to validate a configured map against."""
    if backend == "evdev":
        from razvilka.inputs.evdevkeys import evdev_names

        return evdev_names()
    return X11_NAMES


async def serve_source(config: Config, name: str, source: KeySource, interpreter: KeyInterpreter,
                       stop: asyncio.Event, *, drain_s: float = 0.0,
                       companion: KeyCompanion | None = None, lsl: bool = False) -> int:
    """Open ``source``, run a :class:`KeyAdapter` (with ``companion``: the scanner) for it on the bus
    as ``name`` until ``stop``, close it.

    ``drain_s``: wait this long before closing, so the last messages leave (closing drops
    unsent ones: linger 0). ``lsl``: also publish every key as an LSL marker (docs/research.md)."""
    from razvilka.protocol.client import BusClient

    running: KeyAdapter | None = None
    if hasattr(source, "open"):
        await source.open()  # fail now, with what to do (no X display, no such device)
    try:
        client = BusClient.from_config(name, config.bus, role="input", subscribe=subscriptions(companion))
        running = KeyAdapter(client, source, interpreter, name=name, companion=companion)
        if lsl:
            from razvilka.inputs.lslrecord import KeyRecord

            running.record = KeyRecord(name)
        async with client:
            code = await running.run(stop)
            if drain_s:
                await asyncio.sleep(drain_s)
            return code
    finally:
        if running is not None and running.record is not None:
            running.record.close()
        if hasattr(source, "close"):
            source.close()


def main(command: str, make: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """A key adapter's process: ``make(stop)`` until SIGINT/SIGTERM; a bad setup is one clear line."""
    try:
        return asyncio.run(serve_until_signal(make))
    except ProtocolError as exc:
        return fail(command, exc)


def fail(command: str, exc: ProtocolError) -> int:
    """Print a clear one-paragraph error for the CLI and return its exit status."""
    print(f"{command}: {exc.detail} [{exc.code.name}]", file=sys.stderr)
    return 2
