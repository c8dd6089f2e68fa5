"""Helpers for the key adapters' tests: a real X server (Xvfb), real key events (xdotool),
the bus side (a fork to steer, the next input message) and a CLI runner.

Missing binaries fail the test with what to install; they are not a reason to skip.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bus_helpers import until  # noqa: F401 - the one poll helper, for the key tests that import it from here

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Candidate, ForkOpen, Message

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class XServer:
    display: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    async def key(self, *keys: str, delay_ms: int = 150) -> None:
        """Real key events (XTEST) for each key, ``delay_ms`` apart."""
        await xdotool(self, "key", "--delay", str(delay_ms), *keys)

    async def hold(self, key: str, seconds: float) -> None:
        await xdotool(self, "keydown", key)
        await asyncio.sleep(seconds)
        await xdotool(self, "keyup", key)


async def xdotool(x: XServer, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec("xdotool", *args, env=x.env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"xdotool {' '.join(args)} failed: {err.decode()}"


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: these tests need a real X server and real key events. "
                    "Install them with `apt-get install -y xvfb xdotool` (the README's test command does).",
                    pytrace=False)
    return path


def _free_display() -> int:
    for n in range(90, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number in :90-:399")


def _accepts(display: str) -> bool:
    try:
        from Xlib import display as xdisplay  # python-xlib comes with pynput

        d = xdisplay.Display(display)
        d.close()
        return True
    except Exception:
        return False


def start_xvfb() -> XServer:
    xvfb = _require("Xvfb")
    _require("xdotool")
    for _attempt in range(3):
        n = _free_display()
        proc = subprocess.Popen([xvfb, f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _accepts(f":{n}"):
                return XServer(f":{n}", proc)
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    pytest.fail("Xvfb did not start accepting connections", pytrace=False)


@pytest.fixture(scope="module")
def xserver() -> Iterator[XServer]:
    """One Xvfb per test module."""
    server = start_xvfb()
    yield server
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture
def display(xserver: XServer, monkeypatch: pytest.MonkeyPatch) -> XServer:
    """DISPLAY points at the module's Xvfb for this test (pynput reads it when it starts)."""
    monkeypatch.setenv("DISPLAY", xserver.display)
    return xserver


#: Runs the real ``razvilka`` entry point with only the areas these tests need
#: (another area's half-written CLI must not fail an input test).
CLI = ("import sys, razvilka.cli as c; c.AREAS = ('razvilka.inputs.cli',); sys.exit(c.main(sys.argv[1:]))",)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", *CLI, *args]


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAZVILKA_")}
    env.update(XDG_CONFIG_HOME=str(tmp / "xdg"), PYTHONUNBUFFERED="1", **extra)
    return env


# ---------------------------------------------------------------- the bus side
def fork_open(words: list[str], prefix: str = "") -> ForkOpen:
    n = len(words)
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=round(1 / n, 3)) for i, w in enumerate(words)],
                    prefix=prefix)


async def next_input(observer: BusClient, timeout: float = 5.0, kinds: tuple[str, ...] = ("input.",),
                     sender: str = "keyboard") -> Message:
    """The next message from ``sender`` whose type starts with one of ``kinds``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, "no input message arrived"
        msg = await observer.recv(left)
        assert msg is not None, "no input message arrived"
        if msg.type.startswith(kinds) and msg.header.sender == sender:
            return msg


async def no_input(observer: BusClient, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await observer.recv(left)
        assert msg is None or not msg.type.startswith("input."), f"unexpected {msg and msg.body}"
