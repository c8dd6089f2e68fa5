"""The cache language model: word trigrams over the person's own text, interpolated Witten-Bell.

``P(w|h2 h1) = (c(h2 h1 w) + T(h2 h1) P(w|h1)) / (c(h2 h1) + T(h2 h1))``, down to the unigram.
It has no hyperparameters; ``partial_fit`` counts text, ``unlearn`` takes counts back (undo).
"""
from __future__ import annotations

import bisect
import heapq
import itertools

from razvilka.daemon.learn.estimator import Params
from razvilka.daemon.learn.text import SEP, injectable, words_of

Parts = tuple[dict[str, int], float, float, dict[str, int], float, float]
NGram = tuple[str, str, str]


class CacheLM(Params):
    """Counts of the person's words; empty at construction (an empty cache predicts nothing)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> CacheLM:
        """Forget every count."""
        self.unigrams_: dict[str, int] = {}
        self.bigrams_: dict[str, dict[str, int]] = {}
        self.trigrams_: dict[str, dict[str, int]] = {}
        self.n_words_ = 0
        self.bigram_totals_: dict[str, int] = {}
        self.trigram_totals_: dict[str, int] = {}
        self.vocab_: list[str] = []            # every word, sorted (prefix look-up)
        self.cum_: list[int] = [0]             # cumulative unigram counts over vocab_
        self._vocab_dirty = False
        return self

    def set_counts(self, unigrams: dict[str, int], bigrams: dict[str, dict[str, int]],
                   trigrams: dict[str, dict[str, int]]) -> CacheLM:
        """Take counts read from a file (persistence); the totals and the prefix look-up are rebuilt."""
        self.unigrams_, self.bigrams_, self.trigrams_ = unigrams, bigrams, trigrams
        self.n_words_ = sum(unigrams.values())
        self.bigram_totals_ = {h: sum(d.values()) for h, d in bigrams.items()}
        self.trigram_totals_ = {h: sum(d.values()) for h, d in trigrams.items()}
        self._vocab_dirty = True
        self.refresh()
        return self

    # ------------------------------------------------------------------ learning
    def partial_fit(self, text: str, h2: str, h1: str) -> list[NGram]:
        """Count the words of ``text`` after the history ``h2 h1``; returns the n-grams added (for an undo)."""
        added: list[NGram] = []
        for w in words_of(text):
            self.count(h2, h1, w, +1)
            added.append((h2, h1, w))
            h2, h1 = h1, w
        return added

    def unlearn(self, ngrams: list[NGram]) -> None:
        """Take back what ``partial_fit`` added."""
        for h2, h1, w in ngrams:
            self.count(h2, h1, w, -1)

    def count(self, h2: str, h1: str, w: str, n: int) -> None:
        self._vocab_dirty = True
        self.unigrams_[w] = self.unigrams_.get(w, 0) + n
        self.n_words_ += n
        for table, tot, key in ((self.bigrams_, self.bigram_totals_, h1),
                                (self.trigrams_, self.trigram_totals_, h2 + SEP + h1)):
            d = table.setdefault(key, {})
            d[w] = d.get(w, 0) + n
            tot[key] = tot.get(key, 0) + n
            if d[w] <= 0:
                del d[w]
            if not d:
                del table[key]
                tot.pop(key, None)
        if self.unigrams_[w] <= 0:
            del self.unigrams_[w]

    def refresh(self) -> None:
        """Rebuild the prefix look-up a rerank reads (after a decision, never during a fork)."""
        if not self._vocab_dirty:
            return
        self.vocab_ = sorted(self.unigrams_)
        self.cum_ = [0, *itertools.accumulate(self.unigrams_[w] for w in self.vocab_)]
        self._vocab_dirty = False

    # ------------------------------------------------------------------ predicting
    def parts(self, h2: str, h1: str) -> Parts:
        """The history's tables and weights: P(w) = a3 c3(w) + b3 (a2 c2(w) + b2 P1(w))."""
        empty: dict[str, int] = {}
        d2 = self.bigrams_.get(h1) or empty
        tot2 = self.bigram_totals_.get(h1, 0)
        a2, b2 = (1.0 / (tot2 + len(d2)), len(d2) / (tot2 + len(d2))) if d2 else (0.0, 1.0)
        key = h2 + SEP + h1
        d3 = (self.trigrams_.get(key) or empty) if d2 else empty
        tot3 = self.trigram_totals_.get(key, 0)
        a3, b3 = (1.0 / (tot3 + len(d3)), len(d3) / (tot3 + len(d3))) if d3 else (0.0, 1.0)
        return d3, a3, b3, d2, a2, b2

    def p(self, word: str, parts: Parts) -> float:
        if self.n_words_ == 0:
            return 0.0
        d3, a3, b3, d2, a2, b2 = parts
        return a3 * d3.get(word, 0) + b3 * (a2 * d2.get(word, 0) + b2 * self.unigrams_.get(word, 0) / self.n_words_)

    def predict_proba(self, word: str, h2: str, h1: str) -> float:
        """P_cache(word | h2 h1)."""
        return self.p(word, self.parts(h2, h1))

    def prefix_mass(self, prefix: str, parts: Parts) -> float:
        """The cache's total probability of the words starting with ``prefix``, exactly (prefix sums, no scan
        of the vocabulary): what the cache is conditioned on when the person has typed letters."""
        if self.n_words_ == 0:
            return 0.0
        d3, a3, b3, d2, a2, b2 = parts
        lo = bisect.bisect_left(self.vocab_, prefix)
        hi = bisect.bisect_left(self.vocab_, prefix + "\U0010ffff", lo)
        z1 = (self.cum_[hi] - self.cum_[lo]) / self.n_words_
        s2 = sum(c for w, c in d2.items() if w.startswith(prefix)) if d2 else 0
        s3 = sum(c for w, c in d3.items() if w.startswith(prefix)) if d3 else 0
        return a3 * s3 + b3 * (a2 * s2 + b2 * z1)

    def context_level(self, h2: str, h1: str) -> int:
        """How much the cache knows about this history: 2 trigram context seen, 1 only bigram, 0 neither."""
        return 2 if h2 + SEP + h1 in self.trigrams_ else 1 if h1 in self.bigrams_ else 0

    def words_with(self, prefix: str, n: int) -> list[str]:
        """The person's words that start with ``prefix``, most used first (at most ``n``)."""
        lo = bisect.bisect_left(self.vocab_, prefix)
        hi = bisect.bisect_left(self.vocab_, prefix + "\U0010ffff", lo)
        hits = [w for w in self.vocab_[lo:min(hi, lo + 200)] if injectable(w)]
        return heapq.nlargest(n, hits, key=self.unigrams_.__getitem__)
