"""A fork's candidates reweighted for this person: the profile applied to one word distribution.

Pure Python over a few dicts; it costs well under 1 ms (bench/returning_user.py measures it).
"""
from __future__ import annotations

import heapq
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from razvilka.daemon.engine import WordCandidate, WordDistribution
from razvilka.daemon.learn.text import history_of, injectable, lead, word_entropy

if TYPE_CHECKING:
    from razvilka.daemon.learn.profile import Profile


def rerank(profile: Profile, dist: WordDistribution, context: str, k: int | None) -> WordDistribution:
    """The mixture with the cache LM, times the learned accept/reject factor; words of the person's
    own that the engine did not list may join. Call with ``profile.lock`` held (``Profile.rerank``).

    ``dist`` is the engine's list (ask it for about 2K words); the result is ranked and cut to
    ``k`` (all when None), with ``margin``, ``top_prob`` and ``entropy_bits`` recomputed so that
    fork gating sees the profile too. Probabilities keep the total mass of the listed words.
    """
    cache, choice = profile.cache, profile.choice
    cands = dist.candidates
    h2, h1 = history_of(context)
    prefix = dist.prefix
    llm = {c.word: float(c.prob) for c in cands}
    listed = [p for p in llm.values() if p > 0]
    residual = max(1.0 - (dist.coverage or sum(listed)), 1e-6)
    floor = min(min(listed) if listed else 1e-4, residual / 10.0)
    seen = profile.seen(context)
    if not prefix and getattr(dist, "page", 0) == 0 and not seen.probs:
        seen.probs, seen.floor = llm, floor
    if cache.n_words_ == 0 and choice.untrained:
        as_listed = list(cands[:k] if k else cands)
        seen.shown.update(c.word for c in as_listed)
        return replace(dist, candidates=as_listed)

    lam = profile.weight(h2, h1)
    parts = cache.parts(h2, h1)
    extra: list[str] = []
    if cache.n_words_:
        d3, _, _, d2, _, _ = parts
        n = profile.inject
        pool = heapq.nlargest(n, d3, key=d3.__getitem__) + heapq.nlargest(n, d2, key=d2.__getitem__)
        if prefix:
            pool += cache.words_with(prefix, n)
        for w in pool:
            if w not in llm and w not in extra and injectable(w) and (not prefix or w.startswith(prefix)):
                extra.append(w)
    words = [c.word for c in cands] + extra
    pc = [cache.p(w, parts) for w in words]
    if prefix:  # the engine's list is conditioned on the prefix: condition the cache the same way
        z = cache.prefix_mass(prefix, parts)
        pc = [p / z for p in pc] if z > 0 else [0.0] * len(pc)
    pl = [llm.get(w, floor) for w in words]
    pm = [lam * a + (1.0 - lam) * b for a, b in zip(pc, pl)]
    keep = bool(prefix) and not profile.prefix_rerank
    # the accept/reject factor only at whole-word forks: its counts come from what was shown there
    b1, b2 = choice.beta_ if not keep else (0.0, 0.0)
    scores = []
    for w, p in zip(words, pm):
        f1, f2 = choice.features(w, h1) if not keep else (0.0, 0.0)
        scores.append(p * math.exp(b1 * f1 + b2 * f2))
    total_m, total_s = sum(pm), sum(scores)
    scale = total_m / total_s if total_s > 0 else 1.0
    order = sorted(range(len(words)), key=lambda i: -scores[i])
    n_out = k or len(order)
    shown_p = [min(1.0, s * scale) for s in scores]
    if keep:
        # letters typed: the engine's prefix list is already sharp, and reordering it cost the simulated
        # returning user actions (dev split, docs/learning.md); keep its order and probabilities and let
        # at most prefix_inject of the person's own words that it did not list join, at their mixture rank
        joined = [i for i in order[:n_out] if i >= len(cands)][:profile.prefix_inject]
        shown_p[: len(cands)] = [float(c.prob) for c in cands]
        order = sorted([*range(min(len(cands), n_out - len(joined))), *joined], key=lambda i: -shown_p[i])
    space = lead(cands, context)
    out: list[WordCandidate] = []
    for i in order[:n_out]:
        prob = shown_p[i]
        if i < len(cands):
            out.append(replace(cands[i], prob=prob))
        else:
            out.append(WordCandidate(word=words[i], text=space + words[i], tokens=[], prob=prob, paths=0))
    seen.shown.update(c.word for c in out)
    ranked = sorted((s * scale for s in scores), reverse=True)
    margin = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0) if ranked else 0.0
    h_old = word_entropy(pl[: len(cands)])
    h_new = word_entropy([s * scale for s in scores])
    return replace(dist, candidates=out, margin=float(margin), top_prob=float(ranked[0]) if ranked else 0.0,
                   entropy_bits=max(0.0, float(dist.entropy_bits) + h_new - h_old))
