"""Switch scanning on the bus: ``razvilka input keyboard|footswitch --scan auto|step``.

The key adapters run the pure scanner (:mod:`razvilka.inputs.scan`) over the renderer's
``render.layout`` for the open fork (rows of candidates, commands and keyboard keys), and publish
what it does: ``input.focus`` with ``group`` (a scanned row) or ``target`` (an item), and
``input.select`` with ``target``.

The switches are the key map's own: a key mapped to ``confirm`` is the select switch (auto: the only
switch), a key mapped to ``focus_next`` the advance switch (step mode's second switch; in auto mode it
moves the highlight at once). Every other key keeps its action, so a helper at the keyboard can
still press 1-9 or Backspace. Rest and wake go out as ``source.status`` details, for renderers to
say that a press starts scanning again.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

from razvilka.inputs.keyadapter import KeyCompanion, Send
from razvilka.inputs.keymap import Emit, KeyEvent, KeyInterpreter, KeyMap, Reaction, StatusEvent
from razvilka.inputs.scan import (
    ScanConfig,
    ScanEvent,
    ScanFocus,
    Scanner,
    ScanRest,
    ScanSelect,
    ScanWake,
    Switch,
    layout_rows,
)
from razvilka.protocol.clock import now_ns
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    ConfigState,
    DaemonStatus,
    Focus,
    ForkOpen,
    Layout,
    Message,
    Select,
    SourceStatus,
)

log = logging.getLogger("razvilka.inputs.scan")

#: The key map's actions that are the scan switches.
SWITCH_ACTIONS: dict[str, Switch] = {"confirm": "select", "focus_next": "advance"}
REST_DETAIL = "scanning rests: press the switch to start again"
#: The setting of ``config.state`` (protocol 1.5) scanning applies at once.
INTERVAL_SETTING = "scan.interval_ms"
WAKE_DETAIL = "scanning"


def check_switches(keymap: KeyMap, scan: ScanConfig, where: str) -> None:
    """Scanning needs a select switch (a key mapped to confirm) and, in step mode, an advance switch
    (a key mapped to focus_next): ``ProtocolError(BAD_CONFIG)`` saying which to map where."""
    actions = set(keymap.actions.values()) | set(keymap.long.values())
    needed = {"confirm": "a select switch (a key mapped to confirm)"}
    if scan.mode == "step":
        needed["focus_next"] = "an advance switch (a key mapped to focus_next)"
    missing = [a for a in needed if a not in actions]
    if missing:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"scan.mode = {scan.mode} needs "
                            + " and ".join(needed[a] for a in missing)
                            + f"; map one in {where}, e.g. --set {where}.<key>={missing[0]}")


class ScanInterpreter(KeyInterpreter):
    """A :class:`KeyInterpreter` whose ``confirm`` and ``focus_next`` keys drive a :class:`Scanner`."""

    def __init__(self, keymap: KeyMap, scan: ScanConfig, *, source: str, debounce_ms: float = 60.0,
                 typing: bool = False, kind: str = "key") -> None:
        super().__init__(keymap, source=source, debounce_ms=debounce_ms, typing=typing, kind=kind)
        self.scan = scan
        self.scanner = Scanner(scan)
        self.layout: tuple[str, Layout] | None = None  # the newest layout followed, and its fork
        self.paused = False  # the daemon is paused (daemon.status): between forks its Resume names the last fork
        self._pressed_ns: int | None = None  # when the key being handled went down
        self._warned: set[str] = set()  # unknown target ids already logged

    # ------------------------------------------------------------ bus side
    def follow(self, msg: Message, now: int) -> Reaction:
        """One bus message at bus time ``now`` (ns): forks and layouts move the scan."""
        if isinstance(msg.body, ConfigState):
            return self.apply_settings(msg.body)
        if isinstance(msg.body, DaemonStatus):
            self.paused = msg.body.state == "paused"
            if not self.paused and self.forks.fork is None and self.scanner.key is not None:
                self.scanner.load((), now / 1e6, None)  # resumed between forks: Resume is gone, the next fork comes
            return Reaction()
        before = self.forks.fork_id
        self.observe(msg)
        fork, body, t = self.forks.fork, msg.body, now / 1e6
        if isinstance(body, Layout):
            if self.scan.renderer and body.renderer != self.scan.renderer:
                return Reaction()
            fid = msg.header.fork_id
            self.layout = (fid, body) if fid else None
            if fid and fork is None and self.paused and self.forks.is_stale(fid):
                # paused between forks (none is open): the renderer's Resume names the last fork, and the
                # daemon takes cmd:resume for any fork it opened, so a select there still resumes
                return self._load(body, t, fid)
            if fork is None or fid != fork.fork_id:
                return Reaction(note=f"layout for fork {fid}, not the open one: kept for when it opens")
            return self._load(body, t, fork.fork_id)
        if isinstance(body, ForkOpen) and fork is not None:
            if self.layout is not None and self.layout[0] == fork.fork_id and before != fork.fork_id:
                return self._load(self.layout[1], t, fork.fork_id)  # its layout came first
            # until this fork's renderer publishes its layout there is nothing to scan
            self.layout = None
            self.scanner.load((), t, fork.fork_id)
        elif fork is None and before is not None:  # decided or undone: the next fork comes
            self.scanner.load((), t, None)
        return Reaction()

    def apply_settings(self, state: ConfigState) -> Reaction:
        """The person changed the scanning interval (protocol 1.5 ``config.state`` ``changed``): the next
        highlight moves after the new one. Any other state leaves the configuration as it started."""
        value = state.values.get(INTERVAL_SETTING)
        if state.changed != INTERVAL_SETTING or isinstance(value, bool) or not isinstance(value, int):
            return Reaction()
        self.scan = msgspec.structs.replace(self.scan, interval_ms=value)
        self.scanner.config = self.scan
        return Reaction(note=f"{INTERVAL_SETTING}={value}")

    def _load(self, layout: Layout, t: float, fork_id: str) -> Reaction:
        rows, unknown = layout_rows(layout)
        reaction = self._react(self.scanner.load(rows, t, fork_id), "layout")
        if unknown:
            reaction.note = (f"left out targets this version does not know: {', '.join(unknown)} "
                             f"(renderer {layout.renderer}) {reaction.note}").strip()
            if not self._warned.issuperset(unknown):  # once per id, not at every layout
                self._warned.update(unknown)
                log.warning("renderer %s shows targets this version cannot scan (a newer protocol?): %s",
                            layout.renderer, ", ".join(unknown))
        return reaction

    def tick(self, now: int) -> Reaction:
        """Bus time ``now`` (ns): in auto mode the highlight moves when its interval is up."""
        return self._react(self.scanner.tick(now / 1e6), "scan")

    @property
    def deadline_ns(self) -> int | None:
        """When :meth:`tick` should next be called (bus ns); None: nothing moves by itself."""
        d = self.scanner.deadline
        return None if d is None else int(d * 1e6)

    # ------------------------------------------------------------ key side
    def feed(self, ev: KeyEvent) -> Reaction:
        self._pressed_ns = ev.t_ns
        try:
            return super().feed(ev)
        finally:
            self._pressed_ns = None

    def perform(self, action: str) -> Reaction:
        switch = SWITCH_ACTIONS.get(action)
        if switch is None:
            return super().perform(action)
        at = self._pressed_ns if self._pressed_ns is not None else now_ns()
        return self._react(self.scanner.press(at / 1e6, switch), action)

    # ------------------------------------------------------------ out
    def _react(self, events: list[ScanEvent], action: str) -> Reaction:
        """The scanner's events as protocol bodies for the open fork (paused between forks: the last one,
        whose Resume the scanner scans)."""
        fid = self.forks.fork_id
        if fid is None and self.paused and isinstance(self.scanner.key, str) and self.forks.is_stale(self.scanner.key):
            fid = self.scanner.key
        reaction = Reaction(action=action)
        notes: list[str] = []
        for ev in events:
            if isinstance(ev, ScanFocus):
                notes.append(f"highlight={ev.target or ','.join(ev.group) or '-'}")
                if fid is not None:
                    reaction.emits.append(Emit(Focus(index=None, target=ev.target, group=list(ev.group),
                                                     source=self.source, kind=self.kind), fid))
            elif isinstance(ev, ScanSelect):
                notes.append(f"select={ev.target}" + ("" if fid else " (no open fork: not sent)"))
                if fid is not None:
                    reaction.emits.append(Emit(Select(target=ev.target, source=self.source, kind=self.kind), fid))
            elif isinstance(ev, (ScanRest, ScanWake)):
                detail = REST_DETAIL if isinstance(ev, ScanRest) else WAKE_DETAIL
                reaction.emits.append(Emit(SourceStatus(source=self.source, state="ok", detail=detail), None))
                notes.append(detail)
        reaction.note = " ".join(notes)
        return reaction


class ScanCompanion:
    """Switch scanning inside a :class:`~razvilka.inputs.keyadapter.KeyAdapter` (its
    :class:`~razvilka.inputs.keyadapter.KeyCompanion`): follows layouts and runs the scanner's clock."""

    subscribe: tuple[str, ...] = ("render.layout.", "text.undo", "config.state.", "daemon.status.")

    def __init__(self, interp: ScanInterpreter) -> None:
        self.interp = interp
        self._moved = asyncio.Event()  # the deadline may have changed: look again

    def observe(self, msg: Message) -> Reaction:
        reaction = self.interp.follow(msg, now_ns())
        self._moved.set()
        return reaction

    def handle(self, ev: KeyEvent | StatusEvent) -> bool:
        self._moved.set()  # the interpreter feeds the key to the scanner; the clock looks again after it
        return False

    def tasks(self, send: Send, ready: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._clock(send, ready)]

    async def _clock(self, send: Send, ready: asyncio.Event) -> None:
        """Tick the scanner at its deadline, or sooner when a key or a layout moved it."""
        await ready.wait()
        while True:
            self._moved.clear()
            deadline = self.interp.deadline_ns
            timeout = None if deadline is None else max(0.0, (deadline - now_ns()) / 1e9)
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 a stop (a cancel) that comes as the timeout
                # fires leaves wait_for as a TimeoutError, and the clock would tick on, never stopping
                async with asyncio.timeout(timeout):
                    await self._moved.wait()
            except TimeoutError:
                pass
            send(self.interp.tick(now_ns()), "clock")


def add_scan_argument(parser: Any) -> None:
    """``--scan off|auto|step`` for a key adapter's command line (over ``scan.mode``)."""
    parser.add_argument("--scan", choices=("off", "auto", "step"),
                        help="switch scanning over the layout's targets: auto (one switch, timed: scan.interval_ms, "
                             "scan.loops), step (advance = a focus_next key, select = a confirm key); "
                             "default: scan.mode (off)")


def with_scanning(scan: ScanConfig, mode: str | None, interp: KeyInterpreter,
                  where: str) -> tuple[KeyInterpreter, KeyCompanion | None]:
    """The interpreter and companion a key adapter runs: ``interp`` as it is and none, or scanning when the
    mode (``--scan`` over ``scan.mode``) says so; ``where``: the key map's configuration key, for errors."""
    if mode is not None:
        scan = msgspec.structs.replace(scan, mode=mode)
    if scan.mode == "off":
        return interp, None
    check_switches(interp.keymap, scan, where)
    scanning = ScanInterpreter(interp.keymap, scan, source=interp.source, debounce_ms=interp.debounce.window_ns / 1e6,
                               typing=interp.typing, kind=interp.kind)
    return scanning, ScanCompanion(scanning)
