"""The daemon's session record over LSL: one marker stream carrying the whole session, for LabRecorder.

A bus subscriber like any other client, hosted in the daemon process when ``[record] lsl = true``:
it reads forks (with their candidates), focus, confirm and select (with their source), decisions,
stimulus onsets, commands, undos, the model's own words and source health, and pushes each as one
JSON object (``razvilka/lslrecord.py`` says how the streams look) stamped on the bus clock:

* a message at the time its sender stamped it (``header.ts_ns``: the bus clock, LSL's ``local_clock``);
* a stimulus at its ``onset_ns``, the frame the renderer drew, not when the message arrived.

The service is unchanged but for starting it: what it records is what every client sees.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from razvilka.lslrecord import ROLE_SESSION, MarkerOutlet, source_id
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Message, Stimulus

if TYPE_CHECKING:
    from pathlib import Path

    from razvilka.config import Config
    from razvilka.protocol.discovery import Endpoints

log = logging.getLogger("razvilka.daemon.record")

#: What the record holds (bus topic prefixes); heartbeats and layouts are left out.
SUBSCRIBE = ("fork.open.", "fork.decided.", "input.", "render.stimulus.", "text.undo.", "text.auto.",
             "source.status.")


def marker_for(msg: Message) -> tuple[dict[str, Any], float] | None:
    """The marker for one bus message and its time (bus clock, seconds); None for what is not recorded.

    ``type`` is the bus message type, ``fork_id`` the fork it belongs to (null outside one), ``sender``
    who sent it; every field of the body follows as the protocol defines it (docs/protocol.md).
    """
    if not msg.known or not msg.topic.startswith(SUBSCRIBE):
        return None
    h = msg.header
    fields = msgspec.to_builtins(msg.body)
    assert isinstance(fields, dict)
    marker: dict[str, Any] = {"type": h.type, "fork_id": h.fork_id, "sender": h.sender, **fields}
    ts_ns = h.ts_ns
    if isinstance(msg.body, Stimulus):
        ts_ns = msg.body.onset_ns
        marker["sent_ns"] = h.ts_ns  # when the renderer announced it: sent_ns - onset_ns is its lag
    return marker, ts_ns / 1e9


class SessionRecorder:
    """``await start()``, then ``run()`` as a task until cancelled (it then closes its client and outlet)."""

    def __init__(self, config: Config, endpoints: Endpoints, *, curve_secret_file: Path | None = None) -> None:
        self.config = config
        self.client = BusClient(f"{config.daemon.name}-record", endpoints, role="tool", subscribe=SUBSCRIBE,
                                heartbeat_ms=config.bus.heartbeat_ms, missed_beats=config.bus.missed_beats,
                                curve_secret_file=curve_secret_file, max_frame=config.bus.max_frame_bytes)
        self.outlet: MarkerOutlet | None = None
        self.failed = 0

    async def start(self) -> None:
        """Open the outlet and join the bus; returns once the bus answers, so the first fork is recorded."""
        cfg = self.config
        name = cfg.record.lsl_name
        self.outlet = MarkerOutlet(name, source_id(name, cfg.daemon.user), ROLE_SESSION,
                                   {"user": cfg.daemon.user, "daemon": cfg.daemon.name})
        await self.client.start()
        if not await self.client.wait_connected(5.0):
            log.warning("session record: the bus did not answer within 5 s; early messages may be missing")
        log.info("session record: LSL marker stream %r (source_id %r)", name, self.outlet.source_id)

    async def run(self) -> None:
        assert self.outlet is not None, "call start() first"
        try:
            while True:
                msg = await self.client.recv()
                if msg is None:
                    continue
                self.record(msg)
        finally:
            await self.close()

    def record(self, msg: Message) -> None:
        """Push one message's marker; a message that cannot be written is logged and skipped, never fatal."""
        assert self.outlet is not None
        try:
            got = marker_for(msg)
            if got is not None:
                self.outlet.push(*got)
        except Exception as exc:  # the record must never stop the daemon
            self.failed += 1
            if self.failed <= 10:
                log.warning("session record: could not record %s from %s: %r", msg.type, msg.header.sender, exc)

    async def close(self) -> None:
        await self.client.close()
        if self.outlet is not None:
            outlet, self.outlet = self.outlet, None
            await asyncio.to_thread(outlet.close)
