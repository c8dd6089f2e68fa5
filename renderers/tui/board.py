"""The terminal view's targets: which there are, their scan order, and where they are drawn (cells).

Protocol 1.4 makes every action a target (protocol/targets.py), so one input alone can reach all
of them. Which targets a fork's screen holds and in which order they are scanned is
``renderers/screen.py``'s rule, the one the browser view and the benchmark follow too: the
candidates, the likeliest letters, space/delete/accept once a letter is typed, the commands, the
alphabet of the fork's ``script`` in rows of 7, the quick phrases; Resume alone while paused. This
module takes those rows (leaving out what the terminal has not: its settings are its configuration
file), gives each target its label, packs chunks of Rich text into lines while remembering where
each target landed, and turns the landed spots into a ``render.layout`` whose units are terminal
cells (x = column, y = line) and whose row/col are the rule's. No Textual here: the view only adds
where each panel's content starts on the screen.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

from razvilka.protocol.messages import Box, Layout, TargetBox
from razvilka.protocol.targets import SCRIPTS, parse_target
from razvilka.renderers.screen import ScreenRow, fork_rows, key_probs, screen_rows
from razvilka.renderers.tui.state import ViewState

#: Captions in front of the keyboard's rows (not targets), padded so the keys line up.
CAPTION_W = 10
COMMAND_LABELS = {"back": "Back", "more": "More", "pause": "Pause", "resume": "Resume", "new": "New",
                  "speak": "Speak", "speak_all": "Speak all", "repeat": "Repeat", "stop_speaking": "Stop",
                  "copy": "Copy", "typeout": "Type out"}
EDIT_LABELS = {"space": "␣ space", "delete": "⌫ delete", "accept": "✓ accept"}
#: Targets of the screen rule this view does not draw: its settings are its configuration file (the
#: browser's settings page is that renderer's own, ``cmd:settings`` never reaches the daemon).
NOT_DRAWN = frozenset({"cmd:settings"})
#: A quick phrase's key shows at most this many cells of its text.
PHRASE_LABEL = 28


@dataclass(frozen=True, slots=True)
class Key:
    """One target as drawn: its id, what it shows, and the model's probability where it has one."""

    target: str
    label: str
    prob: float | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A scan row as drawn (``name`` is the rule's: "candidates", "letters", "abc-1", "rest")."""

    name: str
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Spot:
    """Where a target landed inside a panel's content (cells), and the row it was drawn in."""

    target: str
    label: str
    row: str
    x: int
    y: int
    w: int
    h: int = 1


def script_of(state: ViewState) -> str:
    """The keyboard layout to show: the open (or last) fork's ``script``; one this view does not know is Latin."""
    return state.script if state.script in SCRIPTS else "latin"


def scan_rows(state: ViewState) -> tuple[ScreenRow, ...]:
    """This view's rows in scan order: ``renderers/screen.py``'s rule for the open fork (with none open:
    no candidates and no letters, the last fork's alphabet), less what this view does not draw."""
    phrases = [p.id for p in state.phrases]
    fork = state.fork
    if fork is not None:
        rows = fork_rows(fork.body, paused=state.paused, phrases=phrases)
    else:
        rows = screen_rows([], (), script_of(state), paused=state.paused, phrases=phrases)
    kept = (ScreenRow(r.name, tuple(t for t in r.targets if t not in NOT_DRAWN)) for r in rows)
    return tuple(r for r in kept if r.targets)


def label(state: ViewState, target: str) -> str:
    """What a target's key shows."""
    t = parse_target(target)
    if t.kind == "cmd":
        return COMMAND_LABELS.get(t.value, t.value)
    if t.kind == "key":
        return EDIT_LABELS.get(t.value, t.value)
    if t.kind == "phrase":
        text = Text(next((" ".join(p.text.split()) for p in state.phrases if p.id == t.value), t.value))
        text.truncate(PHRASE_LABEL, overflow="ellipsis")
        return text.plain
    return target


def candidate_row(state: ViewState) -> Row:
    """The open fork's candidates in the daemon's order (the order drawn and numbered)."""
    fork = state.fork
    if fork is None:
        return Row("candidates", ())
    return Row("candidates", tuple(Key(f"cand:{c.index}", c.word.strip(), c.prob) for c in fork.candidates))


def keyboard_rows(state: ViewState) -> list[Row]:
    """The keyboard panel's rows, top to bottom in scan order: every row of :func:`scan_rows` but the
    candidates (the cloud draws those). The likeliest letters carry their probability."""
    fork = state.fork
    probs = key_probs(((x.ch, x.prob) for x in fork.body.letters), typed=bool(fork.body.prefix)) if fork else {}
    rows: list[Row] = []
    for row in scan_rows(state):
        if row.name == "candidates":
            continue
        if row.name == "letters":
            keys = tuple(Key(t, "␣" if t == "key:space" else t[4:], probs.get(t)) for t in row.targets)
        else:
            keys = tuple(Key(t, label(state, t)) for t in row.targets)
        rows.append(Row(row.name, keys))
    return rows


# ---------------------------------------------------------------- packing
@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one line of text; ``key`` set when the piece is a target."""

    text: Text
    key: Key | None = None


def pack(rows: Iterable[tuple[str, Sequence[Chunk]]], width: int, *, gap: int = 2, center: bool = False,
         indent: int = 0) -> tuple[Text, list[Spot]]:
    """Lay chunks out in lines of ``width`` cells, a row's chunks wrapping onto more lines when they
    must (a wrapped line starts at ``indent``); every row starts a new line. Returns the text (no
    further wrapping: each line is already cut) and where each target chunk landed."""
    width = max(1, width)
    lines: list[list[tuple[int, str, Chunk]]] = []
    for name, chunks in rows:
        line: list[tuple[int, str, Chunk]] = []
        x = 0
        for chunk in chunks:
            w = cell_len(chunk.text.plain)
            start = x + (gap if line else 0)
            if line and start + w > width:
                lines.append(line)
                line, start = [], indent
            line.append((start, name, chunk))
            x = start + w
        lines.append(line)
    out = Text(no_wrap=True, overflow="crop")
    spots: list[Spot] = []
    for y, line in enumerate(lines):
        if y:
            out.append("\n")
        used = (line[-1][0] + cell_len(line[-1][2].text.plain)) if line else 0
        shift = max(0, (width - used) // 2) if center else 0
        out.append(" " * shift)
        x = 0
        for start, name, chunk in line:
            out.append(" " * (start - x))
            out.append_text(chunk.text)
            w = cell_len(chunk.text.plain)
            if chunk.key is not None:
                spots.append(Spot(chunk.key.target, chunk.key.label, name, shift + start, y, w))
            x = start + w
    return out, spots


# ---------------------------------------------------------------- the layout
def layout(placed: Mapping[tuple[int, int], Sequence[Spot]], rows: Sequence[ScreenRow], screen: tuple[int, int],
           renderer: str) -> Layout:
    """``render.layout`` of the spots, each panel's spots moved by its content's origin on the screen.

    ``row``/``col`` are the target's place in ``rows`` (the scan rows); a spot drawn in a row that is
    not there, or that row lacks it, is no target now (a candidate while paused) and is left out.
    Candidates go in ``boxes`` (a 1.3 gaze adapter still hit-tests them), the rest in ``targets``."""
    where = {(r.name, t): (n, c) for n, r in enumerate(rows) for c, t in enumerate(r.targets)}
    boxes: list[Box] = []
    targets: list[TargetBox] = []
    for (ox, oy), spots in placed.items():
        for s in spots:
            if (s.row, s.target) not in where:
                continue
            row, col = where[(s.row, s.target)]
            x, y = float(ox + s.x), float(oy + s.y)
            parsed = parse_target(s.target)
            if parsed.kind == "cand" and parsed.index is not None:
                boxes.append(Box(index=parsed.index, x=x, y=y, w=float(s.w), h=float(s.h), row=row, col=col))
            else:
                targets.append(TargetBox(target=s.target, x=x, y=y, w=float(s.w), h=float(s.h), row=row,
                                         col=col, label=s.label))
    boxes.sort(key=lambda b: (b.row, b.col))
    targets.sort(key=lambda t: (t.row, t.col, t.y, t.x))
    return Layout(boxes=boxes, targets=targets, screen_w=float(max(1, screen[0])), screen_h=float(max(1, screen[1])),
                  renderer=renderer)


def hit(layout_: Layout, x: float, y: float) -> str | None:
    """The target drawn at cell ``(x, y)`` (a click), or None."""
    for box in layout_.boxes:
        if box.x <= x < box.x + box.w and box.y <= y < box.y + box.h:
            return f"cand:{box.index}"
    for t in layout_.targets:
        if t.x <= x < t.x + t.w and t.y <= y < t.y + t.h:
            return t.target
    return None
