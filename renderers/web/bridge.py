"""The browser bridge: bus messages out to pages as JSON, validated page events back onto the bus.

Browsers cannot speak ZeroMQ, so one small aiohttp server stands in for them:

* bus -> page: every forwarded message is ``{"topic", "header", "body"}``, the JSON shape of
  the protocol's JSON Schema. A page that connects gets ``hello`` and then the retained
  state (status, text, the open fork and its look-aheads), so it draws at once.
* page -> bus: ``{"type": "input.select"|"input.focus"|"input.command"|"render.layout"|
  "render.stimulus", "fork_id", "body", "ref"}``. Each is converted into its body class,
  checked against the open fork, and only then published (sender and source = this bridge's
  name). Anything wrong gets ``{"type": "error", "code", "name", "message", "ref"}`` and
  nothing is published.
* clock: ``{"type": "ping", "id", "t0"}`` is answered with the bus clock at receipt and at
  send (NTP style), so the page can put P300 flash onsets on the bus clock.
* 1.5: pages also get the retained ``config.state`` and ``phrases.state``, and another source's
  ``input.confirm`` / ``input.select`` when it names a renderer's own target (``cmd:settings``,
  ``ui:<id>``: the settings page), which the page acts on; a page may send ``config.update``.
* the partner page (``/partner``, protocol 1.5): the conversation partner types a turn there; its
  socket (``/partner/ws``) takes only ``{"type": "partner", "text", "ref"}``, published as
  ``input.command`` ``partner`` from source ``partner``, and gets only the ``text.*`` messages, so
  the partner sees the reply grow and can steer nothing.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import WSMsgType, web

from razvilka.protocol.client import BusClient, ForkTracker
from razvilka.protocol.clock import now_ns
from razvilka.protocol.codec import validation_error
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Body,
    Command,
    ConfigState,
    ConfigUpdate,
    Confirm,
    Focus,
    Header,
    Layout,
    Message,
    Select,
    SourceState,
    SourceStatus,
    Stimulus,
)
from razvilka.protocol.targets import parse_target
from razvilka.renderers.config import WebConfig

log = logging.getLogger("razvilka.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: What the bridge forwards to pages (heartbeats are only used for liveness); confirms and selects only
#: when they name a renderer's own target (:func:`renderer_target`).
SUBSCRIBE = ("fork.", "text.", "daemon.", "input.focus.", "source.status.", "config.state.", "phrases.state.",
             "input.confirm.", "input.select.")
#: Retained (latest per sender) for a page that connects later.
RETAINED_TYPES = ("text.state", "daemon.status", "config.state", "phrases.state")

#: What a page may publish, and which field the bridge stamps with its own name.
PAGE_TYPES: dict[str, tuple[type[Body], str]] = {
    "input.select": (Select, "source"),
    "input.focus": (Focus, "source"),
    "input.command": (Command, "source"),
    "render.layout": (Layout, "renderer"),
    "render.stimulus": (Stimulus, "renderer"),
    "config.update": (ConfigUpdate, "source"),  # 1.5: the settings page
}

#: The setting (1.5 ``config.state``) that is the bridge's own.
THEME_SETTING = "renderers.web.theme"

#: The partner page (protocol 1.5): its turns are ``input.command`` ``partner`` from this source.
PARTNER_SOURCE = "partner"
#: The longest turn a partner may send (characters): a turn, not a document.
PARTNER_MAX_CHARS = 2000

#: The source kinds (protocol 1.3) a page may send: mouse and touch are "pointer", keys "key".
PAGE_KINDS = ("pointer", "key")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

#: Page settings sent in ``hello`` (the page may override them with query parameters).
PAGE_SETTINGS = (
    "name", "theme", "min_font_px", "max_font_px", "gaze_cursor", "touch_peek_ms",
    "p300", "flash_ms", "isi_ms", "p300_rounds", "clock_pings", "clock_resync_s",
)


class PageEvent(msgspec.Struct, kw_only=True):
    """One message from a page (input event, or a clock ping)."""

    type: str
    fork_id: str | None = None
    body: dict[str, Any] = msgspec.field(default_factory=dict)
    ref: str | int | None = None
    id: int | None = None      # ping
    t0: float | None = None    # ping: performance.now() at send


class Wire(msgspec.Struct):
    """A protocol message as pages see it (the JSON Schema's shape)."""

    topic: str
    header: Any
    body: Any


_event_decoder = msgspec.json.Decoder(PageEvent)
_json = msgspec.json.Encoder()


def decode_event(text: str) -> PageEvent:
    """A page's text frame as an event, or a ProtocolError saying what is wrong with it."""
    try:
        return _event_decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise validation_error("event", exc) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"not a JSON event: {exc}") from None


def to_json(msg: Message) -> str:
    return _json.encode(Wire(msg.topic, msg.header, msg.body)).decode()


class BusMirror:
    """What a page that connects now must see: the bridge's copy of the retained bus state."""

    def __init__(self, remember: int = 256) -> None:
        self.latest: dict[tuple[str, str], Message] = {}
        self.forks = ForkTracker(remember)

    @property
    def fork_id(self) -> str | None:
        return self.forks.fork_id

    @property
    def candidates(self) -> int:
        return self.forks.fork.k if self.forks.fork else 0

    def update(self, msg: Message) -> None:
        kind = msg.header.type
        self.forks.update(msg)
        if kind in RETAINED_TYPES:
            self.latest[(kind, msg.header.sender)] = msg
        elif kind == "source.status":
            self.latest[(kind, getattr(msg.body, "source", msg.header.sender))] = msg

    def messages(self) -> list[Message]:
        """Retained messages, oldest first, the open fork last."""
        held = sorted(self.latest.values(), key=lambda m: m.header.ts_ns)
        return held + self.forks.messages()


class Page:
    """One connected page: its socket and its outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, size: int, peer: str, *, partner: bool = False) -> None:
        self.ws = ws
        self.partner = partner  # the partner page: text.* only, and turns only
        self.queue: asyncio.Queue[str | dict[str, Any]] = asyncio.Queue(size)
        self.peer = peer
        self.published = 0
        self.rejected = 0


class WebBridge:
    """The HTTP + WebSocket server in front of one started :class:`BusClient`."""

    def __init__(self, config: WebConfig, client: BusClient) -> None:
        self.config = config
        self.client = client
        self.name = config.name
        self.mirror = BusMirror()
        self.pages: set[Page] = set()
        self.had_page = False
        self.rejected = 0
        self.published = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[bool]] = set()
        hosts = set(LOOPBACK_NAMES) | {h.strip("[]").lower() for h in config.allowed_hosts}
        if config.host not in ("0.0.0.0", "::", ""):
            hosts.add(config.host.strip("[]").lower())
        self.allowed_hosts = frozenset(hosts)
        self.app = web.Application(middlewares=[self._guard])
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_get("/partner", self._partner_page)
        self.app.router.add_get("/partner/ws", self._partner_websocket)
        self.app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, snapshot_timeout: float = 2.0) -> str:
        """Seed the mirror from the bus snapshot, start forwarding, and listen. Returns the page URL."""
        try:
            for msg in await self.client.snapshot(timeout=snapshot_timeout):
                self.mirror.update(msg)
        except ProtocolError as exc:
            log.warning("web: no bus snapshot (%s); pages start empty until the daemon speaks", exc)
        self._pump = asyncio.create_task(self._forward(), name="web-forward")
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            raise ProtocolError(
                ErrorCode.BAD_CONFIG, f"cannot listen on {self.config.host}:{self.config.port}: {exc}"
            ) from None
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        if self.config.host not in LOOPBACK_NAMES:
            log.warning("web: listening on %s, beyond loopback; put it behind a proxy with auth", self.config.host)
        log.info("web: serving %s (page events publish as %r)", self.url, self.name)
        return self.url

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except (asyncio.CancelledError, Exception):
                pass
            self._pump = None
        for page in list(self.pages):
            await page.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.had_page:
            self._status("stopped", "the web renderer stopped")

    # ------------------------------------------------------------------ bus -> pages
    async def _forward(self) -> None:
        try:
            async for msg in self.client:
                kind = msg.header.type
                if kind == "heartbeat" or (kind.startswith("input.") and msg.header.sender == self.name):
                    continue
                if kind in ("input.confirm", "input.select") and not renderer_target(msg.body):
                    continue  # the daemon's business; a page only acts on its own targets
                self.mirror.update(msg)
                if isinstance(msg.body, ConfigState):
                    self.apply_settings(msg.body)
                self.broadcast(to_json(msg), partner=kind.startswith("text."))
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - the bus socket failing under us
            log.exception("web: forwarding from the bus stopped")
            raise

    def apply_settings(self, state: ConfigState) -> None:
        """A setting the person changed (1.5 ``config.state`` ``changed``) that is the bridge's: the theme a page
        gets in ``hello`` (open pages apply it themselves)."""
        theme = state.values.get(THEME_SETTING)
        if state.changed == THEME_SETTING and theme in ("contrast", "light") and theme != self.config.theme:
            self.config = msgspec.structs.replace(self.config, theme=theme)

    def broadcast(self, text: str, *, partner: bool = False) -> None:
        """To every page; to partner pages only when ``partner`` (the text)."""
        for page in list(self.pages):
            if page.partner and not partner:
                continue
            try:
                page.queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("web: page %s is not reading; dropping it", page.peer)
                self._drop(page)

    def _drop(self, page: Page) -> None:
        self.pages.discard(page)
        task = asyncio.ensure_future(page.ws.close(code=1011, message=b"too slow"))
        self._closing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ HTTP
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Refuse foreign Host names (DNS rebinding) and add a strict content policy."""
        host = (request.url.host or "").strip("[]").lower()
        if host not in self.allowed_hosts:
            log.warning("web: refused Host %r from %s (add it to renderers.web.allowed_hosts)",
                        request.host, request.remote)
            return web.Response(status=403, text=f"Host {request.host!r} is not allowed here\n")
        response: web.StreamResponse = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
            )
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Cache-Control"] = "no-cache"
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: a local tool, which could reach the bus anyway
            return True
        if origin in self.config.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == request.host.lower()

    async def _accept(self, request: web.Request, what: str) -> web.WebSocketResponse | None:
        """The opened WebSocket of a page from this origin; None (logged) for a page from another one."""
        if not self._origin_ok(request):
            log.warning("web: refused %s from Origin %r", what, request.headers.get("Origin"))
            return None
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, heartbeat=20.0)
        await ws.prepare(request)
        return ws

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = await self._accept(request, "a WebSocket")
        if ws is None:
            return web.Response(status=403, text="cross-origin WebSocket refused\n")
        page = Page(ws, self.config.page_queue, str(request.remote))
        # Hello and snapshot are queued before the page joins the broadcast set, with no await
        # in between: nothing the bus says meanwhile can be lost or arrive before the snapshot.
        settings = {key: getattr(self.config, key) for key in PAGE_SETTINGS}
        page.queue.put_nowait(_json.encode({"type": "hello", "config": settings, "bus_ns": now_ns()}).decode())
        for msg in self.mirror.messages()[: self.config.page_queue - 2]:
            page.queue.put_nowait(to_json(msg))
        self.pages.add(page)
        self._page_count_changed()
        writer = asyncio.create_task(self._write(page), name=f"web-page-{page.peer}")
        log.info("web: page connected from %s (%d open)", page.peer, len(self.pages))
        try:
            async for raw in ws:
                if raw.type == WSMsgType.TEXT:
                    self.handle(page, raw.data, now_ns())
                elif raw.type == WSMsgType.BINARY:
                    self._reply_error(page, ProtocolError(ErrorCode.MALFORMED, "send JSON text frames"), None)
                elif raw.type == WSMsgType.ERROR:
                    log.warning("web: page %s: %s", page.peer, ws.exception())
        finally:
            self.pages.discard(page)
            writer.cancel()
            self._page_count_changed()
            log.info("web: page from %s left (%d open)", page.peer, len(self.pages))
        return ws

    # ------------------------------------------------------------------ the partner page (1.5)
    async def _partner_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "partner.html")

    async def _partner_websocket(self, request: web.Request) -> web.StreamResponse:
        """The partner's socket: the text (retained, then live) out; turns in, nothing else."""
        ws = await self._accept(request, "a partner WebSocket")
        if ws is None:
            return web.Response(status=403, text="cross-origin WebSocket refused\n")
        page = Page(ws, self.config.page_queue, str(request.remote), partner=True)
        page.queue.put_nowait(_json.encode({"type": "hello", "config": {"theme": self.config.theme},
                                            "bus_ns": now_ns()}).decode())
        for msg in self.mirror.messages():
            if msg.header.type == "text.state":
                page.queue.put_nowait(to_json(msg))
        self.pages.add(page)
        writer = asyncio.create_task(self._write(page), name=f"web-partner-{page.peer}")
        log.info("web: partner page connected from %s", page.peer)
        try:
            async for raw in ws:
                if raw.type == WSMsgType.TEXT:
                    self.handle_partner(page, raw.data)
                elif raw.type == WSMsgType.BINARY:
                    self._reply_error(page, ProtocolError(ErrorCode.MALFORMED, "send JSON text frames"), None)
        finally:
            self.pages.discard(page)
            writer.cancel()
            log.info("web: partner page from %s left", page.peer)
        return ws

    def handle_partner(self, page: Page, text: str) -> None:
        """One frame from the partner page: ``{"type": "partner", "text", "ref"}`` -> ``input.command partner``."""
        ref: str | int | None = None
        try:
            event = decode_event(text)
            ref = event.ref
            if event.type != "partner":
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE,
                                    f"the partner page sends only 'partner', not {event.type!r}")
            turn = event.body.get("text")
            if not isinstance(turn, str) or not turn.strip():
                raise ProtocolError(ErrorCode.BAD_VALUE, "body.text: the partner's turn is a non-empty string")
            turn = turn.strip()
            if len(turn) > PARTNER_MAX_CHARS:
                raise ProtocolError(ErrorCode.BAD_VALUE,
                                    f"body.text: a turn is at most {PARTNER_MAX_CHARS} characters, got {len(turn)}")
            header = self.client.publish(Command(command="partner", source=PARTNER_SOURCE, text=turn),
                                         subtopic=(self.name, PARTNER_SOURCE))
        except ProtocolError as exc:
            self._refuse(page, exc, ref, "a partner turn")
            return
        self._ack(page, ref, header, "partner")

    async def _write(self, page: Page) -> None:
        try:
            while True:
                item = await page.queue.get()
                if isinstance(item, dict):  # a pong: stamp the send time as late as possible
                    item["bus_tx_ns"] = now_ns()
                    item = _json.encode(item).decode()
                await page.ws.send_str(item)
        except (ConnectionError, RuntimeError) as exc:
            log.info("web: page %s: send failed (%s)", page.peer, exc)

    def _page_count_changed(self) -> None:
        if self.pages:
            self.had_page = True
            self._status("ok", f"{len(self.pages)} page(s) connected")
        elif self.had_page:
            self._status("lost", "no page connected")

    def _status(self, state: SourceState, detail: str) -> None:
        try:
            self.client.publish(SourceStatus(source=self.name, state=state, detail=detail), subtopic=(self.name,))
        except Exception as exc:  # the bus going away must not take the pages down
            log.warning("web: could not publish status: %s", exc)

    # ------------------------------------------------------------------ pages -> bus
    def handle(self, page: Page, text: str, rx_ns: int) -> None:
        """One text frame from a page: answer a ping, or validate and publish an event."""
        ref: str | int | None = None
        try:
            event = decode_event(text)
            ref = event.ref
            if event.type == "ping":
                self._send(page, {"type": "pong", "id": event.id, "t0": event.t0, "bus_rx_ns": rx_ns})
                return
            body, fork_id = self.validate(event)
            header = self.client.publish(body, fork_id=fork_id, subtopic=(self.name,))
        except ProtocolError as exc:
            # A stale fork is the normal race of a page event with a decision; the rest is worth a warning.
            stale = exc.code == ErrorCode.STALE_FORK
            self._refuse(page, exc, ref, "an event", logging.INFO if stale else logging.WARNING)
            return
        self._ack(page, ref, header, event.type)

    def _refuse(self, page: Page, exc: ProtocolError, ref: str | int | None, what: str,
                level: int = logging.WARNING) -> None:
        """Count, log and answer a page's frame that was not published."""
        page.rejected += 1
        self.rejected += 1
        log.log(level, "web: refused %s from %s: %s", what, page.peer, exc)
        self._reply_error(page, exc, ref)

    def _ack(self, page: Page, ref: str | int | None, header: Header, event: str) -> None:
        """Count and answer a page's frame that went out on the bus as ``header``."""
        page.published += 1
        self.published += 1
        self._send(page, {"type": "ack", "ref": ref, "id": header.id, "event": event, "ts_ns": header.ts_ns})

    def validate(self, event: PageEvent) -> tuple[Body, str | None]:
        """The typed body for a page event, or a ProtocolError saying what is wrong with it."""
        if event.type not in PAGE_TYPES:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE, f"a page may send only {', '.join(PAGE_TYPES)} (and ping), not {event.type!r}"
            )
        cls, stamp = PAGE_TYPES[event.type]
        raw = dict(event.body)
        raw[stamp] = self.name  # a page speaks for this bridge only; it cannot pose as gaze or EEG
        if cls in (Focus, Select):  # protocol 1.3 kind: a page is a pointer (mouse, touch) or keys
            kind = raw.get("kind") or "pointer"
            if kind not in PAGE_KINDS:
                raise ProtocolError(ErrorCode.BAD_VALUE, f"body.kind: a page is 'pointer' or 'key', not {kind!r}")
            raw["kind"] = kind
        try:
            body = msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise validation_error("body", exc) from None
        fork_id = event.fork_id
        if cls.NEEDS_FORK and not fork_id:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{event.type} needs fork_id")
        if fork_id is not None and fork_id != self.mirror.fork_id:
            if self.mirror.forks.is_stale(fork_id) and not _rest_layout(body):
                raise ProtocolError(ErrorCode.STALE_FORK, f"fork {fork_id!r} was already decided or superseded")
            if not self.mirror.forks.is_stale(fork_id):
                raise ProtocolError(ErrorCode.UNKNOWN_FORK, f"no open fork {fork_id!r} (open: {self.mirror.fork_id!r})")
        indices = _indices(body)
        if isinstance(body, Layout) and len(set(indices)) != len(indices):
            raise ProtocolError(ErrorCode.BAD_LAYOUT, "a layout gives some candidate two boxes")
        for index in indices:
            if index >= self.mirror.candidates:
                raise ProtocolError(
                    ErrorCode.OUT_OF_RANGE,
                    f"candidate {index} is outside fork {fork_id!r} ({self.mirror.candidates} candidates)",
                )
        for target in _targets(body):  # 1.4: each id must parse; a candidate it names must be in the fork
            parsed = parse_target(target)  # a bad id is BAD_VALUE naming it
            if parsed.index is not None and parsed.index >= self.mirror.candidates:
                raise ProtocolError(
                    ErrorCode.OUT_OF_RANGE,
                    f"target {target} is outside fork {fork_id!r} ({self.mirror.candidates} candidates)",
                )
        return body, fork_id

    def _send(self, page: Page, item: dict[str, Any]) -> None:
        try:
            page.queue.put_nowait(item if item.get("type") == "pong" else _json.encode(item).decode())
        except asyncio.QueueFull:
            self._drop(page)

    def _reply_error(self, page: Page, exc: ProtocolError, ref: str | int | None) -> None:
        self._send(page, {"type": "error", "code": int(exc.code), "name": exc.code.name, "message": exc.detail,
                          "ref": ref})


def renderer_target(body: Any) -> bool:
    """Whether a confirm or select names a renderer's own target (1.5: ``cmd:settings``, ``ui:<id>``), which
    the page acts on (another source, gaze or a switch, chose it on the page)."""
    target = body.target if isinstance(body, (Confirm, Select)) else None
    if target is None:
        return False
    try:
        return parse_target(target).renderer_own
    except ProtocolError:
        return False


def _rest_layout(body: Body) -> bool:
    """A paused page's layout: Resume alone. It may name a fork already decided (paused between forks,
    none is open), as the daemon takes cmd:resume for any fork it opened: so gaze can still resume."""
    return (isinstance(body, Layout) and not body.boxes and bool(body.targets)
            and all(t.target == "cmd:resume" for t in body.targets))


def _targets(body: Body) -> list[str]:
    """The target ids (protocol 1.4) a page event names."""
    if isinstance(body, Select):
        return [] if body.target is None else [body.target]
    if isinstance(body, Focus):
        return ([] if body.target is None else [body.target]) + list(body.group)
    if isinstance(body, Layout):
        return [t.target for t in body.targets]
    if isinstance(body, Stimulus):
        return list(body.targets)
    return []


def _indices(body: Body) -> list[int]:
    if isinstance(body, (Select, Focus)):
        return [] if body.index is None else [body.index]
    if isinstance(body, Layout):
        return [box.index for box in body.boxes]
    if isinstance(body, Stimulus):
        return list(body.indices)
    return []
