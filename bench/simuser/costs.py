"""What the person's actions cost, in actions and in seconds per input modality, and the metrics.

Pure: it works on the step log the driver records, so it is tested against hand-worked examples.
Every figure and its source is in docs/simulated_user.md ("Costs"); all are parameters.

A step is one thing the person did or read, in order:

* ``select`` / ``phrase`` — chose a visible candidate (``n`` = candidates on screen, ``words`` =
  look-ahead words read for a phrase);
* ``letter`` — the word was not offered: scanned the list (``n``), typed one letter;
* ``commit`` — scanned the list, the word still was not there, pressed space to commit the typed word;
* ``more`` — scanned the list, asked for the next page;
* ``backspace`` — removed wrong typed letters (``presses``);
* ``back`` — undid what the model wrote (or a wrong selection);
* ``read`` — read words the model wrote on its own (``words``), to check them;
* ``level`` — (P300 alone) chose the screen's other level first: ``ui:spell`` opens the keyboard,
  ``ui:words`` goes back (``renderers/screen.py`` :func:`p300_targets`); a selection of its own.

A single-input person (gaze-only, switch-scan, p300-only: docs/simulated_user.md, "Single-input
people") chooses every one of these as a target on screen; their steps also carry ``scan`` (scan
steps to reach the target, presses counted) and ``prior``/``items`` (the P300 decoder's prior of the
target among the ``items`` targets that flash), from bench/simuser/screen.py.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from razvilka.inputs.eeg.config import EegConfig

ACTION_KINDS = ("select", "phrase", "letter", "commit", "more", "backspace", "back", "level")
LIST_KINDS = ("select", "phrase", "letter", "commit", "more")   # preceded by a scan of the candidate list
CHOICE_KINDS = ("select", "phrase", "letter", "level")           # can land on the wrong item (gaze, P300)


@dataclass(frozen=True)
class Step:
    kind: str
    n: int = 0          # candidates visible when the person scanned the list
    words: int = 0      # words read (read) or look-ahead words read before a phrase selection
    presses: int = 1    # physical actions (backspace over several letters)
    typed: int = 0      # letters of the word typed before this choice (a back loses them: typed again)
    scan: int = 0       # single-input: scan steps to reach the target (highlight moves + presses)
    prior: float = 0.0  # single-input: the P300 decoder's prior of the target
    items: int = 0      # single-input: targets on screen that flash (P300)


_EEG = EegConfig()


@dataclass(frozen=True)
class Modality:
    """Time per action for one way of choosing. Seconds. See docs/simulated_user.md for sources."""

    name: str
    choose_s: float          # motor part of choosing one visible candidate (key, pedal, dwell)
    letter_s: float          # one letter, including finding the key
    command_s: float         # back / more / space / backspace
    error: float = 0.0       # probability that a choice (candidate or letter) lands on the wrong item
    flash: bool = False      # P300: choosing takes flash rounds over the items instead of choose_s
    soa_s: float = 0.175     # P300: one flash (on + off), the EEG adapter's defaults 100 + 75 ms
    rounds: tuple[tuple[int, float], ...] = ((4, 3.55), (6, 3.98), (8, 4.34))  # P300: (flashed items, rounds
                             # until a decision), bench/eeg_bench.py with the LM prior: 14.2, 23.9, 34.7 flashes
    epoch_s: float = 0.8     # P300: the epoch after the last flash
    speller_items: int = 36  # P300: a 6x6 speller matrix for letters (rows and columns flash: 12 groups)
    command_items: int = 0   # P300: extra items flashed with the candidates (back, more); 0: a separate
                             # command menu that takes as long as choosing among the candidates
    scan_s: float = 0.0      # switch scanning: seconds per scan step (the scan interval); 0: not a scanner
    prior_stopping: bool = False  # P300 over every target on screen: rounds from the target's prior (below)
    uniform_flashes: tuple[tuple[int, float], ...] = ((4, 15.0), (6, 26.1), (8, 38.0))  # P300: (items, flashes
                             # per selection) with a uniform prior, bench/eeg_bench.py: calibrates rounds_for_prior
    threshold: float = _EEG.threshold       # P300 decoder: posterior to decide (the EEG adapter's default)
    null_prior: float = _EEG.null_prior     # P300 decoder: prior of "none of them"
    prior_floor: float = _EEG.prior_floor   # P300 decoder: uniform mass mixed into the prior
    command_prior: float = _EEG.command_prior  # P300 decoder: share of the 5 commands + delete + accept
    max_rounds: int = _EEG.max_repetitions  # P300 decoder: rounds before it gives up

    def rounds_for(self, groups: int) -> float:
        """Rounds of flashes before a decision among ``groups`` flashed groups (linear in between and beyond)."""
        pts = sorted(self.rounds)
        if len(pts) == 1:
            return pts[0][1]
        (k0, r0), (k1, r1) = (pts[0], pts[1]) if groups <= pts[0][0] else (pts[-2], pts[-1])
        for a, b in zip(pts, pts[1:]):
            if a[0] <= groups <= b[0]:
                (k0, r0), (k1, r1) = a, b
                break
        return max(1.0, r0 + (r1 - r0) * (groups - k0) / (k1 - k0))

    @staticmethod
    def groups(items: int) -> int:
        """Flash groups for ``items`` targets: single items up to 12, rows+columns of a square grid beyond."""
        return items if items <= 12 else 2 * math.ceil(math.sqrt(items))

    def flash_time(self, items: int) -> float:
        """A P300 selection among ``items`` (the two-input screens: candidates, or a speller)."""
        groups = self.groups(items)
        return self.rounds_for(groups) * groups * self.soa_s + self.epoch_s

    def _needed(self, prior: float) -> float:
        """Evidence (nats) the decoder needs to take a target from ``prior`` to the threshold."""
        q = min(max(prior * (1 - self.null_prior), 1e-9), 1 - 1e-9)
        return math.log(self.threshold / (1 - self.threshold)) - math.log(q / (1 - q))

    def rounds_per_nat(self) -> float:
        """Rounds of flashes per nat of evidence needed, fitted to the uniform-prior measurements."""
        fits = [flashes / k / self._needed(1.0 / k) for k, flashes in self.uniform_flashes]
        return sum(fits) / len(fits)

    def rounds_for_prior(self, prior: float) -> float:
        """Rounds until the decoder is sure of a target whose prior is ``prior`` (dynamic stopping).

        The evidence each round adds for the target is about constant, so the rounds grow with the
        log-odds the flashes must supply: logit(threshold) - logit(prior). One rate (rounds per nat)
        fitted to bench/eeg_bench.py's uniform-prior rows (K = 4, 6, 8) predicts its LM-prior rows
        within 2 % (docs/simulated_user.md). At least one round, at most ``max_rounds``."""
        return min(float(self.max_rounds), max(1.0, self.rounds_per_nat() * self._needed(prior)))

    def prior_flash_time(self, prior: float, items: int) -> float:
        """A P300 selection of a target with ``prior`` among ``items`` flashed (single-input P300): the
        product's groups (``renderers/screen.py`` :func:`flash_group_count`: rows + columns of a square grid)."""
        from razvilka.renderers.screen import flash_group_count

        if items <= 0 or not 0.0 < prior <= 1.0:
            raise ValueError(f"a P300 step needs the targets on screen and the target's prior, got {items} "
                             f"and {prior} (a run before single-input steps were recorded?)")
        groups = flash_group_count(items)
        return self.rounds_for_prior(prior) * groups * self.soa_s + self.epoch_s

    def command_prior_on(self, items: int) -> float:
        """The prior a command (back) or delete has among ``items``: its share, then the floor mixed in."""
        from razvilka.inputs.eeg.bayes import CONTROL_KEYS
        from razvilka.protocol.targets import TARGET_COMMANDS

        share = self.command_prior / (len(TARGET_COMMANDS) + len(CONTROL_KEYS))
        return (1 - self.prior_floor) * share + self.prior_floor / max(1, items)


@dataclass(frozen=True)
class CostParams:
    """The person's perception and reading, shared by all modalities."""

    search_a: float = 0.2        # Hick-Hyman intercept, s
    search_b: float = 0.15       # Hick-Hyman slope, s/bit: T = a + b log2(n + 1)
    read_word_s: float = 0.25    # reading one word the model wrote (238 wpm silent reading)
    modalities: tuple[Modality, ...] = field(default_factory=lambda: DEFAULT_MODALITIES)
    single: tuple[Modality, ...] = field(default_factory=lambda: SINGLE_MODALITIES)  # single-input people

    def single_modality(self, name: str) -> Modality:
        """The modality a single-input configuration is costed with (gaze, switch, p300)."""
        for mod in self.single:
            if mod.name == name:
                return mod
        raise ValueError(f"no single-input modality {name!r} (known: {[m.name for m in self.single]})")

    def search(self, n: int) -> float:
        """Hick-Hyman: time to find (or not find) the wanted word among ``n`` candidates."""
        return self.search_a + self.search_b * math.log2(n + 1) if n > 0 else 0.0


#: KLM K for an average non-secretary typist (Card, Moran & Newell 1980): 0.28 s.
KEY = Modality("key", choose_s=0.28, letter_s=0.28, command_s=0.28)
#: Gaze points (search), a pedal confirms; letters by gaze + pedal on an on-screen keyboard.
FOOT = Modality("foot", choose_s=0.45, letter_s=0.40 + 0.45, command_s=0.45)
#: Dwell 600 ms; a letter = dwell + finding the key (0.4 s), i.e. about 12 WPM plain dwell typing.
GAZE = Modality("gaze", choose_s=0.6, letter_s=0.6 + 0.4, command_s=0.6 + 0.2, error=0.05)
#: P300: flashes over the candidates (or a 6x6 speller for letters); 96.7 % right at K=8 with the LM
#: prior, as bench/eeg_bench.py measured on the shared Muse recording (docs/eeg.md).
P300 = Modality("p300", choose_s=0.0, letter_s=0.0, command_s=0.0, error=0.033, flash=True)
DEFAULT_MODALITIES: tuple[Modality, ...] = (KEY, FOOT, GAZE, P300)
#: One switch, automatic scanning at the product's default interval (``scan.interval_ms`` = 1000).
SWITCH = Modality("switch", choose_s=0.0, letter_s=0.0, command_s=0.0, scan_s=1.0)
#: P300 alone: every target on screen flashes in rows and columns; rounds from the target's LM prior.
P300_SCREEN = Modality("p300", choose_s=0.0, letter_s=0.0, command_s=0.0, error=0.033, flash=True,
                       prior_stopping=True)
#: The single-input people: gaze-only is the gaze modality above, choosing only targets on screen.
SINGLE_MODALITIES: tuple[Modality, ...] = (GAZE, SWITCH, P300_SCREEN)


def with_overrides(params: CostParams, items: Sequence[str]) -> CostParams:
    """``["search_b=0.1", "p300.error=0.16", "gaze.choose_s=0.5"]`` -> a changed copy (for --cost)."""
    from dataclasses import fields, replace

    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--cost {item!r}: expected name=value or modality.name=value")
        value = float(raw)
        if "." in key:
            name, attr = key.split(".", 1)
            mods = {m.name: m for m in params.modalities + params.single}
            settable = {f.name for f in fields(Modality)} - {"name", "rounds", "flash", "prior_stopping",
                                                               "uniform_flashes"}
            if name not in mods or attr not in settable:
                raise ValueError(f"--cost {item!r}: no modality field {key!r}")
            cast = int if isinstance(getattr(mods[name], attr), int) else float
            change: dict[str, Any] = {attr: cast(value)}
            params = replace(params, modalities=tuple(replace(m, **change) if m.name == name else m
                                                       for m in params.modalities),
                             single=tuple(replace(m, **change) if m.name == name else m for m in params.single))
        elif key in ("search_a", "search_b", "read_word_s"):
            change = {key: value}
            params = replace(params, **change)
        else:
            raise ValueError(f"--cost {item!r}: unknown cost {key!r}")
    return params


def step_time(step: Step, mod: Modality, params: CostParams) -> float:
    """Seconds for one step, without errors.

    P300: candidates, back and more are flashed with the fork's items (``n`` + the command items);
    letters, backspace and the space that commits a typed word use the speller matrix.
    """
    if step.kind == "read":
        return step.words * params.read_word_s
    if step.kind not in ACTION_KINDS:
        raise ValueError(f"unknown step kind {step.kind!r}")
    reading = step.words * params.read_word_s if step.kind == "phrase" else 0.0
    if mod.scan_s > 0:  # the scanner paces the person: the list is searched while the highlight moves
        if step.scan <= 0:
            raise ValueError(f"a {step.kind} step has no scan steps recorded: only single-input runs are scanned")
        return step.scan * mod.scan_s * max(1, step.presses) + reading
    scan = params.search(step.n) if step.kind in LIST_KINDS else 0.0
    if mod.prior_stopping:
        one = mod.prior_flash_time(step.prior, step.items)
    elif mod.flash:
        speller = step.kind in ("letter", "backspace", "commit")
        one = mod.flash_time(mod.speller_items if speller else step.n + mod.command_items)
    elif step.kind in ("select", "phrase"):
        one = mod.choose_s
    elif step.kind == "letter":
        one = mod.letter_s
    else:  # back, more, backspace, commit, level
        one = mod.command_s
    return scan + one * max(1, step.presses) + reading


def correction(step: Step, mod: Modality, params: CostParams, backs_per_wrong_word: float) -> tuple[float, float]:
    """(actions, seconds) to undo one wrong choice: a backspace for a letter, back(s) for a word.

    After a wrong word the daemon may write on by itself; then one back removes that auto-text and a
    second removes the wrong word: ``backs_per_wrong_word`` = 1 + the measured share of decisions
    followed by auto-writing. The fork after a back has no typed prefix, so the letters typed before
    the wrong choice are typed again.
    """
    control = mod.command_prior_on(step.items) if mod.prior_stopping else 0.0  # back / delete on the P300 screen
    if step.kind == "letter":
        return 1.0, step_time(Step("backspace", scan=step.scan, prior=control, items=step.items), mod, params)
    back = backs_per_wrong_word * step_time(Step("back", n=step.n, scan=step.scan, prior=control, items=step.items),
                                            mod, params)
    retype = step.typed * step_time(Step("letter", n=step.n, scan=step.scan, prior=step.prior, items=step.items),
                                    mod, params)
    return backs_per_wrong_word + step.typed, back + retype


def expected_cost(steps: Iterable[Step], mod: Modality, params: CostParams,
                  backs_per_wrong_word: float = 1.0) -> tuple[float, float]:
    """(actions, seconds) for a step log, in expectation over the modality's choice errors.

    A choice fails with probability p; the person undoes it and tries again, so the attempts are
    geometric: E[attempts] = 1/(1-p), E[failures] = p/(1-p), each failure adding one correction.
    Backs and commands are taken as error-free.
    """
    p = mod.error
    if not 0.0 <= p < 1.0:
        raise ValueError(f"error probability {p} must be in [0, 1)")
    actions = seconds = 0.0
    for step in steps:
        t = step_time(step, mod, params)
        presses = float(step.presses) if step.kind in ACTION_KINDS else 0.0
        if step.kind in CHOICE_KINDS and p > 0:
            fail = p / (1 - p)
            c_actions, c_seconds = correction(step, mod, params, backs_per_wrong_word)
            presses = presses / (1 - p) + fail * c_actions
            t = t / (1 - p) + fail * c_seconds
        actions += presses
        seconds += t
    return actions, seconds


def count_actions(steps: Iterable[Step]) -> int:
    return sum(s.presses for s in steps if s.kind in ACTION_KINDS)


def letters_steps(phrase: str) -> list[Step]:
    """The letter-by-letter baseline: every character (spaces too) is one key, no list to scan."""
    return [Step("letter", n=0) for _ in phrase]


def wpm(chars: int, seconds: float) -> float:
    """Words per minute with the text-entry convention of 5 characters per word."""
    return (chars / 5.0) / (seconds / 60.0) if seconds > 0 else 0.0


def ksr(actions: float, chars: int) -> float:
    """Keystroke savings rate: 1 - actions / characters."""
    return 1.0 - actions / chars if chars else 0.0


def ksr_gain_ci(base: Sequence[tuple[int, int]], other: Sequence[tuple[int, int]], *, resamples: int = 2000,
                seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """KSR points gained by ``other`` over ``base`` on the same phrases, and a paired bootstrap interval.

    Each item is (characters, actions) of one phrase, in the same order in both. Phrases are resampled
    whole (a phrase's words are not independent), the gain recomputed on each resample; returns
    (gain, low, high) in points. How sure a difference of a few points over some dozens of phrases is."""
    if len(base) != len(other) or not base:
        raise ValueError("ksr_gain_ci: the two runs must cover the same, non-empty list of phrases")
    if any(c != c2 for (c, _), (c2, _) in zip(base, other)):
        raise ValueError("ksr_gain_ci: the two runs are not over the same phrases (character counts differ)")
    diffs = [(c, a - b) for (c, a), (_, b) in zip(base, other)]

    def gain(items: Sequence[tuple[int, int]]) -> float:
        chars = sum(c for c, _ in items)
        return 100.0 * sum(d for _, d in items) / chars if chars else 0.0

    rng = random.Random(seed)
    draws = sorted(gain(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    tail = (1.0 - level) / 2
    return gain(diffs), draws[int(tail * resamples)], draws[min(resamples - 1, int((1.0 - tail) * resamples))]


@dataclass
class PhraseResult:
    """What one phrase took, as the driver measured it through the daemon."""

    phrase: str
    chars: int
    words: int
    steps: list[Step]
    done: bool = True              # the phrase was produced exactly
    auto_words: int = 0            # words the model wrote on its own (including ones later undone)
    auto_wrong: int = 0            # of those written on a right text, words that made it wrong (the model's mistakes)
    auto_wasted: int = 0           # words written on an already wrong text (after a wrong choice or word)
    auto_kept: int = 0             # auto-written words in the final text
    undone_right: int | None = 0   # right words a back removed together with a wrong one (None: not recorded)
    decisions_followed_by_auto: int = 0
    decisions: int = 0             # select / phrase / commit decisions
    selects: int = 0               # plain selections (the ones pre-generation can serve)
    pregen_hits: int = 0           # selections answered by a fork.open with pregenerated=True
    fork_compute_ms: list[float] = field(default_factory=list)       # fork.open compute_ms (not pre-generated)
    lookahead_compute_ms: list[float] = field(default_factory=list)  # short look-ahead, done=True compute_ms
    wait_ms: list[float] = field(default_factory=list)               # action sent -> next fork usable (wall)
    lookahead_wait_ms: list[float] = field(default_factory=list)     # fork usable -> its look-ahead done, when awaited
    wall_s: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return count_actions(self.steps)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhraseResult:
        data = dict(data)
        data.pop("actions", None)
        data.setdefault("undone_right", None)  # runs stored before it was recorded
        raw = data["steps"]
        data["steps"] = [Step(*s) for s in raw]
        if raw and len(raw[0]) < 5:  # stored before ``typed`` existed: read the prefixes off the action log
            data["steps"] = _typed_from_log(data["steps"], data.get("log", []))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = [[s.kind, s.n, s.words, s.presses, s.typed, s.scan, s.prior, s.items] for s in self.steps]
        out["actions"] = self.actions
        return out


def _typed_from_log(steps: list[Step], log: Sequence[str]) -> list[Step]:
    """Fill ``typed`` from log lines "select 3 at FORK (prefix 'wat', ...)" (one per action, in order)."""
    import ast
    import re
    from dataclasses import replace

    quoted = re.compile(r"""\(prefix ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
    prefixes = [len(ast.literal_eval(m.group(1))) for line in log if line.split(" ", 1)[0] in ACTION_KINDS
                for m in [quoted.search(line)] if m]
    actions = [i for i, s in enumerate(steps) if s.kind in ACTION_KINDS]
    if len(prefixes) != len(actions):
        return steps
    out = list(steps)
    for i, typed in zip(actions, prefixes):
        if out[i].kind in ("select", "phrase"):
            out[i] = replace(out[i], typed=typed)
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def spelled(steps: Sequence[Step]) -> tuple[int, int]:
    """(words spelled out and committed with a space, words chosen after typing some of their letters)."""
    whole = sum(1 for s in steps if s.kind == "commit")
    return whole, whole + sum(1 for s in steps if s.kind in ("select", "phrase") and s.typed > 0)


def summarize(results: Sequence[PhraseResult], params: CostParams,
              modalities: Sequence[Modality] | None = None) -> dict[str, Any]:
    """The per-configuration metrics over the same phrases; WPM and KSR per modality of ``modalities``
    (default: the two-input ones; a single-input configuration passes its own)."""
    chars = sum(r.chars for r in results)
    words = sum(r.words for r in results)
    actions = sum(r.actions for r in results)
    auto = sum(r.auto_words for r in results)
    decisions = sum(r.decisions for r in results)
    followed = sum(r.decisions_followed_by_auto for r in results)
    backs_per_wrong = 1.0 + (followed / decisions if decisions else 0.0)
    selects = sum(r.selects for r in results)
    judged = auto - sum(r.auto_wasted for r in results)
    steps = [s for r in results for s in r.steps]
    out: dict[str, Any] = {
        "phrases": len(results),
        "done": sum(r.done for r in results),
        "chars": chars,
        "words": words,
        "actions": actions,
        "ksr": ksr(actions, chars),
        "actions_per_char": actions / chars if chars else 0.0,
        "actions_per_word": actions / words if words else 0.0,
        "fork_rate": 1.0 - sum(r.auto_kept for r in results) / words if words else 0.0,
        "auto_words": auto,
        "auto_error_rate": sum(r.auto_wrong for r in results) / judged if judged else None,
        "auto_wasted": sum(r.auto_wasted for r in results),
        "backs": sum(s.presses for s in steps if s.kind == "back"),
        "undone_right": (None if any(r.undone_right is None for r in results)
                         else sum(r.undone_right or 0 for r in results)),
        "phrase_selections": sum(1 for s in steps if s.kind == "phrase"),
        "selects": selects,
        "pregen_hit_share": sum(r.pregen_hits for r in results) / selects if selects else None,
        "fork_compute_ms_mean": _mean([x for r in results for x in r.fork_compute_ms]),
        "lookahead_compute_ms_mean": _mean([x for r in results for x in r.lookahead_compute_ms]),
        "wait_ms_median": _median([x for r in results for x in r.wait_ms]),
        "lookahead_wait_ms_median": _median([x for r in results for x in r.lookahead_wait_ms]),
        "wall_s": sum(r.wall_s for r in results),
        "backs_per_wrong_word": backs_per_wrong,
    }
    out["spelled_words"], out["typed_words"] = spelled(steps)
    for mod in (params.modalities if modalities is None else modalities):
        a, t = expected_cost(steps, mod, params, backs_per_wrong)
        out[f"wpm_{mod.name}"] = wpm(chars, t)
        out[f"ksr_{mod.name}"] = ksr(a, chars)  # with that modality's expected choice errors
    return out


def summarize_letters(phrases: Sequence[str], params: CostParams,
                      steps_of: Callable[[str], list[Step]] | None = None,
                      modalities: Sequence[Modality] | None = None) -> dict[str, Any]:
    """A letter-by-letter baseline (no model): one action per character. ``steps_of(phrase)`` gives the
    steps (default: one key each); ``modalities`` those it is costed with (default: the two-input ones)."""
    chars = sum(len(p) for p in phrases)
    words = sum(len(p.split()) for p in phrases)
    steps = [s for p in phrases for s in (steps_of or letters_steps)(p)]
    out: dict[str, Any] = {
        "phrases": len(phrases), "done": len(phrases), "chars": chars, "words": words, "actions": chars,
        "ksr": 0.0, "actions_per_char": 1.0, "actions_per_word": chars / words if words else 0.0,
        "fork_rate": 1.0, "auto_words": 0, "auto_error_rate": None, "auto_wasted": 0, "backs": 0, "undone_right": 0,
        "phrase_selections": 0,
        "selects": 0, "pregen_hit_share": None, "fork_compute_ms_mean": None, "lookahead_compute_ms_mean": None,
        "wait_ms_median": None, "lookahead_wait_ms_median": None, "wall_s": 0.0, "backs_per_wrong_word": 1.0,
        "spelled_words": words, "typed_words": words,
    }
    for mod in (params.modalities if modalities is None else modalities):
        a, t = expected_cost(steps, mod, params)
        out[f"wpm_{mod.name}"] = wpm(chars, t)
        out[f"ksr_{mod.name}"] = ksr(a, chars)
    return out
