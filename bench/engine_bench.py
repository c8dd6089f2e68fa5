"""Engine benchmark: the decode floor, and the engine's work as ratios of that floor measured in the same run.

Floor: t1 = one ``llama_decode`` of one token with its logits row; tK = one batched step of K sequences,
one token and one logits row each (the engine's own path: side sequences copied from the document).

Measured (medians over prompts x repetitions, floor re-measured in each round so load changes cancel):

* words of the fork after a selection, cold (no pre-generation): ``commit`` + ``words`` — target <= 3 t1;
* the same when pre-generation hit (``after`` ran while the person looked): only a cache look-up — <= 0.5 t1;
* a full look-ahead for K candidates x N tokens, batched — target <= 1.25 x N tK;
* the naive baseline: the high-level ``Llama`` completion called once per candidate (as LLooM and
  BacktrackSampler do), with its prefix cache — target: batched >= 2x faster.

Usage: .venv/bin/python bench/engine_bench.py [--threads 0] [--reps 3] [--k 8] [--tokens 6] [--tiled] [--json F]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

PROMPTS = [
    "My favourite thing about the weekend is",
    "The old lighthouse keeper climbed the stairs and",
    "When I was a child, my grandmother used to",
    "The meeting was postponed because",
]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="GGUF path (default: the embedded Gemma 3 270M)")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores)")
    p.add_argument("--reps", type=int, default=3, help="rounds over the prompts")
    p.add_argument("--k", type=int, default=8, help="candidates per fork")
    p.add_argument("--tokens", type=int, default=6, help="look-ahead tokens per candidate")
    p.add_argument("--tiled", action="store_true",
                   help="leave ggml's tiled matmul on (faster at 8+ rows on some CPUs, but batched rows then "
                        "differ from single-sequence rows)")
    p.add_argument("--no-naive", action="store_true", help="skip the high-level Llama baseline")
    p.add_argument("--json", default="", help="also write the results here")
    return p.parse_args()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000.0, out


def floor(engine: Any, k: int) -> float:
    """One batched step of k sequences (k=1: t1): copy the document into k side sequences, decode one token each."""
    engine.clear_cache()
    probs = engine.next_token_probs()
    toks = [int(t) for t in probs.argsort()[::-1][:k]]
    base = engine.tokens
    engine.clear_cache()
    ms, _ = timed(lambda: engine._rows_for([base + [t] for t in toks], cache=False))
    return ms


def naive_llama(model_path: str, threads: int, n_ctx: int) -> Any:
    """The high-level llama_cpp.Llama on the same file and threads (extra buffers off, like the engine)."""
    import llama_cpp
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params

    def params() -> Any:
        mp = original()
        mp.use_extra_bufts = False
        return mp

    low.llama_model_default_params = params
    try:
        return llama_cpp.Llama(model_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                               n_batch=512, flash_attn=True, verbose=False)
    finally:
        low.llama_model_default_params = original


def main() -> int:
    args = parse()
    if not args.tiled:
        os.environ.setdefault("GGML_CPU_TILED_MM", "0")
    else:
        os.environ["GGML_CPU_TILED_MM"] = "1"
    from razvilka.daemon.config import ModelConfig
    from razvilka.daemon.engine import Engine

    ms_load, engine = timed(lambda: Engine(ModelConfig(path=args.model, n_threads=args.threads)))
    k, n = args.k, args.tokens
    llm = None if args.no_naive else naive_llama(str(engine.model_path), engine.n_threads, engine.n_ctx)
    m: dict[str, list[float]] = defaultdict(list)     # milliseconds
    r: dict[str, list[float]] = defaultdict(list)     # ratio to the floor of the same round
    dec: dict[str, list[int]] = defaultdict(list)     # llama_decode calls
    agree = [0, 0]
    sizes = sorted({1, 4, k, 16})

    def op(name: str, fn: Callable[[], Any], unit: float) -> Any:
        before = engine.stats["decodes"]
        ms, out = timed(fn)
        m[name].append(ms)
        r[name].append(ms / unit)
        dec[name].append(engine.stats["decodes"] - before)
        return out

    for rep in range(args.reps):
        for prompt in PROMPTS:
            engine.reset(prompt)
            floor_ms = {K: floor(engine, K) for K in sizes}
            t1, tk = floor_ms[1], floor_ms[k]
            for K in sizes:
                m[f"t{K}"].append(floor_ms[K])
                r[f"t{K}"].append(floor_ms[K] / t1)
            # the fork as the daemon opens it: words, then the look-ahead of every candidate
            engine.clear_cache()
            engine.reset(prompt)
            dist = op("words_fork", lambda: engine.words(k), t1)
            op("lookahead", lambda: engine.lookahead(dist.candidates, n), n * tk)
            cand = dist.candidates[rep % len(dist.candidates)]
            # a selection without pre-generation: commit (a KV copy), then the next fork's words
            op("commit", lambda: engine.commit(cand), t1)
            op("after_select_cold", lambda: engine.words(k), t1)
            r["after_select_cold"][-1] += m["commit"][-1] / t1
            m["after_select_cold"][-1] += m["commit"][-1]
            # a selection after pre-generation: after() ran while the person looked; the pick is a look-up
            engine.rewind(engine.n_tokens - len(cand.tokens))
            other = dist.candidates[(rep + 1) % len(dist.candidates)]
            engine.clear_cache()
            d2 = engine.words(k)
            engine.lookahead(d2.candidates, n)
            op("after_pregen", lambda: engine.after(other, k), t1)
            op("after_select_hit", lambda: (engine.commit(other), engine.words(k)), t1)
            # a fully cold look-ahead: nothing cached, the candidates' own tokens decoded in step 1
            engine.reset(prompt)
            engine.clear_cache()
            cands = [type(c)(c.word, c.text, list(c.tokens), c.prob) for c in dist.candidates]
            op("lookahead_cold", lambda: engine.lookahead(cands, n), n * tk)
            if llm is not None:
                llm.reset()
                llm(prompt, max_tokens=1, temperature=0.0)  # the prompt is in its cache, as ours is
                texts: list[str] = []
                ms, _ = timed(lambda: texts.extend(
                    llm(prompt + c.text, max_tokens=n, temperature=0.0, top_k=1)["choices"][0]["text"] for c in cands))
                m["naive"].append(ms)
                r["naive"].append(ms / m["lookahead_cold"][-1])
                for c, text in zip(cands, texts):
                    agree[1] += 1
                    agree[0] += int(bool(c.lookahead) and text.startswith(c.lookahead[0]))
    med = {key: statistics.median(v) for key, v in m.items()}
    rat = {key: statistics.median(v) for key, v in r.items()}
    rows: list[tuple[str, float, str, str, str, str]] = []

    def row(name: str, key: str, unit: str, target: float | None, above: bool = False) -> None:
        ok = "" if target is None else ("ok" if (rat[key] >= target if above else rat[key] <= target) else "MISSED")
        tgt = "" if target is None else (">= " if above else "<= ") + f"{target:g}"
        d = f"{statistics.mean(dec[key]):.1f}" if dec.get(key) else ""
        rows.append((name, med[key], f"{rat[key]:.2f} {unit}", tgt, d, ok))

    for K in sizes:
        row(f"floor t{K}: one decode, {K} seq x 1 token + logits", f"t{K}", "t1", None)
    row(f"fork words (k={k}) at a fresh position", "words_fork", "t1", None)
    row("commit a candidate (KV copy)", "commit", "t1", None)
    row("words after a selection, cold", "after_select_cold", "t1", 3)
    row("words after a selection, pre-generated hit", "after_select_hit", "t1", 0.5)
    row("pre-generation work (after)", "after_pregen", "t1", None)
    row(f"look-ahead K={k} x {n} after words", "lookahead", f"{n}*t{k}", 1.25)
    row(f"look-ahead K={k} x {n} fully cold", "lookahead_cold", f"{n}*t{k}", 1.25)
    if llm is not None:
        row(f"naive Llama completion x {k}", "naive", "x cold", 2, above=True)
    print(f"\nengine benchmark: {engine.model_name}, {engine.n_threads} threads, n_ctx {engine.n_ctx}, "
          f"tiled matmul {'on' if args.tiled else 'off'}, {args.reps} x {len(PROMPTS)} prompts, load {ms_load:.0f} ms")
    print("ratios: median over rounds of (time / floor of the same round); decodes: llama_decode calls per operation")
    width = max(len(x[0]) for x in rows)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'ratio':>14}  {'target':>7}  {'decodes':>7}")
    for name, ms, ratio, target, d, ok in rows:
        print(f"{name:<{width}}  {ms:>10.2f}  {ratio:>14}  {target:>7}  {d:>7}  {ok}")
    if llm is not None:
        print(f"naive continuations equal to the batched look-ahead (same tokens, greedy): {agree[0]}/{agree[1]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median_ms": med, "median_ratio": rat, "samples_ms": m, "samples_ratio": r,
                       "decodes": dec, "threads": engine.n_threads, "k": k, "tokens": n,
                       "tiled": args.tiled, "agree": agree}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
