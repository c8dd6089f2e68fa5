"""The per-user profile: what this person writes, picks and passes over, applied at every fork.

Two parts (docs/learning.md, "The profile"):

* a **cache language model** over the person's committed text: word trigrams with interpolated
  Witten-Bell backoff (trigram -> bigram -> unigram), mixed with the LLM's word distribution at
  each fork: ``P(w) = lam_b * P_cache(w | h) + (1 - lam_b) * P_llm(w | h)``. The weight ``lam_b``
  depends on how much the cache knows about the history ``h`` (bucket b: trigram context seen,
  only the bigram context, neither) and is **learned** from the person's own decisions by EM on
  held-out likelihood: every chosen word is scored by the cache *before* the cache sees it;
* **accept/reject statistics**: per word, and per (previous word, word), how often it was chosen
  when shown and how often it was passed over. Their smoothed log-odds are features of a
  conditional-logit choice model, ``P(choose w | shown) ~ P(w) * exp(beta . f(w))``, whose
  weights ``beta`` start at 0 and are learned by online gradient ascent on the likelihood of the
  person's actual choices (again scored before each update).

``rerank`` reorders (and may add to) the engine's candidates; it is pure Python over a few dicts
and costs well under 1 ms (bench/returning_user.py measures it). Stored as one JSON file per user,
written atomically; an unreadable file is kept aside and a fresh profile starts (``notice``).
"""
from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.daemon.engine import WordCandidate, WordDistribution
from razvilka.protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("razvilka.learn.profile")

FORMAT = "razvilka-profile"
VERSION = 1
SEP = "\x1f"                 # joins history words in keys (never inside a word)
BOS = "<s>"                  # history before the first word of a document
WORD_RE = re.compile(r"\n|\w+(?:['’-]\w+)*|[^\w\s]")
EM_KEEP = 4000               # held-out decisions kept for re-estimating the weights
EM_ITERS = 12
LAM_PRIOR = (0.05, 2.0)      # weak Beta prior on each lam_b: mean 0.05, worth 2 decisions (vanishes with data)
BETA_RATE = 0.05             # online gradient step for the accept/reject weights
BETA_RANGE = (-2.0, 4.0)
INJECT = 6                   # cache words considered per source (trigram, bigram, typed prefix) that may join
PREFIX_INJECT = 1            # at a prefix fork, at most this many of the person's words join the engine's list
PREFIX_RERANK = False        # True: rerank prefix forks like whole-word ones (bench/profile_probe.py compares)
SEEN_CONTEXTS = 16           # recent forks remembered (LLM probabilities and what was shown)
MEMORY_CHARS = 8000          # the person's earlier writing kept for the model to read first (<= 1,800 tokens)


def words_of(text: str) -> list[str]:
    """The units the engine offers: words (with inner ' and -), single punctuation, line breaks."""
    return WORD_RE.findall(text)


def history_of(context: str) -> tuple[str, str]:
    """The two words before the fork (``<s>`` where the document has fewer)."""
    tail = words_of(context[-120:])
    if len(tail) < 2 and len(context) > 120:
        tail = words_of(context)
    h = [BOS, BOS, *tail[-2:]]
    return h[-2], h[-1]


def default_profile_path(user: str, store_path: str | Path = "") -> Path:
    """``profiles/<user>.json`` next to the session store."""
    from razvilka.daemon.store import default_store_path

    base = Path(store_path).parent if store_path else default_store_path().parent
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user) or "default"
    return base / "profiles" / f"{safe}.json"


@dataclass
class _Seen:
    """One recent fork context: the LLM's (page 0, no prefix) probabilities and every word shown there."""

    probs: dict[str, float] = field(default_factory=dict)
    floor: float = 1e-4
    shown: set[str] = field(default_factory=set)


@dataclass
class _Undo:
    """What one observation added, so it can be taken back when the decision is undone."""

    context: str
    committed: str
    ngrams: list[tuple[str, str, str]]
    accepts: list[tuple[str, str, int, int, float]]   # (history word, word, +chosen, +passed, +expected)
    em_rows: int
    lam: list[float]
    beta: list[float]
    decisions: int
    document: str | None = None


class Profile:
    """One person's profile. Load with ``Profile.load(path)``; the daemon calls ``rerank`` at each
    fork and ``observe`` after each decision, then ``save``."""

    def __init__(self, path: str | Path | None = None, user: str = "") -> None:
        self.path = Path(path) if path else None
        self.user = user
        self.notice = ""                       # set when a corrupt file was put aside
        self._lock = threading.RLock()         # rerank runs on the engine thread, observe on the daemon's loop
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (the file is rewritten on the next ``save``)."""
        self.uni: dict[str, int] = {}
        self.bi: dict[str, dict[str, int]] = {}
        self.tri: dict[str, dict[str, int]] = {}
        self.acc: dict[str, list[float]] = {}    # word -> [chosen, passed over, expected chosen]
        self.acc_ctx: dict[str, list[float]] = {}  # h1 SEP word -> the same, after that word
        # per bucket: 0 = no context seen, 1 = bigram ctx, 2 = trigram ctx; 3-5 the same at forks where the
        # model read the memory first (it then knows much of what the cache knows: a weight of their own)
        self.lam = [LAM_PRIOR[0]] * 6
        self.beta = [0.0, 0.0]                 # weights of the global and in-context accept log-odds
        self.em_b: list[int] = []
        self.em_pc: list[float] = []
        self.em_pl: list[float] = []
        self.decisions = 0
        self.created_ns = time.time_ns()
        self.updated_ns = self.created_ns
        # store decisions written up to this time are in the profile (live.catch_up learns the rest),
        # and the key of the last decision observed (it may be in the profile but not yet marked)
        self.store_mark_ns = self.created_ns
        self.last_key = ""
        self._n = 0
        self._bi_tot: dict[str, int] = {}
        self._tri_tot: dict[str, int] = {}
        self._vocab: list[str] = []            # every word, sorted (prefix look-up)
        self._cum: list[int] = [0]             # cumulative unigram counts over _vocab
        self._vocab_dirty = False
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        # what the person wrote, per document, oldest first: the model reads it before a new document
        self.memory: OrderedDict[str, str] = OrderedDict()
        self.memory_chars = MEMORY_CHARS
        self.reading = False                   # the model read the memory before this document (the daemon sets it)
        self._last: _Undo | None = None
        self.last_rerank_ms = 0.0
        self.last_rerank_cpu_ms = 0.0
        self.dirty = True

    @property
    def words_seen(self) -> int:
        return self._n

    # ------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, path: str | Path, user: str = "") -> "Profile":
        """The profile at ``path`` (a fresh one if there is none). An unreadable file is renamed to
        ``<name>.corrupt-<time>.json`` — nothing is deleted — and ``notice`` says so."""
        p = Path(path)
        prof = cls(p, user)
        if not p.exists():
            return prof
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            prof._from_json(data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError) as exc:
            if isinstance(exc, _NewerProfile):
                raise ProtocolError(ErrorCode.BAD_CONFIG, str(exc)) from None
            aside = p.with_name(f"{p.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}{p.suffix}")
            os.replace(p, aside)
            prof = cls(p, user)
            prof.notice = (f"the profile {p} could not be read ({type(exc).__name__}: {exc}); "
                           f"it was kept as {aside} and a new, empty profile was started")
            log.warning("%s", prof.notice)
        return prof

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temporary file, then rename): a crash leaves the old or the new file."""
        target = Path(path) if path else self.path
        if target is None:
            raise ProtocolError(ErrorCode.BAD_CONFIG, "this profile has no file: pass a path to save()")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:  # a consistent copy; the slow part (JSON, disk) runs without holding up forks
            data = self.to_json()
            self.dirty = self.dirty if path is not None else False
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)
        return target

    def to_json(self) -> dict[str, Any]:
        """The file's content (copies: safe to serialise while the profile goes on learning)."""
        with self._lock:
            return {
                "format": FORMAT, "version": VERSION, "user": self.user, "created_ns": self.created_ns,
                "updated_ns": self.updated_ns, "decisions": self.decisions,
                "store_mark_ns": self.store_mark_ns, "last_key": self.last_key,
                "lam": list(self.lam), "beta": list(self.beta),
                "unigrams": dict(self.uni), "bigrams": {h: dict(d) for h, d in self.bi.items()},
                "trigrams": {h: dict(d) for h, d in self.tri.items()},
                "accept": {w: list(v) for w, v in self.acc.items()},
                "accept_ctx": {w: list(v) for w, v in self.acc_ctx.items()},
                "em": [list(self.em_b), [round(x, 9) for x in self.em_pc], [round(x, 9) for x in self.em_pl]],
                "memory": [[d, t] for d, t in self.memory.items()],
            }

    def _from_json(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a razvilka profile (no \"format\": \"razvilka-profile\")")
        if int(data["version"]) > VERSION:
            raise _NewerProfile(f"profile {self.path} has version {data['version']}, newer than this razvilka "
                                f"({VERSION}); upgrade razvilka (the file was left as it is)")
        self.user = self.user or str(data.get("user", ""))
        self.created_ns = int(data["created_ns"])
        self.updated_ns = int(data["updated_ns"])
        self.decisions = int(data["decisions"])
        self.store_mark_ns = int(data.get("store_mark_ns", self.updated_ns))
        self.last_key = str(data.get("last_key", ""))
        self.lam = [float(x) for x in data["lam"]]
        if len(self.lam) == 3:  # a file from before the memory: its weights are those of forks without it
            self.lam += [LAM_PRIOR[0]] * 3
        self.beta = [float(x) for x in data["beta"]]
        if len(self.lam) != 6 or len(self.beta) != 2 or not all(map(math.isfinite, self.lam + self.beta)):
            raise ValueError("bad weights")
        self.uni = {str(w): int(c) for w, c in data["unigrams"].items()}
        self.bi = {str(h): {str(w): int(c) for w, c in d.items()} for h, d in data["bigrams"].items()}
        self.tri = {str(h): {str(w): int(c) for w, c in d.items()} for h, d in data["trigrams"].items()}
        self.acc = {str(w): [float(v[0]), float(v[1]), float(v[2])] for w, v in data["accept"].items()}
        self.acc_ctx = {str(w): [float(v[0]), float(v[1]), float(v[2])] for w, v in data["accept_ctx"].items()}
        b, pc, pl = data["em"]
        if not len(b) == len(pc) == len(pl):
            raise ValueError("bad em rows")
        self.em_b, self.em_pc, self.em_pl = [int(x) for x in b], [float(x) for x in pc], [float(x) for x in pl]
        self.memory = OrderedDict((str(d), str(t)) for d, t in data.get("memory", []))  # absent in older files
        self._n = sum(self.uni.values())
        self._bi_tot = {h: sum(d.values()) for h, d in self.bi.items()}
        self._tri_tot = {h: sum(d.values()) for h, d in self.tri.items()}
        self._vocab_dirty = True
        self._refresh_top()
        self.dirty = False

    def export(self, path: str | Path) -> Path:
        return self.save(path)

    @classmethod
    def import_file(cls, source: str | Path, path: str | Path, user: str = "") -> "Profile":
        """Read ``source`` strictly (a clear error if it is not a profile) and make it the profile at ``path``."""
        src = Path(source)
        prof = cls(path, user)
        try:
            prof._from_json(json.loads(src.read_text(encoding="utf-8")))
        except _NewerProfile as exc:
            raise ProtocolError(ErrorCode.BAD_CONFIG, str(exc)) from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError) as exc:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"{src} is not a usable razvilka profile: "
                                f"{type(exc).__name__}: {exc}") from None
        prof.dirty = True
        return prof

    # ------------------------------------------------------------------ the memory
    def memory_text(self, exclude: str | None = None, prompt: str = "") -> str:
        """The person's earlier writing, one document per line, oldest first: what the daemon gives the
        model before a document. Left out, since the model reads them anyway: ``exclude`` (the document
        being written) and documents the ``prompt`` already holds. Read twice, once in the memory and
        again in the prompt, the model takes the repetition for a pattern and copies what followed in
        the memory, confidently and wrongly.

        It only grows at its end between trims, so the engine keeps its KV from one document to the next."""
        with self._lock:
            lines = [t.strip() for d, t in self.memory.items() if (exclude is None or d != exclude) and t.strip()]
        lines = [t for t in lines if t not in prompt]
        return "\n".join(lines) + "\n" if lines else ""

    def read_text(self, text: str, document: str) -> int:
        """Learn text the person wrote elsewhere (letters, notes, a draft): the cache learns its words and
        the memory keeps it, as if it had been written here; no decision, so no weight moves. Returns
        the number of words learned."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        with self._lock:
            for line in lines:
                self._learn_text(line, BOS, BOS, None)
            self._remember(document, " ".join(lines))
            self._refresh_top()
            self.updated_ns = time.time_ns()
            self.dirty = True
        return sum(len(words_of(line)) for line in lines)

    def _remember(self, document: str | None, text: str) -> None:
        if self.memory_chars <= 0:  # the memory is off: keep none of the person's text
            self.memory.clear()
            return
        doc = document or ""
        self.memory[doc] = self.memory.get(doc, "") + text
        self.memory.move_to_end(doc)
        total = sum(len(t) + 1 for t in self.memory.values())
        if total > self.memory_chars:  # drop the oldest documents, down to half: one re-read per half-budget written
            while len(self.memory) > 1 and total > self.memory_chars // 2:
                _, old = self.memory.popitem(last=False)
                total -= len(old) + 1
            if total > self.memory_chars:  # one document longer than the budget: keep its end
                self.memory[doc] = self.memory[doc][-(self.memory_chars // 2):]

    def _forget(self, document: str | None, n_chars: int) -> None:
        doc = document or ""
        text = self.memory.get(doc, "")
        if n_chars and text:
            self.memory[doc] = text[: max(0, len(text) - n_chars)]

    # ------------------------------------------------------------------ the cache LM
    def p_cache(self, word: str, h2: str, h1: str) -> float:
        """Interpolated Witten-Bell: P(w|h2 h1) = (c(h2h1w) + T(h2h1) P(w|h1)) / (c(h2h1) + T(h2h1))."""
        return self._p(word, self._parts(h2, h1))

    def _parts(self, h2: str, h1: str) -> tuple[dict[str, int], float, float, dict[str, int], float, float]:
        """The history's tables and weights: P(w) = a3 c3(w) + b3 (a2 c2(w) + b2 P1(w))."""
        empty: dict[str, int] = {}
        d2 = self.bi.get(h1) or empty
        a2, b2 = (1.0 / (self._bi_tot[h1] + len(d2)), len(d2) / (self._bi_tot[h1] + len(d2))) if d2 else (0.0, 1.0)
        key = h2 + SEP + h1
        d3 = (self.tri.get(key) or empty) if d2 else empty
        a3, b3 = (1.0 / (self._tri_tot[key] + len(d3)), len(d3) / (self._tri_tot[key] + len(d3))) if d3 else (0.0, 1.0)
        return d3, a3, b3, d2, a2, b2

    def _p(self, word: str, parts: tuple[dict[str, int], float, float, dict[str, int], float, float]) -> float:
        if self._n == 0:
            return 0.0
        d3, a3, b3, d2, a2, b2 = parts
        return a3 * d3.get(word, 0) + b3 * (a2 * d2.get(word, 0) + b2 * self.uni.get(word, 0) / self._n)

    def _prefix_mass(self, prefix: str, parts: tuple[dict[str, int], float, float, dict[str, int], float, float]) -> float:
        """The cache's total probability of the words starting with ``prefix``, exactly (prefix sums, no scan
        of the vocabulary): what the cache is conditioned on when the person has typed letters."""
        if self._n == 0:
            return 0.0
        d3, a3, b3, d2, a2, b2 = parts
        lo = bisect.bisect_left(self._vocab, prefix)
        hi = bisect.bisect_left(self._vocab, prefix + "\U0010ffff", lo)
        z1 = (self._cum[hi] - self._cum[lo]) / self._n
        s2 = sum(c for w, c in d2.items() if w.startswith(prefix)) if d2 else 0
        s3 = sum(c for w, c in d3.items() if w.startswith(prefix)) if d3 else 0
        return a3 * s3 + b3 * (a2 * s2 + b2 * z1)

    def bucket(self, h2: str, h1: str) -> int:
        b = 2 if h2 + SEP + h1 in self.tri else 1 if h1 in self.bi else 0
        return b + 3 if self.reading else b

    def weight(self, h2: str, h1: str) -> float:
        """The learned mixing weight of the cache for this history (0 while the cache is empty)."""
        return self.lam[self.bucket(h2, h1)] if self._n else 0.0

    def _features(self, word: str, h1: str) -> tuple[float, float]:
        """How much more (or less) often this word was chosen when shown than the model expected:
        ``log((chosen + 1/2) / (expected + 1/2))``, overall and after this previous word (0 if never shown).

        "Expected" is its probability within each choice set, so a word that is shown everywhere and
        rightly chosen at its predicted rate scores 0; one the person keeps passing over scores < 0."""
        a = self.acc.get(word)
        f1 = math.log((a[0] + 0.5) / (a[2] + 0.5)) if a else 0.0
        c = self.acc_ctx.get(h1 + SEP + word)
        f2 = math.log((c[0] + 0.5) / (c[2] + 0.5)) if c else 0.0
        return f1, f2

    def _learn_text(self, text: str, h2: str, h1: str, undo: _Undo | None) -> tuple[str, str]:
        for w in words_of(text):
            self._count(h2, h1, w, +1)
            if undo is not None:
                undo.ngrams.append((h2, h1, w))
            h2, h1 = h1, w
        return h2, h1

    def _count(self, h2: str, h1: str, w: str, n: int) -> None:
        self._vocab_dirty = True
        self.uni[w] = self.uni.get(w, 0) + n
        self._n += n
        for table, tot, key in ((self.bi, self._bi_tot, h1), (self.tri, self._tri_tot, h2 + SEP + h1)):
            d = table.setdefault(key, {})
            d[w] = d.get(w, 0) + n
            tot[key] = tot.get(key, 0) + n
            if d[w] <= 0:
                del d[w]
            if not d:
                del table[key]
                tot.pop(key, None)
        if self.uni[w] <= 0:
            del self.uni[w]

    def _refresh_top(self) -> None:
        """Rebuild the prefix look-up ``rerank`` reads (here, after a decision, never during a fork)."""
        if not self._vocab_dirty:
            return
        self._vocab = sorted(self.uni)
        self._cum = [0, *itertools.accumulate(self.uni[w] for w in self._vocab)]
        self._vocab_dirty = False

    def _vocab_with(self, prefix: str) -> list[str]:
        """The person's words that start with ``prefix``, most used first (at most a few)."""
        lo = bisect.bisect_left(self._vocab, prefix)
        hi = bisect.bisect_left(self._vocab, prefix + "\U0010ffff", lo)
        hits = [w for w in self._vocab[lo:min(hi, lo + 200)] if _injectable(w)]
        return heapq.nlargest(INJECT, hits, key=self.uni.__getitem__)

    # ------------------------------------------------------------------ at a fork
    def rerank(self, dist: WordDistribution, context: str, k: int | None = None) -> WordDistribution:
        """Candidates reweighted for this person: the mixture with the cache LM, times the learned
        accept/reject factor; words of the person's own that the engine did not list may join.

        ``dist`` is the engine's list (ask it for about 2K words); the result is ranked and cut to
        ``k`` (all when None), with ``margin``, ``top_prob`` and ``entropy_bits`` recomputed so that
        fork gating sees the profile too. Probabilities keep the total mass of the listed words.
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        with self._lock:
            out = self._rerank(dist, context, k)
        self.last_rerank_ms = (time.perf_counter() - t0) * 1000          # wall: includes waiting for the GIL
        self.last_rerank_cpu_ms = (time.thread_time() - c0) * 1000       # what it cost this thread
        return out

    def _rerank(self, dist: WordDistribution, context: str, k: int | None) -> WordDistribution:
        cands = dist.candidates
        h2, h1 = history_of(context)
        prefix = dist.prefix
        llm = {c.word: float(c.prob) for c in cands}
        listed = [p for p in llm.values() if p > 0]
        residual = max(1.0 - (dist.coverage or sum(listed)), 1e-6)
        floor = min(min(listed) if listed else 1e-4, residual / 10.0)
        seen = self._seen.get(context)
        if seen is None:
            seen = self._seen[context] = _Seen()
            while len(self._seen) > SEEN_CONTEXTS:
                self._seen.popitem(last=False)
        self._seen.move_to_end(context)
        if not prefix and getattr(dist, "page", 0) == 0 and not seen.probs:
            seen.probs, seen.floor = llm, floor
        if self._n == 0 and self.beta == [0.0, 0.0]:
            out = list(cands[:k] if k else cands)
            seen.shown.update(c.word for c in out)
            return replace(dist, candidates=out)

        lam = self.weight(h2, h1)
        parts = self._parts(h2, h1)
        extra: list[str] = []
        if self._n:
            d3, _, _, d2, _, _ = parts
            pool = heapq.nlargest(INJECT, d3, key=d3.__getitem__) + heapq.nlargest(INJECT, d2, key=d2.__getitem__)
            if prefix:
                pool += self._vocab_with(prefix)
            for w in pool:
                if w not in llm and w not in extra and _injectable(w) and (not prefix or w.startswith(prefix)):
                    extra.append(w)
        words = [c.word for c in cands] + extra
        pc = [self._p(w, parts) for w in words]
        if prefix:  # the engine's list is conditioned on the prefix: condition the cache the same way
            z = self._prefix_mass(prefix, parts)
            pc = [p / z for p in pc] if z > 0 else [0.0] * len(pc)
        pl = [llm.get(w, floor) for w in words]
        pm = [lam * a + (1.0 - lam) * b for a, b in zip(pc, pl)]
        keep = bool(prefix) and not PREFIX_RERANK
        # the accept/reject factor only at whole-word forks: its counts come from what was shown there
        b1, b2 = self.beta if not keep else (0.0, 0.0)
        scores = []
        for w, p in zip(words, pm):
            f1, f2 = self._features(w, h1) if not keep else (0.0, 0.0)
            scores.append(p * math.exp(b1 * f1 + b2 * f2))
        total_m, total_s = sum(pm), sum(scores)
        scale = total_m / total_s if total_s > 0 else 1.0
        order = sorted(range(len(words)), key=lambda i: -scores[i])
        n_out = k or len(order)
        shown_p = [min(1.0, s * scale) for s in scores]
        if keep:
            # letters typed: the engine's prefix list is already sharp, and reordering it cost the simulated
            # returning user actions (dev split, docs/learning.md); keep its order and probabilities and let
            # at most PREFIX_INJECT of the person's own words that it did not list join, at their mixture rank
            joined = [i for i in order[:n_out] if i >= len(cands)][:PREFIX_INJECT]
            shown_p[: len(cands)] = [float(c.prob) for c in cands]
            order = sorted([*range(min(len(cands), n_out - len(joined))), *joined], key=lambda i: -shown_p[i])
        lead = _lead(cands, context)
        out: list[WordCandidate] = []
        for i in order[:n_out]:
            prob = shown_p[i]
            if i < len(cands):
                out.append(replace(cands[i], prob=prob))
            else:
                out.append(WordCandidate(word=words[i], text=lead + words[i], tokens=[], prob=prob, paths=0))
        seen.shown.update(c.word for c in out)
        ranked = sorted((s * scale for s in scores), reverse=True)
        margin = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0) if ranked else 0.0
        h_old = _word_entropy(pl[: len(cands)])
        h_new = _word_entropy([s * scale for s in scores])
        result = replace(dist, candidates=out, margin=float(margin), top_prob=float(ranked[0]) if ranked else 0.0,
                         entropy_bits=max(0.0, float(dist.entropy_bits) + h_new - h_old))
        return result

    # ------------------------------------------------------------------ after a decision
    def observe(self, context: str, shown: Sequence[str], chosen: str | None, committed: str, *,
                probs: Mapping[str, float] | None = None, document: str | None = None) -> None:
        """Learn from one decision at the fork whose document text was ``context``.

        ``shown``: the candidate words on screen; ``chosen``: the one picked (None when the person
        typed a word that was not offered); ``committed``: the exact text appended (the candidate,
        plus its look-ahead phrase if one was taken, or the typed word). ``probs``: the LLM's
        probabilities at this fork, if the profile did not see them in ``rerank`` (store replay).
        ``document``: the document id, so that a new document is never mistaken for an undo.

        Also reconciles with the previous call in the same document: text written in between
        (auto-written words the person kept) is learned, and a previous decision that was undone
        with ``back`` (the fork is back at its context) is taken back.
        """
        with self._lock:
            self._sync(context, document)
            self._observe(context, shown, chosen, committed, probs, document)

    def mark_store(self, ns: int) -> None:
        """Every store decision written up to ``ns`` has been observed (call after the store write)."""
        with self._lock:
            if ns > self.store_mark_ns:
                self.store_mark_ns = ns
                self.dirty = True

    def sync(self, text: str, *, document: str | None = None) -> None:
        """Learn the words written since the last decision (auto-written, kept): call at a document's end."""
        with self._lock:
            self._sync(text, document)
            self._refresh_top()

    def _sync(self, context: str, document: str | None) -> None:
        last = self._last
        if last is None or (document is not None and document != last.document):
            return
        end = last.context + last.committed
        if context.startswith(end):
            if len(context) > len(end):
                h2, h1 = history_of(end)
                self._learn_text(context[len(end):], h2, h1, None)
                self._remember(document, context[len(end):])
                self._last = None  # the person wrote on after it: that decision is settled
                self.dirty = True
        elif context == last.context:
            self._revert(last)

    def _observe(self, context: str, shown: Sequence[str], chosen: str | None, committed: str,
                 probs: Mapping[str, float] | None, document: str | None) -> None:
        seen = self._seen.get(context) or _Seen()
        llm = dict(probs) if probs is not None else seen.probs
        floor = seen.floor
        if probs is not None and probs:
            floor = min(min(probs.values()), 1e-3) / 10.0
        h2, h1 = history_of(context)
        target = chosen if chosen is not None else (words_of(committed)[:1] or [""])[0]
        undo = _Undo(context, committed, [], [], len(self.em_b), list(self.lam), list(self.beta), self.decisions,
                     document)
        if target:
            # held-out scores: the cache and the choice model have not seen this decision yet
            if llm:
                self.em_b.append(self.bucket(h2, h1))
                self.em_pc.append(self.p_cache(target, h2, h1))
                self.em_pl.append(llm.get(target, floor))
            # accept/reject counts words *shown*: a typed word the engine did not offer is no evidence
            # for or against the words on screen being chosen (the cache learns it instead)
            offered = chosen is not None
            choice_set = list(dict.fromkeys([*shown, *seen.shown, *([target] if offered else [])]))
            expected = self._beta_step(choice_set, target if offered else None, h2, h1, llm, floor)
            for w, e in zip(choice_set, expected):
                a, r = (1, 0) if w == target else (0, 1)
                self._accept(h1, w, a, r, e)
                undo.accepts.append((h1, w, a, r, e))
        self._learn_text(committed, h2, h1, undo)
        self._remember(document, committed)
        if len(self.em_b) > EM_KEEP:
            cut = len(self.em_b) - EM_KEEP
            del self.em_b[:cut], self.em_pc[:cut], self.em_pl[:cut]
            undo.em_rows = max(0, undo.em_rows - cut)
        self._fit_lambda()
        self.decisions += 1
        self._refresh_top()
        self._seen.pop(context, None)
        self._last = undo
        self.last_key = decision_key(document, context, committed)
        self.updated_ns = time.time_ns()
        self.dirty = True

    def _accept(self, h1: str, w: str, a: int, r: int, e: float) -> None:
        for table, key in ((self.acc, w), (self.acc_ctx, h1 + SEP + w)):
            v = table.setdefault(key, [0.0, 0.0, 0.0])
            v[0] += a
            v[1] += r
            v[2] += e
            if v[0] <= 0 and v[1] <= 0:
                del table[key]

    def _revert(self, undo: _Undo) -> None:
        """Take back a decision that was undone: its n-grams, its accept/reject counts, its weight updates."""
        for h2, h1, w in undo.ngrams:
            self._count(h2, h1, w, -1)
        for h1, w, a, r, e in undo.accepts:
            self._accept(h1, w, -a, -r, -e)
        del self.em_b[undo.em_rows:], self.em_pc[undo.em_rows:], self.em_pl[undo.em_rows:]
        self.lam, self.beta, self.decisions = undo.lam, undo.beta, undo.decisions
        self._forget(undo.document, len(undo.committed))
        self._last = None
        self._refresh_top()

    def _beta_step(self, choice_set: list[str], target: str | None, h2: str, h1: str, llm: Mapping[str, float],
                   floor: float) -> list[float]:
        """One gradient step on log P(target | choice set) of the conditional-logit choice model
        (none when ``target`` is None: the person typed a word that was not offered).

        Returns each word's probability under the mixture alone (no accept/reject factor): how
        often the model expects it to be the next word, what the accept statistics count as "expected"."""
        lam = self.weight(h2, h1)
        parts = self._parts(h2, h1)
        feats, base = [], []
        for w in choice_set:
            feats.append(self._features(w, h1))
            base.append(max(lam * self._p(w, parts) + (1 - lam) * llm.get(w, floor), 1e-12))
        expected = [min(1.0, b) for b in base]
        if target is None or len(choice_set) < 2:
            return expected
        logits = [math.log(b) + self.beta[0] * f[0] + self.beta[1] * f[1] for b, f in zip(base, feats)]
        m = max(logits)
        e = [math.exp(x - m) for x in logits]
        z = sum(e)
        ti = choice_set.index(target)
        for j in range(2):
            grad = feats[ti][j] - sum(ei / z * f[j] for ei, f in zip(e, feats))
            self.beta[j] = min(BETA_RANGE[1], max(BETA_RANGE[0], self.beta[j] + BETA_RATE * grad))
        return expected

    def _fit_lambda(self) -> None:
        """MAP-EM for the mixture weights on the held-out decisions, per bucket (a weak Beta prior)."""
        if not self.em_b:
            return
        b = np.asarray(self.em_b)
        pc = np.asarray(self.em_pc)
        pl = np.maximum(np.asarray(self.em_pl), 1e-12)
        mean, strength = LAM_PRIOR
        for k in range(len(self.lam)):
            sel = b == k
            n = int(sel.sum())
            if not n:
                continue
            c, l_ = pc[sel], pl[sel]
            lam = self.lam[k]
            for _ in range(EM_ITERS):
                r = lam * c / (lam * c + (1 - lam) * l_)
                lam = (float(r.sum()) + strength * mean) / (n + strength)
            self.lam[k] = min(0.95, max(1e-4, lam))

    # ------------------------------------------------------------------ reporting
    def log_likelihood(self) -> dict[str, float]:
        """Mean held-out log2-probability of the chosen words: LLM alone vs the learned mixture."""
        if not self.em_b:
            return {"decisions": 0}
        b = np.asarray(self.em_b)
        pc = np.asarray(self.em_pc)
        pl = np.maximum(np.asarray(self.em_pl), 1e-12)
        lam = np.asarray(self.lam)[b]
        return {"decisions": len(b), "llm_bits": float(-np.log2(pl).mean()),
                "mixture_bits": float(-np.log2(lam * pc + (1 - lam) * pl).mean())}

    def summary(self) -> dict[str, Any]:
        top = sorted(self.acc.items(), key=lambda kv: -(kv[1][0] + 0.5) / (kv[1][2] + 0.5))[:10]
        return {"user": self.user, "path": str(self.path) if self.path else None, "decisions": self.decisions,
                "words": self._n, "vocabulary": len(self.uni), "lambda": [round(x, 4) for x in self.lam],
                "beta": [round(x, 4) for x in self.beta], "held_out": self.log_likelihood(),
                "memory_chars": sum(len(t) for t in self.memory.values()), "memory_documents": len(self.memory),
                "most_picked": [w for w, _ in top], "notice": self.notice}


def decision_key(document: str | None, context: str, committed: str) -> str:
    """Names one decision (its document, where it was made, what it appended) across a restart."""
    return hashlib.sha1(SEP.join((document or "", context, committed)).encode("utf-8")).hexdigest()


class _NewerProfile(ValueError):
    pass


def _injectable(word: str) -> bool:
    """Only words are offered from the cache (punctuation and line breaks come from the LLM)."""
    return bool(word) and word[0].isalnum()


def _lead(cands: Iterable[WordCandidate], context: str) -> str:
    """The whitespace before a new word here, as the engine writes it: its spaced words show it. A piece
    glued onto the previous word ("es" after "Miss") has none and says nothing about a new word's."""
    for c in cands:
        if c.word[:1].isalnum() and c.text[:1] in (" ", "\t"):
            return c.text[: len(c.text) - len(c.text.lstrip(" \t"))]
    return "" if not context or context[-1].isspace() else " "


def _word_entropy(probs: Sequence[float]) -> float:
    """Entropy (bits) of the listed words plus one lump for the rest of the mass."""
    ps = [p for p in probs if p > 0]
    rest = max(0.0, 1.0 - sum(ps))
    return -sum(p * math.log2(p) for p in ps + ([rest] if rest > 0 else []))
