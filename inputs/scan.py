"""Switch scanning: one switch (automatic) or two (step) reach every target on screen.

A pure state machine, run by the keyboard and foot-switch adapters (inputs/scanswitch.py) and by
:func:`cost_to_select` for a simulated switch user: no bus, no clock of its own (times come in as
milliseconds of any monotonic clock), so every rule below is tested by hand-worked cases
(tests/test_scan.py).

Rows then items (row-column scanning, as Grid 3, OptiKey and AAC keyboards do):

* The highlight moves over the rows; a press on the highlighted row enters it and the highlight
  moves over its items; a press on the highlighted item selects it. Then scanning waits for the
  next layout (the fork the selection opened) and starts again at its first row. If none comes
  (the daemon refused the selection) it goes on after ``WAIT_MS`` (auto) or at the next press (step).
* A row of one item selects that item on entering (one press, not two).
* A layout of one row scans its items straight away (there is no row to choose).
* After ``loops`` passes over a row's items with no press, scanning goes back to the rows, on the
  row after it. With ``exit_item`` the row itself is highlighted again after its last item (the
  "exit" step, drawn as the row's highlight); a press there goes back to the rows at once.
* ``auto`` (one switch): the highlight moves every ``interval_ms``. After ``loops`` full passes
  over the rows with no press, scanning rests (the highlight goes out, nothing moves); a press
  wakes it at the first row and selects nothing. A press of ``advance`` moves the highlight now.
* ``step`` (two switches): ``advance`` moves the highlight, ``select`` enters or selects; no timer,
  so no rest.
* A new fork, or a layout whose rows changed, restarts at the first row (rest stays rest: a
  person who stopped is not woken by what another input did). But when the same fork's rows
  change around the row being scanned, and that row is still there as it was, the highlight
  stays where it is: the browser draws the highlighted candidate's look-ahead as a row of its own,
  which must not throw the person back to the top at every step along the candidates.
* A press counts for what was highlighted when the switch went down: a press stamped before the
  last timed move (the adapter saw it a few milliseconds late) acts on the highlight before it.

The scan order is the layout's: rows in ``row`` order, items in ``col`` order (renderers put the
likeliest candidates and letters first). A layout without rows is grouped by height: boxes whose
vertical centres are within half a box height form a row, rows top to bottom, candidates by index
(index 0 is the likeliest), then other targets left to right. See :func:`scan_rows`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import Layout
from razvilka.protocol.targets import cand, parse_target

ScanMode = Literal["off", "auto", "step"]
Switch = Literal["select", "advance"]
Rows = tuple[tuple[str, ...], ...]


class ScanConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[scan]``: switch scanning for the keyboard and foot-switch adapters (docs/inputs.md, "Scanning")."""

    mode: ScanMode = "off"  # off: keys act as mapped; auto: one switch, timed; step: advance + select
    interval_ms: Annotated[int, Meta(ge=100, le=60_000)] = 1000  # auto: how long each highlight stays
    loops: Annotated[int, Meta(ge=1, le=100)] = 3  # passes over a row's items (back to rows), over rows (rest)
    exit_item: bool = False  # after a row's last item, highlight the row again: a press there leaves it
    renderer: str = ""  # scan this renderer's render.layout ("" = whichever published one last)


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class ScanFocus:
    """What is highlighted now: a row (``group``), one item (``target``), or nothing (both empty)."""

    group: tuple[str, ...] = ()
    target: str | None = None


@dataclass(frozen=True, slots=True)
class ScanSelect:
    """The person chose ``target``."""

    target: str


@dataclass(frozen=True, slots=True)
class ScanRest:
    """Automatic scanning stopped after ``loops`` passes with no press; a press wakes it."""


@dataclass(frozen=True, slots=True)
class ScanWake:
    """A press woke scanning from rest (it selects nothing)."""


ScanEvent = ScanFocus | ScanSelect | ScanRest | ScanWake
NOTHING = ScanFocus()

Level = Literal["empty", "rows", "items", "wait", "rest"]
#: After a selection, how long (at least one interval) automatic scanning waits for the next layout
#: before it scans the old one again: a new fork takes the model a moment, and a highlight moving on
#: the screen the person just chose from would only mislead.
WAIT_MS = 2000


@dataclass(frozen=True, slots=True)
class _State:
    """Where the scan was, to take back a timed move that a press stamped earlier beat."""

    level: Level
    row: int
    item: int
    shown: int
    deadline: float | None
    resting: bool
    since: float


class Scanner:
    """Row-then-item scanning over one layout's targets; feed it times, presses and layouts.

    Every method returns the events it caused, in order. In ``auto`` mode call :meth:`tick` at
    :attr:`deadline` (or later: one step per call, so each highlight stays ``interval_ms`` at least).
    """

    def __init__(self, config: ScanConfig) -> None:
        if config.mode == "off":
            raise ValueError("Scanner needs scan.mode auto or step, not off")
        self.config = config
        self.rows: Rows = ()
        self.key: object = None          # which fork the rows belong to
        self.level: Level = "empty"
        self.row = 0
        self.item = 0                    # == len(row) on the exit step
        self.shown = 0                   # highlights shown at this level since the last press
        self.deadline: float | None = None
        self.resting = False
        self.since = 0.0                 # when the current highlight appeared
        self._before: _State | None = None  # the state before the last timed move

    # ------------------------------------------------------------ state
    @property
    def auto(self) -> bool:
        return self.config.mode == "auto"

    @property
    def one_row(self) -> bool:
        """A layout of one row scans its items at the top level."""
        return len(self.rows) == 1

    @property
    def highlight(self) -> ScanFocus:
        """What is highlighted now (the last focus event's content)."""
        if self.level == "rows":
            return ScanFocus(group=self.rows[self.row])
        if self.level == "items":
            row = self.rows[self.row]
            if self.item == len(row):
                return ScanFocus(group=row)  # the exit step
            return ScanFocus(target=row[self.item])
        return NOTHING

    def _pass_len(self) -> int:
        if self.level == "rows":
            return len(self.rows)
        extra = 1 if self.config.exit_item and not self.one_row else 0
        return len(self.rows[self.row]) + extra

    def _state(self) -> _State:
        return _State(self.level, self.row, self.item, self.shown, self.deadline, self.resting, self.since)

    def _mark(self, now: float, before: _State | None = None) -> None:
        """A highlight appeared at ``now``; ``before``: the state a timed move left."""
        self.since, self._before = now, before

    def _schedule(self, now: float) -> None:
        self.deadline = now + self.config.interval_ms if self.auto else None

    def _top(self, now: float) -> list[ScanEvent]:
        """Start at the first row (or, with one row, its first item)."""
        self.row, self.item, self.shown = 0, 0, 1
        if not self.rows:
            self.level, self.deadline = "empty", None
            return [NOTHING]
        self.level = "items" if self.one_row else "rows"
        self._schedule(now)
        return [self.highlight]

    # ------------------------------------------------------------ inputs
    def load(self, rows: Iterable[Iterable[str]], now: float, key: object = None) -> list[ScanEvent]:
        """A layout arrived: ``rows`` of target ids in scan order, for fork ``key``.

        The same fork with the same rows changes nothing (a renderer republishes its layout on a
        resize or a look-ahead), nor do the same fork's new rows that keep the row being scanned;
        a new fork or other rows restart at the first row."""
        new_rows = tuple(tuple(r) for r in rows)
        new_rows = tuple(r for r in new_rows if r)  # an empty row cannot be scanned
        if key == self.key and self.level != "wait":
            if new_rows == self.rows:
                return []
            kept = self._kept_row(new_rows)
            if kept is not None:  # rows came or went around it: the highlight stays, so does its clock
                self.rows, self.row = new_rows, kept
                return []
        self.key, self.rows = key, new_rows
        self._mark(now)
        if self.resting:
            self.row, self.item, self.shown, self.deadline = 0, 0, 0, None
            return []
        return self._top(now)

    def _kept_row(self, new_rows: Rows) -> int | None:
        """Where the row highlighted (or being scanned) now is among ``new_rows``; None when it is gone,
        changed, or the layout changed between one row (items at the top) and several."""
        if self.level not in ("rows", "items") or (len(new_rows) == 1) != self.one_row:
            return None
        current = self.rows[self.row]
        return next((i for i, r in enumerate(new_rows) if r == current), None)

    def tick(self, now: float) -> list[ScanEvent]:
        """Time passed: in ``auto`` mode, move the highlight one step if its time is up."""
        if not self.auto or self.deadline is None or now < self.deadline:
            return []
        before = self._state()
        if self.level == "wait":  # the selection opened no new layout (refused, or paused): go on
            events = self._top(now)
        else:
            events = self._step(now, timed=True)
        self._mark(now, before)
        return events

    def press(self, now: float, switch: Switch = "select") -> list[ScanEvent]:
        """A switch was pressed at ``now``: ``select`` enters or selects, ``advance`` moves the highlight."""
        before = self._before
        if before is not None and before.since <= now < self.since:  # it went down before the last move
            (self.level, self.row, self.item, self.shown, self.deadline, self.resting, self.since) = (
                before.level, before.row, before.item, before.shown, before.deadline, before.resting, before.since)
        events = self._press(now, switch)
        self._mark(now)
        return events

    def _press(self, now: float, switch: Switch) -> list[ScanEvent]:
        if self.resting:
            self.resting = False
            return [ScanWake(), *self._top(now)]
        if self.level == "empty":
            return []
        if self.level == "wait":
            return self._top(now)
        if switch == "advance":
            return self._step(now, timed=False)
        row = self.rows[self.row]
        if self.level == "rows":
            if len(row) == 1:
                return self._select(row[0], now)
            self.level, self.item, self.shown = "items", 0, 1
            self._schedule(now)
            return [self.highlight]
        if self.item == len(row):  # the exit step
            return self._leave_row(now)
        return self._select(row[self.item], now)

    # ------------------------------------------------------------ moves
    def _step(self, now: float, *, timed: bool) -> list[ScanEvent]:
        """Move the highlight one step, or end the level when its passes are used up."""
        if self.shown >= self.config.loops * self._pass_len():
            if self.level == "items" and not self.one_row:
                return self._leave_row(now)
            if self.auto and timed:
                return self._rest()
            self.shown = 0  # step mode never rests: go round again
        if self.level == "rows":
            self.row = (self.row + 1) % len(self.rows)
        else:
            self.item = (self.item + 1) % self._pass_len()
        self.shown += 1
        self._schedule(now)
        return [self.highlight]

    def _leave_row(self, now: float) -> list[ScanEvent]:
        """Back to the rows, on the row after the one left."""
        self.level, self.item, self.shown = "rows", 0, 1
        self.row = (self.row + 1) % len(self.rows)
        self._schedule(now)
        return [self.highlight]

    def _select(self, target: str, now: float) -> list[ScanEvent]:
        """Chosen: the highlight goes out until the next layout (auto: ``WAIT_MS`` at most)."""
        self.level, self.row, self.item, self.shown = "wait", 0, 0, 0
        self.deadline = now + max(self.config.interval_ms, WAIT_MS) if self.auto else None
        return [ScanSelect(target), NOTHING]

    def _rest(self) -> list[ScanEvent]:
        self.resting, self.deadline = True, None
        self.level, self.row, self.item, self.shown = "rest", 0, 0, 0
        return [ScanRest(), NOTHING]


# ---------------------------------------------------------------- order
@dataclass(frozen=True, slots=True)
class Placed:
    """A target drawn on screen, as a layout gives it (boxes and targets alike)."""

    target: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    row: int = 0
    col: int = 0


def _candidate_rank(target: str) -> tuple[int, int, int]:
    """Candidates first, by index (0 = likeliest), then their look-ahead words; others after."""
    parsed = parse_target(target)
    if parsed.candidate and parsed.index is not None:
        return (0, parsed.index, parsed.words)
    return (1, 0, 0)


def scan_rows(items: Sequence[Placed]) -> Rows:
    """The rows to scan, in order: by the layout's ``row``/``col``, or grouped by height without them.

    A target may be in several rows (a likely letter is shown again in the alphabet, where the
    person learned to find it) but is scanned once per row (a candidate in both ``boxes`` and
    ``targets``). Target ids are checked (``ProtocolError`` ``BAD_VALUE`` names a bad one)."""
    for p in items:
        parse_target(p.target)
    if not items:
        return ()
    groups: list[list[Placed]] = []
    if any(p.row or p.col for p in items):  # the renderer chose the order
        by_row: dict[int, list[Placed]] = {}
        for p in sorted(items, key=lambda p: (p.row, p.col)):  # stable: ties keep the layout's order
            by_row.setdefault(p.row, []).append(p)
        groups = list(by_row.values())
    else:
        for p in sorted(items, key=lambda p: p.y + p.h / 2):
            anchor = groups[-1][0] if groups else None
            if anchor is not None and abs((p.y + p.h / 2) - (anchor.y + anchor.h / 2)) <= max(anchor.h, p.h) / 2:
                groups[-1].append(p)
            else:
                groups.append([p])
        groups = [sorted(g, key=lambda p: (*_candidate_rank(p.target), p.x)) for g in groups]
    return tuple(tuple(dict.fromkeys(p.target for p in g)) for g in groups)


def layout_rows(layout: Layout) -> tuple[Rows, tuple[str, ...]]:
    """The rows to scan on a ``render.layout`` (its candidate ``boxes`` and, 1.4, its ``targets``),
    and the target ids left out because this version does not know them (a later minor's command)."""
    placed = [Placed(cand(b.index).id, b.x, b.y, b.w, b.h, b.row, b.col) for b in layout.boxes]
    unknown: list[str] = []
    for t in layout.targets:
        try:
            parse_target(t.target)
        except ProtocolError:
            unknown.append(t.target)
            continue
        placed.append(Placed(t.target, t.x, t.y, t.w, t.h, t.row, t.col))
    return scan_rows(placed), tuple(unknown)


# ---------------------------------------------------------------- cost
@dataclass(frozen=True, slots=True)
class ScanCost:
    """What reaching one target costs an ideal person (presses on time, never missing)."""

    steps: int       # highlight moves: each costs ``interval_ms`` in auto mode, an advance press in step mode
    presses: int     # every switch press, advances included
    time_ms: float   # auto: steps x interval (reaction time is the caller's to add); step: 0


def cost_to_select(rows: Rows, target: str, config: ScanConfig) -> ScanCost:
    """Run a :class:`Scanner` over ``rows`` with a person who presses as soon as ``target`` (or its
    row) is highlighted: the steps and presses one selection takes (the benchmark charges these)."""
    if not any(target in row for row in rows):
        raise ValueError(f"target {target!r} is not in the rows scanned")
    scanner = Scanner(config)
    events = scanner.load(rows, 0.0)
    now, steps, presses = 0.0, 0, 0
    for _ in range(sum(len(r) for r in rows) + len(rows) + 2):  # a path never needs more steps
        here = scanner.highlight
        if here.target == target or (scanner.level == "rows" and target in here.group):
            presses += 1
            events = scanner.press(now, "select")
            if ScanSelect(target) in events:
                return ScanCost(steps=steps, presses=presses, time_ms=now)
            continue
        steps += 1
        if scanner.auto:
            assert scanner.deadline is not None
            now = scanner.deadline
            events = scanner.tick(now)
        else:
            presses += 1
            events = scanner.press(now, "advance")
    raise AssertionError(f"scanning never reached {target!r}: {events}")
