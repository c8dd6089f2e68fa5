"""Replay refusal in the codec (protocol 1.3): with a key, a seq already passed is refused.

The frames are real encoded messages; the bus-level and daemon-level checks (a frame captured
off a real socket and sent again) are in test_bus_security.py.
"""
from __future__ import annotations

import pytest

from razvilka.protocol.codec import REPLAY_STREAMS, Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Heartbeat, Select, SourceStatus

KEY = b"replay-test-key"


def beat(codec: Codec) -> list[bytes]:
    return codec.encode(Heartbeat(role="input", interval_ms=1000))


def test_the_same_frames_twice_are_refused_the_next_seq_passes() -> None:
    sender, receiver = Codec("keys", key=KEY), Codec("rx", key=KEY)
    first = sender.encode(Select(index=1, source="keys", kind="key"), fork_id="f1")
    decoded = receiver.decode(first).body
    assert isinstance(decoded, Select) and decoded.index == 1
    with pytest.raises(ProtocolError) as err:
        receiver.decode(first)
    assert err.value.code == ErrorCode.REPLAYED and "'keys'" in err.value.detail
    assert receiver.decode(sender.encode(Select(index=2, source="keys"), fork_id="f1")).header.seq == 1


def test_older_seq_refused_a_gap_passes() -> None:
    sender, receiver = Codec("gaze", key=KEY), Codec("rx", key=KEY)
    frames = [beat(sender) for _ in range(5)]  # seq 0..4
    receiver.decode(frames[3])
    with pytest.raises(ProtocolError) as err:
        receiver.decode(frames[1])
    assert err.value.code == ErrorCode.REPLAYED
    assert receiver.decode(frames[4]).header.seq == 4


def test_streams_are_per_sender_session_and_type() -> None:
    receiver = Codec("rx", key=KEY)
    a = Codec("adapter", key=KEY)
    restarted = Codec("adapter", key=KEY)  # same name, new session: its seq starts at 0 again
    receiver.decode(beat(a))
    receiver.decode(beat(a))
    assert receiver.decode(beat(restarted)).header.seq == 0
    assert receiver.decode(a.encode(SourceStatus(source="adapter", state="ok"))).header.seq == 0


def test_without_a_key_nothing_is_tracked() -> None:
    receiver = Codec("rx")
    frames = beat(Codec("anyone"))
    receiver.decode(frames)
    assert receiver.decode(frames).header.seq == 0


def test_a_refused_message_is_not_recorded() -> None:
    """A forged frame with a high seq must not make the real sender's next messages look old."""
    receiver = Codec("rx", key=KEY)
    real = Codec("keys", key=KEY)
    forged = Codec("keys", key=b"guessed", session=real.session)
    for _ in range(9):
        forged.encode(Select(index=0, source="keys"), fork_id="f")
    with pytest.raises(ProtocolError) as err:
        receiver.decode(forged.encode(Select(index=0, source="keys"), fork_id="f"))  # seq 9, bad signature
    assert err.value.code == ErrorCode.BAD_SIGNATURE
    assert receiver.decode(real.encode(Select(index=1, source="keys"), fork_id="f")).header.seq == 0


def test_snapshot_copies_are_neither_checked_nor_recorded() -> None:
    """The bus's snapshot re-delivers old frames; the live copy after it must still pass the codec."""
    sender, receiver = Codec("daemon", key=KEY), Codec("late", key=KEY)
    old, live = beat(sender), beat(sender)
    receiver.decode(live)
    assert receiver.decode(old, retained=True).header.seq == 0  # older than seen: fine in a snapshot
    late = Codec("late2", key=KEY)
    late.decode(live, retained=True)
    assert late.decode(live).header.seq == 1  # the snapshot did not record it


def test_the_table_is_bounded_least_recent_forgotten() -> None:
    receiver = Codec("rx", key=KEY, replay_streams=3)
    senders = [Codec(f"s{i}", key=KEY) for i in range(4)]
    frames = [beat(s) for s in senders]
    for f in frames[:3]:
        receiver.decode(f)
    receiver.decode(beat(senders[0]))  # s0 active again: s1 is now the least recent
    receiver.decode(frames[3])         # a 4th stream: s1 is dropped
    assert len(receiver._last_seen) == 3
    for i in (2, 3):
        with pytest.raises(ProtocolError):
            receiver.decode(frames[i])
    assert receiver.decode(frames[1]).header.sender == "s1"  # forgotten: one replay passes (documented)


def test_a_flood_of_sessions_stays_within_the_default_bound() -> None:
    receiver = Codec("rx", key=KEY)
    for _ in range(REPLAY_STREAMS + 500):
        receiver.decode(beat(Codec("flood", key=KEY)))
    assert len(receiver._last_seen) == REPLAY_STREAMS
