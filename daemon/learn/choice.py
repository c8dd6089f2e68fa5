"""The accept/reject statistics and the conditional-logit choice model over them.

Per word, and per (previous word, word): how often it was chosen when shown, passed over, and how
often the model expected it to be chosen. Their smoothed log-odds are the features of
``P(choose w | shown) ~ P(w) * exp(beta . f(w))``; ``beta_`` starts at 0 and is learned by online
gradient ascent on the likelihood of the person's actual choices (scored before each update).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from razvilka.daemon.learn.estimator import Params
from razvilka.daemon.learn.text import SEP

Count = tuple[str, str, int, int, float]   # (history word, word, +chosen, +passed, +expected)


class ChoiceModel(Params):
    """``accept_``/``accept_ctx_``: word (or h1 SEP word) -> [chosen, passed over, expected chosen]."""

    def __init__(self, rate: float = 0.05, beta_min: float = -2.0, beta_max: float = 4.0) -> None:
        self.rate = rate            # online gradient step
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.reset()

    def reset(self) -> ChoiceModel:
        self.accept_: dict[str, list[float]] = {}
        self.accept_ctx_: dict[str, list[float]] = {}
        self.beta_: list[float] = [0.0, 0.0]   # weights of the global and the in-context log-odds
        return self

    @property
    def untrained(self) -> bool:
        return self.beta_ == [0.0, 0.0]

    def features(self, word: str, h1: str) -> tuple[float, float]:
        """How much more (or less) often this word was chosen when shown than the model expected:
        ``log((chosen + 1/2) / (expected + 1/2))``, overall and after this previous word (0 if never shown).

        "Expected" is its probability within each choice set, so a word that is shown everywhere and
        rightly chosen at its predicted rate scores 0; one the person keeps passing over scores < 0."""
        a = self.accept_.get(word)
        f1 = math.log((a[0] + 0.5) / (a[2] + 0.5)) if a else 0.0
        c = self.accept_ctx_.get(h1 + SEP + word)
        f2 = math.log((c[0] + 0.5) / (c[2] + 0.5)) if c else 0.0
        return f1, f2

    def partial_fit(self, choice_set: Sequence[str], chosen: str | None, base: Sequence[float], h1: str,
                    target: str) -> list[Count]:
        """Learn one fork: a gradient step on log P(chosen | choice set) (none when ``chosen`` is None:
        the person typed a word that was not offered), then count each word of the set as chosen
        (``target``) or passed over, with ``base`` (its mixture probability, no accept/reject factor)
        as the expected rate. Returns the counts added (for an undo)."""
        if chosen is not None and len(choice_set) >= 2:
            feats = [self.features(w, h1) for w in choice_set]
            logits = [math.log(b) + self.beta_[0] * f[0] + self.beta_[1] * f[1] for b, f in zip(base, feats)]
            m = max(logits)
            e = [math.exp(x - m) for x in logits]
            z = sum(e)
            ti = list(choice_set).index(chosen)
            for j in range(2):
                grad = feats[ti][j] - sum(ei / z * f[j] for ei, f in zip(e, feats))
                self.beta_[j] = min(self.beta_max, max(self.beta_min, self.beta_[j] + self.rate * grad))
        added: list[Count] = []
        for w, b in zip(choice_set, base):
            a, r = (1, 0) if w == target else (0, 1)
            e_ = min(1.0, b)
            self.count(h1, w, a, r, e_)
            added.append((h1, w, a, r, e_))
        return added

    def count(self, h1: str, w: str, a: int, r: int, e: float) -> None:
        for table, key in ((self.accept_, w), (self.accept_ctx_, h1 + SEP + w)):
            v = table.setdefault(key, [0.0, 0.0, 0.0])
            v[0] += a
            v[1] += r
            v[2] += e
            if v[0] <= 0 and v[1] <= 0:
                del table[key]

    def unlearn(self, counts: list[Count], beta: list[float]) -> None:
        """Take back a fork's counts and its step (``beta``: the weights before it)."""
        for h1, w, a, r, e in counts:
            self.count(h1, w, -a, -r, -e)
        self.beta_ = beta
