"""CURVE (encryption + client authorization) and HMAC signing, on real sockets."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
import zmq.auth
from bus_helpers import body_of, receive, until, wait_retained
from conftest import ClientFactory, make_bus_config

from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient
from razvilka.protocol.codec import Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Candidate, ForkOpen, Select, TextAuto

pytestmark = pytest.mark.timeout(30)


def fork(word: str) -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=0, word=word, prob=0.5)])


# ---------------------------------------------------------------- CURVE
@pytest.fixture
async def curve_bus(runtime_dir: Path):
    host = BusHost(make_bus_config(runtime_dir, "tcp", curve=True))
    host.start()
    factory = ClientFactory(host)
    yield host, factory
    await factory.close()
    host.stop()


async def test_curve_authorized_client_gets_messages(curve_bus) -> None:
    host, clients = curve_bus
    assert host.endpoints.curve_server_public and host.endpoints.pub.startswith("tcp://127.0.0.1:")
    receiver = await clients("receiver", subscribe=["text."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    sender.publish(TextAuto(text=" secret", words=["secret"]))
    msg = await receiver.recv(timeout=3)
    assert msg is not None and msg.body.text == " secret"
    sender.publish(fork("river"), fork_id="f1")
    for _ in range(50):  # the snapshot socket is CURVE too
        snap = await receiver.snapshot()
        if any(m.type == "fork.open" for m in snap):
            break
        await asyncio.sleep(0.02)
    assert [m.body.candidates[0].word for m in snap if m.type == "fork.open"] == ["river"]


async def test_curve_client_needs_keys(curve_bus) -> None:
    host, _ = curve_bus
    client = BusClient("nokeys", host.endpoints, heartbeat_ms=0)
    with pytest.raises(ProtocolError) as err:
        await client.start()
    assert err.value.code == ErrorCode.BAD_CONFIG
    await client.close()


async def test_curve_plain_socket_gets_nothing(curve_bus) -> None:
    """A subscriber that skips CURVE never completes the handshake: nothing reaches it."""
    host, clients = curve_bus
    sender = await clients("sender", heartbeat_ms=0)
    ctx = zmq.asyncio.Context.instance()
    plain = ctx.socket(zmq.SUB)
    plain.linger = 0
    try:
        plain.subscribe(b"")
        plain.connect(host.endpoints.sub)
        for _ in range(10):
            sender.publish(TextAuto(text=" x", words=["x"]))
            await asyncio.sleep(0.03)
        assert await plain.poll(300) == 0
    finally:
        plain.close(linger=0)


async def test_curve_unauthorized_key_gets_nothing_and_is_not_heard(curve_bus, tmp_path: Path) -> None:
    host, clients = curve_bus
    _, stranger_secret = zmq.auth.create_certificates(str(tmp_path), "stranger")
    witness = await clients("witness", subscribe=["text."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    stranger = await clients("stranger", connect=False, subscribe=["text."], heartbeat_ms=0,
                             curve_secret_file=Path(stranger_secret))
    assert not await stranger.wait_connected(0.5), "the bus must refuse a key it has not authorized"
    stranger.publish(TextAuto(text=" injected", words=["injected"]))
    sender.publish(TextAuto(text=" legit", words=["legit"]))
    got = await receive(witness, lambda got: any(body_of(m, TextAuto).text == " legit" for m in got), quiet=0.4)
    assert [body_of(m, TextAuto).text for m in got] == [" legit"]
    assert await stranger.recv(timeout=0.3) is None


def test_off_loopback_requires_curve() -> None:
    cfg = make_bus_config(Path("/tmp"), "tcp", host="0.0.0.0")
    assert not cfg.loopback and cfg.curve_required


# ---------------------------------------------------------------- HMAC
KEY = "test-signing-key"


@pytest.fixture
async def signed_bus(runtime_dir: Path):
    host = BusHost(make_bus_config(runtime_dir, "ipc", hmac_key=KEY))
    host.start()
    factory = ClientFactory(host)
    yield host, factory
    await factory.close()
    host.stop()


async def test_hmac_valid_passes_unsigned_and_forged_rejected(signed_bus) -> None:
    host, clients = signed_bus
    receiver = await clients("receiver", subscribe=["input."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    assert sender.codec.key == KEY.encode()
    select = Select(index=1, source="keyboard")
    unsigned = Codec("mallory").encode(select, fork_id="f1")
    forged = Codec("mallory", key=b"guessed").encode(select, fork_id="f1")
    good = Codec("alice", key=KEY.encode()).encode(select, fork_id="f1")
    tampered = list(good)
    tampered[2] = Codec("x").encode(Select(index=7, source="keyboard"), fork_id="f1")[2]
    for frames in (unsigned, forged, tampered):
        sender.send_raw(frames)
    sender.publish(select, fork_id="f1")
    got = await receive(receiver, lambda got: len(got) >= 1)
    assert [(m.header.sender, body_of(m, Select).index) for m in got] == [("sender", 1)]
    assert receiver.stats.errors_by_code == {int(ErrorCode.UNSIGNED): 1, int(ErrorCode.BAD_SIGNATURE): 2}
    sender.send_raw(good)  # a validly signed message from any sender passes
    msg = await receiver.recv(timeout=2)
    assert msg is not None and msg.header.sender == "alice"


async def test_hmac_state_cache_ignores_forged(signed_bus) -> None:
    host, clients = signed_bus
    sender = await clients("sender", heartbeat_ms=0)
    sender.send_raw(Codec("mallory", key=b"guessed").encode(fork("forged"), fork_id="f666"))
    sender.send_raw(Codec("mallory").encode(fork("unsigned"), fork_id="f667"))
    sender.publish(fork("real"), fork_id="f1")
    await until(lambda: host.cache.fork_id == "f1", "the bus caches the signed fork f1")
    late = await clients("late", subscribe=["fork."], heartbeat_ms=0)
    snap = await late.snapshot()
    assert [(m.header.fork_id, m.body.candidates[0].word) for m in snap if m.type == "fork.open"] == [("f1", "real")]
    assert host.rejected == 2
    # the signature travels with the cached frames: the snapshot verifies too
    assert all(m.header.sender == "sender" for m in snap)


# ---------------------------------------------------------------- replays (protocol 1.3)
async def eavesdrop(endpoint: str, prefix: bytes, prober: BusClient) -> zmq.asyncio.Socket:
    """A raw SUB socket on the bus, as an attacker would open one, surely subscribed to ``prefix``:
    a probe sent through the bus came back on it (PUB/SUB drops what precedes the subscription)."""
    tap = zmq.asyncio.Context.instance().socket(zmq.SUB)
    tap.linger = 0
    token = f"_probe.tap.{id(tap)}.".encode()
    tap.subscribe(prefix)
    tap.subscribe(token)
    tap.connect(endpoint)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline:
        prober.send_raw([token, b"", b""])
        if await tap.poll(50) and (await tap.recv_multipart())[0] == token:
            tap.unsubscribe(token)
            return tap
    tap.close(linger=0)
    raise AssertionError(f"the tap on {endpoint} never saw its probe")


async def captured(tap: zmq.asyncio.Socket, prefix: bytes) -> list[bytes]:
    """The next frames on the tap under ``prefix`` (probes still in flight are skipped)."""
    while True:
        assert await tap.poll(5000), "nothing captured within 5 s"
        frames = await tap.recv_multipart()
        if frames[0].startswith(prefix):
            return frames


async def test_hmac_replayed_frame_is_refused(signed_bus) -> None:
    """A signed select captured off the wire and sent again, byte for byte, is REPLAYED."""
    host, clients = signed_bus
    receiver = await clients("receiver", subscribe=["input."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    tap = await eavesdrop(host.endpoints.sub, b"input.select.", sender)
    try:
        sender.publish(Select(index=1, source="keyboard", kind="key"), fork_id="f1")
        frames = await captured(tap, b"input.select.")
    finally:
        tap.close(linger=0)
    assert len(frames) == 4, "signed: topic, header, body, signature"
    sender.send_raw(frames)
    sender.publish(Select(index=2, source="keyboard", kind="key"), fork_id="f1")
    got = await receive(receiver, lambda got: len(got) >= 2)
    assert [(m.header.seq, body_of(m, Select).index) for m in got] == [(0, 1), (1, 2)]
    assert receiver.stats.errors_by_code == {int(ErrorCode.REPLAYED): 1}


async def test_hmac_snapshot_then_live_copy_is_no_replay(signed_bus) -> None:
    """A late joiner gets a retained message twice (snapshot, then live): dropped quietly, not REPLAYED."""
    host, clients = signed_bus
    late = await clients("late", subscribe=["fork."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    sender.publish(fork("river"), fork_id="f1")  # reaches late's queue and the bus's cache
    snap = await wait_retained(late, lambda snap: any(m.type == "fork.open" for m in snap))
    assert [m.header.fork_id for m in snap if m.type == "fork.open"] == ["f1"]
    sender.publish(fork("road"), fork_id="f2")
    msg = await late.recv(timeout=3)  # the live f1 copy is dropped on the way; f2 arrives
    assert msg is not None and msg.header.fork_id == "f2"
    assert late.stats.rejected == 0, late.stats.errors_by_code


@pytest.mark.model
@pytest.mark.timeout(300)
async def test_daemon_refuses_a_replayed_signed_select(start_daemon) -> None:
    """The real daemon, signing on: a select captured off the bus and sent again decides nothing
    and gets daemon.error REPLAYED (before 1.3 it was decoded again, as a select for a stale fork)."""
    from daemon_fixtures import current_fork, next_of

    d = await start_daemon(bus={"hmac_key": KEY})
    bus = await d.client("t", ["fork.", "daemon.error."])
    assert bus.codec.key == KEY.encode()
    tap = await eavesdrop(d.endpoints.sub, b"input.select.", bus)
    try:
        fork_msg = await current_fork(bus)
        fid = fork_msg.header.fork_id
        bus.publish(Select(index=0, source="keyboard", kind="key"), fork_id=fid)
        frames = await captured(tap, b"input.select.")
    finally:
        tap.close(linger=0)
    await next_of(bus, "fork.decided", 60, where=lambda m: m.header.fork_id == fid)
    bus.send_raw(frames)  # the captured frames, byte for byte: a valid signature
    marker = bus.publish(Select(index=0, source="keyboard", kind="key"), fork_id="no-such-fork")
    seen = []
    while True:  # everything up to the daemon's answer to the marker, which it handles after the replay
        msg = await bus.recv(30)
        assert msg is not None, "the daemon answered neither the replay nor the marker"
        seen.append(msg)
        if msg.type == "daemon.error" and msg.body.ref_id == marker.id:
            break
    errors = [m.body for m in seen if m.type == "daemon.error"]
    assert [e.name for e in errors] == ["REPLAYED", "UNKNOWN_FORK"], errors
    assert errors[0].code == int(ErrorCode.REPLAYED) and "replayed" in errors[0].message
    assert not [m for m in seen if m.type == "fork.decided" and m.header.fork_id == fid], "a second decision"
    assert d.daemon.client.stats.errors_by_code.get(int(ErrorCode.REPLAYED)) == 1
