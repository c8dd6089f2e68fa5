"""Bayesian evidence over repeated flashes, starting from the language model's probabilities.

Each flash lights a set S of items (candidates, and since protocol 1.4 commands and keyboard
keys too: a whole row or column of the screen at once) and yields one classifier score s. Under
the hypothesis "item i is the target", s comes from the target distribution when i is in S and
from the non-target one otherwise, so the flash multiplies the odds of every i in S by the
likelihood ratio p(s|target) / p(s|non-target). The summed log ratios (the *evidence*) are kept
apart from the prior, so an item first flashed late (a renderer that flashes more than the
candidates) joins the hypotheses exactly as if it had been there from the start.

The prior is one function, :func:`item_prior`: candidates by their LM probabilities
(``ForkOpen.candidates[].prob``), letter keys by the LM's next-letter probabilities
(``ForkOpen.letters``) times the mass the candidates leave uncovered, commands a small fixed
share; sharpened or flattened by ``prior_weight`` and mixed with a little uniform mass so no item
becomes unreachable. From a protocol 1.5 daemon this is the chain rule: a candidate's prob is its
share of ALL the model's mass for the typed prefix (so ``1 - sum`` is the chance the word is not
on screen) and ``letters`` are the next letters of a word that is not on screen, so a key's prior
is P(the word is not shown) x P(this letter | not shown) (docs/eeg.md, "The prior").

One more hypothesis competes: *none of them* (the person attends to no item, or the headset
shows no P300). Under it every flash is a non-target, so its odds never move, while an item that
keeps evoking non-target responses sinks below it. Without it the posterior, normalised over the
items only, would crown whichever item looked least unlike a target even when nobody responded.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.stats import norm


@dataclass
class ScoreModel:
    """Class-conditional Gaussians of the classifier's (cross-validated) scores, pooled variance.

    With a pooled variance the log-likelihood ratio is linear in the score; it is clipped to
    ``±clip`` nats so one odd epoch cannot decide alone.
    """

    mean_target: float
    mean_nontarget: float
    std: float
    clip: float = 4.0

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, clip: float = 4.0) -> ScoreModel:
        scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
        t, n = scores[labels], scores[~labels]
        pooled = np.sqrt(((len(t) - 1) * t.var(ddof=1) + (len(n) - 1) * n.var(ddof=1)) / (len(t) + len(n) - 2))
        return cls(float(t.mean()), float(n.mean()), float(max(pooled, 1e-6)), float(clip))

    def llr(self, score: float | np.ndarray) -> np.ndarray:
        """log p(score | target) - log p(score | non-target), clipped."""
        s = np.asarray(score, dtype=float)
        raw = norm.logpdf(s, self.mean_target, self.std) - norm.logpdf(s, self.mean_nontarget, self.std)
        return np.clip(raw, -self.clip, self.clip)


def _shape(weights: np.ndarray, weight: float, floor: float) -> np.ndarray:
    """Raw prior weights -> a prior: ``** weight`` (0: uniform), normalised, ``floor`` of uniform mass mixed in."""
    p = np.clip(np.asarray(weights, dtype=float), 1e-9, None)
    if weight == 0 or not np.isfinite(p).all():
        p = np.ones_like(p)
    else:
        p = p ** weight
    p = p / p.sum()
    k = len(p)
    return (1 - floor) * p + floor / k


def lm_prior(probs: Sequence[float] | np.ndarray, weight: float = 1.0, floor: float = 0.02) -> np.ndarray:
    """The prior over K shown candidates from their LM probabilities (what :func:`item_prior` gives
    when only candidates flash). ``weight`` 0 gives a uniform prior; ``floor`` mixes in that much uniform mass.
    """
    return _shape(np.asarray(probs, dtype=float), weight, floor)


#: Items whose prior is the fixed command share: the commands, and the keys that edit rather than spell.
#: The share is split over all of them the grammar knows, so an item's weight never depends on which
#: others a renderer happens to flash.
CONTROL_KEYS = ("delete", "accept")


def _controls() -> int:
    from razvilka.protocol.targets import TARGET_COMMANDS

    return len(TARGET_COMMANDS) + len(CONTROL_KEYS)


def item_prior(items: Sequence[str], cand_probs: Mapping[int, float], letters: Mapping[str, float] | None = None, *,
               weight: float = 1.0, floor: float = 0.02, command_share: float = 0.1) -> np.ndarray:
    """The prior over the flashed items (target ids, protocol/targets.py), in their order.

    * ``cand:i`` (and ``word:i:n``): candidate i's LM probability, times ``1 - command_share``;
    * ``key:<ch>``: ``P(next letter = ch | typed prefix, the word is not shown)`` (``fork.open``
      ``letters``) times the mass the shown candidates leave uncovered (``1 - sum(candidate probs)``:
      the chance the word must be spelled), times ``1 - command_share``; ``key:space`` is the letter
      ``" "`` (the word ends). (A 1.4 daemon's letters counted the shown words too, and under a
      prefix its candidates summed to about 1: its keys get little more than the floor.);
    * ``ui:spell`` (a P300 screen's words level, renderers/screen.py ``SPELL_TARGET``: it stands for
      the keyboard): the mass the candidates leave uncovered, times ``1 - command_share`` (what every
      letter key together would get); ``ui:abc`` (the keys level's stand-in for the rest of the
      alphabet): what the letter keys that are not among ``items`` would get together; ``ui:menu`` (the
      words level's stand-in for the other commands): a command's share for each of the screen's
      commands (renderers/screen.py ``COMMANDS``) not among ``items``;
    * ``cmd:*``, ``key:delete``, ``key:accept`` and any other ``ui:<id>`` (a renderer's own control):
      ``command_share`` split evenly over the commands and control keys the grammar knows (a fixed
      share each, whichever of them flash).

    Then shaped as :func:`lm_prior` shapes candidates (``weight``, ``floor``). With candidates
    alone it equals ``lm_prior`` of their probabilities. A bad id is ``BAD_VALUE`` (parse_target).
    """
    from razvilka.protocol.targets import is_key_char, parse_target
    from razvilka.renderers.screen import ABC_TARGET, COMMANDS, MENU_TARGET, SPELL_TARGET

    letters = letters or {}
    spell = max(0.0, 1.0 - float(sum(cand_probs.values())))
    per_control = command_share / _controls()
    raw = np.zeros(len(items))
    for n, item in enumerate(items):
        t = parse_target(item)
        if t.index is not None:
            raw[n] = (1 - command_share) * cand_probs.get(t.index, 0.0)
        elif item == SPELL_TARGET:  # the whole keyboard: the chance the word must be spelled
            raw[n] = (1 - command_share) * spell
        elif item == ABC_TARGET:  # the letters of the alphabet that do not flash with it
            shown = {parse_target(k).value for k in items if k.startswith("key:")}
            rest = sum(p for ch, p in letters.items() if ch not in shown and is_key_char(ch))
            raw[n] = (1 - command_share) * spell * rest
        elif item == MENU_TARGET:  # the screen's commands that do not flash with it, a control share each
            flashed = {k for k in items if k.startswith("cmd:")}
            raw[n] = per_control * sum(1 for c in COMMANDS if f"cmd:{c}" not in flashed)
        elif t.kind in ("cmd", "ui") or t.value in CONTROL_KEYS:
            raw[n] = per_control
        else:  # a letter key, or space
            raw[n] = (1 - command_share) * spell * letters.get(" " if t.value == "space" else t.value, 0.0)
    return _shape(raw, weight, floor) if len(raw) else raw


State = Literal["running", "confident", "timeout"]


@dataclass
class Accumulator:
    """Evidence for one fork: the posterior, flash counts per item, and the stopping rule.

    ``evidence[i]`` is the summed log-likelihood ratio of the flashes that lit item i, i.e. its log
    odds against "none of them" beyond the prior. :meth:`extend` adds items (and sets a new prior)
    without touching the evidence gathered so far.
    """

    prior: np.ndarray
    threshold: float = 0.9
    min_repetitions: int = 1
    max_repetitions: int = 10
    null_prior: float = 0.05  # prior mass of "none of them"
    evidence: np.ndarray = field(init=False)
    flashes: np.ndarray = field(init=False)
    shown: int = 0           # flashes (a group lit together is one)
    scored: int = 0          # flashes that gave evidence
    skipped: int = 0         # flashes without evidence (artefact, gap, expired)

    def __post_init__(self) -> None:
        self.prior = self._normalise(self.prior)
        self.evidence = np.zeros(len(self.prior))
        self.flashes = np.zeros(len(self.prior), dtype=int)

    @staticmethod
    def _normalise(prior: Sequence[float] | np.ndarray) -> np.ndarray:
        p = np.asarray(prior, dtype=float)
        return p / p.sum() if len(p) else p

    def extend(self, prior: Sequence[float] | np.ndarray) -> None:
        """A prior over the items so far plus new ones at the end: the new start with no flashes, no evidence."""
        p = self._normalise(prior)
        grow = len(p) - self.k
        if grow < 0:
            raise ValueError(f"extend() got a prior over {len(p)} items; the accumulator already has {self.k}")
        self.prior = p
        self.evidence = np.append(self.evidence, np.zeros(grow))
        self.flashes = np.append(self.flashes, np.zeros(grow, dtype=int))

    @property
    def k(self) -> int:
        return len(self.prior)

    def _log_odds(self) -> np.ndarray:
        """Unnormalised log posteriors: the items', then none's."""
        with np.errstate(divide="ignore"):
            items = np.log(self.prior * (1 - self.null_prior)) + self.evidence
            return np.append(items, np.log(self.null_prior))

    def _normalised(self) -> np.ndarray:
        """Items' then none's probabilities (a softmax over the log-posteriors)."""
        v = self._log_odds()
        e = np.exp(v - v.max())
        return e / e.sum()

    @property
    def posterior(self) -> np.ndarray:
        """P(item i is the target) for each i; the rest of the mass is :attr:`none`."""
        return self._normalised()[:-1]

    @property
    def none(self) -> float:
        """P(no item is the target)."""
        return float(self._normalised()[-1])

    @property
    def repetitions(self) -> int:
        """Complete rounds: the fewest flashes any item has had."""
        return int(self.flashes.min()) if self.k else 0

    def add(self, indices: Sequence[int], llr: float | None) -> None:
        """One flash of the items ``indices`` (a group lights together); ``llr`` None when the epoch gave
        no evidence (it still counts as a flash)."""
        idx = sorted({i for i in indices if 0 <= i < self.k})
        self.flashes[idx] += 1
        self.shown += 1
        if llr is None:
            self.skipped += 1
            return
        self.scored += 1
        self.evidence[idx] += float(llr)

    def state(self) -> State:
        """Confident, timed out, or still running.

        The leader is accepted only when it has had no more flashes than the runner-up:
        otherwise a tie would go to whichever of the two happened to flash last.
        """
        if self.k == 0:
            return "running"
        post = self.posterior
        order = np.argsort(post)
        best, second = order[-1], order[-2] if self.k > 1 else order[-1]
        fair = self.flashes[best] <= self.flashes[second]
        if fair and self.repetitions >= self.min_repetitions and post[best] >= self.threshold:
            return "confident"
        if self.repetitions >= self.max_repetitions:
            return "timeout"
        return "running"

    @property
    def best(self) -> int:
        return int(np.argmax(self._log_odds()[:-1]))
