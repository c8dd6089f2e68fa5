"""The weight of the cache against the LLM, per history bucket, learned by MAP-EM on held-out choices.

``P(w) = lam_b * P_cache(w | h) + (1 - lam_b) * P_llm(w | h)``; every chosen word is scored by the
cache *before* the cache sees it, so the rows are held out. Buckets 0-2: no context seen, bigram,
trigram; 3-5 the same at forks where the model read the person's memory first.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from razvilka.daemon.learn.estimator import Params

Row = tuple[int, float, float]   # (bucket, P_cache(chosen), P_llm(chosen))


class MixtureWeights(Params):
    """``lam_``: one weight per bucket, starting at ``prior_mean``."""

    def __init__(self, prior_mean: float = 0.05, prior_strength: float = 2.0, n_iter: int = 12,
                 keep: int = 4000, n_buckets: int = 6) -> None:
        self.prior_mean = prior_mean          # a weak Beta prior on each weight: this mean ...
        self.prior_strength = prior_strength  # ... worth this many decisions (it vanishes with data)
        self.n_iter = n_iter                  # EM iterations per update
        self.keep = keep                      # held-out rows kept for re-estimating the weights
        self.n_buckets = n_buckets
        self.reset()

    def reset(self) -> MixtureWeights:
        self.lam_: list[float] = [self.prior_mean] * self.n_buckets
        self.buckets_: list[int] = []
        self.p_cache_: list[float] = []
        self.p_llm_: list[float] = []
        return self

    def weight(self, bucket: int) -> float:
        return self.lam_[bucket]

    def partial_fit(self, rows: Iterable[Row]) -> int:
        """Add held-out rows (none is fine), keep the newest ``keep``, and run EM from the current
        weights. Returns how many old rows were dropped (an undo's row count moves by as many)."""
        for b, pc, pl in rows:
            self.buckets_.append(b)
            self.p_cache_.append(pc)
            self.p_llm_.append(pl)
        cut = max(0, len(self.buckets_) - self.keep)
        if cut:
            del self.buckets_[:cut], self.p_cache_[:cut], self.p_llm_[:cut]
        self._em()
        return cut

    def truncate(self, n_rows: int, lam: list[float]) -> None:
        """Back to ``n_rows`` rows and the weights ``lam`` (a decision taken back)."""
        del self.buckets_[n_rows:], self.p_cache_[n_rows:], self.p_llm_[n_rows:]
        self.lam_ = lam

    def _em(self) -> None:
        """MAP-EM for the mixture weights on the held-out rows, per bucket (a weak Beta prior)."""
        if not self.buckets_:
            return
        b = np.asarray(self.buckets_)
        pc = np.asarray(self.p_cache_)
        pl = np.maximum(np.asarray(self.p_llm_), 1e-12)
        mean, strength = self.prior_mean, self.prior_strength
        for k in range(len(self.lam_)):
            sel = b == k
            n = int(sel.sum())
            if not n:
                continue
            c, l_ = pc[sel], pl[sel]
            lam = self.lam_[k]
            for _ in range(self.n_iter):
                r = lam * c / (lam * c + (1 - lam) * l_)
                lam = (float(r.sum()) + strength * mean) / (n + strength)
            self.lam_[k] = min(0.95, max(1e-4, lam))

    def log_likelihood(self) -> dict[str, float]:
        """Mean held-out log2-probability of the chosen words: LLM alone vs the learned mixture."""
        if not self.buckets_:
            return {"decisions": 0}
        b = np.asarray(self.buckets_)
        pc = np.asarray(self.p_cache_)
        pl = np.maximum(np.asarray(self.p_llm_), 1e-12)
        lam = np.asarray(self.lam_)[b]
        return {"decisions": len(b), "llm_bits": float(-np.log2(pl).mean()),
                "mixture_bits": float(-np.log2(lam * pc + (1 - lam) * pl).mean())}
