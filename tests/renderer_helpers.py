"""Helpers shared by the renderer tests (terminal view, Node client)."""
from __future__ import annotations

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Message


async def open_fork(client: BusClient, timeout: float = 120.0) -> Message:
    """The fork open now: from the snapshot if it opened before ``client`` subscribed, else the next one.

    A real daemon opens its first fork and then waits for input, so a client that subscribes
    a moment too late would wait for a ``fork.open`` that never comes.
    """
    from daemon_fixtures import next_of

    for msg in await client.snapshot():
        if msg.type == "fork.open":
            return msg
    return await next_of(client, "fork.open", timeout=timeout)
