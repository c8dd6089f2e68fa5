"""What the next-letter probabilities of a fork (protocol 1.4 ``fork.open`` letters) cost, and what they cover.

For each context and typed prefix: the fork's own search (``words(k)``, from cold caches), then
``Engine.letters`` counted from ``--deep`` words right after it (the daemon's order: the fork first).
With ``--deep`` equal to the fork's k the letters come from the cached search and cost nothing; a
deeper search covers more of the mass. Printed: the medians of both times, their ratio, and the
median mass the letters leave uncovered (docs/engine.md, "Letters").

Usage: .venv/bin/python bench/letters_bench.py [--k 8] [--deep 8,16,32] [--threads 1] [--reps 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

from razvilka.daemon.config import ModelConfig
from razvilka.daemon.engine import Engine, embedded_model_path
from razvilka.protocol.targets import is_key_char

CASES = [
    ("My favourite thing about the weekend is", ""), ("My favourite thing about the weekend is", "s"),
    ("She walked down to", "th"), ("The results of the experiment were", "in"),
    ("Я пошёл в магазин и купил", ""), ("Я пошёл в магазин и купил", "хл"),
    ("In the morning we", "w"), ("It was a dark and stormy", ""),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8, help="the fork's candidates")
    p.add_argument("--deep", default="8,16,32", help="words the letters are counted from, comma-separated")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    p.add_argument("--reps", type=int, default=2, help="runs per case (the last one is kept)")
    args = p.parse_args()
    eng = Engine(ModelConfig(path=str(embedded_model_path()), n_threads=args.threads))
    for deep in (int(x) for x in args.deep.split(",")):
        fork_ms, letters_ms, uncovered = [], [], []
        for context, prefix in CASES:
            for _ in range(args.reps):
                eng.reset(context)
                eng.clear_cache()
                t0 = time.perf_counter()
                eng.words(args.k, prefix=prefix)
                t1 = time.perf_counter()
                dist = eng.letters(prefix, k=deep, is_key=is_key_char)
                t2 = time.perf_counter()
            fork_ms.append((t1 - t0) * 1000)
            letters_ms.append((t2 - t1) * 1000)
            uncovered.append(dist.uncovered)
            top = " ".join(f"{'␣' if ch == ' ' else ch}:{q:.3f}" for ch, q in dist.letters[:5])
            print(f"  k={deep:<3} {context[-22:]!r:26} prefix {prefix!r:5} fork {fork_ms[-1]:6.0f} ms  letters "
                  f"+{letters_ms[-1]:5.0f} ms  uncovered {dist.uncovered:.3f}  {top}")
        f, extra = statistics.median(fork_ms), statistics.median(letters_ms)
        print(f"letters from {deep} words: fork median {f:.0f} ms, letters +{extra:.0f} ms "
              f"(ratio {extra / f:.2f}); uncovered median {statistics.median(uncovered):.3f}")


if __name__ == "__main__":
    main()
