"""EEG P300 benchmark on the shared Muse recording: calibration against the fixed pipeline, then the LM prior.

Part 1 (default): calibration that survives real data (issue 19) against the pipeline before it
(150 µV fixed rejection, xDAWN covariances + tangent space + LDA), in the same run, over every
session that can be built from the shared data (one subject, one session, 6 runs):

* ``real``: the runs as recorded, leave-two-runs-out (3 folds: train on 4 runs, test on 2);
* ``short``: one run (2 min, ~30 targets) as calibration, tested on the other 5 (6 folds);
* ``noisy``: a derived stress test, not a recording: each channel plus the headset's own floating
  ``Right AUX`` input (real sensor noise of the same recording, a different 7 s lag per channel,
  x ``--noise-gain``), a stand-in for poor electrode contact; leave-two-runs-out;
* ``chance``: the real runs with target / non-target labels shuffled (nobody attending).

Per session and pipeline: the held-out AUC pooled over folds with its 95 % DeLong interval, the
share of calibration epochs rejected and of held-out epochs the model would reject online, how
often the model is marked unusable, and simulated net words/min at K = 6 with the LM prior
(rejected flashes cost time and give no evidence; a refused model selects nothing: 0). Results
go to ``bench/results/eeg/<run>/`` (config.json, results.json, table.md).

Part 2 (``--lm-table``): leave-one-run-out: each of the 6 runs is scored by a model calibrated on the other 5, so every
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

    python bench/eeg_bench.py [--trials 600] [--noise-gain 2] [--lm-table [--k 4 6 8] [--threshold 0.9]]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.inputs.eeg.adapter import calibrate_from_files
from razvilka.inputs.eeg.bayes import lm_prior
from razvilka.inputs.eeg.calibrate import calibrate_recordings
from razvilka.inputs.eeg.classifier import P300Model, auc_ci
from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.eeg.epochs import epochs_from_recording
from razvilka.inputs.eeg.readers import read_csv
from razvilka.inputs.eeg.recording import Recording, load_muse_csv
from razvilka.inputs.eeg.simulate import Summary, Trial, simulate, summarise, wolpaw_bits

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "eeg" / "muse-visual-p300" / "subject1" / "session1"
WORD_CHARS = 5.7   # mean English word length (4.7) + a space: to set words/min beside chars/min anchors
RESULTS = ROOT / "bench" / "results" / "eeg"
MODES = {   # name -> (reject_mad, candidate pipelines, floor)
    "fixed": (0.0, ("xdawn-ts-lda-lwf",), 0.0),   # before issue 19: 150 µV, one pipeline, always used
    "adaptive": (None, None, None),              # the configuration's defaults: adapted limit, chosen, floor
}


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


# ---------------------------------------------------------------------------- part 1: calibration vs fixed
def read_runs(noise_gain: float = 0.0, shuffle_seed: int | None = None) -> list[Recording]:
    """The six runs; optionally plus their own AUX noise (lagged per channel) or with labels shuffled."""
    runs = []
    for i, path in enumerate(sorted(DATA.glob("*.csv"))):
        rec = read_csv(path)
        if noise_gain:
            aux = read_csv(path, channels=("Right AUX",)).eeg[:, 0]
            lag = 7 * rec.sampling_rate
            noise = np.stack([np.roll(aux, (c + 1) * lag) for c in range(rec.eeg.shape[1])], axis=1)
            rec = Recording(rec.eeg + noise_gain * (noise - noise.mean(axis=0)), rec.timestamps, rec.markers,
                            rec.channels, rec.sampling_rate, rec.source, rec.device)
        if shuffle_seed is not None:
            markers = rec.markers.copy()
            markers[rec.events] = np.random.default_rng(shuffle_seed + i).permutation(markers[rec.events])
            rec = Recording(rec.eeg, rec.timestamps, markers, rec.channels, rec.sampling_rate, rec.source, rec.device)
        runs.append(rec)
    return runs


@dataclass
class Heldout:
    """One fold: the model, and its held-out epochs' scores, labels and online rejection."""

    model: P300Model
    scores: np.ndarray
    labels: np.ndarray
    rejected_online: float


@dataclass
class Row:
    session: str
    mode: str
    folds: int
    auc: float
    auc_low: float
    auc_high: float
    cv_auc: float
    rejected_calibration: float
    rejected_online: float
    unusable: int
    pipelines: dict[str, int] = field(default_factory=dict)
    accuracy: float = 0.0
    flashes: float = 0.0
    net_wpm: float = 0.0
    net_wpm_if_used: float = 0.0
    seconds: float = 0.0


def run_fold(cfg: EegConfig, train: list[Recording], test: list[Recording], mode: str) -> Heldout:
    k, pipelines, floor = MODES[mode]
    model = calibrate_recordings(cfg, train, reject_mad=k, pipelines=pipelines, min_auc=floor)
    scores, labels, n, rej = [], [], 0, 0
    for rec in test:
        X, y, valid = epochs_from_recording(rec, replace_reject(model.spec, 0.0))
        from razvilka.inputs.eeg.classifier import peak_to_peak

        keep = valid & (peak_to_peak(X) <= model.spec.reject_uv) if model.spec.reject_uv > 0 else valid
        n += int(valid.sum())
        rej += int((valid & ~keep).sum())
        scores.append(model.score(X[keep]))
        labels.append(y[keep])
    return Heldout(model, np.concatenate(scores), np.concatenate(labels), rej / max(n, 1))


def replace_reject(spec: Any, uv: float) -> Any:
    import dataclasses

    return dataclasses.replace(spec, reject_uv=uv)


def net_wpm(folds: list[Heldout], cfg: EegConfig, trials: int, pause: float, *, respect_refusal: bool) -> tuple:
    """(accuracy, flashes per selection, net words/min) at K = 6 with the Zipf LM prior.

    Rejected flashes take time without evidence: the flash count is divided by (1 - rejected share).
    A fold whose model is unusable selects nothing when ``respect_refusal`` (the adapter refuses it).
    """
    k = 6
    lm = np.array([1.0 / (r + 1) for r in range(k)])
    lm /= lm.sum()
    flash_s = (cfg.flash_on_ms + cfg.flash_off_ms) / 1000
    wpm, accs, flashes = [], [], []
    for n, f in enumerate(folds):
        if respect_refusal and not f.model.report.usable:
            wpm.append(0.0)
            continue
        if f.labels.sum() < 2 or (f.labels == 0).sum() < 2:
            wpm.append(0.0)
            continue
        trials_f = simulate(f.scores[f.labels == 1], f.scores[f.labels == 0], f.model.scores,
                            lm_prior(lm, cfg.prior_weight, cfg.prior_floor), trials=trials // len(folds),
                            threshold=cfg.threshold, max_repetitions=cfg.max_repetitions, null_prior=cfg.null_prior,
                            choice_prior=lm, seed=11 + n)
        s = summarise(trials_f, k, flash_s, cfg.epoch_end_ms / 1000)
        inflate = 1.0 / max(1e-3, 1.0 - f.rejected_online)
        sel_s = (s.seconds_per_selection - cfg.epoch_end_ms / 1000) * inflate + cfg.epoch_end_ms / 1000
        wpm.append(60.0 / (sel_s + pause) * max(0.0, 2 * s.accuracy - 1))
        accs.append(s.accuracy)
        flashes.append(s.flashes * inflate)
    return (float(np.mean(accs)) if accs else float("nan"), float(np.mean(flashes)) if flashes else float("nan"),
            float(np.mean(wpm)))


def compare(cfg: EegConfig, trials: int, pause: float, noise_gain: float) -> list[Row]:
    real = read_runs()
    sessions: dict[str, tuple[list[Recording], list[tuple[list[int], list[int]]]]] = {}
    pairs = [([j for j in range(6) if j not in (i, i + 1)], [i, i + 1]) for i in (0, 2, 4)]
    singles = [([i], [j for j in range(6) if j != i]) for i in range(6)]
    sessions["real"] = (real, pairs)
    sessions["short"] = (real, singles)
    sessions[f"noisy x{noise_gain:g}"] = (read_runs(noise_gain=noise_gain), pairs)
    sessions["chance"] = (read_runs(shuffle_seed=100), pairs)
    rows = []
    for name, (runs, splits) in sessions.items():
        for mode in MODES:
            t0 = time.perf_counter()
            folds = [run_fold(cfg, [runs[i] for i in tr], [runs[i] for i in te], mode) for tr, te in splits]
            labels = np.concatenate([f.labels for f in folds])
            auc, low, high = auc_ci(labels, np.concatenate([f.scores for f in folds]))
            reps = [f.model.report for f in folds]
            acc, fl, wpm = net_wpm(folds, cfg, trials, pause, respect_refusal=True)
            _, _, wpm_used = net_wpm(folds, cfg, trials, pause, respect_refusal=False)
            chosen: dict[str, int] = {}
            for r in reps:
                chosen[r.pipeline] = chosen.get(r.pipeline, 0) + 1
            rows.append(Row(
                session=name, mode=mode, folds=len(folds), auc=auc, auc_low=low, auc_high=high,
                cv_auc=float(np.mean([r.auc for r in reps])),
                rejected_calibration=float(np.mean([r.rejected_share for r in reps])),
                rejected_online=float(np.mean([f.rejected_online for f in folds])),
                unusable=sum(not r.usable for r in reps), pipelines=chosen, accuracy=acc, flashes=fl,
                net_wpm=wpm, net_wpm_if_used=wpm_used, seconds=time.perf_counter() - t0))
            print(table_line(rows[-1]), flush=True)
    return rows


TABLE_HEAD = (f"{'session':<10} {'pipeline':<9} {'folds':>5} {'held-out AUC (95% CI)':>23} {'cv AUC':>6} "
              f"{'rej cal':>7} {'rej onl':>7} {'unusable':>8} {'acc':>5} {'flashes':>7} {'net wpm':>7} "
              f"{'if used':>7}  chosen")


def table_line(r: Row) -> str:
    chosen = ", ".join(f"{k} x{v}" for k, v in r.pipelines.items())
    return (f"{r.session:<10} {r.mode:<9} {r.folds:>5} {r.auc:>7.3f} ({r.auc_low:.3f}-{r.auc_high:.3f}) "
            f"{r.cv_auc:>6.3f} {r.rejected_calibration:>7.1%} {r.rejected_online:>7.1%} {r.unusable:>5}/{r.folds:<2} "
            f"{r.accuracy:>5.3f} {r.flashes:>7.1f} {r.net_wpm:>7.2f} {r.net_wpm_if_used:>7.2f}  {chosen}")


def save(rows: list[Row], args: argparse.Namespace, cfg: EegConfig, seconds: float) -> Path:
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({
        "args": vars(args), "data": str(DATA.relative_to(ROOT.parent)), "modes": {k: list(map(str, v)) for k, v in
                                                                                MODES.items()},
        "eeg": {k: getattr(cfg, k) for k in ("reject_uv", "reject_mad", "min_auc", "threshold", "max_repetitions",
                                             "null_prior", "flash_on_ms", "flash_off_ms", "prior_weight")},
        "machine": platform.platform(), "python": platform.python_version()}, indent=2))
    (out / "results.json").write_text(json.dumps({"seconds": seconds, "rows": [asdict(r) for r in rows]}, indent=2))
    (out / "table.md").write_text("```\n" + TABLE_HEAD + "\n" + "\n".join(table_line(r) for r in rows) + "\n```\n")
    return out


def part1(args: argparse.Namespace) -> None:
    cfg = EegConfig()
    print("Calibration that survives real data (adaptive) against the pipeline before it (fixed), same run:")
    print("  fixed    = 150 µV rejection, xDAWN(lwf)+TS+LDA, always used")
    print(f"  adaptive = median + {cfg.reject_mad:g} MAD rejection, pipeline chosen by cross-validation, "
          f"unusable below AUC {cfg.min_auc}")
    print(f"  net wpm: K=6, LM prior, {args.trials} simulated selections per row, {args.pause:g} s pause; "
          "'if used' ignores the refusal\n")
    print(TABLE_HEAD)
    print("-" * len(TABLE_HEAD))
    t0 = time.perf_counter()
    rows = compare(cfg, args.trials, args.pause, args.noise_gain)
    out = save(rows, args, cfg, time.perf_counter() - t0)
    print(f"\n{time.perf_counter() - t0:.0f} s; saved {out.relative_to(ROOT)}")


def lm_table(args: argparse.Namespace) -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=600, help="simulated selections per row")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between selections (feedback, next fork)")
    ap.add_argument("--noise-gain", type=float, default=2.0, help="AUX noise added in the 'noisy' session")
    ap.add_argument("--lm-table", action="store_true", help="run part 2 (the LM prior table) instead of part 1")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 6, 8], help="part 2: candidates per fork")
    ap.add_argument("--threshold", type=float, default=None, help="part 2; default: inputs.eeg.threshold")
    ap.add_argument("--classic-rounds", type=int, default=5, help="part 2")
    args = ap.parse_args()
    if args.lm_table:
        lm_table(args)
    else:
        part1(args)


if __name__ == "__main__":
    main()
