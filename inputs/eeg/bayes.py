"""Bayesian evidence over repeated flashes, starting from the language model's probabilities.

Each flash lights a set S of candidates and yields one classifier score s. Under the
hypothesis "candidate i is the target", s comes from the target distribution when i is in S
and from the non-target one otherwise, so the flash multiplies the odds of every i in S by the
likelihood ratio p(s|target) / p(s|non-target). The prior is the fork's candidate
probabilities (``ForkOpen.candidates[].prob``), sharpened or flattened by ``prior_weight`` and
mixed with a little uniform mass so no candidate becomes unreachable.

One more hypothesis competes: *none of them* (the person attends to no candidate, or the
headset shows no P300). Under it every flash is a non-target, so its odds never move, while a
candidate that keeps evoking non-target responses sinks below it. Without it the posterior,
normalised over K candidates only, would crown whichever candidate looked least unlike a
target even when nobody responded.
"""
from __future__ import annotations

from collections.abc import Sequence
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


def lm_prior(probs: Sequence[float] | np.ndarray, weight: float = 1.0, floor: float = 0.02) -> np.ndarray:
    """The prior over K shown candidates from their LM probabilities.

    ``weight`` 0 gives a uniform prior; ``floor`` mixes in that much uniform mass.
    """
    p = np.clip(np.asarray(probs, dtype=float), 1e-9, None)
    if weight == 0 or not np.isfinite(p).all():
        p = np.ones_like(p)
    else:
        p = p ** weight
    p = p / p.sum()
    k = len(p)
    return (1 - floor) * p + floor / k


State = Literal["running", "confident", "timeout"]


@dataclass
class Accumulator:
    """Evidence for one fork: the posterior, flash counts per candidate, and the stopping rule."""

    prior: np.ndarray
    threshold: float = 0.9
    min_repetitions: int = 1
    max_repetitions: int = 10
    null_prior: float = 0.05  # prior mass of "none of them"
    log_post: np.ndarray = field(init=False)
    log_null: float = field(init=False)
    flashes: np.ndarray = field(init=False)
    scored: int = 0          # flashes that gave evidence
    skipped: int = 0         # flashes without evidence (artefact, gap, expired)

    def __post_init__(self) -> None:
        self.prior = np.asarray(self.prior, dtype=float)
        self.prior = self.prior / self.prior.sum()
        with np.errstate(divide="ignore"):
            self.log_post = np.log(self.prior * (1 - self.null_prior))
            self.log_null = float(np.log(self.null_prior))
        self.flashes = np.zeros(len(self.prior), dtype=int)

    @property
    def k(self) -> int:
        return len(self.prior)

    def _normalised(self) -> np.ndarray:
        """Candidates' then none's probabilities (a softmax over the log-posteriors)."""
        v = np.append(self.log_post, self.log_null)
        e = np.exp(v - v.max())
        return e / e.sum()

    @property
    def posterior(self) -> np.ndarray:
        """P(candidate i is the target) for each i; the rest of the mass is :attr:`none`."""
        return self._normalised()[:-1]

    @property
    def none(self) -> float:
        """P(no candidate is the target)."""
        return float(self._normalised()[-1])

    @property
    def repetitions(self) -> int:
        """Complete rounds: the fewest flashes any candidate has had."""
        return int(self.flashes.min()) if self.k else 0

    def add(self, indices: Sequence[int], llr: float | None) -> None:
        """One flash of ``indices``; ``llr`` None when the epoch gave no evidence (it still counts)."""
        idx = [i for i in indices if 0 <= i < self.k]
        self.flashes[idx] += 1
        if llr is None:
            self.skipped += 1
            return
        self.scored += 1
        self.log_post[idx] += float(llr)
        top = max(float(self.log_post.max()), self.log_null)   # keep the numbers near 0
        self.log_post -= top
        self.log_null -= top

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
        return int(np.argmax(self.log_post))
