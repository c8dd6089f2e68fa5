"""The client API every adapter and renderer uses: ``publish(body)`` and ``async for msg in client``.

No other module opens ZeroMQ sockets. The client

* stamps and (optionally) signs what it sends, through :class:`~razvilka.protocol.codec.Codec`;
* decodes what it receives, skipping unknown types and counting bad messages (never raising);
* counts sequence gaps per sender and type;
* sends heartbeats and tracks peers' heartbeats, warning when a peer misses 3 beats;
* fetches a snapshot for late joiners and drops live messages the snapshot already covered.

:class:`ForkTracker` follows which fork is open (and its look-aheads) for every client that
needs to know: the bus host's state cache, adapters, renderers.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from razvilka.protocol import curve
from razvilka.protocol.codec import Codec
from razvilka.protocol.config import BusConfig
from razvilka.protocol.discovery import Endpoints, read_discovery
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Body,
    Candidate,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Header,
    Heartbeat,
    Message,
    Role,
    TextUndo,
)

log = logging.getLogger("razvilka.client")


@dataclass
class Peer:
    """A sender seen through its heartbeats."""

    name: str
    role: str
    interval_ms: int
    last_seen: float
    state: str = "ok"
    silent: bool = False


@dataclass
class Stats:
    received: int = 0
    published: int = 0
    gaps: int = 0
    rejected: int = 0
    unknown: int = 0
    last_error: ProtocolError | None = None
    errors_by_code: dict[int, int] = field(default_factory=dict)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has finished; their errors are not raised (we are stopping)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class BusClient:
    """One connection to the bus, for one named sender.

    ``subscribe`` lists topic prefixes (``"fork."``, ``"input."``); ``""`` means everything.
    Use as ``async with BusClient(...) as bus:``.
    """

    def __init__(
        self,
        name: str,
        endpoints: Endpoints,
        *,
        role: Role = "tool",
        subscribe: Iterable[str] = (),
        heartbeat_ms: int = 1000,
        missed_beats: int = 3,
        curve_secret_file: Path | None = None,
        max_frame: int = 1 << 20,
        context: zmq.asyncio.Context | None = None,
        on_reject: Callable[[ProtocolError, Sequence[bytes]], None] | None = None,
    ) -> None:
        self.name = name
        self.on_reject = on_reject
        self.role = role
        self.endpoints = endpoints
        self.codec = Codec(name, key=endpoints.hmac_key.encode() or None, max_frame=max_frame)
        self.topics = list(subscribe)
        self.heartbeat_ms = heartbeat_ms
        self.missed_beats = missed_beats
        self.curve_secret_file = curve_secret_file
        self.ctx = context or zmq.asyncio.Context.instance()
        self.stats = Stats()
        self.peers: dict[str, Peer] = {}
        self._last_seq: dict[tuple[str, str, str], int] = {}
        self._covered: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: deque[list[bytes]] = deque()  # received while wait_connected() probed
        self._pub_sync: zmq.Socket[bytes] | None = None
        self._sub_sync: zmq.Socket[bytes] | None = None
        self._burst = 0
        self.pub: zmq.asyncio.Socket | None = None
        self.sub: zmq.asyncio.Socket | None = None
        self.state = "ok"

    @classmethod
    def from_config(cls, name: str, config: BusConfig, **kwargs: Any) -> BusClient:
        """Join the bus named in the discovery file of ``config``."""
        endpoints = read_discovery(config.resolved_discovery_file())
        if endpoints.curve_server_public and "curve_secret_file" not in kwargs:
            kwargs["curve_secret_file"] = config.resolved_curve_dir() / "client.key_secret"
        kwargs.setdefault("heartbeat_ms", config.heartbeat_ms)
        kwargs.setdefault("missed_beats", config.missed_beats)
        kwargs.setdefault("max_frame", config.max_frame_bytes)
        return cls(name, endpoints, **kwargs)

    # ------------------------------------------------------------------ life cycle
    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        try:
            if self.endpoints.curve_server_public:
                if self.curve_secret_file is None:
                    raise ProtocolError(ErrorCode.BAD_CONFIG, "the bus requires CURVE: give a client secret key file")
                curve.make_client(sock, self.endpoints.curve_server_public.encode(), self.curve_secret_file)
        except BaseException:
            sock.close(linger=0)  # not handed out, so nobody else would close it
            raise
        return sock

    async def start(self) -> BusClient:
        self.pub = self._socket(zmq.PUB)
        self.pub.sndhwm = 100_000
        self.pub.connect(self.endpoints.pub)
        self.sub = self._socket(zmq.SUB)
        self.sub.rcvhwm = 100_000
        for topic in self.topics:
            self.sub.subscribe(topic.encode())
        if self.topics and "" not in self.topics and not any("heartbeat.".startswith(t) for t in self.topics):
            self.sub.subscribe(b"heartbeat.")
        self.sub.connect(self.endpoints.sub)
        # Plain (sync) views of the same sockets for the hot path: a non-blocking call costs
        # a fraction of an awaited one. PUB never blocks (it drops at the HWM).
        self._pub_sync = zmq.Socket.shadow(self.pub.underlying)
        self._sub_sync = zmq.Socket.shadow(self.sub.underlying)
        if self.heartbeat_ms > 0:
            self._tasks.append(asyncio.create_task(self._beat(), name=f"{self.name}-heartbeat"))
        return self

    async def close(self, *, goodbye: bool = True) -> None:
        """Stop heartbeats; send a final 'stopped' beat so peers know this was no crash."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if goodbye and self.pub is not None and not self.pub.closed and self.heartbeat_ms > 0:
            try:
                self.publish(Heartbeat(role=self.role, interval_ms=self.heartbeat_ms, state="stopped"))
            except zmq.ZMQError:
                pass
        self._pub_sync = self._sub_sync = None  # views of the handles closed below: never reuse them
        for sock in (self.pub, self.sub):
            if sock is not None and not sock.closed:
                sock.close(linger=0)

    async def __aenter__(self) -> BusClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until a probe we publish comes back on our own SUB socket.

        PUB/SUB drops what is sent before subscriptions propagate; tests and tools that
        publish at once call this first. The probe travels on the same SUB connection as
        our subscriptions, after them, so when it is back those are active at the proxy
        (a separate probe socket proved nothing about them). Messages that arrive
        meanwhile are kept for :meth:`recv`.
        """
        assert self.sub is not None and self.pub is not None
        token = f"_probe.{os.getpid()}.{id(self)}.".encode()
        self.sub.subscribe(token)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.pub.send_multipart([token, b"", b""])
                until = time.monotonic() + 0.05
                while (wait := until - time.monotonic()) > 0 and await self.sub.poll(wait * 1000):
                    frames = await self.sub.recv_multipart()
                    if bytes(frames[0]) == token:
                        # Announce ourselves now: the beat sent at start() was likely dropped
                        # (PUB drops what it sends before it is connected).
                        if self.heartbeat_ms > 0:
                            self.publish(Heartbeat(role=self.role, interval_ms=self.heartbeat_ms,
                                                   state=self.state))
                        return True
                    self._pending.append(frames)
            return False
        finally:
            self.sub.unsubscribe(token)

    # ------------------------------------------------------------------ sending
    def publish(self, body: Body, *, fork_id: str | None = None, subtopic: Sequence[str] = ()) -> Header:
        """Send one message; returns its header (id, seq, ts). Call from the loop's thread."""
        header, frames = self.codec.build(body, fork_id=fork_id, subtopic=subtopic)
        self._sender().send_multipart(frames)
        self.stats.published += 1
        return header

    def _sender(self) -> zmq.Socket[bytes]:
        if self._pub_sync is None:
            assert self.pub is not None, "call start() first"
            raise zmq.ZMQError(zmq.ENOTSOCK)  # closed: what the socket itself would say
        return self._pub_sync

    def send_raw(self, frames: Sequence[bytes]) -> None:
        """Send frames as they are (bridges forwarding foreign messages, tests of bad input)."""
        self._sender().send_multipart(list(frames))

    async def _beat(self) -> None:
        while True:
            self.publish(Heartbeat(role=self.role, interval_ms=self.heartbeat_ms, state=self.state))
            self._check_peers()
            await asyncio.sleep(self.heartbeat_ms / 1000)

    # ------------------------------------------------------------------ receiving
    async def recv(self, timeout: float | None = None) -> Message | None:
        """The next known message, or None after ``timeout`` seconds.

        Reads what is already queued without awaiting (an await per message cost more than
        decoding it), and yields to the loop every 64 messages so a busy stream cannot starve it.
        """
        assert self.sub is not None, "call start() first"
        deadline = None  # set when we first have to wait
        while True:
            if self._pending:
                frames = self._pending.popleft()
            else:
                sub = self._sub_sync
                if sub is None:
                    raise zmq.ZMQError(zmq.ENOTSOCK)  # closed meanwhile
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    self._burst = 0
                    wait = None
                    if timeout is not None:
                        if deadline is None:
                            deadline = time.monotonic() + timeout
                        wait = deadline - time.monotonic()
                        if wait <= 0:
                            return None
                    # One awaited recv (its timeout is RCVTIMEO): fewer loop hops than poll + recv.
                    sub.rcvtimeo = -1 if wait is None else max(1, int(wait * 1000))
                    try:
                        frames = await self.sub.recv_multipart()
                    except zmq.Again:
                        return None
                    finally:
                        if self._sub_sync is not None:
                            sub.rcvtimeo = -1
                else:
                    self._burst += 1
                    if self._burst >= 64:
                        self._burst = 0
                        await asyncio.sleep(0)
            msg = self.accept(frames)
            if msg is not None:
                return msg

    def accept(self, frames: Sequence[bytes]) -> Message | None:
        """Decode, account and filter one received message (None: dropped)."""
        try:
            msg = self.codec.decode(frames)
        except ProtocolError as exc:
            if frames and bytes(frames[0]).startswith(b"_probe."):
                return None
            self.stats.rejected += 1
            self.stats.last_error = exc
            self.stats.errors_by_code[int(exc.code)] = self.stats.errors_by_code.get(int(exc.code), 0) + 1
            if self.stats.rejected <= 10 or self.stats.rejected % 1000 == 0:
                log.warning("%s: rejected a message (%d so far): %s", self.name, self.stats.rejected, exc)
            if self.on_reject is not None:
                self.on_reject(exc, frames)
            return None
        h = msg.header
        key = (h.sender, h.session, h.type)
        if self._covered:  # only after a snapshot, until each covered stream has moved past it
            ckey = f"{h.sender}/{h.session}/{h.type}"
            covered = self._covered.get(ckey)
            if covered is not None:
                if h.seq <= covered:
                    return None
                del self._covered[ckey]
        last = self._last_seq.get(key)
        if last is not None and h.seq > last + 1:
            self.stats.gaps += h.seq - last - 1
        self._last_seq[key] = h.seq
        if isinstance(msg.body, Heartbeat):
            self._note_heartbeat(h, msg.body)
        if not msg.known:
            self.stats.unknown += 1
            return None
        self.stats.received += 1
        return msg

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            msg = await self.recv()
            if msg is not None:
                yield msg

    async def snapshot(self, timeout: float = 2.0) -> list[Message]:
        """The retained state (current fork, text, status, layouts, peers), oldest first.

        Subscribe first, then call this: live messages the snapshot covers are dropped later.
        """
        req = self._socket(zmq.DEALER)
        try:
            req.connect(self.endpoints.snapshot)
            await req.send_multipart([b"", b"SNAPSHOT"])
            if not await req.poll(timeout * 1000):
                raise ProtocolError(ErrorCode.NOT_READY, f"no snapshot from {self.endpoints.snapshot} in {timeout}s")
            reply = await req.recv_multipart()
        finally:
            req.close(linger=0)
        if len(reply) < 3 or reply[1] != b"STATE":
            raise ProtocolError(ErrorCode.MALFORMED, f"bad snapshot reply: {reply[1:3]!r}")
        meta = msgspec.msgpack.decode(reply[2])
        self._covered.update(meta.get("last_seq", {}))
        frames = reply[3:]
        out: list[Message] = []
        pos = 0
        for size in meta.get("sizes", []):
            chunk = frames[pos:pos + size]
            pos += size
            try:
                msg = self.codec.decode(chunk, retained=True)  # old by design: no replay check
            except ProtocolError as exc:
                log.warning("%s: snapshot held a bad message: %s", self.name, exc)
                continue
            if isinstance(msg.body, Heartbeat):
                self._note_heartbeat(msg.header, msg.body)
            if msg.known:
                out.append(msg)
        return out

    # ------------------------------------------------------------------ liveness
    def _note_heartbeat(self, header: Header, beat: Heartbeat) -> None:
        peer = self.peers.get(header.sender)
        now = time.monotonic()
        if peer is None:
            self.peers[header.sender] = Peer(header.sender, beat.role, beat.interval_ms, now, beat.state)
            return
        if peer.silent and beat.state != "stopped":
            log.info("%s: %s is back", self.name, header.sender)
        peer.last_seen, peer.state, peer.interval_ms, peer.silent = now, beat.state, beat.interval_ms, False

    def _check_peers(self) -> None:
        now = time.monotonic()
        for peer in self.peers.values():
            if peer.state == "stopped" or peer.silent:
                continue
            if now - peer.last_seen > self.missed_beats * peer.interval_ms / 1000:
                peer.silent = True
                log.warning("%s: %s (%s) went silent: %d heartbeats missed",
                            self.name, peer.name, peer.role, self.missed_beats)

    def alive(self) -> dict[str, str]:
        """Peer name -> "alive" | "silent" | "stopped" (checks the clock now)."""
        self._check_peers()
        return {
            p.name: ("stopped" if p.state == "stopped" else "silent" if p.silent else "alive")
            for p in self.peers.values()
            if p.name != self.name
        }


# ---------------------------------------------------------------------- following forks
@dataclass
class TrackedFork:
    """The open fork as a client sees it: its ``fork.open`` and the look-aheads streamed since."""

    fork_id: str
    body: ForkOpen
    messages: list[Message] = field(default_factory=list)  # fork.open, then its updates, as received
    short: dict[int, list[str]] = field(default_factory=dict)
    long: dict[int, list[str]] = field(default_factory=dict)
    lookahead_done: bool = False

    @property
    def candidates(self) -> list[Candidate]:
        """In the order the daemon sent them: the order renderers draw and number keys count."""
        return self.body.candidates

    @property
    def k(self) -> int:
        return len(self.body.candidates)

    @property
    def indices(self) -> list[int]:
        return [c.index for c in self.body.candidates]

    @property
    def words(self) -> list[str]:
        return [c.word.strip() for c in self.body.candidates]

    @property
    def prefix(self) -> str:
        return self.body.prefix

    def position_of(self, index: int | None) -> int | None:
        """Where candidate ``index`` sits in the sent order (None if absent)."""
        for pos, cand in enumerate(self.body.candidates):
            if cand.index == index:
                return pos
        return None

    def phrases(self, index: int) -> list[str]:
        """The short look-ahead phrases of candidate ``index`` (from fork.open or fork.lookahead)."""
        return self.short.get(index, [])

    def long_phrases(self, index: int) -> list[str]:
        """The longer look-ahead when it has arrived, else the short one."""
        return self.long.get(index) or self.short.get(index, [])

    def lookahead_words(self, index: int) -> list[str]:
        """The words of the first short look-ahead, as the daemon counts them for ``phrase_words``."""
        phrases = self.phrases(index)
        return phrases[0].split() if phrases else []

    def stem(self, cand: Candidate) -> str:
        """The end of the word a joining candidate continues ("Miss" for "es"), from the fork's context."""
        if not cand.joins:
            return ""
        m = re.search(r"\w+$", self.body.context)
        return m.group(0) if m else ""


class ForkTracker:
    """Which fork is open now: the one place that reads ``fork.*`` and ``text.undo`` for it.

    Feed it every received message with :meth:`update`. A fork ends when it is decided, when
    another fork opens (more, type, a new page), or when ``text.undo`` takes back the text it
    was opened on; ended forks are remembered (``remember`` of them) so that a late message for
    one is known to be stale rather than unknown.
    """

    def __init__(self, remember: int = 256) -> None:
        self.fork: TrackedFork | None = None
        self.closed: deque[str] = deque(maxlen=remember)
        self.ended: str | None = None  # the fork the last update ended, if it ended one
        self.last_decided: Message | None = None

    @property
    def fork_id(self) -> str | None:
        return self.fork.fork_id if self.fork else None

    def is_stale(self, fork_id: str | None) -> bool:
        """True for a fork that was open once and has ended (decided, superseded or undone)."""
        return fork_id is not None and fork_id != self.fork_id and fork_id in self.closed

    def messages(self) -> list[Message]:
        """The open fork's messages (fork.open first), for a late joiner to replay."""
        return list(self.fork.messages) if self.fork else []

    def update(self, msg: Message) -> str:
        """Fold one message in. Returns what it did to the fork: ``"open"`` (a new fork),
        ``"reopen"`` (the same id again), ``"lookahead"``, ``"update"`` (another fork message),
        ``"decided"``, ``"undone"``, or ``""`` (nothing about the open fork)."""
        self.ended = None
        kind, fork_id, body = msg.header.type, msg.header.fork_id, msg.body
        if isinstance(body, ForkOpen) and fork_id:
            same = fork_id == self.fork_id
            if self.fork is not None and not same:
                self._end(self.fork.fork_id)
            self.fork = TrackedFork(fork_id, body, [msg],
                                    short={c.index: list(c.lookahead) for c in body.candidates if c.lookahead})
            return "reopen" if same else "open"
        if isinstance(body, TextUndo) and self.fork is not None:
            self._end(self.fork.fork_id)
            return "undone"
        if not kind.startswith("fork.") or self.fork is None or fork_id != self.fork.fork_id:
            if isinstance(body, ForkDecided) and fork_id and fork_id not in self.closed:
                self.closed.append(fork_id)  # one we never saw open: still, it is over
            return ""
        if isinstance(body, ForkDecided):
            self.last_decided = msg
            self._end(fork_id)
            return "decided"
        self.fork.messages.append(msg)
        if isinstance(body, ForkLookahead):
            for entry in body.entries:
                (self.fork.long if entry.long else self.fork.short)[entry.index] = list(entry.phrases)
            self.fork.lookahead_done = self.fork.lookahead_done or body.done
            return "lookahead"
        return "update"

    def _end(self, fork_id: str) -> None:
        if fork_id not in self.closed:
            self.closed.append(fork_id)
        if self.fork is not None and self.fork.fork_id == fork_id:
            self.fork = None
        self.ended = fork_id
