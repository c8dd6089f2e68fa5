"""The daemon as a real service process: kill -9 and resume, clean SIGTERM, the sessions CLI."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bus_helpers import message_of
from daemon_fixtures import current_fork, next_of

from razvilka.daemon.learn.text import words_of
from razvilka.protocol.client import BusClient
from razvilka.protocol.discovery import read_discovery
from razvilka.protocol.messages import DaemonStatus, ForkDecided, Select, TextState

pytestmark = pytest.mark.model

PROMPT = "The old lighthouse keeper opened the door and"


def _env(runtime_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RAZVILKA_BUS__RUNTIME_DIR": str(runtime_dir),
        "RAZVILKA_BUS__HEARTBEAT_MS": "200",
        "RAZVILKA_STORE__PATH": str(runtime_dir / "store.sqlite3"),
        "RAZVILKA_GATING__MODE": "always",
        "RAZVILKA_GATING__K": "4",
        "RAZVILKA_GATING__LOOKAHEAD_TOKENS": "3",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _start(runtime_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "razvilka.cli", "daemon", *extra], env=_env(runtime_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _connect(runtime_dir: Path, proc: subprocess.Popen[bytes]) -> BusClient:
    disc = runtime_dir / "bus.json"
    for _ in range(600):
        if disc.exists() and read_discovery(disc).pid == proc.pid:
            break
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "daemon died"
        await asyncio.sleep(0.1)
    client = BusClient("test", read_discovery(disc), subscribe=["fork.", "text.", "daemon."], heartbeat_ms=200)
    await client.start()
    assert await client.wait_connected(10)
    return client


async def test_kill_9_then_resume_same_text(runtime_dir: Path) -> None:
    proc = _start(runtime_dir, "--prompt", PROMPT)
    client = await _connect(runtime_dir, proc)
    try:
        chosen: list[str] = []
        done: set[str] = set()
        for index in (1, 0, 2):
            fork = await current_fork(client, done)
            client.publish(Select(index=index, source="keyboard"), fork_id=fork.header.fork_id)
            decided = await next_of(client, ForkDecided, 60,
                                    where=lambda m: m.header.fork_id == fork.header.fork_id)  # noqa: B023 - awaited here
            chosen += decided.body.words
            done.add(str(fork.header.fork_id))
        # kill -9 right after the last acknowledgement: nothing acknowledged may be lost
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        await client.close(goodbye=False)
    assert proc.returncode == -signal.SIGKILL

    proc2 = _start(runtime_dir)  # no --prompt: resume the open document
    client2 = await _connect(runtime_dir, proc2)
    try:
        state = [message_of(m, TextState) for m in await client2.snapshot() if m.type == TextState.TYPE]
        state_msg = state[-1] if state else await next_of(client2, TextState, 60)
        text = state_msg.body.text
        assert text.startswith(PROMPT)
        # word for word (a chosen "," is written glued to the word before it)
        assert words_of(text[len(PROMPT):]) == words_of(" ".join(chosen)), (text, chosen)
        fork = await current_fork(client2)
        assert fork.body.context.endswith(chosen[-1])
        # and it keeps working from there
        client2.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
        await next_of(client2, "fork.decided", 60)
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(30)
        await client2.close(goodbye=False)
    # the service applied the person's profile and it learned every decision once, the three made
    # before the kill -9 (whether or not their save reached the disk) and the one after it
    profile = json.loads((runtime_dir / "profiles" / "default.json").read_text())
    assert profile["decisions"] == 4, profile["decisions"]
    assert all(profile["unigrams"].get(word, 0) >= 1 for word in chosen), (chosen, profile["unigrams"])


async def test_sigterm_says_goodbye_and_cleans_up(runtime_dir: Path) -> None:
    proc = _start(runtime_dir, "--prompt", PROMPT)
    client = await _connect(runtime_dir, proc)
    try:
        await current_fork(client)
        proc.send_signal(signal.SIGTERM)
        bye = await next_of(client, DaemonStatus, 30, where=lambda m: m.body.state == "stopped")
        assert bye.header.sender == "daemon"
        assert proc.wait(30) == 0
        assert not (runtime_dir / "bus.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        await client.close(goodbye=False)
    # the store is consistent and the CLI can list and export it
    env = _env(runtime_dir)
    listed = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "razvilka.cli", "sessions", "list"],
                                     env=env, capture_output=True, text=True, check=True)
    assert "open" in listed.stdout
    out = runtime_dir / "export.jsonl"
    await asyncio.to_thread(subprocess.run,
                            [sys.executable, "-m", "razvilka.cli", "sessions", "export", "-o", str(out)],
                            env=env, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and rows[0]["context"].startswith(PROMPT) and rows[0]["candidates"]


def test_bad_model_files_fail_clearly(tmp_path: Path, runtime_dir: Path) -> None:
    missing = subprocess.run([sys.executable, "-m", "razvilka.cli", "daemon", "--model", str(tmp_path / "nope.gguf")],
                             env=_env(runtime_dir), capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.gguf" in missing.stderr
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    bad = subprocess.run([sys.executable, "-m", "razvilka.cli", "daemon", "--model", str(fake)],
                         env=_env(runtime_dir), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "GGUF" in bad.stderr
