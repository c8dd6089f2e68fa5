"""Receiving in bus tests without depending on timing: wait (long) for what must come, then briefly for extras."""
from __future__ import annotations

import time
from collections.abc import Callable

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Message


async def receive(client: BusClient, until: Callable[[list[Message]], bool], *,
                  timeout: float = 5.0, quiet: float = 0.2) -> list[Message]:
    """Messages until ``until(received)`` holds (at most ``timeout`` s), then any arriving within ``quiet`` s."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while not until(out) and (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(timeout=left)
        if msg is not None:
            out.append(msg)
    while (msg := await client.recv(timeout=quiet)) is not None:
        out.append(msg)
    return out
