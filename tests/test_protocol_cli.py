"""The bus/protocol commands and the print renderer, as a user runs them."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bus_helpers import until
from conftest import make_bus_config

from razvilka.cli import main
from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient
from razvilka.protocol.codec import Codec
from razvilka.protocol.discovery import read_discovery
from razvilka.protocol.messages import PROTOCOL_VERSION, Candidate, ForkOpen, Header, TextAuto
from razvilka.protocol.schema import render_schema
from razvilka.protocol.vectors import load_vectors, vector_frames
from razvilka.renderers.printer import Printer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def restore_logging():
    """main() installs a handler on the (captured) stderr of the moment; drop it afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_schema_and_vectors_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocol", "schema", "--check"]) == 0
    assert main(["protocol", "vectors", "--check"]) == 0
    stale = tmp_path / "schema.json"
    stale.write_text(render_schema().replace('"seq"', '"sequence"', 1))
    assert main(["protocol", "schema", "--check", "--out", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["protocol", "schema", "--out", str(stale)]) == 0
    assert main(["protocol", "schema", "--check", "--out", str(stale)]) == 0
    out = tmp_path / "vectors"
    assert main(["protocol", "vectors", "--check", "--out", str(out)]) == 1
    assert main(["protocol", "vectors", "--out", str(out)]) == 0
    assert main(["protocol", "vectors", "--check", "--out", str(out)]) == 0
    assert len(load_vectors(out)) == len(load_vectors())


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def test_keys_for_a_remote_client(runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bus keys --new-client` makes a key and discovery file that really get a client in."""
    pub, sub, snap = _free_ports(3)
    sets = [f"bus.runtime_dir={runtime_dir}", "bus.transport=tcp", f"bus.pub_port={pub}",
            f"bus.sub_port={sub}", f"bus.snapshot_port={snap}"]
    argv = [a for s in sets for a in ("--set", s)]
    assert main([*argv, "bus", "keys"]) == 0
    first = capsys.readouterr().out
    public = first.split("bus public key:")[1].split()[0]
    assert len(public) == 40  # Z85 of 32 bytes
    assert main([*argv, "bus", "keys", "--new-client", "eeg-laptop", "--address", "127.0.0.1"]) == 0
    out = capsys.readouterr().out
    assert "eeg-laptop" in out and public in out
    keys = runtime_dir / "curve"
    secret = keys / "clients" / "eeg-laptop.key_secret"
    remote = keys / "clients" / "eeg-laptop.bus.json"
    assert (keys / "authorized" / "eeg-laptop.key").exists()
    assert oct(secret.stat().st_mode & 0o777) == "0o600" and oct(remote.stat().st_mode & 0o777) == "0o600"

    cfg = make_bus_config(runtime_dir, "tcp", curve=True)
    cfg.pub_port, cfg.sub_port, cfg.snapshot_port = pub, sub, snap
    host = BusHost(cfg)
    host.start()
    laptop = BusClient("eeg-laptop", read_discovery(remote), curve_secret_file=secret, heartbeat_ms=0,
                       subscribe=["text."])
    try:
        await laptop.start()
        assert await laptop.wait_connected(5.0)
        laptop.publish(TextAuto(text=" hi", words=["hi"]))
        msg = await laptop.recv(timeout=3)
        assert msg is not None and msg.header.sender == "eeg-laptop"
    finally:
        await laptop.close()
        host.stop()


def _razvilka(runtime_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RAZVILKA_BUS__RUNTIME_DIR": str(runtime_dir), "RAZVILKA_BUS__HEARTBEAT_MS": "200"}
    return subprocess.Popen([sys.executable, "-m", "razvilka.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stderr(proc: subprocess.Popen[str]) -> str:
    """What the process wrote to its stderr pipe (``_razvilka`` always opens one)."""
    assert proc.stderr is not None
    return proc.stderr.read()


def _wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_bus_demo_and_print_end_to_end(runtime_dir: Path) -> None:
    """`razvilka bus`, `bus demo`, and a late `render print` that draws the open fork at once."""
    bus = _razvilka(runtime_dir, "bus")
    discovery = runtime_dir / "bus.json"
    try:
        _wait_for(discovery)
        assert oct(discovery.stat().st_mode & 0o777) == "0o600"
        assert json.loads(discovery.read_text())["version"] == PROTOCOL_VERSION
        second = _razvilka(runtime_dir, "bus")  # a second bus on the same runtime dir is refused
        assert second.wait(15) == 1 and "already running" in _stderr(second)

        demo = _razvilka(runtime_dir, "bus", "demo", "--forks", "2", "--interval", "0.05", "--leave-open")
        assert demo.wait(15) == 0, _stderr(demo)
        printer = _razvilka(runtime_dir, "render", "print", "--count", "4")
        out, err = printer.communicate(timeout=15)
        assert printer.returncode == 0, err
        lines = out.splitlines()
        assert any(" = demo#" in ln and "fork.open [demo-2]" in ln and "river .41" in ln for ln in lines), out
        assert any("fork.lookahead [demo-2]" in ln for ln in lines), out
        assert not any("fork.open [demo-1]" in ln for ln in lines), "a decided fork is not current"
    finally:
        bus.send_signal(signal.SIGTERM)
        assert bus.wait(10) == 0, _stderr(bus)
    assert not discovery.exists(), "the bus removes its discovery file"
    assert "bus stopped" in _stderr(bus)


async def test_printer_reports_gaps_rejections_and_silence(ipc_clients) -> None:
    out = io.StringIO()
    client = await ipc_clients("printer", subscribe=[""], heartbeat_ms=100)
    sender = await ipc_clients("sender", heartbeat_ms=0)
    stop = asyncio.Event()
    printer = Printer(out)
    task = asyncio.create_task(printer.follow(client, stop))
    try:
        sender.publish(ForkOpen(candidates=[Candidate(index=0, word="yes", prob=0.75)]), fork_id="f1")
        codec = Codec("lossy")
        for seq in (0, 1, 4):
            header = Header(version="1.0", type="text.auto", id=f"x{seq}", sender="lossy",
                            session=codec.session, seq=seq, ts_ns=1)
            sender.send_raw(codec.encode_parts("text.auto.", header, TextAuto(text=f" w{seq}", words=[f"w{seq}"])))
        bad = next(v for v in load_vectors() if v["name"] == "version/major-2")
        sender.send_raw(vector_frames(bad))
        flaky = await ipc_clients("flaky", role="input", heartbeat_ms=100)
        await until(lambda: client.alive().get("flaky") == "alive", "the printer's client hears flaky")
        await flaky.close(goodbye=False)
        gone = await ipc_clients("gone", role="input", heartbeat_ms=100)
        await until(lambda: client.alive().get("gone") == "alive", "the printer's client hears gone")
        await gone.close()
        await until(lambda: "flaky went silent" in out.getvalue() and "gone stopped" in out.getvalue(),
                    "the printer reports flaky silent and gone stopped")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    text = out.getvalue()
    assert "sender#0 fork.open [f1]  yes .75" in text
    assert "! gap: 2 message(s) missed" in text
    assert "UNSUPPORTED_VERSION(9)" in text
    assert "! flaky went silent: 3 heartbeats missed" in text
    assert "· gone stopped" in text and "gone went silent" not in text
    assert not any(" heartbeat " in line for line in text.splitlines())  # hidden unless --heartbeats


async def test_printer_json_lines_follow_the_schema(ipc_clients) -> None:
    import jsonschema

    from razvilka.protocol.schema import SCHEMA_PATH

    out = io.StringIO()
    sender = await ipc_clients("sender", heartbeat_ms=0)
    client = await ipc_clients("printer", subscribe=["fork."], heartbeat_ms=0)
    sender.publish(ForkOpen(candidates=[Candidate(index=0, word="yes", prob=0.75)]), fork_id="f1")
    await asyncio.wait_for(Printer(out, json_lines=True).follow(client, asyncio.Event(), count=1), 5)
    obj = json.loads(out.getvalue())
    jsonschema.validate(obj, json.loads(SCHEMA_PATH.read_text()))
    assert obj["header"]["fork_id"] == "f1" and obj["body"]["candidates"][0]["word"] == "yes"
