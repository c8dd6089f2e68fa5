"""Selections among K items simulated from recorded target and non-target epoch scores.

A trial is one fork: a target is drawn from the prior (a person whose choices follow the
language model, i.e. a calibrated LM), the items flash one at a time, or in groups (a screen's
rows and columns, :func:`row_column_sets`), in a fresh random order every round, and each flash
draws an unused score from the recorded target pool (a flash that holds the target) or
non-target pool (one that does not). Evidence accumulates as online (:mod:`bayes`) and the trial
stops when the posterior passes the threshold or the rounds run out.

Limits: the recorded oddball had ~0.6 s between stimuli, a speller ~0.175 s, and epochs are
drawn independently; see docs/eeg.md.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from razvilka.inputs.eeg.bayes import Accumulator, ScoreModel


def row_column_sets(cells: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Flash groups for items laid out at ``cells[i] = (row, col)`` (``render.layout``'s row/col):
    every row, then every column (the items with the same ``col``), each in item order.

    Each item is the only one in both its row and its column, so two flashes a round single it
    out; rows of different lengths are fine. The browser view flashes the same groups (app.js).
    """
    rows: dict[int, list[int]] = {}
    cols: dict[int, list[int]] = {}
    for i, (r, c) in enumerate(cells):
        rows.setdefault(r, []).append(i)
        cols.setdefault(c, []).append(i)
    return [rows[r] for r in sorted(rows)] + [cols[c] for c in sorted(cols)]


@dataclass
class Trial:
    target: int             # the attended item (when attending)
    choice: int | None      # None: timed out
    flashes: int
    posterior: float

    @property
    def correct(self) -> bool:
        return self.choice == self.target


@dataclass
class Summary:
    trials: int
    decided: int
    correct: int
    flashes: float          # mean flashes per trial (timeouts included)
    seconds_per_selection: float   # all flash time / decided selections
    accuracy: float         # correct / decided
    timeout_rate: float
    bits_per_selection: float
    itr_bits_per_min: float

    def row(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "flashes": self.flashes, "s_per_sel": self.seconds_per_selection,
                "timeouts": self.timeout_rate, "itr": self.itr_bits_per_min}


def wolpaw_bits(n: int, p: float) -> float:
    """Bits per selection among ``n`` equally likely choices at accuracy ``p`` (Wolpaw et al. 2002)."""
    if n < 2:
        return 0.0
    p = min(max(p, 0.0), 1.0)
    if p <= 1.0 / n:
        return 0.0
    bits = math.log2(n) + p * math.log2(p)
    if p < 1.0:
        bits += (1 - p) * math.log2((1 - p) / (n - 1))
    return bits


def simulate(target_scores: np.ndarray, nontarget_scores: np.ndarray, scores: ScoreModel, prior: np.ndarray, *,
             trials: int = 200, threshold: float = 0.9, min_repetitions: int = 1, max_repetitions: int = 8,
             choice_prior: np.ndarray | None = None, null_prior: float = 0.05, attending: bool = True,
             pick_at_end: bool = False, flash_sets: Sequence[Sequence[int]] | None = None,
             seed: int = 0) -> list[Trial]:
    """Run ``trials`` simulated forks; targets are drawn from ``choice_prior`` (default: ``prior``).

    ``flash_sets``: the groups one round flashes (each once, in a fresh random order); default
    every item alone.

    ``pick_at_end`` is the classic speller: when the rounds run out, take the leader anyway
    (use it with ``threshold`` > 1 for a fixed number of rounds).
    ``attending=False`` simulates a person who attends to nothing: every flash draws a
    non-target epoch, and any selection is a false one.

    Trial ``i`` uses its own random stream, so runs with different priors but the same
    ``seed`` compare pairwise: same target, same flash order, same epochs.
    """
    prior = np.asarray(prior, dtype=float)
    choose = prior if choice_prior is None else np.asarray(choice_prior, dtype=float)
    k = len(prior)
    sets = [list(g) for g in flash_sets] if flash_sets is not None else [[i] for i in range(k)]
    t_llr = scores.llr(np.asarray(target_scores))
    n_llr = scores.llr(np.asarray(nontarget_scores))
    out = []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])   # per trial: two priors see the same target and draws
        target = int(rng.choice(k, p=choose / choose.sum()))
        acc = Accumulator(prior, threshold=threshold, min_repetitions=min_repetitions,
                          max_repetitions=max_repetitions, null_prior=null_prior)
        t_pool, n_pool = _draws(rng, len(t_llr)), _draws(rng, len(n_llr))
        state = "running"
        while state == "running":
            for g in rng.permutation(len(sets)):
                lit = sets[int(g)]
                llr = t_llr[next(t_pool)] if attending and target in lit else n_llr[next(n_pool)]
                acc.add(lit, float(llr))
                state = acc.state()
                if state != "running":
                    break
        chosen = state == "confident" or pick_at_end
        out.append(Trial(target, acc.best if chosen else None, acc.shown,
                         float(acc.posterior.max())))
    return out


def _draws(rng: np.random.Generator, n: int) -> Iterator[int]:
    """Indices 0..n-1 in random order without repeats, reshuffled when used up."""
    while True:
        yield from rng.permutation(n)


def summarise(trials: list[Trial], k: int, flash_s: float, tail_s: float = 0.0) -> Summary:
    """Accuracy among decided trials; time per selection charges the timed-out trials' flashes too.

    ``tail_s`` adds the wait for the last epoch (the window length) to every trial.
    """
    decided = [t for t in trials if t.choice is not None]
    correct = sum(t.correct for t in decided)
    total_s = sum(t.flashes * flash_s + tail_s for t in trials)
    accuracy = correct / len(decided) if decided else 0.0
    per_sel = total_s / len(decided) if decided else math.inf
    bits = wolpaw_bits(k, accuracy)
    return Summary(trials=len(trials), decided=len(decided), correct=correct,
                   flashes=float(np.mean([t.flashes for t in trials])), seconds_per_selection=per_sel,
                   accuracy=accuracy, timeout_rate=1 - len(decided) / len(trials), bits_per_selection=bits,
                   itr_bits_per_min=bits * 60.0 / per_sel if decided else 0.0)
