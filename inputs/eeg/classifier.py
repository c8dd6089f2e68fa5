"""The P300 classifier: a pipeline chosen per person among standard ones (pyriemann, scikit-learn).

Calibration rejects artefact epochs with a limit adapted to the recording (median + k x MAD of
the epochs' peak-to-peak), cross-validates each candidate pipeline, keeps the one with the best
AUC, reports that AUC with a 95 % confidence interval (DeLong), and keeps its cross-validated
scores, from which :mod:`bayes` learns how target and non-target scores are distributed. A model
whose AUC is below the floor, or not above chance, is saved marked unusable, with advice. A
model is saved per user together with its montage (board, channel names, sampling rate) and its
epoch spec (the adapted rejection limit included), and a model made for another montage is refused.
"""
from __future__ import annotations

import dataclasses
import math
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyriemann.classification import MDM
from sklearn.base import BaseEstimator, TransformerMixin

from razvilka.inputs.eeg.bayes import ScoreModel
from razvilka.inputs.eeg.epochs import EpochSpec
from razvilka.protocol.errors import ErrorCode, ProtocolError

FORMAT = "razvilka-p300"
FORMAT_VERSION = 1
#: The candidate pipelines, in order of preference on a tie.
PIPELINES = ("xdawn-ts-lda", "erpcov-mdm", "vector-lda")
#: A calibration below this AUC (or whose confidence interval reaches 0.5) is marked unusable.
MIN_AUC = 0.6


class Downsample(BaseEstimator, TransformerMixin):
    """Mean over ``points`` equal bins of each channel, flattened: the classic P300 feature vector."""

    def __init__(self, points: int = 24) -> None:
        self.points = points

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Downsample:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        bins = np.array_split(np.arange(X.shape[-1]), min(self.points, X.shape[-1]))
        return np.stack([X[..., b].mean(axis=-1) for b in bins], axis=-1).reshape(len(X), -1)


class ScoredMDM(MDM):
    """pyriemann's MDM with a ``decision_function``: distance to the non-target mean minus distance to the target's."""

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        dist = self.transform(X)
        classes = list(self.classes_)
        return np.asarray(dist[:, classes.index(0)] - dist[:, classes.index(1)], dtype=float)


def make_pipeline(name: str = "xdawn-ts-lda", nfilter: int = 2) -> Any:  # a scikit-learn Pipeline
    """One of :data:`PIPELINES`, or ``xdawn-ts-lda-lwf`` (the single pipeline used before issue 19):

    * ``xdawn-ts-lda``: XdawnCovariances(nfilter) -> TangentSpace -> LDA(shrinkage='auto');
    * ``erpcov-mdm``: ERPCovariances (target prototype) -> minimum distance to mean (Riemannian);
    * ``vector-lda``: the epoch averaged in 24 bins per channel -> LDA(shrinkage='auto').

    Epoch covariances use the sample estimator: on the shared Muse runs (leave-one-run-out) it
    scored as well as Ledoit-Wolf (xDAWN 0.781 against 0.776, ERP covariances 0.726 against 0.694)
    at a quarter of the time; the xDAWN filters keep Ledoit-Wolf.
    """
    from pyriemann.estimation import ERPCovariances, XdawnCovariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline as sk_pipeline

    if name in ("xdawn-ts-lda", "xdawn-ts-lda-lwf"):
        return sk_pipeline(
            XdawnCovariances(nfilter=nfilter, estimator="lwf" if name.endswith("lwf") else "scm",
                             xdawn_estimator="lwf"),
            TangentSpace(metric="riemann"),
            LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
        )
    if name == "erpcov-mdm":
        return sk_pipeline(ERPCovariances(classes=[1], estimator="scm"), ScoredMDM(metric="riemann"))
    if name == "vector-lda":
        return sk_pipeline(Downsample(24), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))
    raise ValueError(f"unknown pipeline {name!r}; expected one of {', '.join(PIPELINES)}")


def peak_to_peak(epochs: np.ndarray) -> np.ndarray:
    """Each epoch's largest peak-to-peak over its channels (µV)."""
    epochs = np.asarray(epochs, dtype=float)
    if not len(epochs):
        return np.zeros(0)
    return np.ptp(epochs, axis=-1).max(axis=-1)


def robust_limit(ptp: np.ndarray, k: float) -> float:
    """median + k x MAD (scaled by 1.4826 to estimate σ) of the peak-to-peak amplitudes.

    Adapts the artefact limit to the headset and the person: a clean recording gets a tight
    limit, a noisy consumer headset one that still keeps most of its epochs.
    """
    ptp = np.asarray(ptp, dtype=float)
    med = float(np.median(ptp))
    mad = 1.4826 * float(np.median(np.abs(ptp - med)))
    return med + k * max(mad, 1e-6 * max(med, 1.0))


def auc_ci(labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC with DeLong's confidence interval: (auc, low, high), clipped to [0, 1]."""
    from scipy.stats import norm

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    # psi(x, y) = 1 if x > y, 1/2 if equal: through ranks, O((m + n) log(m + n))
    from scipy.stats import rankdata

    r_all = rankdata(np.concatenate([pos, neg]))
    r_pos, r_neg = rankdata(pos), rankdata(neg)
    v10 = (r_all[:m] - r_pos) / n           # per target: share of non-targets below it
    v01 = 1.0 - (r_all[m:] - r_neg) / m     # per non-target: share of targets above it
    auc = float(v10.mean())
    var = (float(np.var(v10, ddof=1)) / m if m > 1 else 0.0) + (float(np.var(v01, ddof=1)) / n if n > 1 else 0.0)
    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


@dataclass(frozen=True)
class Montage:
    """What a model was trained on; another montage cannot use it."""

    board: str
    channels: tuple[str, ...]
    sampling_rate: int

    def describe(self) -> str:
        return f"{self.board} [{', '.join(self.channels)}] at {self.sampling_rate} Hz"

    def compatible(self, other: Montage) -> bool:
        return self.channels == other.channels and self.sampling_rate == other.sampling_rate


@dataclass
class CalibrationReport:
    auc: float                 # cross-validated ROC AUC of single epochs, of the chosen pipeline
    accuracy: float            # cross-validated single-trial accuracy (balanced, at the classifier's threshold)
    n_target: int
    n_nontarget: int
    n_rejected: int
    folds: int
    seconds: float
    auc_low: float = float("nan")      # 95 % confidence interval of ``auc`` (DeLong)
    auc_high: float = float("nan")
    pipeline: str = "xdawn-ts-lda"     # the pipeline chosen by cross-validation
    candidates: dict[str, float] = field(default_factory=dict)   # each candidate pipeline's cross-validated AUC
    reject_uv: float = 0.0             # the artefact limit applied (µV peak-to-peak)
    reject_adapted: bool = False       # True: ``reject_uv`` came from the recording's own amplitudes
    min_auc: float = MIN_AUC           # the floor it was held to
    usable: bool = True                # False: the adapter refuses to select with this model
    advice: str = ""                   # why not, and what to try

    @property
    def rejected_share(self) -> float:
        total = self.n_target + self.n_nontarget + self.n_rejected
        return self.n_rejected / total if total else 0.0

    def line(self) -> str:
        ci = "" if math.isnan(self.auc_low) else f" (95% CI {self.auc_low:.3f}-{self.auc_high:.3f})"
        others = ", ".join(f"{k} {v:.3f}" for k, v in self.candidates.items())
        limit = (f" over {self.reject_uv:.0f} µV{' (adapted)' if self.reject_adapted else ''}"
                 if self.reject_uv > 0 else "")
        text = (f"cross-validated AUC {self.auc:.3f}{ci} with {self.pipeline}"
                f"{f' (candidates: {others})' if len(self.candidates) > 1 else ''}, "
                f"balanced accuracy {self.accuracy:.3f} "
                f"({self.n_target} target / {self.n_nontarget} non-target epochs, {self.n_rejected} rejected "
                f"= {self.rejected_share:.1%}{limit}, {self.folds}-fold, {self.seconds:.1f} s)")
        return text if self.usable else f"{text}. UNUSABLE: {self.advice}"


def unusable_advice(auc: float, low: float, floor: float, n_target: int, rejected_share: float) -> str:
    """What to tell the person and the researcher when a calibration cannot select."""
    why = (f"the cross-validated AUC {auc:.2f} is below the floor {floor:.2f}" if auc < floor else
           f"the AUC's 95% interval reaches chance (lower bound {low:.2f})")
    return (f"{why}, so the classifier cannot tell attended flashes from the others and EEG selection is off. "
            f"Try: check the electrodes' contact (wet or reseat them; {rejected_share:.0%} of epochs were artefacts); "
            f"calibrate for longer ({n_target} target epochs now, aim for 80 or more) with the person attending "
            "the highlighted item and counting its flashes; a montage nearer Pz/Cz, where the P300 is largest, "
            "or other channels; then calibrate again. Gaze, switches or keys still work meanwhile")


@dataclass
class P300Model:
    """A trained pipeline plus everything needed to use it safely."""

    pipeline: Any
    montage: Montage
    spec: EpochSpec
    scores: ScoreModel
    report: CalibrationReport
    user: str = "default"
    created: float = field(default_factory=time.time)

    def score(self, epochs: np.ndarray) -> np.ndarray:
        """LDA decision values (higher = more target-like) for epochs (n x channels x samples)."""
        return np.asarray(self.pipeline.decision_function(np.asarray(epochs, dtype=float)), dtype=float)

    def require_usable(self) -> P300Model:
        """The model itself when it can select; ``EEGError(BAD_CALIBRATION)`` with the advice when not."""
        if not self.report.usable:
            from razvilka.inputs.eeg.readers import EEGError

            raise EEGError(ErrorCode.BAD_CALIBRATION, f"the calibration of user {self.user!r} is marked unusable "
                           f"({self.report.auc:.2f} AUC): {self.report.advice}")
        return self

    def check(self, montage: Montage) -> None:
        if not self.montage.compatible(montage):
            raise ProtocolError(ErrorCode.BAD_CALIBRATION,
                                f"the calibration of user {self.user!r} was made for {self.montage.describe()}, "
                                f"not for {montage.describe()}: calibrate again with this headset "
                                "(razvilka input eeg --calibrate)")

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves half a model; private (0600 in a
        0700 directory), as the person's brain signals are (razvilka/private.py)."""
        import sklearn

        from razvilka.private import private_dir, write_private

        path = Path(path)
        private_dir(path.parent)
        blob = {
            "format": FORMAT, "version": FORMAT_VERSION, "sklearn": sklearn.__version__,
            "user": self.user, "created": self.created,
            "montage": asdict(self.montage), "spec": asdict(self.spec),
            "scores": asdict(self.scores), "report": asdict(self.report),
            "pipeline": self.pipeline,
        }
        write_private(path, pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL))
        return path

    @classmethod
    def load(cls, path: str | Path, montage: Montage | None = None) -> P300Model:
        """Read a saved model; ProtocolError(BAD_CALIBRATION) if missing, corrupt or for another montage.

        The file is a pickle: load only your own calibration files.
        """
        path = Path(path)
        if not path.is_file():
            raise ProtocolError(ErrorCode.BAD_CALIBRATION,
                                f"no calibration at {path}: run `razvilka input eeg --calibrate` first")
        try:
            blob = pickle.loads(path.read_bytes())
            if not isinstance(blob, dict) or blob.get("format") != FORMAT:
                raise ValueError("not a razvilka P300 calibration file")
            if blob.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {blob.get('version')}, this build reads {FORMAT_VERSION}")
            m = blob["montage"]
            model = cls(
                pipeline=blob["pipeline"],
                montage=Montage(m["board"], tuple(m["channels"]), int(m["sampling_rate"])),
                spec=EpochSpec(**blob["spec"]), scores=ScoreModel(**blob["scores"]),
                report=CalibrationReport(**blob["report"]), user=str(blob["user"]), created=float(blob["created"]),
            )
            if not hasattr(model.pipeline, "decision_function"):
                raise ValueError("the stored pipeline cannot score epochs")
        except ProtocolError:
            raise
        except Exception as exc:  # unpickling garbage raises nearly anything
            raise ProtocolError(ErrorCode.BAD_CALIBRATION,
                                f"calibration file {path} is corrupt ({type(exc).__name__}: {exc}); "
                                "calibrate again") from None
        if montage is not None:
            model.check(montage)
        return model


def calibrate(epochs: np.ndarray, labels: np.ndarray, *, montage: Montage, spec: EpochSpec,
              groups: np.ndarray | None = None, folds: int = 5, user: str = "default",
              kept: np.ndarray | None = None, llr_clip: float = 4.0, seed: int = 0,
              reject_mad: float = 0.0, pipelines: Sequence[str] = PIPELINES, min_auc: float = MIN_AUC) -> P300Model:
    """Train on epochs with known targets; cross-validate (by run when ``groups`` are given).

    Epochs with ``kept`` False are left out. With ``reject_mad`` > 0 the artefact limit is
    adapted: ``kept`` then marks only the epochs that could be cut, and those over
    :func:`robust_limit` of their peak-to-peak are rejected; the limit goes into the model's spec
    so the adapter rejects the same way online. Each of ``pipelines`` is cross-validated and the
    best AUC wins. Raises ``EEGError(BAD_CALIBRATION)`` when there are too few epochs of either
    class to learn anything; a model below ``min_auc`` comes back marked unusable.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict

    from razvilka.inputs.eeg.readers import EEGError

    t0 = time.perf_counter()
    epochs = np.asarray(epochs, dtype=float)
    labels = np.asarray(labels, dtype=int)
    kept = np.ones(len(labels), dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    adapted = reject_mad > 0 and kept.sum() >= 8
    if adapted:
        ptp = peak_to_peak(epochs)
        limit = robust_limit(ptp[kept], reject_mad)
        kept = kept & (ptp <= limit)
        spec = dataclasses.replace(spec, reject_uv=round(float(limit), 1))
    X, y = epochs[kept], labels[kept]
    n_t, n_n = int(y.sum()), int((y == 0).sum())
    if n_t < 4 or n_n < 4:
        raise EEGError(ErrorCode.BAD_CALIBRATION,
                       f"too few clean epochs to calibrate: {n_t} target, {n_n} non-target (need 4 of each; "
                       f"{int((~kept).sum())} of {len(labels)} were rejected or cut short)")
    if groups is not None and len(np.unique(np.asarray(groups)[kept])) >= 2:
        g = np.asarray(groups)[kept]
        n_folds = min(folds, len(np.unique(g)))
        cv: Any = GroupKFold(n_folds)
    else:
        g = None
        n_folds = max(2, min(folds, n_t))
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    results: dict[str, tuple[np.ndarray, tuple[float, float, float]]] = {}
    for name in pipelines:
        scores = cross_val_predict(make_pipeline(name), X, y, cv=cv, groups=g, method="decision_function")
        results[name] = (np.asarray(scores, dtype=float), auc_ci(y, scores))
    best = max(results, key=lambda k: results[k][1][0])   # first listed wins a tie
    cv_scores, (auc, low, high) = results[best]
    acc = float(balanced_accuracy_score(y, (cv_scores > 0).astype(int)))
    pipeline = make_pipeline(best).fit(X, y)
    n_rej = int((~kept).sum())
    usable = min_auc <= 0 or (auc >= min_auc and low > 0.5)   # a floor of 0 turns the check off
    report = CalibrationReport(
        auc=auc, accuracy=acc, n_target=n_t, n_nontarget=n_n, n_rejected=n_rej, folds=n_folds,
        seconds=time.perf_counter() - t0, auc_low=low, auc_high=high, pipeline=best,
        candidates={k: round(v[1][0], 4) for k, v in results.items()}, reject_uv=float(spec.reject_uv),
        reject_adapted=adapted, min_auc=min_auc, usable=usable,
        advice="" if usable else unusable_advice(auc, low, min_auc, n_t, n_rej / len(labels)))
    return P300Model(pipeline=pipeline, montage=montage, spec=spec,
                     scores=ScoreModel.fit(cv_scores, y, clip=llr_clip), report=report, user=user)
