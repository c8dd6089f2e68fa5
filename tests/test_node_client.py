"""The Node.js renderer (renderers/examples/node): conformance vectors and a live bus.

The Node client knows only docs/protocol.md and protocol/schema.json; here the Python side
plays the daemon, and what the Node client sends is decoded by the Python codec.
Set-up: ``renderers/examples/node/setup.sh`` (``npm ci``) once.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import wait_retained
from conftest import ROOT, ClientFactory, make_bus_config

from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import (
    PROTOCOL_VERSION,
    Candidate,
    DaemonStatus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Lookahead,
    Select,
)

NODE_DIR = ROOT / "renderers" / "examples" / "node"
WORDS = [("river", 0.5), ("road", 0.25), ("forest", 0.125)]


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js is not installed: the Node renderer needs node >= 20 (apt-get install nodejs)")
    if not (NODE_DIR / "node_modules" / "zeromq").is_dir() or not (NODE_DIR / "node_modules" / "@msgpack").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run `bash renderers/examples/node/setup.sh` (npm ci) first")
    return exe


def fork_open(**kw: Any) -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(WORDS)],
                    context="She walked down to the", compute_ms=41.0, **kw)


class NodeRun:
    """The Node renderer as a subprocess, its output collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [asyncio.create_task(self._read(proc.stdout, self.out)),
                         asyncio.create_task(self._read(proc.stderr, self.err))]

    @classmethod
    async def start(cls, node: str, discovery: Path, *args: str) -> NodeRun:
        proc = await asyncio.create_subprocess_exec(
            node, "renderer.js", "--discovery", str(discovery), *args,
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        async for line in stream:
            into.append(line.decode().rstrip("\n"))

    async def wait_line(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.out:
                if text in line:
                    return line
            if self.proc.returncode is not None and all(t.done() for t in self._readers):
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"node never printed {text!r}; stdout={self.out} stderr={self.err}")

    async def finish(self, timeout: float = 15.0) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"node did not exit; stdout={self.out} stderr={self.err}") from None
        await asyncio.gather(*self._readers)
        return code


async def wait_peer(client: BusClient, name: str, timeout: float = 10.0) -> None:
    """Until ``name``'s heartbeat reached ``client`` (the Node client is subscribed and publishing)."""
    deadline = time.monotonic() + timeout
    while name not in client.peers:
        if time.monotonic() > deadline:
            raise AssertionError(f"no heartbeat from {name}")
        await client.recv(timeout=0.1)


async def next_select(client: BusClient, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await client.recv(timeout=max(0.0, deadline - time.monotonic()))
        if msg is not None and isinstance(msg.body, Select):
            return msg
    raise AssertionError("no input.select arrived")


def test_node_conformance_suite(node: str) -> None:
    """`node --test`: every vector decoded, errors by code, encoder round trips."""
    run = subprocess.run([node, "--test"], cwd=NODE_DIR, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
    passed = int(run.stdout.split("# pass ")[1].split()[0])
    assert passed >= 100, run.stdout[-2000:]


@pytest.mark.parametrize("security", ["plain", "hmac", "curve"])
async def test_node_prints_a_live_fork_and_its_select_arrives(node: str, runtime_dir: Path, security: str) -> None:
    by_security: dict[str, dict[str, Any]] = {"plain": {}, "hmac": {"hmac_key": "node-test-key"},
                                              "curve": {"curve": True}}
    kw = by_security[security]
    config = make_bus_config(runtime_dir, "tcp" if security == "curve" else "ipc", **kw)
    host = BusHost(config)
    host.start()
    clients = ClientFactory(host)
    try:
        daemon = await clients("daemon", role="daemon", subscribe=["input.", "heartbeat."])
        run = await NodeRun.start(node, host.discovery_path, "--select", "1", "--timeout", "30")
        await wait_peer(daemon, "node")
        daemon.publish(DaemonStatus(state="waiting", model="gemma-3-270m", mode="keys"))
        daemon.publish(fork_open(), fork_id="f-live")
        daemon.publish(ForkLookahead(entries=[Lookahead(index=0, phrases=["river ran dry", "river bank"])]),
                       fork_id="f-live")

        sel = await next_select(daemon)
        assert sel.header.sender == "node" and sel.header.fork_id == "f-live" and sel.header.version == PROTOCOL_VERSION
        assert sel.topic == "input.select."
        assert sel.body.index == 1 and sel.body.source == "node" and sel.body.confidence == 1.0
        assert daemon.stats.rejected == 0  # every Node message passed the Python codec (and its HMAC/CURVE)

        daemon.publish(ForkDecided(index=1, words=["road"], sources=["node"], latency_ms=12.0), fork_id="f-live")
        assert await run.finish() == 0, run.err
        out = "\n".join(run.out)
        assert "fork f-live (41 ms): 0 river 50.0% | 1 road 25.0% | 2 forest 12.5%" in out
        assert "look-ahead f-live 0 river: river ran dry / river bank" in out
        assert "selected f-live index 1 (road)" in out
        assert "decided f-live: road by node in 12 ms" in out
        assert "status: waiting model=gemma-3-270m mode=keys" in out
    finally:
        await clients.close()
        host.stop()


async def test_node_joins_late_and_prints_the_open_fork(node: str, ipc_bus: BusHost, ipc_clients) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    daemon.publish(fork_open(), fork_id="f-early")
    daemon.publish(ForkLookahead(entries=[Lookahead(index=2, phrases=["forest path"], long=True)]), fork_id="f-early")
    probe = await ipc_clients("probe", subscribe=["fork."])
    await wait_retained(probe, lambda snap: {(m.type, m.header.fork_id) for m in snap}
                        >= {("fork.open", "f-early"), ("fork.lookahead", "f-early")})
    run = await NodeRun.start(node, ipc_bus.discovery_path, "--forks", "1", "--timeout", "20")
    assert await run.finish() == 0, run.err
    out = "\n".join(run.out)
    assert "(open when we joined) fork f-early (41 ms): 0 river 50.0%" in out
    assert "look-ahead (long) f-early 2 forest: forest path" in out
    assert "snapshot: " in out


async def test_node_survives_bad_messages(node: str, ipc_bus: BusHost, ipc_clients) -> None:
    daemon = await ipc_clients("daemon", role="daemon", subscribe=["heartbeat."])
    run = await NodeRun.start(node, ipc_bus.discovery_path, "--forks", "1", "--timeout", "20")
    await run.wait_line("snapshot: ")  # following the live stream now
    good = daemon.codec.encode(fork_open(), fork_id="f-ok")
    daemon.send_raw([b"fork.open.", good[1], b"\xc1"])               # body is not msgpack
    daemon.send_raw([b"fork.open.", good[1], b"\x81\xa1x\x01"])      # no candidates
    daemon.send_raw([b"fork.open.", b"\x81\xa7version\xa32.0", good[2]])  # a major version it does not speak
    daemon.publish(fork_open(), fork_id="f-ok")
    assert await run.finish() == 0, run.err
    err = "\n".join(run.err)
    assert "MALFORMED" in err and "MISSING_FIELD" in err and "UNSUPPORTED_VERSION" in err
    assert "rejected 3 bad messages" in err
    assert any("fork f-ok" in line for line in run.out)


async def test_node_without_a_bus_says_what_to_do(node: str, tmp_path: Path) -> None:
    run = await NodeRun.start(node, tmp_path / "bus.json", "--forks", "1")
    assert await run.finish() == 2
    assert "no bus discovery file" in "\n".join(run.err) and "razvilka daemon" in "\n".join(run.err)


@pytest.mark.model
async def test_node_with_the_real_daemon(node: str, daemon) -> None:
    """The Node renderer joins the real daemon's bus, prints its fork and chooses a word."""
    from daemon_fixtures import next_of
    from renderer_helpers import open_fork

    observer = await daemon.client("observer", subscribe=["fork."])
    await open_fork(observer)
    run = await NodeRun.start(node, daemon.config.bus.resolved_discovery_file(), "--select", "1", "--timeout", "120")
    line = await run.wait_line("selected ", timeout=60)
    fork_id, word = line.split()[1], line.split("(")[1].rstrip(")")
    decided = await next_of(observer, ForkDecided, timeout=60, where=lambda m: m.header.fork_id == fork_id)
    assert decided.body.index == 1 and decided.body.sources == ["node"]
    assert decided.body.words[0].strip() == word.strip()
    assert await run.finish(timeout=60) == 0, run.err
    out = "\n".join(run.out)
    assert f"fork {fork_id}" in out and f"decided {fork_id}: " in out
    assert "status: " in out
