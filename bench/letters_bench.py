"""What the next-letter probabilities of a fork (protocol ``fork.open`` letters) cost, and what they cover.

For each context and typed prefix, from cold caches: the fork's own search (``words(k)``), which
reads the next characters from its rows as it ends (``WordDistribution.chars``: every token that
agrees with the prefix, not only the k words); then the letters of a word that is none of the k
(``letters_of``: pure arithmetic on that). Printed per case: the fork's time, the part of it the
character walk took and the rows it decoded beyond those the search left cached, the candidates'
share of the prefix's mass (``shown``), the mass the letters leave uncovered, and the top letters;
then the medians and the ratio of the walk to the rest of the search (docs/engine.md, "Letters").

Usage: .venv/bin/python bench/letters_bench.py [--k 8] [--threads 1] [--reps 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

from razvilka.daemon.config import ModelConfig
from razvilka.daemon.engine import Engine, embedded_model_path, letters_of
from razvilka.protocol.targets import is_key_char

CASES = [
    ("My favourite thing about the weekend is", ""), ("My favourite thing about the weekend is", "s"),
    ("She walked down to", "th"), ("The results of the experiment were", "in"),
    ("Я пошёл в магазин и купил", ""), ("Я пошёл в магазин и купил", "хл"),
    ("In the morning we", "w"), ("It was a dark and stormy", ""),
    ("The instrument with wooden bars is a", "xyl"), ("I went to the", "sho"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8, help="the fork's candidates")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    p.add_argument("--reps", type=int, default=2, help="runs per case (the last one is kept)")
    args = p.parse_args()
    eng = Engine(ModelConfig(path=str(embedded_model_path()), n_threads=args.threads))
    eng.words(args.k)  # builds the character tables once (about a second), outside the timings
    fork_ms, walk_ms, letters_ms, rows, uncovered, shown = [], [], [], [], [], []
    for context, prefix in CASES:
        for _ in range(args.reps):
            eng.reset(context)
            eng.clear_cache()
            t0 = time.perf_counter()
            dist = eng.words(args.k, prefix=prefix)
            t1 = time.perf_counter()
            got = letters_of(dist, eng.text, is_key_char)
            t2 = time.perf_counter()
        assert dist.chars is not None
        fork_ms.append((t1 - t0) * 1000)
        walk_ms.append(dist.chars.ms)
        letters_ms.append((t2 - t1) * 1000)
        rows.append(dist.chars.rows)
        uncovered.append(got.uncovered)
        shown.append(got.shown)
        top = " ".join(f"{'␣' if ch == ' ' else ch}:{q:.3f}" for ch, q in got.letters[:5])
        print(f"  {context[-22:]!r:26} prefix {prefix!r:6} fork {fork_ms[-1]:6.0f} ms  walk {walk_ms[-1]:5.1f} ms "
              f"({rows[-1]} rows)  letters {letters_ms[-1]:4.2f} ms  shown {got.shown:.3f}  uncovered "
              f"{got.uncovered:.3f}  unseen {got.unseen:.3f}  {top}")
    f, w = statistics.median(fork_ms), statistics.median(walk_ms)
    ratio = statistics.median(wm / max(1e-9, fm - wm) for wm, fm in zip(walk_ms, fork_ms))
    print(f"k={args.k}: fork median {f:.0f} ms, of it the character walk {w:.1f} ms (median ratio walk / rest of "
          f"the search {ratio:.3f}, worst {max(wm / max(1e-9, fm - wm) for wm, fm in zip(walk_ms, fork_ms)):.3f}); "
          f"rows decoded for it: {sum(rows)} in {len(CASES)} forks; letters_of {statistics.median(letters_ms):.2f} ms; "
          f"shown median {statistics.median(shown):.3f}; uncovered median {statistics.median(uncovered):.3f}")


if __name__ == "__main__":
    main()
