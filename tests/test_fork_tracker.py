"""ForkTracker: the one place that follows which fork is open (bus cache, web bridge, TUI, keys, gaze, EEG)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from razvilka.protocol.client import ForkTracker
from razvilka.protocol.codec import Codec
from razvilka.protocol.messages import (
    Body,
    Candidate,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Lookahead,
    Message,
    TextUndo,
)

DAEMON = Codec("daemon")


def msg(body: Body, fork_id: str | None = None, codec: Codec = DAEMON) -> Message:
    """A message as a client receives it: encoded and decoded by the real codec."""
    return codec.decode(codec.encode(body, fork_id=fork_id))


def fork(*words: str, context: str = "", prefix: str = "") -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=0.5 / (i + 1), joins=w.startswith("~"),
                                          lookahead=["and so"] if i == 0 else []) for i, w in enumerate(words)],
                    context=context, prefix=prefix)


def test_open_lookahead_decided() -> None:
    t = ForkTracker()
    assert t.update(msg(DaemonStatus(state="waiting"))) == "" and t.fork is None
    opened = msg(fork(" flowers", " letter", " gift", context="Dear Miss"), "f1")
    assert t.update(opened) == "open" and t.fork_id == "f1"
    assert t.fork is not None and t.fork.k == 3 and t.fork.indices == [0, 1, 2]
    assert t.fork.words == ["flowers", "letter", "gift"]
    assert t.fork.position_of(2) == 2 and t.fork.position_of(7) is None
    assert t.fork.phrases(0) == ["and so"] and t.fork.phrases(1) == []  # the look-ahead fork.open carried
    la = msg(ForkLookahead(entries=[Lookahead(index=1, phrases=["from last week"]),
                                    Lookahead(index=1, phrases=["from last week, sent by Anna"], long=True)],
                           done=True), "f1")
    assert t.update(la) == "lookahead"
    assert t.fork.phrases(1) == ["from last week"] and t.fork.long_phrases(1) == ["from last week, sent by Anna"]
    assert t.fork.long_phrases(0) == ["and so"] and t.fork.lookahead_words(1) == ["from", "last", "week"]
    assert t.fork.lookahead_done
    assert [m.header.type for m in t.messages()] == ["fork.open", "fork.lookahead"]  # a late joiner replays these
    # focus and look-aheads of another fork change nothing
    assert t.update(msg(ForkLookahead(entries=[Lookahead(index=0, phrases=["x"])]), "other")) == ""
    assert t.update(msg(Focus(index=1, source="gaze"), "f1", Codec("gaze"))) == ""
    assert t.fork.phrases(0) == ["and so"]
    decided = msg(ForkDecided(index=1, words=["letter"], sources=["keyboard"]), "f1")
    assert t.update(decided) == "decided" and t.ended == "f1"
    assert t.fork is None and t.fork_id is None and t.messages() == [] and t.last_decided is decided
    assert t.is_stale("f1") and not t.is_stale("never-seen") and not t.is_stale(None)


def test_a_new_fork_or_an_undo_ends_the_open_one() -> None:
    t = ForkTracker(remember=2)
    t.update(msg(fork("a", "b"), "f1"))
    assert t.update(msg(fork("c", "d", prefix="c"), "f2")) == "open" and t.ended == "f1"  # more / type / page
    assert t.is_stale("f1") and t.fork_id == "f2" and t.fork is not None and t.fork.prefix == "c"
    assert t.update(msg(fork("c", "e"), "f2")) == "reopen" and t.ended is None and t.fork_id == "f2"
    # back: the text the fork stood on is gone
    assert t.update(msg(TextUndo(removed=" word"))) == "undone" and t.ended == "f2"
    assert t.fork is None and t.is_stale("f2")
    assert t.update(msg(TextUndo(removed=" more"))) == ""  # nothing open: nothing ends
    # a decision for a fork never seen open (joined late) is still remembered as over
    assert t.update(msg(ForkDecided(index=0, words=["x"], sources=["tui"]), "f0")) == "" and t.is_stale("f0")
    assert list(t.closed) == ["f2", "f0"]  # only the newest `remember` are kept


def test_stem_of_a_joining_candidate() -> None:
    t = ForkTracker()
    t.update(msg(fork("Bennet", "~es", context="and the elder Miss"), "j"))
    assert t.fork is not None
    assert t.fork.stem(t.fork.candidates[1]) == "Miss" and t.fork.stem(t.fork.candidates[0]) == ""


async def test_the_bus_snapshot_drops_a_fork_that_text_undo_ended(ipc_clients: Any) -> None:
    """The bus host's state cache uses the tracker too: after `back`, a late joiner gets no dead fork."""
    daemon = await ipc_clients("daemon", role="daemon")
    probe = await ipc_clients("probe", subscribe=["fork."])

    async def snapshot_types(want: list[str]) -> list[str]:
        deadline = time.monotonic() + 5
        while True:
            types = [m.type for m in await probe.snapshot()]
            if [t for t in types if t in ("fork.open", "fork.lookahead", "text.undo", "fork.decided")] == want:
                return types
            assert time.monotonic() < deadline, f"snapshot still {types}, want {want}"
            await asyncio.sleep(0.05)

    daemon.publish(fork("a", "b"), fork_id="d-1")
    daemon.publish(ForkLookahead(entries=[Lookahead(index=1, phrases=["b c"])]), fork_id="d-1")
    await snapshot_types(["fork.open", "fork.lookahead"])
    daemon.publish(TextUndo(removed=" x"))
    await snapshot_types([])  # the fork is gone, and text.undo itself is never retained
    daemon.publish(fork("c", "d"), fork_id="d-2")
    daemon.publish(ForkDecided(index=0, words=["c"], sources=["tui"]), fork_id="d-2")
    await snapshot_types(["fork.decided"])  # the last decision stays for late joiners to draw
