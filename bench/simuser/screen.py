"""What a single-input person has on screen at one fork, and what reaching one target there costs.

Pure (no bus, no model), so every figure is tested by hand (tests/test_simulated_user.py).

The screen is the one issue 16 gives every renderer: the candidates, the on-screen keyboard (a
row of the likeliest letters, then the whole alphabet in its fixed order, then space, delete and
accept) and the commands (back, more, pause, new). Target ids are protocol/targets.py's.

* **Scan order** (:func:`scan_rows`): the candidates by probability (index order: index 0 is the
  likeliest), the likeliest-letters row (ranked by ``fork.open`` ``letters``; " " is
  ``key:space``), the commands, the alphabet in rows of :data:`ALPHABET_COLS`, then the keys row.
  Steps to reach a target are counted by the product's own scanner (``inputs/scan.py``
  :func:`cost_to_select`), so the benchmark and the switch adapters share one rule.
* **P300** (:func:`p300_items`, :func:`target_prior`): every distinct target on screen flashes, in
  rows and columns of a grid; the prior of the target is the EEG adapter's own
  (``inputs/eeg/bayes.py`` :func:`item_prior`: candidates by their LM probability, letter keys by
  ``letters`` times the mass the candidates leave uncovered, commands a small fixed share).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from razvilka.inputs.scan import Placed, Rows, ScanConfig, cost_to_select
from razvilka.inputs.scan import scan_rows as product_scan_rows
from razvilka.protocol.targets import ALPHABETS, KEY_JOINERS, SCRIPTS, Script, is_key_char

# imported with bench/ on sys.path (bench/simulated_user.py and the tests put it there)
from simuser.costs import Step

#: The likeliest-letters row: how many letters it shows (one row of the alphabet grid).
LIKELY_LETTERS = 6
#: Keys per row of the alphabet (a 6-column grid, as the 6x6 P300 speller's).
ALPHABET_COLS = 6
#: The commands on screen (cmd:resume replaces cmd:pause while paused; the person never pauses).
COMMANDS = ("back", "more", "pause", "new")
#: The keys row after the alphabet.
KEYS = ("space", "delete", "accept")
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
    """One fork's screen: ``candidates`` shown, ``letters`` (ch, prob) likeliest first, the script."""

    candidates: int
    letters: Sequence[tuple[str, float]] = ()
    script: Script = "latin"
    cand_probs: Mapping[int, float] = field(default_factory=dict)

    def likely(self) -> list[str]:
        """The likeliest-letters row: the first :data:`LIKELY_LETTERS` letters that have a key."""
        out: list[str] = []
        for ch, _ in self.letters:
            if ch == " " or is_key_char(ch):
                t = key_target(ch)
                if t not in out:
                    out.append(t)
            if len(out) == LIKELY_LETTERS:
                break
        return out

    def alphabet(self) -> list[str]:
        return [f"key:{ch}" for ch in ALPHABETS[self.script] + KEY_JOINERS]


def scan_rows(screen: Screen) -> Rows:
    """The rows a scanning person steps through, in order (module docstring, "Scan order").

    Laid out as a renderer publishes them (row/col per target) and ordered by the product's own
    ``inputs/scan.py`` :func:`scan_rows` (a letter in the likeliest row is scanned there only)."""
    rows: list[list[str]] = []
    if screen.candidates:
        rows.append([f"cand:{i}" for i in range(screen.candidates)])
    likely = screen.likely()
    if likely:
        rows.append(likely)
    rows.append([f"cmd:{c}" for c in COMMANDS])
    alpha = screen.alphabet()
    rows += [alpha[i:i + ALPHABET_COLS] for i in range(0, len(alpha), ALPHABET_COLS)]
    rows.append([f"key:{k}" for k in KEYS])
    placed = [Placed(target=t, row=r, col=c) for r, row in enumerate(rows) for c, t in enumerate(row)]
    return product_scan_rows(placed)


#: Automatic one-switch scanning with the product's defaults (``[scan]``: interval 1000 ms, 3 loops).
AUTO_SCAN = ScanConfig(mode="auto")


def scan_units(rows: Rows, target: str, config: ScanConfig = AUTO_SCAN) -> int:
    """Scan steps to choose ``target``, counting each press as a step too (it takes its highlight's
    interval), as MacKenzie's scan steps per character do: highlight moves + switch presses."""
    cost = cost_to_select(rows, target, config)
    return cost.steps + cost.presses


def p300_items(screen: Screen) -> list[str]:
    """The distinct targets a P300 person's screen flashes: candidates, commands, the keyboard."""
    return ([f"cand:{i}" for i in range(screen.candidates)] + [f"cmd:{c}" for c in COMMANDS]
            + screen.alphabet() + [f"key:{k}" for k in KEYS])


def target_prior(screen: Screen, target: str) -> float:
    """The P300 decoder's prior of ``target`` among :func:`p300_items` (the EEG adapter's rule and defaults)."""
    from razvilka.inputs.eeg.bayes import item_prior
    from razvilka.inputs.eeg.config import EegConfig

    items = p300_items(screen)
    if target not in items:  # a look-ahead word is its candidate's prior
        from razvilka.protocol.targets import parse_target

        t = parse_target(target)
        target = f"cand:{t.index}" if t.index is not None else target
    c = EegConfig()
    prior = item_prior(items, dict(screen.cand_probs), dict(screen.letters), weight=c.prior_weight,
                       floor=c.prior_floor, command_share=c.command_prior)
    return float(prior[items.index(target)])


# ---------------------------------------------------------------- the letters-only baselines
def letters_scan_rows(script: Script = "latin") -> Rows:
    """switch-letters: a letters-only scanning keyboard, no prediction: space first, then the letters
    by English frequency (other scripts: alphabetical), then ' - and delete, in rows of :data:`ALPHABET_COLS`."""
    letters = ENGLISH_FREQUENCY if script == "latin" else ALPHABETS[script]
    keys = ["key:space"] + [f"key:{ch}" for ch in letters + KEY_JOINERS] + ["key:delete"]
    return tuple(tuple(keys[i:i + ALPHABET_COLS]) for i in range(0, len(keys), ALPHABET_COLS))


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


__all__ = ["SCRIPTS", "Screen", "scan_rows", "scan_units", "p300_items", "target_prior", "key_target",
           "letters_scan_rows", "SPELLER_ITEMS", "AUTO_SCAN", "script_of", "phrase_script", "switch_letters_steps",
           "p300_letters_steps"]
