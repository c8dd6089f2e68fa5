"""What a fork's screen holds and in which order it is scanned: the one rule for every renderer.

Protocol 1.4 makes every action a target (protocol/targets.py), so one input alone reaches all of
them. This module decides the **rows of target ids in scan order** for one fork; the browser view
(``renderers/web/static/app.js``, ``screenRows``, mirrored and checked in Chromium by
tests/test_web_targets.py), the terminal view and the simulated-user benchmark
(``bench/simuser/screen.py``) all lay their targets out from it, so a switch user scans the same
order, and a P300 user sees the same flash grid, everywhere. Pure: no bus, no drawing.

The order (rows top to bottom, each row's items left to right), likeliest first where the model ranks:

1. ``candidates``: the fork's candidates, likeliest first (ties: by index).
2. ``lookahead``: the words of the shown candidate's look-ahead (``word:i:1`` ...), when one is
   shown (the browser draws it beside the focused candidate).
3. ``letters``: the ``likely`` likeliest next keys from ``fork.open`` ``letters`` (upper case folds
   into its key, probabilities added; ``" "`` is ``key:space``, only once a letter is typed).
4. ``edit``: space, delete, accept — only once a letter is typed (before that they do nothing).
5. ``commands``: back, more, pause, new; (1.5) speak (the last sentence), speak all, repeat, stop speaking,
   copy, type out, settings.
   After the likeliest letters, before the whole alphabet:
   a single-input person reaches Back or More in a few steps, and the likely words and letters
   still come first (issue 16).
6. ``abc-1`` ... : the whole alphabet of the fork's script in its fixed order, then ``'`` and
   ``-``, in rows of ``alphabet_cols`` (7: Latin 28 keys = 4 full rows, Cyrillic 35 = 5), where the
   person learned to find every letter.
7. ``phrases-1`` ... : (1.5) the quick phrases of ``phrases.state`` (``phrase:<id>``, in its order), in rows of
   ``phrase_cols``: after the alphabet, so that they cost no letter a scan step.

While the daemon is paused it takes nothing but Resume: one row, ``rest``: ``cmd:resume``.
A row left empty is left out. docs/renderers.md ("Scan order") says why in more words.

**P300 flashes in levels** (issue 16; :func:`p300_targets`, :func:`flash_groups`). Flashing every
target on screen costs every selection the rounds of a 50-target grid, even a likely word's. So a P300
screen flashes part of it at a time, the rest resting:

* **words**: the candidates (and the shown look-ahead's words), Back and More, plus ``ui:spell``,
  which stands for the keyboard (its prior is the chance the word is not on screen), and ``ui:menu``,
  which stands for the other commands and the quick phrases;
* **menu** (``ui:menu`` opens it): the other commands (pause, new, speak, ..., settings) and the quick
  phrases;
* **keys** (``ui:spell`` opens it): the likeliest letters, plus ``ui:abc``, which stands for the rest
  of the alphabet; once a letter is typed also the candidates, narrowing live, and space/delete/accept;
* **abc** (``ui:abc`` opens it): the whole alphabet (and space/delete/accept once a letter is typed).

``ui:words`` goes back to the words level from the others. A fork with a typed prefix opens on the
keys level. Each target's prior is the decoder's over what flashes, so opening the keyboard is itself
the evidence that the word is not on screen (docs/renderers.md, "P300"). The groups are the rows and
then the columns of a grid ``ceil(sqrt(n))`` wide laid over the flashed targets in screen order (not the
screen's own rows: a flash group need not be a drawn row, as in the checkerboard paradigm), so ``n``
targets cost ``rows + cols`` flashes a round and each target lights twice.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from razvilka.protocol.messages import ForkOpen
from razvilka.protocol.targets import ALPHABETS, KEY_JOINERS, Script, is_key_char

#: Keys in the likeliest-letters row.
LIKELY_LETTERS = 7
#: Keys per row of the alphabet (Latin 26 + ' - = 4 rows of 7; Cyrillic 33 + 2 = 5 rows of 7).
ALPHABET_COLS = 7
#: The command row (``cmd:resume`` stands in for ``cmd:pause`` while paused); 1.5: the text goes out, settings.
COMMANDS = ("back", "more", "pause", "new", "speak", "speak_all", "repeat", "stop_speaking", "copy", "typeout",
            "settings")
#: Quick phrases per row (1.5).
PHRASE_COLS = 4
#: The edit row, once a letter is typed.
EDIT_KEYS = ("space", "delete", "accept")


@dataclass(frozen=True, slots=True)
class ScreenRow:
    """One scan row: a stable ``name`` (candidates, lookahead, letters, edit, commands, abc-N, rest)
    and its target ids in scan order."""

    name: str
    targets: tuple[str, ...]


def likely_keys(letters: Iterable[tuple[str, float]], *, typed: bool, likely: int = LIKELY_LETTERS) -> list[str]:
    """The likeliest-letters row: ``letters`` ((ch, prob), any order) folded onto keys, likeliest first
    (ties keep their order), at most ``likely``; characters no key types are left out."""
    probs = key_probs(letters, typed=typed)
    ranked = sorted(probs, key=lambda t: -probs[t])  # stable: ties keep their first place
    return ranked[:max(0, likely)]


def key_probs(letters: Iterable[tuple[str, float]], *, typed: bool) -> dict[str, float]:
    """``letters`` ((ch, prob)) folded onto the keys that type them: upper case into its key (probabilities
    added), ``" "`` onto ``key:space`` once a letter is typed; characters no key types are left out. A
    renderer draws a likely key's weight from this."""
    probs: dict[str, float] = {}
    for ch, prob in letters:
        low = ch.lower()
        if low == " ":
            if not typed:  # a space ends a typed word; with nothing typed it does nothing
                continue
            target = "key:space"
        elif is_key_char(low):
            target = f"key:{low}"
        else:
            continue
        probs[target] = probs.get(target, 0.0) + float(prob)
    return probs


def alphabet_rows(script: str, alphabet_cols: int = ALPHABET_COLS) -> list[tuple[str, ...]]:
    """The whole keyboard of ``script`` (unknown: Latin) in its fixed order, ``'`` and ``-`` last."""
    if alphabet_cols < 1:
        raise ValueError(f"alphabet_cols must be at least 1, got {alphabet_cols}")
    known: Script = "cyrillic" if script == "cyrillic" else "latin"  # one this version does not know is Latin
    keys = [f"key:{ch}" for ch in ALPHABETS[known] + KEY_JOINERS]
    return [tuple(keys[i:i + alphabet_cols]) for i in range(0, len(keys), alphabet_cols)]


def screen_rows(candidates: Sequence[tuple[int, float]], letters: Iterable[tuple[str, float]] = (),
                script: str = "latin", *, prefix: str = "", paused: bool = False,
                lookahead: tuple[int, int] | None = None, likely: int = LIKELY_LETTERS,
                alphabet_cols: int = ALPHABET_COLS, phrases: Sequence[str] = (),
                phrase_cols: int = PHRASE_COLS) -> tuple[ScreenRow, ...]:
    """The rows of one fork's screen in scan order (module docstring).

    ``candidates``: (index, prob); ``letters``: ``fork.open`` ``letters`` as (ch, prob); ``prefix``:
    the letters typed in this fork; ``lookahead``: (candidate index, words shown) of the look-ahead on
    screen, if any; ``paused``: the daemon is paused (Resume alone); ``phrases``: the quick phrases' ids."""
    if paused:
        return (ScreenRow("rest", ("cmd:resume",)),)
    typed = bool(prefix)
    ranked = sorted(candidates, key=lambda c: (-c[1], c[0]))
    rows = [ScreenRow("candidates", tuple(f"cand:{i}" for i, _ in ranked))]
    if lookahead is not None and lookahead[1] > 0:
        rows.append(ScreenRow("lookahead", tuple(f"word:{lookahead[0]}:{n}" for n in range(1, lookahead[1] + 1))))
    rows.append(ScreenRow("letters", tuple(likely_keys(letters, typed=typed, likely=likely))))
    if typed:
        rows.append(ScreenRow("edit", tuple(f"key:{k}" for k in EDIT_KEYS)))
    rows.append(ScreenRow("commands", tuple(f"cmd:{c}" for c in COMMANDS)))
    rows += [ScreenRow(f"abc-{n}", row) for n, row in enumerate(alphabet_rows(script, alphabet_cols), 1)]
    ids = [f"phrase:{p}" for p in phrases]
    cols = max(1, phrase_cols)
    rows += [ScreenRow(f"phrases-{n}", tuple(ids[i:i + cols])) for n, i in enumerate(range(0, len(ids), cols), 1)]
    return tuple(r for r in rows if r.targets)


def fork_rows(body: ForkOpen, *, paused: bool = False, lookahead: tuple[int, int] | None = None,
              likely: int = LIKELY_LETTERS, alphabet_cols: int = ALPHABET_COLS,
              phrases: Sequence[str] = ()) -> tuple[ScreenRow, ...]:
    """:func:`screen_rows` of a ``fork.open`` body."""
    return screen_rows([(c.index, c.prob) for c in body.candidates], [(x.ch, x.prob) for x in body.letters],
                       body.script, prefix=body.prefix, paused=paused, lookahead=lookahead, likely=likely,
                       alphabet_cols=alphabet_cols, phrases=phrases)


def target_rows(rows: Sequence[ScreenRow]) -> tuple[tuple[str, ...], ...]:
    """Just the target ids, row by row (``inputs/scan.py``'s ``Rows``)."""
    return tuple(r.targets for r in rows)


# ---------------------------------------------------------------- P300: what flashes, in which groups
#: A P300 screen's level (module docstring): words (the candidates, Back, More), menu (the other commands,
#: the quick phrases), keys (the likeliest letters), abc (the whole alphabet).
P300Level = Literal["words", "menu", "keys", "abc"]
#: The commands that flash at the P300 words level; the others rest behind :data:`MENU_TARGET`.
WORDS_COMMANDS = ("back", "more")
#: The P300 target standing for the keyboard at the words level; choosing it opens the keys level.
SPELL_TARGET = "ui:spell"
#: The P300 target standing for the rest of the alphabet at the keys level; choosing it opens the abc level.
ABC_TARGET = "ui:abc"
#: The P300 target standing for the other commands and the quick phrases at the words level.
MENU_TARGET = "ui:menu"
#: The P300 target at the other levels that goes back to the words level.
WORDS_TARGET = "ui:words"
#: Rows whose targets are the keyboard's letter keys (the likeliest letters, the alphabet).
KEYBOARD_ROWS = ("letters", "abc-")
#: Where each level's own targets lead (target -> level), for a person finding the way to a target.
P300_MOVES: dict[str, tuple[tuple[str, P300Level], ...]] = {
    "words": ((SPELL_TARGET, "keys"), (MENU_TARGET, "menu")),
    "menu": ((WORDS_TARGET, "words"),),
    "keys": ((ABC_TARGET, "abc"), (WORDS_TARGET, "words")),
    "abc": ((WORDS_TARGET, "words"),),
}


def p300_level(prefix: str) -> P300Level:
    """The level a fork's P300 screen opens on: the keys level once a letter is typed, else the words level."""
    return "keys" if prefix else "words"


def p300_targets(rows: Sequence[ScreenRow], level: P300Level) -> tuple[str, ...]:
    """The targets a P300 screen flashes at ``level`` (module docstring), each once, in screen order.

    * ``words``: the candidates, the shown look-ahead's words, the edit keys once a letter is typed,
      the :data:`WORDS_COMMANDS`, then :data:`SPELL_TARGET` and :data:`MENU_TARGET`;
    * ``menu``: the other commands and the quick phrases, then :data:`WORDS_TARGET`;
    * ``keys``: once a letter is typed (the ``edit`` row is there) the candidates; the likeliest
      letters; the edit keys; then :data:`ABC_TARGET` and :data:`WORDS_TARGET`;
    * ``abc``: the alphabet, the edit keys once a letter is typed, then :data:`WORDS_TARGET`;
    * paused (the ``rest`` row): ``cmd:resume`` alone, at any level.
    """
    if any(r.name == "rest" for r in rows):
        return tuple(dict.fromkeys(t for r in rows for t in r.targets))

    def named(*names: str) -> list[str]:
        return [t for r in rows if r.name.startswith(names) for t in r.targets]

    typed = any(r.name == "edit" for r in rows)
    top = tuple(f"cmd:{c}" for c in WORDS_COMMANDS)
    if level == "words":
        out = (named("candidates", "lookahead", "edit") + [t for t in named("commands") if t in top]
               + [SPELL_TARGET, MENU_TARGET])
    elif level == "menu":
        out = [t for t in named("commands") if t not in top] + named("phrases-") + [WORDS_TARGET]
    elif level == "keys":
        out = (named("candidates") if typed else []) + named("letters") + named("edit") + [ABC_TARGET, WORDS_TARGET]
    else:
        out = named("abc-") + named("edit") + [WORDS_TARGET]
    return tuple(dict.fromkeys(out))


def p300_path(rows: Sequence[ScreenRow], target: str, start: P300Level) -> list[tuple[P300Level, str]]:
    """The fewest P300 selections from level ``start`` to ``target``: (level, target chosen there) for each
    level target on the way (:data:`P300_MOVES`), then ``target`` at the level that flashes it.
    ValueError when no level reachable flashes it."""
    queue: list[tuple[P300Level, list[tuple[P300Level, str]]]] = [(start, [])]
    seen = {start}
    while queue:
        level, path = queue.pop(0)
        here = p300_targets(rows, level)
        if target in here:
            return [*path, (level, target)]
        for via, to in P300_MOVES[level]:
            if to not in seen and via in here:
                seen.add(to)
                queue.append((to, [*path, (level, via)]))
    raise ValueError(f"no P300 level of this screen flashes {target!r}")


def flash_groups(targets: Sequence[str]) -> list[tuple[str, ...]]:
    """The P300 flash groups of ``targets`` (distinct, in screen order): the rows, then the columns, of a
    grid ``ceil(sqrt(n))`` wide laid over them; one row alone flashes item by item. Each target is the
    only one in both its row and its column, so a round (each group once, in a random order) lights it
    twice and singles it out."""
    n = len(targets)
    if n == 0:
        return []
    cols = math.ceil(math.sqrt(n))
    if n <= cols:
        return [(t,) for t in targets]
    rows = [tuple(targets[i:i + cols]) for i in range(0, n, cols)]
    return rows + [tuple(targets[i] for i in range(c, n, cols)) for c in range(cols)]


def flash_group_count(n: int) -> int:
    """How many groups :func:`flash_groups` makes of ``n`` targets (a round's flashes)."""
    return len(flash_groups([str(i) for i in range(n)]))


__all__ = ["ABC_TARGET", "ALPHABET_COLS", "COMMANDS", "EDIT_KEYS", "KEYBOARD_ROWS", "LIKELY_LETTERS", "MENU_TARGET",
           "P300_MOVES", "PHRASE_COLS", "SPELL_TARGET", "WORDS_COMMANDS", "WORDS_TARGET", "P300Level", "ScreenRow",
           "alphabet_rows", "flash_group_count", "flash_groups", "fork_rows", "key_probs", "likely_keys", "p300_level",
           "p300_path", "p300_targets", "screen_rows", "target_rows"]
