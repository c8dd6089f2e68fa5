"""What a single-input person has on screen at one fork, and what reaching one target there costs.

Pure (no bus, no model), so every figure is tested by hand (tests/test_simulated_user.py).

The screen is the one every renderer draws, from the product's own rule (``renderers/screen.py``
:func:`screen_rows`): the candidates, the likeliest letters, space/delete/accept once a letter is
typed, the commands (back, more, pause, new), then the whole alphabet in its fixed order. Target
ids are protocol/targets.py's.

* **Scan order** (:func:`scan_rows`): ``renderers/screen.py``'s rows, ordered by the product's own
  ``inputs/scan.py`` :func:`scan_rows`; steps to reach a target are counted by its scanner
  (:func:`cost_to_select`), so the benchmark, the renderers and the switch adapters share one rule.
* **P300** (:func:`p300_items`, :func:`target_prior`, :func:`p300_path`): the product's levels
  (``renderers/screen.py`` :func:`p300_targets`): the words level flashes every target but the letter
  keys, plus ``ui:spell``; the keys level the likeliest letters and ``ui:abc`` (and, once a letter is
  typed, the candidates and space/delete/accept); the abc level the whole alphabet; ``ui:words`` goes
  back; a fork opens on the keys level once a letter is typed. A target not flashed at the level on
  screen costs the selections of the level targets on the way first.
  The groups are ``renderers/screen.py`` :func:`flash_groups` (rows + columns of a square grid). The
  prior of the target is the EEG adapter's own (``inputs/eeg/bayes.py`` :func:`item_prior`: candidates
  by their LM probability, letter keys by ``letters`` times the mass the candidates leave uncovered,
  ``ui:spell`` that mass, commands a small fixed share), over the targets flashed at that level.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from razvilka.inputs.scan import Placed, Rows, ScanConfig, cost_to_select
from razvilka.inputs.scan import scan_rows as product_scan_rows
from razvilka.protocol.targets import ALPHABETS, KEY_JOINERS, SCRIPTS, Script, is_key_char
from razvilka.renderers.screen import P300Level, ScreenRow, p300_level, p300_targets, screen_rows

# imported with bench/ on sys.path (bench/simulated_user.py and the tests put it there)
from simuser.costs import Step

#: Static letter-frequency order of English text (Lewand, *Cryptological Mathematics*, MAA 2000),
#: for the switch-letters baseline's scanning keyboard; space, the commonest character, goes first.
ENGLISH_FREQUENCY = "etaoinshrdlcumwfgypbvkjxqz"


def key_target(ch: str) -> str:
    """The key that types ``ch`` (" " is key:space); ValueError when no key of the keyboard has it."""
    if ch == " ":
        return "key:space"
    if not is_key_char(ch):
        raise ValueError(f"no key of the on-screen keyboard types {ch!r} (keys: lower-case letters, "
                         f"{KEY_JOINERS!r}, space)")
    return f"key:{ch}"


def script_of(name: str) -> Script:
    """``fork.open`` ``script``; a value a receiver does not know counts as latin (protocol 1.4)."""
    return "cyrillic" if name == "cyrillic" else "latin"


@dataclass(frozen=True)
class Screen:
    """One fork's screen: ``candidates`` shown, ``letters`` (ch, prob) likeliest first, the script,
    the letters typed in this fork (``prefix``: space, delete and accept are on screen once there are some)."""

    candidates: int
    letters: Sequence[tuple[str, float]] = ()
    script: Script = "latin"
    cand_probs: Mapping[int, float] = field(default_factory=dict)
    prefix: str = ""

    def named_rows(self) -> tuple[ScreenRow, ...]:
        """The screen's rows (``renderers/screen.py`` ``ScreenRow``: name and target ids) in the product's order;
        candidates without a probability given keep index order (index 0 is the likeliest)."""
        cands = [(i, float(self.cand_probs.get(i, 0.0))) for i in range(self.candidates)]
        return screen_rows(cands, self.letters, self.script, prefix=self.prefix)

    def rows(self) -> Rows:
        """The screen's rows of target ids in the product's order (``renderers/screen.py``)."""
        return tuple(r.targets for r in self.named_rows())


def scan_rows(screen: Screen) -> Rows:
    """The rows a scanning person steps through, in order (module docstring, "Scan order").

    Laid out as a renderer publishes them (row/col per target) and ordered by the product's own
    ``inputs/scan.py`` :func:`scan_rows`."""
    placed = [Placed(target=t, row=r, col=c) for r, row in enumerate(screen.rows()) for c, t in enumerate(row)]
    return product_scan_rows(placed)


#: Automatic one-switch scanning with the product's defaults (``[scan]``: interval 1000 ms, 3 loops).
AUTO_SCAN = ScanConfig(mode="auto")


def scan_units(rows: Rows, target: str, config: ScanConfig = AUTO_SCAN) -> int:
    """Scan steps to choose ``target``, counting each press as a step too (it takes its highlight's
    interval), as MacKenzie's scan steps per character do: highlight moves + switch presses."""
    cost = cost_to_select(rows, target, config)
    return cost.steps + cost.presses


def p300_items(screen: Screen, level: P300Level | None = None) -> list[str]:
    """The distinct targets a P300 person's screen flashes at ``level`` (default: the level the fork opens
    on, ``renderers/screen.py`` :func:`p300_level`), in the product's order (:func:`p300_targets`)."""
    return list(p300_targets(screen.named_rows(), p300_level(screen.prefix) if level is None else level))


def p300_path(screen: Screen, target: str) -> list[tuple[P300Level, str]]:
    """The P300 person's selections to ``target`` from the level the fork opens on (``renderers/screen.py``
    :func:`p300_path`): (level, ``ui:spell`` / ``ui:abc`` / ``ui:words``) for each level target on the way,
    then (level, ``target``). A look-ahead word goes with its candidate."""
    from razvilka.renderers.screen import p300_path as product_path

    probe = target if not target.startswith("word:") else "cand:" + target.split(":")[1]
    path = product_path(screen.named_rows(), probe, p300_level(screen.prefix))
    return [*path[:-1], (path[-1][0], target)]


def target_prior(screen: Screen, target: str, level: P300Level | None = None) -> float:
    """The P300 decoder's prior of ``target`` among :func:`p300_items` at ``level`` (the EEG adapter's rule
    and defaults)."""
    from razvilka.inputs.eeg.bayes import item_prior
    from razvilka.inputs.eeg.config import EegConfig

    items = p300_items(screen, level)
    if target not in items:  # a look-ahead word is its candidate's prior
        from razvilka.protocol.targets import parse_target

        t = parse_target(target)
        target = f"cand:{t.index}" if t.index is not None else target
    c = EegConfig()
    prior = item_prior(items, dict(screen.cand_probs), dict(screen.letters), weight=c.prior_weight,
                       floor=c.prior_floor, command_share=c.command_prior)
    return float(prior[items.index(target)])


# ---------------------------------------------------------------- the letters-only baselines
#: switch-letters: keys per row of its letters-only keyboard (30 keys: a full 5x6 grid, the static layout
#: that scans fastest, so the baseline is not flattered).
LETTERS_COLS = 6


def letters_scan_rows(script: Script = "latin") -> Rows:
    """switch-letters: a letters-only scanning keyboard, no prediction: space first, then the letters
    by English frequency (other scripts: alphabetical), then ' - and delete, in rows of :data:`LETTERS_COLS`."""
    letters = ENGLISH_FREQUENCY if script == "latin" else ALPHABETS[script]
    keys = ["key:space"] + [f"key:{ch}" for ch in letters + KEY_JOINERS] + ["key:delete"]
    return tuple(tuple(keys[i:i + LETTERS_COLS]) for i in range(0, len(keys), LETTERS_COLS))


#: p300-letters: the classic 6x6 speller matrix (Farwell & Donchin 1988), uniform prior, no language model.
SPELLER_ITEMS = 36


def switch_letters_steps(phrase: str) -> list[Step]:
    """The switch-letters baseline: every character chosen on :func:`letters_scan_rows` (one step each).

    Upper case is typed with its lower-case key (no shift, as the single-input keyboard); a character
    no key has is charged as the key farthest in the scan (a stand-in: the keyboard cannot type it)."""
    rows = letters_scan_rows(phrase_script(phrase))
    keys = {t for row in rows for t in row}
    cost = {t: scan_units(rows, t) for t in keys}
    worst = max(cost.values())
    out = []
    for ch in phrase.lower():
        try:
            t = key_target(ch)
        except ValueError:
            t = ""
        out.append(Step("letter", scan=cost.get(t, worst)))
    return out


def p300_letters_steps(phrase: str) -> list[Step]:
    """The p300-letters baseline: every character one selection on the 6x6 speller, uniform prior."""
    return [Step("letter", prior=1.0 / SPELLER_ITEMS, items=SPELLER_ITEMS) for _ in phrase]


def phrase_script(phrase: str) -> Script:
    """The keyboard a phrase is written on (protocol/targets.py's rule, as ``keyboard.script = auto``)."""
    from razvilka.protocol.targets import text_script

    return text_script(phrase)


__all__ = ["SCRIPTS", "Screen", "scan_rows", "scan_units", "p300_items", "p300_path", "target_prior", "key_target",
           "letters_scan_rows", "SPELLER_ITEMS", "AUTO_SCAN", "script_of", "phrase_script", "switch_letters_steps",
           "p300_letters_steps"]
