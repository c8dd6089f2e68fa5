#!/usr/bin/env python3
"""A fast, offline probe of the profile's ranking: no bus, no look-ahead, no gating.

The returning-user benchmark (bench/returning_user.py) drives the real daemon and takes most of an
hour; this probe asks one question in minutes, so that ranking rules can be compared on the same
engine output: *if the person writes word by word (select the word when it is among the K shown,
else type its next letter, as the simulated person does), how many actions does it take?*

1. With the engine alone it computes, for every word of a first part (the person's history) the
   engine's 2K-word list at the word boundary, and for every word of a **dev** part (chapters
   20-39 of *Pride and Prejudice*, for choosing rules) and a **test** part (chapter 40 on, the
   returning-user benchmark's later part) also the lists after each typed letter.
2. For each history size it builds a profile from the first part (the daemon's ``observe`` calls;
   the person saw the engine's top K) and replays the dev and test parts through ``rerank``, the
   profile learning live as in the daemon.

Per rule it prints recall@K at the word boundary and the actions per word of the word-by-word
policy (a select = 1, each letter = 1, a word never offered = its letters + a space), as a ratio to
the engine alone in the same run, and a keystroke-saving proxy. The rules: ``engine`` (no profile),
``profile`` (the shipped rule), ``profile, prefix reranked`` (``Profile(prefix_rerank=True)``: prefix forks
reranked like whole-word forks, the rule before it was measured here); with ``--seed-rest`` also a
profile whose cache first reads the rest of chapters 1-19 as text (how far a long history helps).
Two **ceilings** are not rules: they show 2K words instead of K (the engine's 2K; the engine's K
and the cache's K best), a bound on what any reranking of the engine's and the cache's words
could save. With ``--memory`` the engine's lists are computed again with the profile's memory
(the person's earlier writing) read before each clause, as the daemon does, and scored with and
without the cache's reranking.

    python bench/profile_probe.py --learn 600 --sizes 100,600
    python bench/profile_probe.py --cache /tmp/probe.pkl   # re-score without the engine
    python bench/profile_probe.py --cache /tmp/probe.pkl --memory --sizes 100   # + lists with the memory

Writes bench/results/profile_probe/<run>/ (config.json, results.json, table.md).
"""
from __future__ import annotations

import argparse
import bisect
import heapq
import json
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from returning_user import austen_clauses  # noqa: E402
from simuser.driver import prompt_for  # noqa: E402


@dataclass
class Word:
    """One word to write, with what the engine offers before it (and after each typed letter)."""

    phrase: int
    context: str
    word: str
    dist: Any                                   # WordDistribution at the word boundary
    prefixed: dict[str, Any] = field(default_factory=dict)  # typed prefix -> WordDistribution


def texts(args: argparse.Namespace) -> dict[str, list[str]]:
    clauses = austen_clauses()
    first = [c for ch, c in clauses if ch < 20][: args.learn]
    known = set(first)
    dev = [c for ch, c in clauses if 20 <= ch < 40 and c not in known][: args.dev]
    test = [c for ch, c in clauses if ch >= 40 and c not in known][: args.test]
    if len(first) < args.learn:
        raise SystemExit(f"profile_probe: only {len(first)} clauses before chapter 20")
    return {"first": first, "dev": dev, "test": test}


def engine_words(engine: Any, phrases: Sequence[str], k: int, wide: int, *, letters: bool, context: int,
                 say: Callable[[str], None], memory: Any = None, part: str = "") -> list[Word]:
    """The engine's lists for every word of ``phrases``. ``memory``: a profile whose memory the model reads
    before each phrase, as the daemon does; each phrase joins it once written (document ``part<i>``)."""
    out: list[Word] = []
    for i, phrase in enumerate(phrases):
        prompt = prompt_for(phrases, i, context)
        engine.reset(prompt, memory.memory_text(prompt=prompt) if memory is not None else "")
        for w in phrase.split():
            ctx = engine.text
            item = Word(i, ctx, w, engine.words(wide))
            if letters:  # until the engine alone shows it, and one letter more (a profile may need it)
                found = w in [c.word for c in item.dist.candidates[:k]]
                for n in range(1, len(w) + 1):
                    if found:
                        break
                    item.prefixed[w[:n]] = d = engine.words(wide, prefix=w[:n])
                    found = w in [c.word for c in d.candidates[:k]]
                    if found and n < len(w):
                        item.prefixed[w[: n + 1]] = engine.words(wide, prefix=w[: n + 1])
            out.append(item)
            engine.commit((" " if ctx and not ctx[-1].isspace() else "") + w)
        if memory is not None:
            memory.observe(prompt_for(phrases, i, context), [], None, " " + phrase, document=f"{part}{i}")
        if i % 25 == 24:
            say(f"  {i + 1}/{len(phrases)} phrases")
    return out


def actions(item: Word, shown: Callable[[Any], list[str]], k: int) -> tuple[int, bool]:
    """(actions to write the word, offered at the word boundary) under the word-by-word policy."""
    if item.word in shown(item.dist)[:k]:
        return 1, True
    for n in range(1, len(item.word) + 1):
        d = item.prefixed.get(item.word[:n])
        if d is None:
            break
        if item.word in shown(d)[:k]:
            return n + 1, False
    return len(item.word) + 1, False


def _cache_best(prof: Any, context: str, prefix: str, n: int) -> list[str]:
    """The profile's cache LM alone: its ``n`` most probable words after ``context`` that start with ``prefix``."""
    from razvilka.daemon.learn.text import history_of

    cache = prof.cache
    parts = cache.parts(*history_of(context))
    lo = bisect.bisect_left(cache.vocab_, prefix)
    hi = bisect.bisect_left(cache.vocab_, prefix + "\U0010ffff", lo)
    return heapq.nlargest(n, cache.vocab_[lo:hi], key=lambda w: cache.p(w, parts))


CEILINGS = ("ceiling: the engine's 2K words all shown", "ceiling: the engine's K and the cache's K best shown")


def _history(data: dict[str, list[Word]], size: int, k: int, seed: Sequence[str], **params: Any) -> Any:
    """The profile after the first ``size`` clauses (the daemon's ``observe`` calls; the engine's top K shown),
    with the hyperparameters ``params`` (``Profile.set_params``)."""
    from razvilka.daemon.learn.profile import Profile

    prof = Profile(None, "probe").set_params(**params)
    for i, clause in enumerate(seed):  # nothing on screen, nothing chosen: the cache learns the text
        prof.observe("", [], None, clause, document=f"seed{i}")
    for item in data["first"]:
        if item.phrase >= size:
            break
        shown = [c.word for c in item.dist.candidates[:k]]
        prof.rerank(item.dist, item.context, k=k)
        prof.observe(item.context, shown, item.word if item.word in shown else None, " " + item.word,
                     document=f"first{item.phrase}")
    return prof


def score(data: dict[str, list[Word]], size: int, rule: str, k: int, seed: Sequence[str] = (),
          lists: str = "") -> dict[str, Any]:
    """Actions per word for one rule; ``seed``: clauses the profile's cache reads first (text only);
    ``lists``: "+memory<size>" scores the engine lists computed with the profile's memory."""
    prefix_rerank = rule == "profile, prefix reranked"
    out: dict[str, Any] = {}
    for part in ("dev", "test"):  # each part from the same history: the test part does not learn the dev part
        prof = _history(data, size, k, seed, prefix_rerank=prefix_rerank) if rule != "engine" else None
        if prof is not None:
            prof.reading_ = bool(lists)  # the model read the memory: the cache's weights for that case
        n_act = chars = hits = 0
        for item in data[part + lists]:
            ctx = item.context
            if prof is None:
                a, hit = actions(item, lambda d: [c.word for c in d.candidates], k)
            elif rule in CEILINGS:  # not rules: how far any ranking of these words could go, with 2K places
                a, hit = actions(item, (lambda d: [c.word for c in d.candidates]) if rule == CEILINGS[0] else
                                 (lambda d: [c.word for c in d.candidates[:k]]
                                  + _cache_best(prof, ctx, d.prefix, k)), 2 * k)  # noqa: B023 - called here
                prof.observe(ctx, [c.word for c in item.dist.candidates[:k]], None, " " + item.word,
                             document=f"{part}{item.phrase}")
            else:
                a, hit = actions(item, lambda d: [c.word for c in prof.rerank(d, ctx, k=k).candidates],  # noqa: B023 - called here
                                 k)
                shown = [c.word for c in prof.rerank(item.dist, ctx, k=k).candidates]
                prof.observe(ctx, shown, item.word if item.word in shown else None, " " + item.word,
                             document=f"{part}{item.phrase}")
            n_act += a
            chars += len(item.word) + 1
            hits += hit
        n = len(data[part + lists])
        out[part] = {"words": n, "recall_at_k": hits / n, "actions_per_word": n_act / n,
                     "ksr_proxy": 1 - n_act / chars}
        if prof is not None:
            out.setdefault("profile", {})[part] = {"lambda": [round(x, 4) for x in prof.mixture.lam_],
                                                   "beta": [round(x, 4) for x in prof.choice.beta_]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learn", type=int, default=600, help="clauses of history computed (chapters 1-19)")
    ap.add_argument("--sizes", default="100,600", help="history sizes scored (clauses, each <= --learn)")
    ap.add_argument("--dev", type=int, default=40)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--context", type=int, default=3, help="previous clauses in each prompt")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cache", help="pickle of the engine's lists: read if it exists, else written")
    ap.add_argument("--seed-rest", action="store_true",
                    help="also score a profile whose cache first reads every other clause of chapters 1-19")
    ap.add_argument("--memory", action="store_true",
                    help="also compute the dev and test lists with the profile's memory read first, per history size")
    ap.add_argument("--results", default=str(HERE / "results" / "profile_probe"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if max(sizes) > args.learn:
        ap.error("--sizes may not exceed --learn")
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    if args.cache and Path(args.cache).exists():
        data = pickle.loads(Path(args.cache).read_bytes())
        say(f"engine lists read from {args.cache}")
    else:
        from razvilka.daemon.config import ModelConfig
        from razvilka.daemon.engine import Engine, embedded_model_path

        parts = texts(args)
        engine = Engine(ModelConfig(path=str(embedded_model_path()), n_threads=args.threads, seed=0))
        data = {}
        for name, phrases in parts.items():
            say(f"engine lists for the {name} part ({len(phrases)} clauses)")
            data[name] = engine_words(engine, phrases, args.k, 2 * args.k, letters=name != "first",
                                      context=args.context, say=say)
        engine.close()
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps(data))
    if args.memory and any(f"{p}+memory{n}" not in data for n in sizes for p in ("dev", "test")):
        from razvilka.daemon.config import ModelConfig
        from razvilka.daemon.engine import Engine, embedded_model_path
        parts = texts(args)
        engine = Engine(ModelConfig(path=str(embedded_model_path()), n_threads=args.threads, seed=0))
        for size in sizes:
            for name in ("dev", "test"):
                mem = _history(data, size, args.k, ())  # the memory the daemon's profile has after the history
                say(f"engine lists for the {name} part with the memory of {size} clauses "
                    f"({len(mem.memory_text())} characters to start)")
                data[f"{name}+memory{size}"] = engine_words(engine, parts[name], args.k, 2 * args.k, letters=True,
                                                            context=args.context, say=say, memory=mem, part=name)
        engine.close()
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps(data))
    engine_s = time.perf_counter() - t0
    rows = []
    for size in sizes:
        base = score(data, size, "engine", args.k)
        for rule in ("engine", "profile", "profile, prefix reranked", *CEILINGS):
            r = base if rule == "engine" else score(data, size, rule, args.k)
            rows.append({"history_clauses": size, "rule": rule, **r,
                         "ratio": {p: r[p]["actions_per_word"] / base[p]["actions_per_word"] for p in ("dev", "test")}})
    if args.memory:
        for size in sizes:
            base = score(data, size, "engine", args.k)
            for rule in ("engine", "profile"):
                r = score(data, size, rule, args.k, lists=f"+memory{size}")
                rows.append({"history_clauses": size, "rule": f"{rule} + memory", **r,
                             "ratio": {p: r[p]["actions_per_word"] / base[p]["actions_per_word"]
                                       for p in ("dev", "test")}})
    if args.seed_rest:
        n_first = 1 + max(w.phrase for w in data["first"])  # the clauses the engine lists were computed for
        rest = [c for ch, c in austen_clauses() if ch < 20][n_first:]
        size = max(sizes)
        base = score(data, size, "engine", args.k)
        r = score(data, size, "profile", args.k, seed=rest)
        rule = f"profile, cache first reads {len(rest)} more clauses ({sum(len(c.split()) for c in rest)} words)"
        rows.append({"history_clauses": size, "rule": rule, **r,
                     "ratio": {p: r[p]["actions_per_word"] / base[p]["actions_per_word"] for p in ("dev", "test")}})
    lines = [("| history | rule | dev recall@K | dev actions/word (× engine) | dev KSR proxy | test recall@K "
              "| test actions/word (× engine) | test KSR proxy |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[p]['recall_at_k']:.3f} | {r[p]['actions_per_word']:.3f} (×{r['ratio'][p]:.3f}) "
                 f"| {r[p]['ksr_proxy']:.1%}" for p in ("dev", "test")]
        lines.append(f"| {r['history_clauses']} clauses | {r['rule']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    run = Path(args.results) / time.strftime("%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(args),
                                                 "engine_seconds": round(engine_s, 1),
                                                 "words": {p: len(v) for p, v in data.items()}}, indent=2))
    (run / "results.json").write_text(json.dumps(rows, indent=2))
    (run / "table.md").write_text(table + "\n")
    say(f"results in {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
