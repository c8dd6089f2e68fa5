"""Every bad input of the conformance vectors, sent through the real bus.

Each one must land in the receiver's stats under its own error code; the receiver keeps
running and the valid message sent right after it still arrives (nothing valid is lost).
"""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from bus_helpers import receive
from conftest import ClientFactory, make_bus_config

from razvilka.protocol.bus import BusHost
from razvilka.protocol.codec import DEFAULT_MAX_FRAME, Codec
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import Heartbeat, TextAuto
from razvilka.protocol.vectors import TEST_KEY, load_vectors, vector_frames

pytestmark = pytest.mark.timeout(30)

VECTORS = load_vectors()


def before_frames(vector: dict) -> list[list[bytes]]:
    """The messages a vector's receiver must have decoded first (a replay's original)."""
    return [[bytes.fromhex(h) for h in frames] for frames in vector.get("before", [])]


async def roundtrip_errors(host: BusHost, vectors: list[dict]) -> None:
    """Send each vector (after its ``before`` frames) then a valid marker; check the code counted
    and the marker received."""
    clients = ClientFactory(host)
    try:
        receivers = {  # one per frame-size limit; subscribers connect before the sender
            limit: await clients(f"rx-{limit}", subscribe=[""], heartbeat_ms=0, max_frame=limit)
            for limit in sorted({v["max_frame"] for v in vectors})
        }
        sender = await clients("sender", heartbeat_ms=0)
        for vector in vectors:
            receiver = receivers[vector["max_frame"]]
            before = dict(receiver.stats.errors_by_code)
            for earlier in before_frames(vector):
                sender.send_raw(earlier)
            sender.send_raw(vector_frames(vector))
            marker = sender.publish(TextAuto(text=" ok", words=["ok"]))
            for rx in receivers.values():  # every receiver reads up to the marker
                got = None
                while (msg := await rx.recv(timeout=3)) is not None:
                    if msg.header.id == marker.id:
                        got = msg
                        break
                assert got is not None, f"{vector['name']}: the valid message after it was lost"
            counted = {c: n - before.get(c, 0) for c, n in receiver.stats.errors_by_code.items()
                       if n != before.get(c, 0)}
            assert counted == {vector["error"]["code"]: 1}, (vector["name"], counted)
    finally:
        await clients.close()


async def test_every_invalid_vector_through_the_bus(ipc_bus) -> None:
    bad = [v for v in VECTORS if v["result"] == "error" and v["key"] is None]
    assert len(bad) > 40
    await roundtrip_errors(ipc_bus, bad)
    assert {v["error"]["name"] for v in bad} >= {
        "FRAME_COUNT", "OVERSIZE", "BAD_TOPIC", "MALFORMED", "NOT_A_MAP", "MISSING_FIELD", "WRONG_TYPE",
        "BAD_VERSION", "UNSUPPORTED_VERSION", "TOPIC_MISMATCH", "BAD_VALUE",
    }


async def test_signed_vectors_through_a_signed_bus(runtime_dir: Path) -> None:
    host = BusHost(make_bus_config(runtime_dir, "ipc", hmac_key=TEST_KEY))
    host.start()
    try:
        bad = [v for v in VECTORS if v["result"] == "error" and v["key"] == TEST_KEY]
        assert {v["error"]["name"] for v in bad} >= {"UNSIGNED", "BAD_SIGNATURE", "REPLAYED"}
        await roundtrip_errors(host, bad)
    finally:
        host.stop()


async def test_valid_vectors_are_delivered_or_ignored(ipc_bus, ipc_clients) -> None:
    """Valid vectors arrive typed; unknown types are skipped without an error."""
    receiver = await ipc_clients("receiver", subscribe=[""], heartbeat_ms=0)
    sender = await ipc_clients("sender", heartbeat_ms=0)
    good = [v for v in VECTORS if v["result"] != "error" and v["key"] is None]
    expected = []  # (topic, id) of every delivered message, a vector's `before` ones included
    for v in good:
        for earlier in before_frames(v):  # without a key a repeat is delivered again
            sender.send_raw(earlier)
            expected.append((earlier[0].decode(), msgspec.msgpack.decode(earlier[1])["id"]))
        sender.send_raw(vector_frames(v))
        if v["result"] == "ok":
            expected.append((v["decoded"]["topic"], v["decoded"]["header"]["id"]))
    delivered = [v for v in good if v["result"] == "ok"]
    got = await receive(receiver, lambda got: len(got) >= len(expected))
    assert [(m.topic, m.header.id) for m in got] == expected
    assert any("before" in v for v in delivered)
    assert receiver.stats.rejected == 0
    assert receiver.stats.unknown == len(good) - len(delivered) > 0


async def test_real_oversize_frame_at_default_limit(ipc_clients) -> None:
    """A body one byte over 1 MiB crosses the proxy and is refused; the next message is fine."""
    receiver = await ipc_clients("receiver", subscribe=["text."], heartbeat_ms=0)
    sender = await ipc_clients("sender", heartbeat_ms=0)
    frames = Codec("big").encode(TextAuto(text="x", words=[]))
    frames[2] = frames[2] + b"\x00" * (DEFAULT_MAX_FRAME + 1 - len(frames[2]))
    assert len(frames[2]) == DEFAULT_MAX_FRAME + 1
    sender.send_raw(frames)
    sender.publish(TextAuto(text=" after", words=["after"]))
    msg = await receiver.recv(timeout=3)
    assert msg is not None and msg.body.text == " after"
    assert receiver.stats.errors_by_code == {int(ErrorCode.OVERSIZE): 1}


async def test_bus_state_cache_survives_bad_input(ipc_bus, ipc_clients) -> None:
    """The host's own decoder (state cache) counts bad retained messages and keeps serving snapshots."""
    sender = await ipc_clients("sender", heartbeat_ms=0)
    bad = [v for v in VECTORS if v["result"] == "error" and v["key"] is None
           and bytes.fromhex(v["frames"][0]).startswith(b"heartbeat.") and v["max_frame"] == DEFAULT_MAX_FRAME]
    for v in bad:
        sender.send_raw(vector_frames(v))
    sender.publish(Heartbeat(role="tool", interval_ms=1000))
    late = await ipc_clients("late", heartbeat_ms=0)
    snap = []
    for _ in range(100):
        snap = [m for m in await late.snapshot() if m.header.sender == "sender"]
        if snap:
            break
    assert [m.type for m in snap] == ["heartbeat"]
    assert ipc_bus.rejected == len(bad) > 10
