"""Helpers for bus tests: receive without depending on timing, wait for retained state, and catch leaked sockets."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import pytest
import zmq
import zmq.asyncio

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Body, Header, Message

TERM_TIMEOUT_S = 5.0

B = TypeVar("B", bound=Body)
B_co = TypeVar("B_co", bound=Body, covariant=True)


class MessageOf(Protocol[B_co]):
    """A received :class:`Message` whose body is known to be ``B_co`` (what :func:`message_of` returns)."""

    @property
    def topic(self) -> str: ...
    @property
    def header(self) -> Header: ...
    @property
    def body(self) -> B_co: ...
    @property
    def type(self) -> str: ...


def body_of(msg: Message, cls: type[B]) -> B:
    """``msg.body`` as the struct ``cls``: a message of another type fails here, naming both, rather than
    later on a missing attribute (and the type checker then knows the body's fields)."""
    assert isinstance(msg.body, cls), f"{msg.type}: body is {type(msg.body).__name__}, expected {cls.__name__}"
    return msg.body


def message_of(msg: Message, cls: type[B]) -> MessageOf[B]:
    """``msg`` itself, checked as :func:`body_of` checks it, typed so that ``.body`` is a ``cls``."""
    body_of(msg, cls)
    return cast("MessageOf[B]", msg)


async def receive(client: BusClient, until: Callable[[list[Message]], bool], *,
                  timeout: float = 5.0, quiet: float = 0.2) -> list[Message]:
    """Messages until ``until(received)`` holds (at most ``timeout`` s), then any arriving within ``quiet`` s."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while not until(out) and (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(timeout=left)
        if msg is not None:
            out.append(msg)
    return out + await drained(client, quiet, heartbeats=True)


async def drained(client: BusClient, quiet: float = 0.2, *, heartbeats: bool = False,
                  limit: float = 30.0) -> list[Message]:
    """What arrives until ``quiet`` s pass with nothing but heartbeats (at most ``limit`` s).

    Heartbeats never extend the wait: every client beats, so a bus with a few of them is never silent
    for ``quiet`` s and waiting for silence would never end. They are left out unless ``heartbeats``.
    """
    out: list[Message] = []
    end = time.monotonic() + limit
    deadline = time.monotonic() + quiet
    while (left := min(deadline, end) - time.monotonic()) > 0:
        msg = await client.recv(timeout=left)
        if msg is None:
            continue
        if msg.type != "heartbeat":
            deadline = time.monotonic() + quiet
        if heartbeats or msg.type != "heartbeat":
            out.append(msg)
    return out


async def wait_retained(client: BusClient, holds: Callable[[list[Message]], bool], *,
                        timeout: float = 5.0) -> list[Message]:
    """The bus snapshot once ``holds(snapshot)`` is true: the bus caches on its own thread, so ask until it has.

    Fails after ``timeout`` s naming what the snapshot held.
    """
    deadline = time.monotonic() + timeout
    while True:
        snap = await client.snapshot()
        if holds(snap):
            return snap
        if time.monotonic() > deadline:
            raise AssertionError(f"the bus did not retain it within {timeout}s; it holds "
                                 f"{[(m.type, m.header.fork_id) for m in snap]}")
        await asyncio.sleep(0.02)  # a poll interval: the cache has no event to wait on from here


async def until(holds: Callable[[], object], what: str = "the condition", timeout: float = 5.0) -> None:
    """Poll in-process state (a daemon's decider, an adapter's fork) until ``holds()`` is true: it has no
    event to await from the test. Fails after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------- leaked sockets
def _describe(sock: zmq.Socket) -> str:
    try:
        kind = zmq.SocketType(int(sock.getsockopt(zmq.TYPE))).name
    except (zmq.ZMQError, ValueError):
        kind = "socket"
    try:
        where = sock.getsockopt_string(zmq.LAST_ENDPOINT) or "not bound"
    except zmq.ZMQError:
        where = "?"
    return f"{kind} ({where})"


def open_sockets(ctx: zmq.Context) -> list[str]:
    """The sockets of ``ctx`` that are not closed yet, described by type and last endpoint."""
    return [_describe(s) for s in list(getattr(ctx, "_sockets", ())) if not s.closed]


def term_within(ctx: zmq.Context, timeout: float) -> bool:
    """``ctx.term()`` in a thread; False if it did not return in ``timeout`` s (a socket is still open)."""
    t = threading.Thread(target=ctx.term, name="zmq-term", daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


@pytest.fixture(autouse=True)
def zmq_contexts() -> Iterator[dict[type[zmq.Context[Any]], zmq.Context[Any]]]:
    """A fresh ZeroMQ context per test, installed as ``Context.instance()`` (sync and asyncio).

    The code takes ``zmq.Context.instance()`` / ``zmq.asyncio.Context.instance()`` unless given a
    context. At teardown each context is terminated with a timeout: a socket the test (or the code
    under test) left open makes ``term()`` hang, and the test fails naming the socket, as pyzmq's
    own test suite does.
    """
    pid = os.getpid()
    contexts: dict[type[zmq.Context[Any]], zmq.Context[Any]] = {
        zmq.Context: zmq.Context(), zmq.asyncio.Context: zmq.asyncio.Context()}
    for cls, ctx in contexts.items():
        cls._instance = ctx
        cls._instance_pid = pid
    yield contexts
    leaks: list[str] = []
    for cls, ctx in contexts.items():
        still_open = open_sockets(ctx)
        if not term_within(ctx, TERM_TIMEOUT_S):
            leaks.append(f"{cls.__module__}.{cls.__name__}: {', '.join(still_open) or 'a socket'}")
            for s in list(getattr(ctx, "_sockets", ())):  # let term() finish and free the endpoints
                if not s.closed:
                    s.close(linger=0)
        if cls.__dict__.get("_instance") is ctx:
            cls._instance = None
    if leaks:
        pytest.fail(f"ZeroMQ sockets left open (the context did not terminate in {TERM_TIMEOUT_S:.0f} s): "
                    + "; ".join(leaks), pytrace=False)
