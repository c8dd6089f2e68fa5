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
from textual.events import Click, Key, Resize
from textual.message import Message as UIMessage
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from razvilka.protocol.client import BusClient, TrackedFork
from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import Command, Layout, Message, Select, SourceState, SourceStatus
from razvilka.protocol.targets import command_of, parse_target
from razvilka.renderers.config import TuiConfig
from razvilka.renderers.tui import board, render
from razvilka.renderers.tui.board import Spot
from razvilka.renderers.tui.state import ViewState
from razvilka.runtime import stop_event

log = logging.getLogger("razvilka.render.tui")

#: What the view follows: forks, text, the daemon, input health, others' focus, the quick phrases.
SUBSCRIBE = ("fork.", "text.", "daemon.", "source.", "input.focus.", "phrases.")
PANELS = ("status", "text", "cloud", "keyboard", "lookahead", "detail", "sources", "help")
#: Panels whose content holds targets (their spots go into the layout).
TARGET_PANELS = ("cloud", "keyboard")


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


class PanelResized(UIMessage):
    """A panel's size changed (sent after the screen's layout pass, so every region is current)."""


class Panel(Static):
    """A panel of the view: it tells the app when its size changes (the app's own resize comes
    before the panels are laid out again, so their regions would still be the old ones)."""

    def on_resize(self, event: Resize) -> None:
        self.app.post_message(PanelResized())


class TuiApp(App[int]):
    """Draws the daemon's forks and text; its keys are an input source named ``config.name``.

    Every action is also a target on screen (protocol 1.4): the candidates, an on-screen keyboard
    and the command row. The view publishes where they are (``render.layout``, in cells) whenever
    they move, so a switch adapter can scan them and a gaze adapter hit-test them; it draws any
    source's focus and scanned row on them; a click selects one."""

    TITLE = "razvilka"
    CSS = """
    Screen { layout: vertical; background: #101418; }
    #status { height: 1; padding: 0 1; background: #1c2630; }
    #text { height: 1fr; min-height: 3; border: round #3a4a5a; padding: 0 1; }
    #cloud { height: auto; min-height: 3; border: round #ffaf00; padding: 0 1; }
    #keyboard { height: auto; border: round #5f87af; padding: 0 1; }
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
        self.spots: dict[str, list[Spot]] = {name: [] for name in TARGET_PANELS}
        self.layout_now: Layout | None = None   # the targets as drawn now (also when no fork is open)
        self.published_layout: tuple[str, Layout] | None = None  # the last published, and its fork's id
        self._published_fork: TrackedFork | None = None  # the open fork it was for (None: paused between forks)
        self._drawn_width: dict[str, int] = {}
        self._width_redraws = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical(id="middle"):
            yield Panel(id="text")
            yield Panel(id="cloud")
            yield Panel(id="keyboard")
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
        self.panels["cloud"].border_subtitle = "click a word"
        if self.own_client:
            await self.client.start()
        if self.config.keys:
            self._announce("ok", "keys in the terminal view")
        stop_event(then=self.exit)  # SIGTERM (`razvilka up` stopping) closes the view cleanly
        self.redraw(force=True)
        # after every layout pass (a resize, a panel growing) the targets may have moved. The signal's
        # callback may run while the next pass is pending (the content already redrawn for a new fork,
        # the regions still the old ones): publish only once no pass is pending, as after a redraw.
        self.screen.screen_layout_refresh_signal.subscribe(
            self, lambda _screen: self.call_after_refresh(self.publish_layout))
        self.set_interval(self.config.refresh_ms / 1000, self._refresh_sources)
        self.follow_bus()

    async def on_unmount(self) -> None:
        if self.config.keys:
            self._announce("stopped", "terminal view closed")
        if self.own_client:
            await self.client.close()

    def _announce(self, state: SourceState, detail: str) -> None:
        try:
            self.client.publish(SourceStatus(source=self.client.name, state=state, detail=detail))
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
            live = await self.client.recv(timeout=1.0)
            if live is not None:
                self.post_message(BusEvent(live))

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

    def on_click(self, event: Click) -> None:
        """A click on a target selects it (a candidate, a key, a command): the mouse as one more input."""
        if not self.config.keys or event.button != 1 or self.layout_now is None:
            return
        target = board.hit(self.layout_now, event.screen_x, event.screen_y)
        if target is not None:
            event.stop()
            self.choose(target)

    def choose(self, target: str) -> None:
        """Select ``target``: a candidate by its index (as a number key does), any other target by its id.

        A command or a quick phrase needs no fork: with none open (the model writing, or paused between
        forks) it goes as the ``input.command`` that does the same (``cmd:speak_all``: speak "all")."""
        fork = self.state.fork
        parsed = parse_target(target)
        if fork is None:
            command = command_of(parsed)
            if command is None:
                log.info("click on %s: no open fork", target)
                return
            body: Select | Command = Command(command=command[0], text=command[1], source=self.client.name)
            self.client.publish(body)
        else:
            if parsed.kind == "cand":
                body = Select(index=parsed.index, source=self.client.name, kind="pointer")
            else:
                body = Select(target=target, source=self.client.name, kind="pointer")
            self.client.publish(body, fork_id=fork.fork_id)
        self.published += 1

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
        for name, draw in (("cloud", render.cloud), ("keyboard", render.keyboard)):
            self._drawn_width[name] = width = self._content_width(name)
            text, self.spots[name] = draw(st, self.config.show_probabilities, width)
            panels[name].update(text)
        panels["cloud"].border_title = render.cloud_title(st)
        panels["keyboard"].border_title = render.keyboard_title(st)
        panels["lookahead"].update(render.lookaheads(st))
        panels["detail"].update(render.focused_detail(st, self.config.focused_lines))
        panels["help"].update(render.help_line(st, self.config.keys))
        self._refresh_sources()
        self.call_after_refresh(self.publish_layout)  # once the panels have their new sizes

    def _content_width(self, name: str) -> int:
        """The cells a panel's content has across (before the first layout: the screen's, less its frame)."""
        width = self.panels[name].content_size.width
        return width if width > 0 else max(1, self.size.width - 4)

    def on_panel_resized(self, event: PanelResized) -> None:
        """A panel got a new size (the terminal resized, or a panel above grew): lines re-wrap at the
        new width and the targets move, so draw again and publish where they are now."""
        if self.panels:
            self.redraw(force=True)

    def laid_out_for_now(self) -> bool:
        """Whether the panels' regions are for the terminal's present size: the app's size changes at
        once on a resize, the regions only with the next layout pass. The status line spans the width
        and the help line is the last line (the middle takes the rest), whatever the content."""
        status, help_ = self.panels["status"].region, self.panels["help"].region
        return status.width == self.size.width and help_.y == self.size.height - 1

    def publish_layout(self) -> None:
        """``render.layout`` of every target drawn, in cells, when it differs from the last one published.

        A panel laid out at another width than it was drawn for (the first draw, a resize) is drawn
        again first: a target's box is where it is on screen, never where it was meant to be."""
        if not self.panels or not self.is_running or not self.laid_out_for_now():
            return  # resized, the panels not laid out again yet: that layout pass publishes
        if self._width_redraws < 2 and any(self.panels[name].content_size.width not in (0, self._drawn_width.get(name))
                                           for name in TARGET_PANELS):
            self._width_redraws += 1
            self.redraw(force=True)
            return
        self._width_redraws = 0
        shown = self.query_one("#middle").region  # in a short terminal the panels below are cut off
        placed = {}
        for name in TARGET_PANELS:
            region = self.panels[name].content_region
            placed[(region.x, region.y)] = [s for s in self.spots[name]  # a target cut off is not there
                                            if s.y < region.height and shown.contains(region.x + s.x, region.y + s.y)]
        self.layout_now = board.layout(placed, board.scan_rows(self.state), (self.size.width, self.size.height),
                                       self.client.name)
        fork = self.state.fork
        # a layout names its fork; paused with none open (paused between forks) the last one, so that a
        # scanner or a gaze adapter still reaches Resume (the daemon takes cmd:resume for any fork it opened)
        fork_id = fork.fork_id if fork is not None else self.state.last_fork_id if self.state.paused else None
        if fork_id is None or not (self.layout_now.boxes or self.layout_now.targets):
            return
        last = self.published_layout
        if last is not None and self._published_fork is fork and last == (fork_id, self.layout_now):
            return  # nothing moved; every fork.open (a reopen too) gets its layout
        self.published_layout, self._published_fork = (fork_id, self.layout_now), fork
        self.client.publish(self.layout_now, fork_id=fork_id)

    def _refresh_sources(self) -> None:
        roles = {name: peer.role for name, peer in self.client.peers.items()}
        self.panels["sources"].update(render.sources_view(self.state, self.client.alive(), roles, self.config.keys))
