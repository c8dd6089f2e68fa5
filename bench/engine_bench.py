"""Engine benchmark: the decode floor, and the engine's work as ratios of that floor measured in the same run.

Floor: t1 = one ``llama_decode`` of one token with its logits row; tK = one batched step of K sequences,
one token and one logits row each (the engine's own path: side sequences copied from the document).

Measured (medians over prompts x repetitions, floor re-measured in each round so load changes cancel):

* words of the fork after a selection, cold (no pre-generation): ``commit`` + ``words`` — target <= 3 t1;
* the same when pre-generation hit (``after`` ran while the person looked): only a cache look-up — <= 0.5 t1;
* a full look-ahead for K candidates x N tokens, batched — target <= 1.25 x N tK;
* the naive baseline: the high-level ``Llama`` completion called once per candidate (as LLooM and
  BacktrackSampler do), with its prefix cache — target: batched >= 2x faster.

With ``--profile`` every operation is measured a second time as the shipped daemon runs it
(``daemon.profile = true``, the default), through its learner (``ProfileLearner``, built as
daemon/cli.py builds it): a profile that has read the person's earlier writing (the
first clauses of *Pride and Prejudice*, up to the memory budget ``daemon.profile_memory_chars``),
the model reading that memory before the prompt, and ``words``/``after`` asking for
``daemon.profile_widen`` x K words that the profile reranks down to K (docs/learning.md). Those rows
are ratios of the same round's floor *without* the memory, so the profile's whole cost shows.

With ``--top-n N`` the engine sees the model through rows of its N likeliest tokens (``TopNBackend``,
as a server's API gives them: docs/engine.md, "Backends"); the floor stays the embedded backend's own.

Usage: .venv/bin/python bench/engine_bench.py [--threads 0] [--reps 3] [--k 8] [--tokens 6] [--tiled]
       [--profile] [--top-n N] [--save] [--json F]
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
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "engine"

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
    p.add_argument("--profile", action="store_true",
                   help="also measure every operation with the daemon's default profile on (memory, widen x K, rerank)")
    p.add_argument("--top-n", type=int, default=0,
                   help="run the engine on top-N rows of the embedded backend (0: full rows)")
    p.add_argument("--save", action="store_true",
                   help="write bench/results/engine/<run>/ (results.json, table.md)")
    p.add_argument("--json", default="", help="also write the results here")
    return p.parse_args()


def default_learner() -> Any:
    """The daemon's learner as its defaults make it (as daemon/cli.py builds it), with a profile full of
    the person's earlier writing: documents of 10 clauses are read until the next would overflow the
    memory budget, so the model reads the longest memory the defaults allow (the worst case)."""
    from returning_user import austen_clauses

    from razvilka.daemon.config import DaemonConfig
    from razvilka.daemon.learn.live import ProfileLearner
    from razvilka.daemon.learn.profile import Profile

    defaults = DaemonConfig()
    learner = ProfileLearner(Profile(), widen=defaults.profile_widen, memory_chars=defaults.profile_memory_chars)
    clauses = [c for _, c in austen_clauses()]
    used = 0
    for i in range(0, len(clauses), 10):
        doc = "\n".join(clauses[i:i + 10])
        if used + len(doc) + 1 > defaults.profile_memory_chars:
            break
        learner.profile.read_text(doc, document=f"history-{i // 10}")
        used += len(doc) + 1
    return learner


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000.0, out


def floor(engine: Any, k: int, rows: Callable[..., Any]) -> float:
    """One batched step of k sequences (k=1: t1): copy the document into k side sequences, decode one token each
    (``rows``: the embedded backend's, full rows)."""
    engine.clear_cache()
    probs = engine.next_token_probs()
    toks = [int(t) for t in probs.argsort()[::-1][:k]]
    base = engine.tokens
    engine.clear_cache()
    ms, _ = timed(lambda: rows([base + [t] for t in toks]))
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

    run_id = time.strftime("%Y%m%d-%H%M%S")
    load_start = os.getloadavg()[0]
    ms_load, engine = timed(lambda: Engine(ModelConfig(path=args.model, n_threads=args.threads)))
    full = engine  # the floor is measured on the embedded backend's own rows
    if args.top_n:
        from razvilka.daemon.backends.topn import TopNBackend

        engine = Engine(full.cfg, backend=TopNBackend(full.backend, args.top_n))
    k, n = args.k, args.tokens
    llm = None if args.no_naive else naive_llama(str(full.model_path), full.n_threads, full.n_ctx)
    m: dict[str, list[float]] = defaultdict(list)     # milliseconds
    r: dict[str, list[float]] = defaultdict(list)     # ratio to the floor of the same round
    dec: dict[str, list[int]] = defaultdict(list)     # llama_decode calls
    agree = [0, 0]
    sizes = sorted({1, 4, k, 16})
    learner: Any = default_learner() if args.profile else None  # the daemon's, as its defaults make it
    widen = learner.widen if learner is not None else 1
    memories = {p: learner.memory(None, p) for p in PROMPTS} if learner is not None else {}
    memory_tokens = len(engine.tokenize(memories[PROMPTS[0]])) if learner is not None else 0
    ms_memory = 0.0
    if learner is not None:  # the first document reads the whole memory; later ones keep its KV cells
        engine.clear_cache()
        ms_memory, _ = timed(lambda: engine.reset(PROMPTS[0], memory=memories[PROMPTS[0]]))

    def op(name: str, fn: Callable[[], Any], unit: float) -> Any:
        before = engine.stats["decodes"]
        ms, out = timed(fn)
        m[name].append(ms)
        r[name].append(ms / unit)
        dec[name].append(engine.stats["decodes"] - before)
        return out

    def fork_ops(pre: str, rep: int, prompt: str, memory: str, t1: float, tk: float,
                 words: Callable[[int], Any], after: Callable[[Any, int], Any]) -> list[Any]:
        """The fork as the daemon opens it, then a selection without and with pre-generation."""
        engine.clear_cache()
        engine.reset(prompt, memory=memory)
        dist = op(pre + "words_fork", lambda: words(k), t1)
        op(pre + "lookahead", lambda: engine.lookahead(dist.candidates, n), n * tk)
        cand = dist.candidates[rep % len(dist.candidates)]
        at = engine.n_tokens
        # a selection without pre-generation: commit (a KV copy), then the next fork's words
        op(pre + "commit", lambda: engine.commit(cand), t1)
        op(pre + "after_select_cold", lambda: words(k), t1)
        r[pre + "after_select_cold"][-1] += m[pre + "commit"][-1] / t1
        m[pre + "after_select_cold"][-1] += m[pre + "commit"][-1]
        # a selection after pre-generation: after() ran while the person looked; the pick is a look-up
        engine.rewind(at)
        other = dist.candidates[(rep + 1) % len(dist.candidates)]
        engine.clear_cache()
        d2 = words(k)
        engine.lookahead(d2.candidates, n)
        op(pre + "after_pregen", lambda: after(other, k), t1)
        op(pre + "after_select_hit", lambda: (engine.commit(other), words(k)), t1)
        return list(dist.candidates)

    def plain_words(kk: int) -> Any:
        return engine.words(kk)

    def plain_after(cand: Any, kk: int) -> Any:
        return engine.after(cand, kk)

    def profiled_words(kk: int) -> Any:   # as the daemon with its learner: widen x K words, reranked to K
        return learner.rerank(engine.words(kk * widen), engine.text, kk)

    def profiled_after(cand: Any, kk: int) -> Any:
        return learner.rerank(engine.after(cand, kk * widen), engine.text + cand.text, kk)

    def naive(prompt: str, cands: list[Any], texts: list[str]) -> None:
        """The high-level completion once per candidate, from the prompt it already has in its cache."""
        assert llm is not None
        texts.extend(llm(prompt + c.text, max_tokens=n, temperature=0.0, top_k=1)["choices"][0]["text"]
                     for c in cands)

    for rep in range(args.reps):
        floors: dict[str, tuple[float, float]] = {}
        for prompt in PROMPTS:
            engine.reset(prompt)
            floor_ms = {K: floor(engine, K, full.backend.rows) for K in sizes}
            t1, tk = floor_ms[1], floor_ms[k]
            floors[prompt] = (t1, tk)
            for K in sizes:
                m[f"t{K}"].append(floor_ms[K])
                r[f"t{K}"].append(floor_ms[K] / t1)
            dist = fork_ops("", rep, prompt, "", t1, tk, plain_words, plain_after)
            # a fully cold look-ahead: nothing cached, the candidates' own tokens decoded in step 1
            engine.reset(prompt)
            engine.clear_cache()
            cands = [type(c)(c.word, c.text, list(c.tokens), c.prob) for c in dist]
            op("lookahead_cold", partial(engine.lookahead, cands, n), n * tk)
            if llm is not None:
                llm.reset()
                llm(prompt, max_tokens=1, temperature=0.0)  # the prompt is in its cache, as ours is
                texts: list[str] = []
                ms, _ = timed(partial(naive, prompt, cands, texts))
                m["naive"].append(ms)
                r["naive"].append(ms / m["lookahead_cold"][-1])
                for c, text in zip(cands, texts):
                    agree[1] += 1
                    agree[0] += int(bool(c.lookahead) and text.startswith(c.lookahead[0]))
        if learner is not None:  # the prompts again in one stretch: the memory's KV cells stay between them
            for prompt in PROMPTS:
                t1, tk = floors[prompt]
                engine.clear_cache()
                op("p_open", partial(engine.reset, prompt, memory=memories[prompt]), t1)
                t1m = floor(engine, 1, full.backend.rows)  # one decode after the memory (floor times only the decode)
                m["p_t1"].append(t1m)
                r["p_t1"].append(t1m / t1)
                fork_ops("p_", rep, prompt, memories[prompt], t1, tk, profiled_words, profiled_after)
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
    for pre, label in [("", ""), ("p_", "profile: ")] if learner is not None else [("", "")]:
        if pre:
            row("profile: open a document, memory kept (prompt only)", "p_open", "t1", None)
            row("profile: floor t1 after the memory", "p_t1", "t1", None)
        row(f"{label}fork words (k={k}) at a fresh position", pre + "words_fork", "t1", None)
        row(f"{label}commit a candidate (KV copy)", pre + "commit", "t1", None)
        row(f"{label}words after a selection, cold", pre + "after_select_cold", "t1", 3)
        row(f"{label}words after a selection, pre-generated hit", pre + "after_select_hit", "t1", 0.5)
        row(f"{label}pre-generation work (after)", pre + "after_pregen", "t1", None)
        row(f"{label}look-ahead K={k} x {n} after words", pre + "lookahead", f"{n}*t{k}", 1.25)
    row(f"look-ahead K={k} x {n} fully cold", "lookahead_cold", f"{n}*t{k}", 1.25)
    if llm is not None:
        row(f"naive Llama completion x {k}", "naive", "x cold", 2, above=True)
    load_end = os.getloadavg()[0]
    lines = [(f"engine benchmark {run_id}: {engine.model_name}, {full.n_threads} threads, n_ctx {engine.n_ctx}, "
              f"tiled matmul {'on' if args.tiled else 'off'}, {args.reps} x {len(PROMPTS)} prompts, "
              f"{f'top-{args.top_n} rows, ' if args.top_n else ''}"
              f"load {ms_load:.0f} ms, load average {load_start:.1f} at start, {load_end:.1f} at end")]
    if learner is not None:
        lines.append(f"profile: {learner.profile.words_seen} words read, memory {len(memories[PROMPTS[0]])} chars = "
                     f"{memory_tokens} tokens (read once: {ms_memory:.0f} ms), widen {widen}")
    lines.append("ratios: median over rounds of (time / floor of the same round, without the memory); "
                 "decodes: llama_decode calls per operation")
    width = max(len(x[0]) for x in rows)
    lines.append(f"{'operation':<{width}}  {'median ms':>10}  {'ratio':>14}  {'target':>7}  {'decodes':>7}")
    for name, ms, ratio, target, d, ok in rows:
        lines.append(f"{name:<{width}}  {ms:>10.2f}  {ratio:>14}  {target:>7}  {d:>7}  {ok}")
    if llm is not None:
        lines.append("naive continuations equal to the batched look-ahead (same tokens, greedy): "
                     f"{agree[0]}/{agree[1]}")
    print("\n" + "\n".join(lines))
    result = {"run": run_id, "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "median_ms": med, "median_ratio": rat, "samples_ms": m, "samples_ratio": r,
              "decodes": dec, "threads": full.n_threads, "k": k, "tokens": n, "tiled": args.tiled,
              "top_n": args.top_n,
              "agree": agree, "loadavg": [load_start, load_end], "profile": args.profile,
              "memory_chars": len(memories[PROMPTS[0]]) if memories else 0, "memory_tokens": memory_tokens,
              "memory_read_ms": ms_memory, "widen": widen}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.save:
        out = RESULTS / run_id
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=1))
        (out / "table.md").write_text("```\n" + "\n".join(lines) + "\n```\n")
        print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
