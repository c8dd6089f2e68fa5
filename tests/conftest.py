"""Shared fixtures: a real bus on real sockets, clients that always close with linger=0, and a fresh
ZeroMQ context per test that fails the test if a socket is left open."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient
from razvilka.protocol.config import BusConfig

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"  # everything the tests read; see tests/data/README.md


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private directory: ipc paths must stay under 107 characters."""
    path = Path(tempfile.mkdtemp(prefix="rz-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_bus_config(runtime_dir: Path, transport: Literal["ipc", "tcp"] = "ipc", **kw: Any) -> BusConfig:
    return BusConfig(
        transport=transport,
        runtime_dir=str(runtime_dir),
        pub_port=0, sub_port=0, snapshot_port=0,
        heartbeat_ms=kw.pop("heartbeat_ms", 200),
        **kw,
    )


@pytest.fixture(params=["ipc", "tcp"])
def bus_config(request: pytest.FixtureRequest, runtime_dir: Path) -> BusConfig:
    """Run the test over ipc and over tcp on 127.0.0.1."""
    return make_bus_config(runtime_dir, request.param)


@pytest.fixture
def ipc_bus_config(runtime_dir: Path) -> BusConfig:
    return make_bus_config(runtime_dir, "ipc")


@pytest.fixture
def bus(bus_config: BusConfig) -> Iterator[BusHost]:
    host = BusHost(bus_config)
    host.start()
    yield host
    host.stop()


@pytest.fixture
def ipc_bus(ipc_bus_config: BusConfig) -> Iterator[BusHost]:
    host = BusHost(ipc_bus_config)
    host.start()
    yield host
    host.stop()


class ClientFactory:
    """Makes started clients for one bus and closes every one of them at teardown."""

    def __init__(self, host: BusHost) -> None:
        self.host = host
        self.clients: list[BusClient] = []

    async def __call__(self, name: str, *, connect: bool = True, **kw: Any) -> BusClient:
        kw.setdefault("heartbeat_ms", self.host.config.heartbeat_ms)
        if self.host.config.curve_required:
            kw.setdefault("curve_secret_file", self.host.config.resolved_curve_dir() / "client.key_secret")
        client = BusClient(name, self.host.endpoints, **kw)
        self.clients.append(client)
        await client.start()
        if connect:
            assert await client.wait_connected(5.0), f"{name} could not reach the bus"
        return client

    async def close(self) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in self.clients)), timeout=5)


@pytest.fixture
async def clients(bus: BusHost) -> AsyncIterator[ClientFactory]:
    factory = ClientFactory(bus)
    yield factory
    await factory.close()


@pytest.fixture
async def ipc_clients(ipc_bus: BusHost) -> AsyncIterator[ClientFactory]:
    factory = ClientFactory(ipc_bus)
    yield factory
    await factory.close()


# Fixtures from the helper modules:
# - autouse zmq_contexts: each test gets its own ZeroMQ contexts, terminated with a timeout at teardown;
# - start_daemon, daemon: a real daemon (they need the `engine` fixture below);
# - xserver, display: Xvfb for the key tests, one per test module, DISPLAY set to it for one test.
from bus_helpers import zmq_contexts  # noqa: E402,F401
from daemon_fixtures import daemon, start_daemon  # noqa: E402,F401
from key_helpers import display, xserver  # noqa: E402,F401


# ------------------------------------------------------------------------------ the real model, once per session
@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded Gemma 3 270M GGUF, assembled into the cache once (sha256 checked)."""
    from razvilka.daemon.engine import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[Any]:
    """One real llama.cpp engine for the whole test session (tests reset it to their own prompt)."""
    from razvilka.daemon.config import ModelConfig
    from razvilka.daemon.engine import Engine

    # one thread: on a shared 2-core machine, two llama.cpp threads that spin-wait on each other slow
    # down by 10x whenever another process holds a core; one thread degrades gracefully
    threads = int(os.environ.get("RAZVILKA_TEST_THREADS", "1"))
    eng = Engine(ModelConfig(path=str(model_path), n_threads=threads))
    yield eng
    eng.close()
