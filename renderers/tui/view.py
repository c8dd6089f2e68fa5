"""The Textual app: a worker follows the bus and posts each message to the UI thread of control.

Imported only by :func:`razvilka.renderers.tui.app.run` (and tests), never at CLI parse time.
"""
from __future__ import annotations

import logging
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Key
from textual.message import Message as UIMessage
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from razvilka.protocol.client import BusClient
from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import Message, SourceStatus
from razvilka.renderers.config import TuiConfig
from razvilka.renderers.tui import render
from razvilka.renderers.tui.state import ViewState
from razvilka.runtime import stop_event

log = logging.getLogger("razvilka.render.tui")

#: What the view follows: forks, text, the daemon, input health, others' focus.
SUBSCRIBE = ("fork.", "text.", "daemon.", "source.", "input.focus.")
PANELS = ("status", "text", "cloud", "lookahead", "detail", "sources", "help")


class BusEvent(UIMessage):
    """One protocol message from the bus, handed from the worker to the app."""

    def __init__(self, msg: Message) -> None:
        super().__init__()
        self.msg = msg


class BusNotice(UIMessage):
    """Something about the connection itself (snapshot received or failed)."""

    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text = text
        self.ok = ok


class TuiApp(App[int]):
    """Draws the daemon's forks and text; its keys are an input source named ``config.name``."""

    TITLE = "razvilka"
    CSS = """
    Screen { layout: vertical; background: #101418; }
    #status { height: 1; padding: 0 1; background: #1c2630; }
    #text { height: 1fr; min-height: 3; border: round #3a4a5a; padding: 0 1; }
    #cloud { height: auto; min-height: 3; border: round #ffaf00; padding: 1 1; content-align: center middle; }
    #below { height: auto; max-height: 14; }
    #lookahead { width: 3fr; height: auto; border: round #3a4a5a; padding: 0 1; }
    #detail { width: 2fr; height: auto; border: round #5fd7ff; padding: 0 1; }
    #sources { height: 1; padding: 0 1; background: #1c2630; }
    #help { height: 1; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        # Tab would move widget focus; here it asks for more candidates.
        Binding("tab", "key_more", "more", show=False, priority=True),
    ]

    def __init__(self, client: BusClient, config: TuiConfig | None = None, *, own_client: bool = False) -> None:
        super().__init__()
        self.client = client
        self.config = config or TuiConfig()
        self.own_client = own_client
        self.state = ViewState(me=client.name)
        self.snapshot_ok: bool | None = None
        self.published: int = 0
        self._drawn = -1
        self.panels: dict[str, Static] = {}

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical():
            yield Static(id="text")
            yield Static(id="cloud")
            with Horizontal(id="below"):
                yield Static(id="lookahead")
                yield Static(id="detail")
        yield Static(id="sources")
        yield Static(id="help")

    async def on_mount(self) -> None:
        # Held, not queried: a timer or a late bus event may fire while the screen is torn down.
        self.panels = {name: self.query_one(f"#{name}", Static) for name in PANELS}
        self.panels["text"].border_title = "text"
        self.panels["text"].border_subtitle = render.legend()
        self.panels["lookahead"].border_title = "look-ahead"
        self.panels["detail"].border_title = "focused"
        if self.own_client:
            await self.client.start()
        if self.config.keys:
            self._announce("ok", "keys in the terminal view")
        stop_event(then=self.exit)  # SIGTERM (`razvilka up` stopping) closes the view cleanly
        self.redraw(force=True)
        self.set_interval(self.config.refresh_ms / 1000, self._refresh_sources)
        self.follow_bus()

    async def on_unmount(self) -> None:
        if self.config.keys:
            self._announce("stopped", "terminal view closed")
        if self.own_client:
            await self.client.close()

    def _announce(self, state: str, detail: str) -> None:
        try:
            self.client.publish(SourceStatus(source=self.client.name, state=state, detail=detail))  # type: ignore[arg-type]
        except Exception as exc:  # a closed socket at shutdown must not hide the real exit
            log.debug("could not announce %s: %s", state, exc)

    # ------------------------------------------------------------------ the bus worker
    @work(exclusive=True, group="bus", exit_on_error=False)
    async def follow_bus(self) -> None:
        """Snapshot first (the client subscribed at start), then the live stream."""
        try:
            for msg in await self.client.snapshot(timeout=self.config.snapshot_timeout_s):
                self.post_message(BusEvent(msg))
            self.post_message(BusNotice("snapshot received", ok=True))
        except ProtocolError as exc:
            self.post_message(BusNotice(f"no snapshot ({exc}); following live messages only", ok=False))
        while True:
            msg = await self.client.recv(timeout=1.0)
            if msg is not None:
                self.post_message(BusEvent(msg))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "bus" and event.state == WorkerState.ERROR:
            text = f"lost the bus: {event.worker.error}"
            log.error("%s", text)
            self.notify(text, severity="error", timeout=30)

    def on_bus_event(self, event: BusEvent) -> None:
        if self.state.apply(event.msg):
            self.redraw()

    def on_bus_notice(self, event: BusNotice) -> None:
        self.snapshot_ok = event.ok
        if not event.ok:
            log.warning("%s", event.text)
            self.notify(event.text, severity="warning", timeout=8)

    # ------------------------------------------------------------------ keys
    def on_key(self, event: Key) -> None:
        if self.config.keys and self._press(event.key, event.character):
            event.stop()
            event.prevent_default()

    def action_key_more(self) -> None:
        if self.config.keys:
            self._press("tab", None)

    def _press(self, key: str, character: str | None) -> bool:
        reaction = self.state.press(key, character)
        for emit in reaction.emits:
            self.client.publish(emit.body, fork_id=emit.fork_id)
            self.published += 1
        if reaction.note:
            log.info("key=%s action=%s %s", key, reaction.action or "-", reaction.note)
        self.redraw()
        return bool(reaction.action)  # a key with an action is ours, even one that changed only the screen

    # ------------------------------------------------------------------ drawing
    def redraw(self, force: bool = False) -> None:
        if not force and self._drawn == self.state.version:
            return
        self._drawn = self.state.version
        st, panels = self.state, self.panels
        panels["status"].update(render.status_line(st))
        panels["text"].update(render.text_view(st))
        panels["cloud"].update(render.cloud(st, self.config.show_probabilities))
        panels["cloud"].border_title = render.cloud_title(st)
        panels["lookahead"].update(render.lookaheads(st))
        panels["detail"].update(render.focused_detail(st, self.config.focused_lines))
        panels["help"].update(render.help_line(st, self.config.keys))
        self._refresh_sources()

    def _refresh_sources(self) -> None:
        roles = {name: peer.role for name, peer in self.client.peers.items()}
        self.panels["sources"].update(render.sources_view(self.state, self.client.alive(), roles, self.config.keys))
