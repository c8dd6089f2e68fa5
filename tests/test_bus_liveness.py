"""Sequence gaps and heartbeats, through the real proxy."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from razvilka.protocol.client import BusClient
from razvilka.protocol.clock import now_ns
from razvilka.protocol.codec import Codec
from razvilka.protocol.messages import Focus, Header, Heartbeat, Message, TextAuto

pytestmark = pytest.mark.timeout(30)


def raw_text_auto(codec: Codec, seq: int, word: str) -> list[bytes]:
    """A text.auto message with a chosen sequence number (what a lossy sender would produce)."""
    header = Header(version="1.0", type="text.auto", id=f"raw-{seq}", sender=codec.sender,
                    session=codec.session, seq=seq, ts_ns=now_ns())
    return codec.encode_parts("text.auto.", header, TextAuto(text=" " + word, words=[word]))


async def collect(client: BusClient, n: int, timeout: float = 3.0) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = await client.recv(timeout=max(0.0, deadline - time.monotonic()))
        if msg is not None:
            out.append(msg)
    return out


async def test_gap_is_counted(clients) -> None:
    receiver = await clients("receiver", subscribe=["text."], heartbeat_ms=0)
    sender = await clients("sender", heartbeat_ms=0)
    codec = Codec("lossy")
    for seq, word in ((0, "a"), (1, "b"), (3, "d"), (4, "e"), (9, "j")):
        sender.send_raw(raw_text_auto(codec, seq, word))
    got = await collect(receiver, 5)
    assert [m.header.seq for m in got] == [0, 1, 3, 4, 9]
    assert receiver.stats.gaps == 1 + 4
    assert receiver.stats.rejected == 0


async def test_no_false_gaps_when_a_sender_mixes_types(ipc_clients) -> None:
    """seq counts per sender *and type*: a subscriber to one type sees no holes from the others."""
    focus_only = await ipc_clients("fusion", subscribe=["input.focus."], heartbeat_ms=0)
    sender = await ipc_clients("gaze", heartbeat_ms=0)
    for i in range(20):
        sender.publish(Focus(index=i % 4, source="gaze"), fork_id="f1")
        sender.publish(TextAuto(text="x", words=["x"]))  # another type, not subscribed
        if i % 5 == 0:  # heartbeats interleaved too (the fusion side receives those)
            sender.publish(Heartbeat(role="input", interval_ms=50))
    got: list[Message] = []
    deadline = time.monotonic() + 5
    while len(got) < 20 and time.monotonic() < deadline:  # heartbeats keep coming: no "quiet" end
        msg = await focus_only.recv(timeout=0.5)
        if msg is not None and msg.type == "input.focus":
            got.append(msg)
    assert len(got) == 20
    assert [m.header.seq for m in got] == list(range(20))
    assert focus_only.stats.gaps == 0


async def test_restart_with_new_session_is_not_a_gap(ipc_clients) -> None:
    receiver = await ipc_clients("receiver", subscribe=["text."], heartbeat_ms=0)
    sender = await ipc_clients("sender", heartbeat_ms=0)
    first, second = Codec("adapter"), Codec("adapter")  # same name, new session after a restart
    sender.send_raw(raw_text_auto(first, 0, "a"))
    sender.send_raw(raw_text_auto(first, 1, "b"))
    sender.send_raw(raw_text_auto(second, 0, "c"))
    assert len(await collect(receiver, 3)) == 3
    assert receiver.stats.gaps == 0


async def wait_peer(client: BusClient, name: str, want: str, timeout: float = 3.0) -> dict[str, str]:
    """Keep receiving (heartbeats are messages too) until ``name`` reads ``want``."""
    deadline = time.monotonic() + timeout
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        await client.recv(timeout=0.02)
        state = client.alive()
        if state.get(name) == want:
            return state
    return state


async def test_silent_after_three_missed_beats(clients) -> None:
    watcher = await clients("watcher", subscribe=["heartbeat."], heartbeat_ms=100)
    adapter = await clients("adapter", role="input", heartbeat_ms=100)
    assert (await wait_peer(watcher, "adapter", "alive")).get("adapter") == "alive"
    peer = watcher.peers["adapter"]
    assert (peer.role, peer.interval_ms) == ("input", 100)

    await adapter.close(goodbye=False)  # a crash: no goodbye
    state = await wait_peer(watcher, "adapter", "silent")
    assert state["adapter"] == "silent"
    assert time.monotonic() - peer.last_seen > 3 * 0.1  # not before 3 beats were missed


async def test_silent_peer_comes_back(ipc_clients) -> None:
    watcher = await ipc_clients("watcher", subscribe=["heartbeat."], heartbeat_ms=100)
    adapter = await ipc_clients("eeg", role="input", heartbeat_ms=100)
    await wait_peer(watcher, "eeg", "alive")
    for task in adapter._tasks:  # the process hangs: its beats stop but the socket stays
        task.cancel()
    assert (await wait_peer(watcher, "eeg", "silent"))["eeg"] == "silent"
    adapter.publish(Heartbeat(role="input", interval_ms=100))
    assert (await wait_peer(watcher, "eeg", "alive"))["eeg"] == "alive"


async def test_goodbye_is_not_a_loss(ipc_clients) -> None:
    watcher = await ipc_clients("watcher", subscribe=["heartbeat."], heartbeat_ms=100)
    adapter = await ipc_clients("keyboard", role="input", heartbeat_ms=100)
    await wait_peer(watcher, "keyboard", "alive")
    await adapter.close()  # clean stop: a final beat with state="stopped"
    assert (await wait_peer(watcher, "keyboard", "stopped"))["keyboard"] == "stopped"
    # What is tested is time passing: 0.45 s is more than 3 missed beats of 100 ms, after which a
    # peer that merely went quiet reads "silent"; one that said goodbye still reads "stopped".
    await asyncio.sleep(0.45)
    assert watcher.alive()["keyboard"] == "stopped"


LEAKY_TEST = """
import zmq

KEPT = []


def test_closes_its_socket():
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.close(linger=0)


def test_leaks_a_socket():
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind("inproc://left-open")
    KEPT.append(sock)  # never closed
"""


def test_a_socket_left_open_fails_its_test(tmp_path: Path) -> None:
    """The autouse per-test context (bus_helpers.zmq_contexts) turns a leaked socket into a failure naming it."""
    tests_dir = Path(__file__).resolve().parent
    (tmp_path / "conftest.py").write_text("from bus_helpers import zmq_contexts  # noqa: F401\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    env = {**os.environ, "PYTHONPATH": str(tests_dir)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                          "-o", "timeout=60", "-o", "asyncio_default_fixture_loop_scope=function", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    # both bodies pass; the leaking one then errors at teardown, naming the socket
    assert "2 passed, 1 error" in out, out
    assert "ERROR at teardown of test_leaks_a_socket" in out and "ERROR at teardown of test_closes" not in out, out
    assert "ZeroMQ sockets left open" in out and "PUB (inproc://left-open)" in out, out
