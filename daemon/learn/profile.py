"""The per-user profile: what this person writes, picks and passes over, applied at every fork.

A composite of small learners (docs/learning.md, "The profile"), each with its hyperparameters in
``__init__`` and its learned state in ``..._`` attributes:

* ``cache`` (:class:`CacheLM`): word trigrams over the person's committed text, Witten-Bell;
* ``mixture`` (:class:`MixtureWeights`): the cache's weight against the LLM per history bucket,
  learned by EM on held-out choices;
* ``choice`` (:class:`ChoiceModel`): accept/reject statistics and the conditional-logit weights
  over them, learned online;
* ``memory`` (:class:`Memory`): the person's earlier writing, read by the model before a document.

``observe`` teaches all of them one acknowledged decision; ``rerank`` (daemon/learn/rerank.py)
applies them at a fork. Reading and writing the file is daemon/learn/persist.py.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from razvilka.daemon.engine import WordDistribution
from razvilka.daemon.learn.cache_lm import CacheLM, NGram
from razvilka.daemon.learn.choice import ChoiceModel, Count
from razvilka.daemon.learn.estimator import Params
from razvilka.daemon.learn.memory import Memory
from razvilka.daemon.learn.mixture import MixtureWeights
from razvilka.daemon.learn.text import BOS, decision_key, history_of, words_of


@dataclass
class Seen:
    """One recent fork context: the LLM's (page 0, no prefix) probabilities and every word shown there."""

    probs: dict[str, float] = field(default_factory=dict)
    floor: float = 1e-4
    shown: set[str] = field(default_factory=set)


@dataclass
class Undo:
    """What one observation added, so it can be taken back when the decision is undone."""

    context: str
    committed: str
    ngrams: list[NGram]
    accepts: list[Count]
    em_rows: int
    lam: list[float]
    beta: list[float]
    decisions: int
    document: str | None = None


class Profile(Params):
    """One person's profile. ``persist.load_profile(path)`` reads one; the learner calls ``rerank``
    at each fork and ``observe`` after each acknowledged decision, then ``persist.save_profile``.

    ``path`` and ``user`` say whose it is and where it is kept; the sub-learners default to their
    own defaults. ``inject``: cache words considered per source (trigram, bigram, typed prefix) that
    may join a fork; ``prefix_inject``: at a prefix fork, at most this many of the person's words
    join the engine's list; ``prefix_rerank``: rerank prefix forks like whole-word ones (off:
    bench/profile_probe.py compares); ``seen_contexts``: recent forks remembered."""

    def __init__(self, path: str | Path | None = None, user: str = "", *, cache: CacheLM | None = None,
                 mixture: MixtureWeights | None = None, choice: ChoiceModel | None = None,
                 memory: Memory | None = None, inject: int = 6, prefix_inject: int = 1,
                 prefix_rerank: bool = False, seen_contexts: int = 16) -> None:
        self.path = path
        self.user = user
        # a composite, as a scikit-learn Pipeline holds its steps: None means that learner's defaults
        self.cache = cache if cache is not None else CacheLM()
        self.mixture = mixture if mixture is not None else MixtureWeights()
        self.choice = choice if choice is not None else ChoiceModel()
        self.memory = memory if memory is not None else Memory()
        self.inject = inject
        self.prefix_inject = prefix_inject
        self.prefix_rerank = prefix_rerank
        self.seen_contexts = seen_contexts
        self.notice_ = ""                      # set when an unreadable file was put aside and this one started
        self.lock = threading.RLock()          # rerank runs on the engine thread, observe on the daemon's loop
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> Profile:
        """Forget everything (the file is rewritten on the next save)."""
        with self.lock:
            self.cache.reset()
            self.mixture.reset()
            self.choice.reset()
            self.memory.reset()
            self.decisions_ = 0
            self.created_ns_ = time.time_ns()
            self.updated_ns_ = self.created_ns_
            # store decisions written up to this time are in the profile (live.catch_up learns the rest),
            # and the key of the last decision observed (it may be in the profile but not yet marked)
            self.store_mark_ns_ = self.created_ns_
            self.last_key_ = ""
            self.seen_: OrderedDict[str, Seen] = OrderedDict()
            self.reading_ = False              # the model read the memory before this document (the learner sets it)
            self.last_: Undo | None = None
            self.dirty_ = True
        return self

    @property
    def words_seen(self) -> int:
        return self.cache.n_words_

    @property
    def file(self) -> Path | None:
        return Path(self.path) if self.path else None

    def bucket(self, h2: str, h1: str) -> int:
        b = self.cache.context_level(h2, h1)
        return b + 3 if self.reading_ else b

    def weight(self, h2: str, h1: str) -> float:
        """The learned mixing weight of the cache for this history (0 while the cache is empty)."""
        return self.mixture.weight(self.bucket(h2, h1)) if self.cache.n_words_ else 0.0

    def seen(self, context: str) -> Seen:
        """The fork at ``context`` (remembered, most recent last)."""
        seen = self.seen_.get(context)
        if seen is None:
            seen = self.seen_[context] = Seen()
            while len(self.seen_) > self.seen_contexts:
                self.seen_.popitem(last=False)
        self.seen_.move_to_end(context)
        return seen

    # ------------------------------------------------------------------ at a fork
    def rerank(self, dist: WordDistribution, context: str, k: int | None = None) -> WordDistribution:
        """Candidates reweighted for this person (daemon/learn/rerank.py).

        A fork at the very context of the last decision means that decision was undone (``back``):
        it is taken back first, or the word the person just undid would be offered first again."""
        from razvilka.daemon.learn.rerank import rerank

        with self.lock:
            last = self.last_
            if last is not None and context == last.context:
                self._revert(last)
            return rerank(self, dist, context, k)

    # ------------------------------------------------------------------ the memory
    def memory_text(self, exclude: str | None = None, prompt: str = "") -> str:
        """The person's earlier writing, as the model reads it before a document (``Memory.text``)."""
        with self.lock:
            return self.memory.text(exclude, prompt)

    def read_text(self, text: str, document: str) -> int:
        """Learn text the person wrote elsewhere (letters, notes, a draft): the cache learns its words and
        the memory keeps it, as if it had been written here; no decision, so no weight moves. Returns
        the number of words learned."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        with self.lock:
            for line in lines:
                self.cache.partial_fit(line, BOS, BOS)
            self.memory.remember(document, " ".join(lines))
            self.cache.refresh()
            self.updated_ns_ = time.time_ns()
            self.dirty_ = True
        return sum(len(words_of(line)) for line in lines)

    # ------------------------------------------------------------------ after a decision
    def observe(self, context: str, shown: Sequence[str], chosen: str | None, committed: str, *,
                probs: Mapping[str, float] | None = None, document: str | None = None) -> None:
        """Learn from one acknowledged decision at the fork whose document text was ``context``.

        ``shown``: the candidate words on screen; ``chosen``: the one picked (None when the person
        typed a word that was not offered); ``committed``: the exact text appended (the candidate,
        plus its look-ahead phrase if one was taken, or the typed word). ``probs``: the LLM's
        probabilities at this fork, if the profile did not see them in ``rerank`` (store replay).
        ``document``: the document id, so that a new document is never mistaken for an undo.

        Also reconciles with the previous call in the same document: text written in between
        (auto-written words the person kept) is learned, and a previous decision that was undone
        with ``back`` (the fork is back at its context) is taken back.
        """
        with self.lock:
            self._sync(context, document)
            self._observe(context, shown, chosen, committed, probs, document)

    def mark_store(self, ns: int) -> None:
        """Every store decision written up to ``ns`` has been observed (call after the store write)."""
        with self.lock:
            if ns > self.store_mark_ns_:
                self.store_mark_ns_ = ns
                self.dirty_ = True

    def sync(self, text: str, *, document: str | None = None) -> None:
        """Learn the words written since the last decision (auto-written, kept): call at a document's end."""
        with self.lock:
            self._sync(text, document)
            self.cache.refresh()

    def settle(self) -> None:
        """The last decision can no longer be undone (its document ended): a fork elsewhere with the
        same text (a new document's prompt) is not its undo."""
        with self.lock:
            self.last_ = None

    def _sync(self, context: str, document: str | None) -> None:
        last = self.last_
        if last is None or (document is not None and document != last.document):
            return
        end = last.context + last.committed
        if context.startswith(end):
            if len(context) > len(end):
                h2, h1 = history_of(end)
                self.cache.partial_fit(context[len(end):], h2, h1)
                self.memory.remember(document, context[len(end):])
                self.last_ = None  # the person wrote on after it: that decision is settled
                self.dirty_ = True
        elif context == last.context:
            self._revert(last)

    def _observe(self, context: str, shown: Sequence[str], chosen: str | None, committed: str,
                 probs: Mapping[str, float] | None, document: str | None) -> None:
        seen = self.seen_.get(context) or Seen()
        llm = dict(probs) if probs is not None else seen.probs
        floor = seen.floor
        if probs is not None and probs:
            floor = min(min(probs.values()), 1e-3) / 10.0
        h2, h1 = history_of(context)
        target = chosen if chosen is not None else (words_of(committed)[:1] or [""])[0]
        undo = Undo(context, committed, [], [], len(self.mixture.buckets_), list(self.mixture.lam_),
                    list(self.choice.beta_), self.decisions_, document)
        rows: list[tuple[int, float, float]] = []
        if target:
            # held-out scores: the cache and the choice model have not seen this decision yet
            if llm:
                rows.append((self.bucket(h2, h1), self.cache.predict_proba(target, h2, h1), llm.get(target, floor)))
            # accept/reject counts words *shown*: a typed word the engine did not offer is no evidence
            # for or against the words on screen being chosen (the cache learns it instead)
            offered = chosen is not None
            choice_set = list(dict.fromkeys([*shown, *seen.shown, *([target] if offered else [])]))
            lam = self.weight(h2, h1)
            parts = self.cache.parts(h2, h1)
            base = [max(lam * self.cache.p(w, parts) + (1 - lam) * llm.get(w, floor), 1e-12) for w in choice_set]
            undo.accepts = self.choice.partial_fit(choice_set, target if offered else None, base, h1, target)
        undo.ngrams = self.cache.partial_fit(committed, h2, h1)
        self.memory.remember(document, committed)
        cut = self.mixture.partial_fit(rows)
        undo.em_rows = max(0, undo.em_rows - cut)
        self.decisions_ += 1
        self.cache.refresh()
        self.seen_.pop(context, None)
        self.last_ = undo
        self.last_key_ = decision_key(document, context, committed)
        self.updated_ns_ = time.time_ns()
        self.dirty_ = True

    def _revert(self, undo: Undo) -> None:
        """Take back a decision that was undone: its n-grams, its accept/reject counts, its weight updates."""
        self.cache.unlearn(undo.ngrams)
        self.choice.unlearn(undo.accepts, undo.beta)
        self.mixture.truncate(undo.em_rows, undo.lam)
        self.decisions_ = undo.decisions
        self.memory.forget(undo.document, len(undo.committed))
        self.last_ = None
        self.cache.refresh()

    # ------------------------------------------------------------------ reporting
    def log_likelihood(self) -> dict[str, float]:
        """Mean held-out log2-probability of the chosen words: LLM alone vs the learned mixture."""
        return self.mixture.log_likelihood()

    def summary(self) -> dict[str, Any]:
        acc = self.choice.accept_
        top = sorted(acc.items(), key=lambda kv: -(kv[1][0] + 0.5) / (kv[1][2] + 0.5))[:10]
        return {"user": self.user, "path": str(self.path) if self.path else None, "decisions": self.decisions_,
                "words": self.words_seen, "vocabulary": len(self.cache.unigrams_),
                "lambda": [round(x, 4) for x in self.mixture.lam_], "beta": [round(x, 4) for x in self.choice.beta_],
                "held_out": self.log_likelihood(), "memory_chars": self.memory.chars,
                "memory_documents": len(self.memory.texts_), "most_picked": [w for w, _ in top],
                "notice": self.notice_}

