"""The terminal view's targets: which there are, their scan order, and where they are drawn (cells).

Protocol 1.4 makes every action a target (protocol/targets.py), so one input alone can reach all
of them: the candidates, the command row (Back, More, Pause/Resume, New) and an on-screen keyboard
(the likeliest next letters from ``fork.open`` ``letters``, the alphabet of the fork's ``script`` in
fixed order, space, delete and accept). This module decides the rows and their order, packs
chunks of Rich text into lines while remembering where each target landed, and turns the
landed spots into a ``render.layout`` whose units are terminal cells (x = column, y = line).
No Textual here: the view only adds where each panel's content starts on the screen.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

from razvilka.protocol.messages import Box, Layout, TargetBox
from razvilka.protocol.targets import ALPHABETS, SCRIPTS, is_key_char, parse_target
from razvilka.renderers.tui.state import ViewState

#: Letters shown in the likeliest row (the model's top letters after the typed prefix).
LIKELIEST = 8
#: At most this many alphabet keys on one row: the alphabet is cut into rows of even length
#: (Latin 9-9-8, Cyrillic 11-11-11), so row-column scanning reaches any letter in few steps.
ALPHABET_ROW = 11
#: Captions in front of the keyboard's rows (not targets), padded so the keys line up.
CAPTION_W = 10
COMMAND_LABELS = {"back": "Back", "more": "More", "pause": "Pause", "resume": "Resume", "new": "New"}
EDIT_LABELS = {"space": "␣ space", "delete": "⌫ delete", "accept": "✓ accept"}


@dataclass(frozen=True, slots=True)
class Key:
    """One target as drawn: its id, what it shows, and the model's probability where it has one."""

    target: str
    label: str
    prob: float | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A scan row: targets highlighted together (``name`` is stable across forks: "letters", "abc-1")."""

    name: str
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Spot:
    """Where a target landed inside a panel's content: cells, ``col`` its place in its row's scan order."""

    target: str
    label: str
    row: str
    col: int
    x: int
    y: int
    w: int
    h: int = 1


def script_of(state: ViewState) -> str:
    """The keyboard layout to show: the fork's ``script``; one this view does not know is Latin."""
    fork = state.fork
    script = fork.body.script if fork is not None else "latin"
    return script if script in SCRIPTS else "latin"


def command_row(state: ViewState) -> Row:
    """Back, More, Pause (Resume while the daemon is paused), New."""
    pause = "resume" if state.paused else "pause"
    return Row("commands", tuple(Key(f"cmd:{name}", COMMAND_LABELS[name]) for name in ("back", "more", pause, "new")))


def likeliest_row(state: ViewState) -> Row:
    """The model's likeliest next characters after the typed prefix (" " is the space key), likeliest first.

    Characters no key can type (digits, punctuation) are left out; upper case folds into its key."""
    fork = state.fork
    keys: list[Key] = []
    seen: set[str] = set()
    letters = sorted(fork.body.letters, key=lambda letter: -letter.prob) if fork is not None else []
    for letter in letters:
        ch = letter.ch.lower()
        target = "key:space" if ch == " " else f"key:{ch}" if is_key_char(ch) else ""
        if not target or target in seen:
            continue
        seen.add(target)
        keys.append(Key(target, "␣" if ch == " " else ch, letter.prob))
        if len(keys) == LIKELIEST:
            break
    return Row("letters", tuple(keys))


def alphabet_rows(script: str) -> list[Row]:
    """The whole alphabet in its fixed order, cut into rows of even length (at most ``ALPHABET_ROW``)."""
    letters = ALPHABETS[script]  # type: ignore[index]
    n_rows = -(-len(letters) // ALPHABET_ROW)
    per_row = -(-len(letters) // n_rows)
    chunks = [letters[i:i + per_row] for i in range(0, len(letters), per_row)]
    return [Row(f"abc-{n + 1}", tuple(Key(f"key:{ch}", ch) for ch in chunk)) for n, chunk in enumerate(chunks)]


def edit_row() -> Row:
    return Row("edit", tuple(Key(f"key:{name}", label) for name, label in EDIT_LABELS.items()))


def candidate_row(state: ViewState) -> Row:
    """The open fork's candidates in the daemon's order (the order drawn and numbered)."""
    fork = state.fork
    if fork is None:
        return Row("candidates", ())
    return Row("candidates", tuple(Key(f"cand:{c.index}", c.word.strip(), c.prob) for c in fork.candidates))


def keyboard_rows(state: ViewState) -> list[Row]:
    """The keyboard panel's rows, top to bottom: likeliest letters, edit keys, the alphabet, commands."""
    rows = [likeliest_row(state), edit_row(), *alphabet_rows(script_of(state)), command_row(state)]
    return [row for row in rows if row.keys]


def scan_order(state: ViewState) -> list[str]:
    """Row names in scan order: candidates, likeliest letters, edit keys, the alphabet, then commands.

    While the daemon is paused it takes nothing but Resume, so the command row comes first."""
    names = ["candidates", *(row.name for row in keyboard_rows(state))]
    if state.paused:
        names.remove("commands")
        names.insert(0, "commands")
    return names


def rank_by_prob(keys: Sequence[Key]) -> dict[str, int]:
    """Scan position in a row: likeliest first (ties and keys without a probability keep their order)."""
    order = sorted(range(len(keys)), key=lambda i: (-(keys[i].prob or 0.0), i))
    return {keys[i].target: col for col, i in enumerate(order)}


# ---------------------------------------------------------------- packing
@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one line of text; ``key`` set when the piece is a target."""

    text: Text
    key: Key | None = None
    col: int = 0


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
                spots.append(Spot(chunk.key.target, chunk.key.label, name, chunk.col, shift + start, y, w))
            x = start + w
    return out, spots


# ---------------------------------------------------------------- the layout
def layout(placed: Mapping[tuple[int, int], Sequence[Spot]], order: Sequence[str], screen: tuple[int, int],
           renderer: str) -> Layout:
    """``render.layout`` of the spots, each panel's spots moved by its content's origin on the screen.

    Candidates go in ``boxes`` (a 1.3 gaze adapter still hit-tests them), the rest in ``targets``;
    ``row`` is the row's place in ``order`` (rows not in it go last), ``col`` its place in the row."""
    row_no = {name: n for n, name in enumerate(order)}
    boxes: list[Box] = []
    targets: list[TargetBox] = []
    for (ox, oy), spots in placed.items():
        for s in spots:
            row = row_no.get(s.row, len(order))
            x, y = float(ox + s.x), float(oy + s.y)
            parsed = parse_target(s.target)
            if parsed.kind == "cand" and parsed.index is not None:
                boxes.append(Box(index=parsed.index, x=x, y=y, w=float(s.w), h=float(s.h), row=row, col=s.col))
            else:
                targets.append(TargetBox(target=s.target, x=x, y=y, w=float(s.w), h=float(s.h), row=row,
                                         col=s.col, label=s.label))
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
