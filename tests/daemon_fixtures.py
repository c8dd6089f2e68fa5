"""Fixtures for a real daemon (real model, real bus), shared by every test that needs one.

The model is loaded once per test session (the ``engine`` fixture in conftest.py); each daemon
starts a fresh document on it, so tests do not see each other's text. Each daemon is built the way
``razvilka daemon`` builds it (``daemon.cli.build_daemon``): with the person's profile as its
learner, kept in the test's own runtime directory, unless a test turns ``daemon.profile`` off.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import pytest
from bus_helpers import B, MessageOf, message_of

from razvilka.config import Config
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Body, ForkDecided, ForkOpen, Message

DEFAULT_PROMPT = "My favourite thing about the weekend is"


@dataclass
class RunningDaemon:
    """A started daemon, its config, and a factory for clients on its bus."""

    daemon: Any
    config: Config
    clients: list[BusClient]

    @property
    def endpoints(self) -> Any:
        assert self.daemon.bus is not None
        return self.daemon.bus.endpoints

    async def client(self, name: str, subscribe: list[str] | None = None, **kw: Any) -> BusClient:
        """A started, connected client; closed at teardown."""
        kw.setdefault("heartbeat_ms", self.config.bus.heartbeat_ms)
        c = BusClient(name, self.endpoints, subscribe=subscribe or [""], **kw)
        self.clients.append(c)
        await c.start()
        assert await c.wait_connected(5.0)
        return c


def daemon_config(runtime_dir: Path, **sections: dict[str, Any]) -> Config:
    from razvilka.config import from_dict

    tree: dict[str, Any] = {
        "bus": {"transport": "ipc", "runtime_dir": str(runtime_dir), "heartbeat_ms": 200},
        "store": {"path": str(runtime_dir / "store.sqlite3")},
        "gating": {"mode": "always", "k": 5, "lookahead_tokens": 4, "long_lookahead_tokens": 8},
        "daemon": {"prompt": DEFAULT_PROMPT},
        "phrases": {"file": str(runtime_dir / "phrases.toml")},  # not the person's own (~/.config/razvilka)
    }
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    return from_dict(tree)


StartDaemon = Callable[..., Awaitable[RunningDaemon]]


@pytest.fixture
async def start_daemon(engine: Any, runtime_dir: Path) -> AsyncIterator[StartDaemon]:
    """``await start_daemon(gating={...}, daemon={...})`` -> a running in-process daemon on its own ipc bus,
    as ``razvilka daemon`` builds it (profile on), on the session's model."""
    from razvilka.daemon.cli import build_daemon

    running: list[RunningDaemon] = []

    async def start(build: dict[str, Any] | None = None, **sections: dict[str, Any]) -> RunningDaemon:
        """``build``: more of ``build_daemon``'s arguments (``config_file``, ``output_env``, ``resume``)."""
        config = daemon_config(runtime_dir, **sections)
        engine.clear_cache()  # no look-ahead cached by an earlier test: each daemon computes its own
        d = build_daemon(config, engine=engine, **({"resume": False} | (build or {})))
        await d.start()
        rd = RunningDaemon(d, config, [])
        running.append(rd)
        return rd

    yield start
    for rd in running:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in rd.clients)), timeout=5)
        await asyncio.wait_for(rd.daemon.close(), timeout=60)


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> RunningDaemon:
    """A real daemon (real model) that forks at every word, K=5, on an ipc bus."""
    return await start_daemon()


@overload
async def next_of(client: BusClient, type_: type[B], timeout: float = 30.0,
                  where: Callable[[MessageOf[B]], bool] | None = None) -> MessageOf[B]: ...
@overload
async def next_of(client: BusClient, type_: str, timeout: float = 30.0,
                  where: Callable[[Message], bool] | None = None) -> Message: ...
async def next_of(client: BusClient, type_: str | type[Body], timeout: float = 30.0,
                  where: Callable[[Any], bool] | None = None) -> Message | MessageOf[Any]:
    """The next message of ``type_`` (and matching ``where``) on ``client``; fails after ``timeout`` s.

    ``type_`` is the message type, or its body class: then the message comes typed with that body."""
    name = type_ if isinstance(type_, str) else type_.TYPE
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no {name} within {timeout}s")
        msg = await client.recv(left)
        if msg is not None and msg.type == name and (where is None or where(msg)):
            return msg if isinstance(type_, str) else message_of(msg, type_)


async def current_fork(bus: BusClient, done: Collection[str] = (), timeout: float = 120.0) -> MessageOf[ForkOpen]:
    """The open fork: the one the bus retains if it is still open, else the next to open.

    The bus retains the last ``fork.open`` until the next fork opens, so a fork already decided (in the
    snapshot, or one of ``done``: the caller saw it decided, and the bus may not have retained that
    yet) is never taken for the open one."""
    snap = await bus.snapshot()
    closed = set(done) | {m.header.fork_id for m in snap if m.type == ForkDecided.TYPE and m.header.fork_id}
    opened = [m for m in snap if m.type == ForkOpen.TYPE and m.header.fork_id not in closed]
    if opened:
        return message_of(opened[-1], ForkOpen)
    return await next_of(bus, ForkOpen, timeout, where=lambda m: m.header.fork_id not in closed)
