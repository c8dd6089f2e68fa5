"""EEG P300 benchmark on the shared Muse recording: accuracy, time per selection, ITR, LM prior.

Leave-one-run-out: each of the 6 runs is scored by a model calibrated on the other 5, so every
score comes from data the model never saw. Selections among K candidates are then simulated
from those held-out target / non-target scores (razvilka.inputs.eeg.simulate), with the
adapter's own Bayesian accumulator and stopping rule.

Rows:
* classic   - fixed rounds, pick the leader (the classic speller), uniform prior: the baseline
* uniform   - dynamic stopping at the posterior threshold, uniform prior
* LM prior  - dynamic stopping, prior = the fork's candidate probabilities
* LM, off   - the same prior, but the person's choices ignore the LM (the prior misleads)

The LM prior is a Zipf-like profile p(rank r) ~ 1/r over the K shown words, which is the shape
of next-word distributions at the uncertain positions where the daemon opens a fork (top word
around 0.3-0.45). Targets are drawn from it (a calibrated LM), except in "LM, off".

Time per selection = flashes x (on + off) = flashes x 175 ms; "+tail" adds the 0.8 s wait for
the last epoch. ITR is Wolpaw's bits/selection over that time. Ratios are against the classic
baseline measured in this run. "net wpm" charges a pause between selections and, for each
error, a 'back' plus a redo (rate x (2P - 1)); "~chars/min" multiplies it by 5.7 characters
per English word (with its space) only to set it beside the character-speller anchors.

    python bench/eeg_bench.py [--trials 1000] [--k 4 6 8] [--threshold 0.9]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.inputs.eeg.adapter import calibrate_from_files
from razvilka.inputs.eeg.bayes import lm_prior
from razvilka.inputs.eeg.classifier import P300Model
from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.eeg.epochs import epochs_from_recording
from razvilka.inputs.eeg.recording import load_muse_csv
from razvilka.inputs.eeg.simulate import Summary, Trial, simulate, summarise, wolpaw_bits

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "eeg" / "muse-visual-p300" / "subject1" / "session1"
WORD_CHARS = 5.7   # mean English word length (4.7) + a space: to set words/min beside chars/min anchors


@dataclass
class Fold:
    """One held-out run: its clean epochs' scores and labels, and the model that scored them."""

    run: str
    scores: np.ndarray
    labels: np.ndarray
    model: P300Model

    @property
    def auc(self) -> float:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.labels, self.scores))


def leave_one_run_out(cfg: EegConfig) -> list[Fold]:
    runs = sorted(DATA.glob("*.csv"))
    folds = []
    for i, run in enumerate(runs):
        model = calibrate_from_files(cfg, [str(r) for j, r in enumerate(runs) if j != i])
        X, y, kept = epochs_from_recording(load_muse_csv(run), model.spec)
        folds.append(Fold(run.name, model.score(X[kept]), y[kept], model))
    return folds


def simulate_folds(folds: list[Fold], prior: np.ndarray, trials: int, **kw: Any) -> list[Trial]:
    """Each fold simulates its share of the trials with its own scores and its own likelihoods."""
    out: list[Trial] = []
    for n, fold in enumerate(folds):
        share = trials // len(folds) + (1 if n < trials % len(folds) else 0)
        out += simulate(fold.scores[fold.labels == 1], fold.scores[fold.labels == 0], fold.model.scores, prior,
                        trials=share, **kw)
    return out


def main() -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--k", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--threshold", type=float, default=None, help="default: inputs.eeg.threshold")
    ap.add_argument("--classic-rounds", type=int, default=5)
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between selections (feedback, next fork)")
    args = ap.parse_args()
    cfg = EegConfig()
    threshold = args.threshold or cfg.threshold
    flash_s = (cfg.flash_on_ms + cfg.flash_off_ms) / 1000
    tail_s = cfg.epoch_end_ms / 1000

    t0 = time.perf_counter()
    folds = leave_one_run_out(cfg)
    t_cal = time.perf_counter() - t0
    labels = np.concatenate([f.labels for f in folds])
    llrs = np.concatenate([f.model.scores.llr(f.scores) for f in folds])
    single = balanced_accuracy_score(labels, llrs > 0)
    pooled = roc_auc_score(labels, np.concatenate([f.scores for f in folds]))
    print(f"Muse visual oddball, subject 1, 6 runs, leave-one-run-out ({t_cal:.0f} s for 6 calibrations)")
    print(f"  held-out AUC per run {' '.join(f'{f.auc:.3f}' for f in folds)} "
          f"(mean {np.mean([f.auc for f in folds]):.3f}, "
          f"pooled {pooled:.3f}); cross-validated AUC inside calibration "
          f"{np.mean([f.model.report.auc for f in folds]):.3f}")
    print(f"  balanced single-trial accuracy {single:.3f} ({int(labels.sum())} targets, "
          f"{int((labels == 0).sum())} non-targets; chance 0.5)")
    print(f"  decision: threshold {threshold}, max {cfg.max_repetitions} rounds, none-of-them prior {cfg.null_prior}, "
          f"flash {cfg.flash_on_ms:.0f}+{cfg.flash_off_ms:.0f} ms; {args.trials} simulated selections per row")
    print(f"  net wpm = 60 / (s/sel + tail + {args.pause:.1f} s pause) x (2P - 1): correct words per minute when each "
          "error costs a 'back' and a redo\n")

    head = (f"{'K':>2} {'mode':<9} {'acc':>6} {'timeout':>7} {'flashes':>7} {'s/sel':>6} {'+tail':>6} "
            f"{'bits':>5} {'ITR':>6} {'ITR+t':>6} {'net wpm':>7} {'~chars/min':>10} {'ITR/classic':>11}")
    print(head)
    print("-" * len(head))
    for k in args.k:
        lm = np.array([1.0 / (r + 1) for r in range(k)])
        lm /= lm.sum()
        flat = np.ones(k) / k
        common = dict(max_repetitions=cfg.max_repetitions, null_prior=cfg.null_prior, seed=11)
        rows: list[tuple[str, Summary, Summary]] = []
        for name, prior, choose, kw in (
            ("classic", flat, lm, dict(threshold=2.0, pick_at_end=True, max_repetitions=args.classic_rounds,
                                       null_prior=0.0)),
            ("uniform", flat, lm, dict(threshold=threshold)),
            ("LM prior", lm_prior(lm, cfg.prior_weight, cfg.prior_floor), lm, dict(threshold=threshold)),
            ("LM, off", lm_prior(lm, cfg.prior_weight, cfg.prior_floor), flat, dict(threshold=threshold)),
        ):
            trials = simulate_folds(folds, prior, args.trials, choice_prior=choose, **{**common, **kw})
            rows.append((name, summarise(trials, k, flash_s), summarise(trials, k, flash_s, tail_s)))
        base = rows[0][1].itr_bits_per_min
        for name, s, st in rows:
            net = 60.0 / (st.seconds_per_selection + args.pause) * max(0.0, 2 * st.accuracy - 1)
            print(f"{k:>2} {name:<9} {s.accuracy:>6.3f} {s.timeout_rate:>7.3f} {s.flashes:>7.1f} "
                  f"{s.seconds_per_selection:>6.2f} {st.seconds_per_selection:>6.2f} {s.bits_per_selection:>5.2f} "
                  f"{s.itr_bits_per_min:>6.1f} {st.itr_bits_per_min:>6.1f} {net:>7.1f} {net * WORD_CHARS:>10.1f} "
                  f"{s.itr_bits_per_min / base:>10.2f}x")
        print()
    idle_kw = dict(threshold=threshold, max_repetitions=cfg.max_repetitions, attending=False, seed=5)
    idle = simulate_folds(folds, lm_prior(np.ones(6) / 6), args.trials, null_prior=cfg.null_prior, **idle_kw)
    idle0 = simulate_folds(folds, lm_prior(np.ones(6) / 6), args.trials, null_prior=0.0, **idle_kw)
    print(f"nobody attending (K=6): false selections {np.mean([t.choice is not None for t in idle]):.3f} "
          f"with the none-of-them hypothesis, {np.mean([t.choice is not None for t in idle0]):.3f} without")
    print(f"Wolpaw bits/selection for reference: K=6 at 84%: {wolpaw_bits(6, 0.84):.2f}; "
          f"at 95%: {wolpaw_bits(6, 0.95):.2f}")
    print("Anchors: classic P300 spellers 1-5 chars/min; with a language model ~6 chars/min at 84% accuracy.")


if __name__ == "__main__":
    main()
