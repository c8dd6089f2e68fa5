"""Late joiners: the snapshot (zguide Clone pattern) over real ipc and tcp sockets."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from bus_helpers import body_of, receive

from razvilka.protocol.messages import (
    Candidate,
    DaemonStatus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Lookahead,
    TextState,
)

pytestmark = pytest.mark.timeout(30)


def fork_open(words: list[str]) -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=1 / (i + 2)) for i, w in enumerate(words)])


def cached_topics(bus) -> list[bytes]:
    return [bytes(frames[0]) for frames in bus.cache.messages()]


async def wait_cached(bus, count: int, holds: Callable[[list[bytes]], bool] | None = None) -> None:
    """The state thread caches asynchronously: poll (2 s at most) until it holds ``count`` messages and
    ``holds(topics)``."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        topics = cached_topics(bus)
        if len(topics) >= count and (holds is None or holds(topics)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"cache holds {cached_topics(bus)}, expected {count} messages")


async def test_late_joiner_gets_current_fork_and_lookaheads(bus, clients) -> None:
    daemon = await clients("daemon", heartbeat_ms=0)
    daemon.publish(DaemonStatus(state="waiting", model="m"))
    daemon.publish(TextState(text="Once upon a"))
    daemon.publish(fork_open(["old", "stale"]), fork_id="f1")
    daemon.publish(ForkDecided(index=0, words=["old"], sources=["keyboard"]), fork_id="f1")
    daemon.publish(fork_open(["time", "day", "night"]), fork_id="f2")
    daemon.publish(ForkLookahead(entries=[Lookahead(index=0, phrases=["time there was"])]), fork_id="f2")
    await wait_cached(bus, 5)

    late = await clients("renderer", subscribe=["fork.", "text.", "daemon."], heartbeat_ms=0)
    snap = await late.snapshot()
    kinds = [(m.type, m.header.fork_id) for m in snap]
    assert ("fork.open", "f2") in kinds and ("fork.lookahead", "f2") in kinds
    assert ("fork.open", "f1") not in kinds, "a decided fork is no longer current"
    assert ("daemon.status", None) in kinds and ("text.state", None) in kinds
    opened = next(m for m in snap if m.type == "fork.open")
    assert [c.word for c in opened.body.candidates] == ["time", "day", "night"]
    # the look-ahead follows its fork in the snapshot, so a renderer can apply it in order
    assert kinds.index(("fork.open", "f2")) < kinds.index(("fork.lookahead", "f2"))

    # live traffic after the snapshot arrives once
    daemon.publish(ForkLookahead(entries=[Lookahead(index=1, phrases=["day after"])], done=True), fork_id="f2")
    live = await receive(late, lambda got: len(got) >= 1)
    assert [(m.type, body_of(m, ForkLookahead).done) for m in live] == [("fork.lookahead", True)]
    assert late.stats.gaps == 0


async def test_snapshot_covers_messages_already_queued(ipc_bus, ipc_clients) -> None:
    """Subscribe first, then snapshot: live copies of what the snapshot holds are dropped."""
    late = await ipc_clients("late", subscribe=["fork.", "text."], heartbeat_ms=0)
    daemon = await ipc_clients("daemon", heartbeat_ms=0)
    # The late client is subscribed: these reach its queue *and* the cache.
    daemon.publish(TextState(text="A"))
    daemon.publish(fork_open(["b", "c"]), fork_id="f7")
    daemon.publish(ForkLookahead(entries=[Lookahead(index=0, phrases=["b d"])]), fork_id="f7")
    await wait_cached(ipc_bus, 3)
    # Make sure the three live copies are queued at the late client before it asks: move them off its
    # socket into its own queue of received messages (what recv() reads first, as wait_connected does).
    for _ in range(3):
        assert await late.sub.poll(5000), "a live copy never reached the late client"
        late._pending.append(await late.sub.recv_multipart())
    snap = await late.snapshot()
    assert sorted(m.type for m in snap) == ["fork.lookahead", "fork.open", "text.state"]
    daemon.publish(TextState(text="A b"))
    live = await receive(late, lambda got: len(got) >= 1)
    assert [(m.type, getattr(m.body, "text", None)) for m in live] == [("text.state", "A b")], \
        "the queued duplicates were dropped and the new state came through"
    assert late.stats.gaps == 0


async def test_empty_bus_snapshot_and_no_current_fork_after_decision(ipc_bus, ipc_clients) -> None:
    first = await ipc_clients("first", heartbeat_ms=0)
    assert [m for m in await first.snapshot() if m.type.startswith("fork.")] == []
    first.publish(fork_open(["x"]), fork_id="f9")
    first.publish(ForkDecided(index=0, words=["x"], sources=["eeg"]), fork_id="f9")
    await wait_cached(ipc_bus, 1, lambda topics: all(t.startswith(b"fork.decided") for t in topics))
    second = await ipc_clients("second", heartbeat_ms=0)
    snap = await second.snapshot()
    assert [m.type for m in snap if m.type.startswith("fork.")] == ["fork.decided"], \
        "only the last decision is retained once the fork is closed"
