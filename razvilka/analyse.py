"""``razvilka analyse SESSION.xdf``: one HTML report of a recorded session (docs/research.md).

The XDF is what LabRecorder wrote from razvilka's LSL streams (razvilka/lslrecord.py): the daemon's
session markers, the EEG adapter's EEG, the gaze adapter's samples and markers, key markers. The
report has what the file has, and says what it lacks:

* selections: forks, decisions, decisions taken back, selection accuracy (decisions kept), time and
  flashes per selection, ITR (Wolpaw) in bits/min, words/min;
* EEG: epochs around each stimulus onset (MNE), target and non-target ERP averages per channel, and
  the cross-validated AUC of a shrinkage LDA on the epochs (with a 95 % interval);
* gaze: samples and tracking loss, fixations (count, durations), dwell confirms and time to confirm.

A stimulus is a target when it flashed what the person then chose (the fork's decision), the usual
label in free spelling. Plots are embedded as PNG data URIs: the report is one private (0600) file.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.lslrecord import (
    GAZE_TYPE,
    MARKER_TYPE,
    ROLE_GAZE,
    ROLE_GAZE_MARKERS,
    ROLE_KEY_MARKERS,
    ROLE_SESSION,
    SESSION_STREAM,
)
from razvilka.protocol.errors import ErrorCode, RazvilkaError

Progress = Callable[[str], None]

#: Epoch window around a stimulus onset (s) and the part of it the classifier reads.
EPOCH_TMIN, EPOCH_TMAX = -0.1, 0.8
FEATURE_BIN_S = 0.05
BAND_HZ = (1.0, 20.0)


def _quiet(_: str) -> None:
    return None


# ---------------------------------------------------------------------- reading the file
@dataclass
class Stream:
    """One XDF stream as pyxdf gives it, with what razvilka's description says of it."""

    name: str
    type: str
    role: str
    source_id: str
    channels: list[str]
    srate: float
    ts: np.ndarray
    data: Any  # (n, ch) array, or a list of [str] for a marker stream

    def markers(self) -> tuple[list[dict[str, Any]], int]:
        """The JSON markers sorted by time (each with its ``t``), and how many samples were not JSON objects."""
        out, bad = [], 0
        for t, sample in zip(self.ts, self.data):
            try:
                m = json.loads(sample[0])
            except (ValueError, TypeError, IndexError):
                bad += 1
                continue
            if not isinstance(m, dict) or "type" not in m:
                bad += 1
                continue
            m["t"] = float(t)
            out.append(m)
        out.sort(key=lambda m: m["t"])
        return out, bad


def _first(tree: Any, *path: str) -> str:
    """pyxdf's nested lists of dicts: the text at ``path`` or ""."""
    node = tree
    for key in path:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict) or key not in node:
            return ""
        node = node[key]
    if isinstance(node, list):
        node = node[0] if node else ""
    return node if isinstance(node, str) else ""


def _channel_labels(info: dict[str, Any], count: int) -> list[str]:
    try:
        chans = info["desc"][0]["channels"][0]["channel"]
        labels = [str(c["label"][0]) for c in chans]
    except (KeyError, IndexError, TypeError):
        labels = []
    return labels if len(labels) == count else [f"ch{i + 1}" for i in range(count)]


def load(path: str | Path, progress: Progress = _quiet) -> list[Stream]:
    """Every stream of the XDF file; a missing, empty or corrupt file is BAD_STREAM naming it."""
    import pyxdf

    p = Path(path)
    if not p.is_file():
        raise RazvilkaError(ErrorCode.BAD_STREAM, f"{p}: no such file")
    if p.stat().st_size == 0:
        raise RazvilkaError(ErrorCode.BAD_STREAM, f"{p}: the file is empty, not an XDF recording")
    progress(f"reading {p} ({p.stat().st_size / 1e6:.1f} MB)")
    try:
        raw, _ = pyxdf.load_xdf(str(p))
    except Exception as exc:  # pyxdf raises OSError, ParseError, struct.error, ValueError... on bad files
        raise RazvilkaError(ErrorCode.BAD_STREAM,
                            f"{p}: not a readable XDF recording ({type(exc).__name__}: {exc})") from None
    if not raw:
        raise RazvilkaError(ErrorCode.BAD_STREAM, f"{p}: the XDF file holds no streams")
    streams = []
    for s in raw:
        info = s["info"]
        count = int(_first(info, "channel_count") or 0)
        data = s["time_series"]
        streams.append(Stream(
            name=_first(info, "name"), type=_first(info, "type"), role=_first(info, "desc", "role"),
            source_id=_first(info, "source_id"), channels=_channel_labels(info, count),
            srate=float(_first(info, "nominal_srate") or 0.0), ts=np.asarray(s["time_stamps"], dtype=np.float64),
            data=data))
    progress(f"{len(streams)} streams: " + ", ".join(f"{s.name} ({s.type}, {len(s.ts)} samples)" for s in streams))
    return streams


def pick(streams: list[Stream], *, role: str = "", type_: str = "", name: str = "") -> Stream | None:
    """The stream with razvilka's ``role``, else the first of ``type_`` (and ``name``) with any samples."""
    for s in streams:
        if role and s.role == role:
            return s
    for s in streams:
        if type_ and s.type == type_ and (not name or s.name.startswith(name)) and len(s.ts):
            return s
    return None


# ---------------------------------------------------------------------- selections
@dataclass
class Fork:
    fork_id: str
    opened: float
    k: int
    decided: float | None = None
    index: int | None = None
    target: str = ""
    words: list[str] = field(default_factory=list)
    rule: str = ""
    sources: list[str] = field(default_factory=list)
    stimuli: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Selections:
    forks: list[Fork]
    decisions: int
    undone: int
    auto_words: int
    commands: Counter[str]
    inputs: Counter[str]     # "input.focus from gaze" -> count
    rules: Counter[str]
    duration_s: float
    bad_markers: int

    @property
    def decided(self) -> list[Fork]:
        return [f for f in self.forks if f.decided is not None]

    @property
    def accuracy(self) -> float | None:
        """Decisions kept (not taken back with ``back``) over decisions made."""
        return None if not self.decisions else max(0, self.decisions - self.undone) / self.decisions

    @property
    def seconds_per_selection(self) -> float | None:
        times = [f.decided - f.opened for f in self.decided if f.decided is not None]
        return float(np.mean(times)) if times else None

    @property
    def flashes_per_selection(self) -> float | None:
        counts = [len(f.stimuli) for f in self.decided if f.stimuli]
        return float(np.mean(counts)) if counts else None

    @property
    def mean_k(self) -> float | None:
        ks = [f.k for f in self.decided if f.k]
        return float(np.mean(ks)) if ks else None

    def itr_bits_per_selection(self) -> float | None:
        n, p = self.mean_k, self.accuracy
        return None if n is None or p is None else wolpaw_bits(n, p)

    def itr_bits_per_min(self) -> float | None:
        bits, t = self.itr_bits_per_selection(), self.seconds_per_selection
        return None if bits is None or not t else bits * 60.0 / t

    def words_written(self) -> int:
        """Words the decisions wrote, less those taken back, plus the words the model wrote on its own."""
        chosen = sum(len(f.words) for f in self.decided)
        per = chosen / len(self.decided) if self.decided else 0.0
        return max(0, round(chosen - self.undone * per)) + self.auto_words

    def words_per_min(self) -> float | None:
        return None if self.duration_s <= 0 else self.words_written() * 60.0 / self.duration_s


def wolpaw_bits(n: float, p: float) -> float:
    """Bits per selection among ``n`` equally likely choices at accuracy ``p`` (Wolpaw et al. 2002)."""
    if n < 2 or p <= 1.0 / n:
        return 0.0
    bits = math.log2(n)
    if p < 1.0:
        bits += p * math.log2(p) + (1 - p) * math.log2((1 - p) / (n - 1))
    return bits


def selections(markers: list[dict[str, Any]], bad: int = 0) -> Selections:
    """Forks, decisions and inputs from the daemon's session markers (time-sorted)."""
    forks: dict[str, Fork] = {}
    order: list[Fork] = []
    decisions = undone = auto_words = 0
    commands: Counter[str] = Counter()
    inputs: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    for m in markers:
        kind, fid = m.get("type"), m.get("fork_id")
        if kind == "fork.open" and fid:
            if fid not in forks:
                forks[fid] = Fork(fid, m["t"], len(m.get("candidates") or []))
                order.append(forks[fid])
        elif kind == "fork.decided":
            decisions += 1
            rules[str(m.get("rule", ""))] += 1
            f = forks.get(fid or "")
            if f is not None and f.decided is None:
                f.decided, f.index, f.target = m["t"], m.get("index"), str(m.get("target") or "")
                f.words, f.rule = list(m.get("words") or []), str(m.get("rule", ""))
                f.sources = list(m.get("sources") or [])
        elif kind == "render.stimulus":
            f = forks.get(fid or "")
            if f is not None:
                f.stimuli.append(m)
        elif kind == "text.undo":
            undone += int(m.get("decisions_undone", 1) or 0)
        elif kind == "text.auto":
            auto_words += len(m.get("words") or [])
        elif kind == "input.command":
            commands[str(m.get("command"))] += 1
        if isinstance(kind, str) and kind.startswith("input."):
            inputs[f"{kind.removeprefix('input.')} from {m.get('source') or m.get('sender')}"] += 1
    span = (markers[-1]["t"] - markers[0]["t"]) if len(markers) > 1 else 0.0
    return Selections(order, decisions, undone, auto_words, commands, inputs, rules, span, bad)


# ---------------------------------------------------------------------- EEG
@dataclass
class EegResult:
    channels: list[str]
    srate: float
    duration_s: float
    n_target: int = 0
    n_nontarget: int = 0
    skipped: int = 0                 # stimuli outside the EEG, or of forks never decided
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    folds: int = 0
    erp_png: str = ""
    note: str = ""


def label_stimuli(forks: list[Fork]) -> list[tuple[float, int]]:
    """(onset, 1 target / 0 non-target) for every stimulus of a decided fork: did it flash the choice?"""
    out = []
    for f in forks:
        if f.decided is None:
            continue
        chosen = f.target or (f"cand:{f.index}" if f.index is not None else "")
        for s in f.stimuli:
            lit = {f"cand:{i}" for i in s.get("indices") or []} | set(s.get("targets") or [])
            out.append((float(s["t"]), int(bool(chosen) and chosen in lit)))
    return out


def hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """95 % interval of an AUC from its standard error (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)


def analyse_eeg(eeg: Stream, labelled: list[tuple[float, int]], progress: Progress = _quiet) -> EegResult:
    """Epoch the EEG around each labelled stimulus (MNE), average the ERPs, cross-validate a shrinkage LDA."""
    import mne

    data = np.asarray(eeg.data, dtype=np.float64)
    ts = eeg.ts
    srate = eeg.srate or (len(ts) - 1) / (ts[-1] - ts[0])
    res = EegResult(eeg.channels, float(srate), float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0)
    progress(f"EEG: {len(eeg.channels)} channels at {srate:g} Hz, {res.duration_s:.1f} s; "
             f"{len(labelled)} stimuli of decided forks")
    info = mne.create_info(eeg.channels, srate, ch_types="eeg")
    raw = mne.io.RawArray(data.T * 1e-6, info, verbose="error")  # the stream is in µV, MNE works in V
    raw.filter(*BAND_HZ, verbose="error")
    events, pre, post = [], int(round(-EPOCH_TMIN * srate)), int(round(EPOCH_TMAX * srate))
    for onset, target in labelled:
        i = int(np.searchsorted(ts, onset))
        if i - pre < 0 or i + post >= len(ts) or abs(ts[min(i, len(ts) - 1)] - onset) > 2.0 / srate:
            res.skipped += 1
            continue
        events.append([i, 0, 1 if target else 2])
    if not events:
        res.note = "no stimulus of a decided fork falls inside the EEG recording: no epochs"
        return res
    progress(f"epoching {len(events)} stimuli ({EPOCH_TMIN:+.1f} to {EPOCH_TMAX:.1f} s, "
             f"{BAND_HZ[0]:g}-{BAND_HZ[1]:g} Hz)")
    epochs = mne.Epochs(raw, np.asarray(events), event_id={"target": 1, "non-target": 2}, tmin=EPOCH_TMIN,
                        tmax=EPOCH_TMAX, baseline=(None, 0), preload=True, event_repeated="drop",
                        on_missing="ignore", verbose="error")
    y = (epochs.events[:, 2] == 1).astype(int)
    res.n_target, res.n_nontarget = int(y.sum()), int((y == 0).sum())
    progress(f"{res.n_target} target and {res.n_nontarget} non-target epochs; plotting the ERPs")
    res.erp_png = _erp_plot(epochs, y)
    if min(res.n_target, res.n_nontarget) < 2:
        res.note = "fewer than 2 epochs of one class: no AUC"
        return res
    res.auc, res.folds = _cross_validated_auc(epochs, y, progress)
    res.auc_ci = hanley_mcneil(res.auc, res.n_target, res.n_nontarget)
    return res


def _features(epochs: Any) -> np.ndarray:
    """Each epoch's 0..tmax samples averaged in 50 ms bins, per channel, flattened (µV)."""
    x = epochs.copy().crop(0.0, EPOCH_TMAX).get_data() * 1e6
    step = max(1, int(round(FEATURE_BIN_S * epochs.info["sfreq"])))
    n = x.shape[2] // step
    return x[:, :, : n * step].reshape(x.shape[0], x.shape[1], n, step).mean(axis=3).reshape(x.shape[0], -1)


def _cross_validated_auc(epochs: Any, y: np.ndarray, progress: Progress) -> tuple[float, int]:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = int(min(5, y.sum(), (y == 0).sum()))
    progress(f"cross-validating a shrinkage LDA ({folds} folds)")
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    scores = cross_val_predict(lda, _features(epochs), y, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                               method="decision_function")
    return float(roc_auc_score(y, scores)), folds


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _erp_plot(epochs: Any, y: np.ndarray) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = epochs.ch_names
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    t = epochs.times
    data = epochs.get_data() * 1e6
    for n, ax in enumerate(axes.flat):
        if n >= len(names):
            ax.set_visible(False)
            continue
        for cls, colour, label in ((1, "tab:red", "target"), (0, "tab:blue", "non-target")):
            if (y == cls).any():
                ax.plot(t, data[y == cls, n].mean(axis=0), color=colour, label=f"{label} ({int((y == cls).sum())})")
        ax.axvline(0, color="grey", lw=0.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(names[n], fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("s after the stimulus onset")
    fig.supylabel("µV")
    return _png(fig)


# ---------------------------------------------------------------------- gaze
@dataclass
class GazeResult:
    samples: int = 0
    srate: float = 0.0
    valid_share: float | None = None
    fixations: int = 0
    fixation_ms_mean: float | None = None
    fixation_ms_median: float | None = None
    confirms: int = 0
    dwell_ms_mean: float | None = None
    dwell_ms_median: float | None = None
    focus_changes: int = 0
    rests: int = 0
    plot_png: str = ""


def analyse_gaze(samples: Stream | None, markers: list[dict[str, Any]]) -> GazeResult:
    """Tracking loss from the samples; fixations, dwell confirms and the time they took from the markers."""
    res = GazeResult()
    if samples is not None and len(samples.ts):
        data = np.asarray(samples.data, dtype=np.float64)
        res.samples = len(samples.ts)
        res.srate = samples.srate or (len(samples.ts) - 1) / max(1e-9, samples.ts[-1] - samples.ts[0])
        if "valid" in samples.channels:
            res.valid_share = float(np.mean(data[:, samples.channels.index("valid")] > 0.5))
    durations = [float(m["duration_ms"]) for m in markers if m["type"] == "gaze.fixation" and "duration_ms" in m]
    res.fixations = len(durations)
    if durations:
        res.fixation_ms_mean, res.fixation_ms_median = float(np.mean(durations)), float(np.median(durations))
    dwell: list[float] = []
    focus: tuple[Any, Any] | None = None
    since = math.nan
    for m in markers:
        if m["type"] == "gaze.focus":
            key = (m.get("fork_id"), m.get("target") if m.get("index") is None else m.get("index"))
            if key != focus:
                focus, since = key, m["t"]
                res.focus_changes += 1
        elif m["type"] == "gaze.confirm":
            res.confirms += 1
            key = (m.get("fork_id"), m.get("target") if m.get("index") is None else m.get("index"))
            if key == focus and math.isfinite(since):
                dwell.append((m["t"] - since) * 1000)
        elif m["type"] == "gaze.rest":
            res.rests += 1
    if dwell:
        res.dwell_ms_mean, res.dwell_ms_median = float(np.mean(dwell)), float(np.median(dwell))
    if durations:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.hist(durations, bins=min(30, max(5, len(durations) // 2)), color="tab:green")
        ax.set_xlabel("fixation duration (ms)")
        ax.set_ylabel("fixations")
        res.plot_png = _png(fig)
    return res


# ---------------------------------------------------------------------- the report
@dataclass
class Report:
    path: Path
    streams: list[Stream]
    sel: Selections | None
    eeg: EegResult | None
    gaze: GazeResult | None
    keys: int | None
    missing: list[str]


def analyse(path: str | Path, progress: Progress = _quiet) -> Report:
    """Read the XDF and compute every part it allows; what it lacks is listed in ``missing``."""
    streams = load(path, progress)
    missing: list[str] = []
    session = pick(streams, role=ROLE_SESSION) or pick(streams, type_=MARKER_TYPE, name=SESSION_STREAM)
    sel = None
    if session is None:
        missing.append("the daemon's session markers (no razvilka-session stream): no forks, decisions or ITR, "
                       "and no labels for the EEG epochs")
    else:
        markers, bad = session.markers()
        sel = selections(markers, bad)
        progress(f"session: {len(sel.forks)} forks, {sel.decisions} decisions")
    eeg_stream = pick(streams, type_="EEG")
    eeg = None
    if eeg_stream is None:
        missing.append("EEG (no stream of type EEG): no ERPs, no AUC")
    elif sel is None:
        missing.append("EEG epochs: the EEG is there, but without session markers there are no stimuli to cut it at")
    else:
        labelled = label_stimuli(sel.forks)
        if not labelled:
            missing.append("stimuli: the session has no render.stimulus markers of decided forks: no ERPs, no AUC")
            eeg = EegResult(eeg_stream.channels, eeg_stream.srate,
                            float(eeg_stream.ts[-1] - eeg_stream.ts[0]) if len(eeg_stream.ts) > 1 else 0.0)
        else:
            eeg = analyse_eeg(eeg_stream, labelled, progress)
    gaze_samples = pick(streams, role=ROLE_GAZE) or pick(streams, type_=GAZE_TYPE)
    gaze_markers = pick(streams, role=ROLE_GAZE_MARKERS)
    gaze = None
    if gaze_samples is None and gaze_markers is None:
        missing.append("gaze (no razvilka gaze streams: run the gaze adapter with --lsl): "
                       "no dwell or fixation statistics")
    else:
        if gaze_samples is None:
            missing.append("gaze samples: only the gaze markers were recorded")
        if gaze_markers is None:
            missing.append("gaze markers: only the gaze samples were recorded (no fixations or dwell)")
        progress("gaze: fixations and dwell")
        gaze = analyse_gaze(gaze_samples, gaze_markers.markers()[0] if gaze_markers is not None else [])
    key_stream = pick(streams, role=ROLE_KEY_MARKERS)
    keys = len(key_stream.ts) if key_stream is not None else None
    return Report(Path(path), streams, sel, eeg, gaze, keys, missing)


def _num(value: float | int | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else (str(value) if isinstance(value, int) else fmt.format(value))


def _rows(items: list[tuple[str, str, str]]) -> str:
    return "\n".join(f'<tr><th>{html.escape(label)}</th><td id="{key}">{html.escape(value)}</td></tr>'
                     for key, label, value in items)


def render_html(rep: Report) -> str:
    """The report as one self-contained HTML page (plots inline)."""
    parts = [f"<h1>Session report: {html.escape(rep.path.name)}</h1>"]
    parts.append('<section id="streams"><h2>Streams</h2><table><tr><th>name</th><th>type</th><th>role</th>'
                 "<th>channels</th><th>rate (Hz)</th><th>samples</th></tr>" + "".join(
                     f"<tr><td>{html.escape(s.name)}</td><td>{html.escape(s.type)}</td><td>{html.escape(s.role)}</td>"
                     f"<td>{len(s.channels)}</td><td>{s.srate:g}</td><td>{len(s.ts)}</td></tr>" for s in rep.streams)
                 + "</table></section>")
    if rep.missing:
        parts.append('<section id="missing"><h2>Missing from this recording</h2><ul>'
                     + "".join(f"<li>{html.escape(m)}</li>" for m in rep.missing) + "</ul></section>")
    sel = rep.sel
    if sel is not None:
        parts.append('<section id="selections"><h2>Selections</h2><table>' + _rows([
            ("forks", "forks opened", str(len(sel.forks))),
            ("decisions", "decisions", str(sel.decisions)),
            ("undone", "decisions taken back (back)", str(sel.undone)),
            ("accuracy", "selection accuracy (decisions kept)", _num(sel.accuracy, "{:.3f}")),
            ("seconds_per_selection", "seconds per selection (fork opened to decided)",
             _num(sel.seconds_per_selection)),
            ("flashes_per_selection", "flashes per selection (forks with stimuli)",
             _num(sel.flashes_per_selection, "{:.1f}")),
            ("mean_k", "candidates per fork (N)", _num(sel.mean_k, "{:.1f}")),
            ("itr_bits", "ITR, bits per selection (Wolpaw)", _num(sel.itr_bits_per_selection(), "{:.3f}")),
            ("itr_bits_per_min", "ITR, bits/min", _num(sel.itr_bits_per_min())),
            ("words", "words written (chosen, less taken back, plus the model's own)", str(sel.words_written())),
            ("words_per_min", "words/min", _num(sel.words_per_min())),
            ("duration_s", "session span (s, first to last marker)", _num(sel.duration_s, "{:.1f}")),
            ("bad_markers", "markers that were not JSON objects", str(sel.bad_markers)),
        ]) + "</table>"
            + "<h3>Decision rules</h3><table>" + _rows([(f"rule-{k or 'none'}", k or "(none)", str(v))
                                                        for k, v in sorted(sel.rules.items())]) + "</table>"
            + "<h3>Inputs and commands</h3><table>" + _rows(
                [(f"input-{i}", k, str(v)) for i, (k, v) in enumerate(sorted(sel.inputs.items()))]
                + [(f"command-{k}", f"command {k}", str(v)) for k, v in sorted(sel.commands.items())]) + "</table>"
            + "</section>")
    eeg = rep.eeg
    if eeg is not None:
        ci = f"{eeg.auc_ci[0]:.3f} to {eeg.auc_ci[1]:.3f}" if eeg.auc_ci else "n/a"
        parts.append('<section id="eeg"><h2>EEG</h2><table>' + _rows([
            ("eeg_channels", "channels", ", ".join(eeg.channels)),
            ("eeg_srate", "sampling rate (Hz)", _num(eeg.srate, "{:g}")),
            ("eeg_duration", "recorded (s)", _num(eeg.duration_s, "{:.1f}")),
            ("n_target", "target epochs", str(eeg.n_target)),
            ("n_nontarget", "non-target epochs", str(eeg.n_nontarget)),
            ("eeg_skipped", "stimuli without EEG around them", str(eeg.skipped)),
            ("auc", f"AUC, shrinkage LDA, {eeg.folds}-fold cross-validated", _num(eeg.auc, "{:.3f}")),
            ("auc_ci", "AUC 95 % interval (Hanley-McNeil)", ci),
        ]) + "</table>" + (f"<p>{html.escape(eeg.note)}</p>" if eeg.note else "")
            + (f'<h3>ERP averages per channel</h3><img id="erp" alt="target and non-target ERPs" src="{eeg.erp_png}">'
               if eeg.erp_png else "") + "</section>")
    gz = rep.gaze
    if gz is not None:
        parts.append('<section id="gaze"><h2>Gaze</h2><table>' + _rows([
            ("gaze_samples", "samples", str(gz.samples)),
            ("gaze_srate", "sampling rate (Hz)", _num(gz.srate or None, "{:.1f}")),
            ("gaze_valid", "valid samples (share)", _num(gz.valid_share, "{:.3f}")),
            ("fixations", "fixations", str(gz.fixations)),
            ("fixation_ms_mean", "fixation duration, mean (ms)", _num(gz.fixation_ms_mean, "{:.0f}")),
            ("fixation_ms_median", "fixation duration, median (ms)", _num(gz.fixation_ms_median, "{:.0f}")),
            ("focus_changes", "focus changes", str(gz.focus_changes)),
            ("dwell_confirms", "dwell confirms", str(gz.confirms)),
            ("dwell_ms_mean", "time to a dwell confirm, mean (ms)", _num(gz.dwell_ms_mean, "{:.0f}")),
            ("dwell_ms_median", "time to a dwell confirm, median (ms)", _num(gz.dwell_ms_median, "{:.0f}")),
            ("rests", "rests (looked away: pause)", str(gz.rests)),
        ]) + "</table>" + (f'<img id="fixation-hist" alt="fixation durations" src="{gz.plot_png}">'
                            if gz.plot_png else "") + "</section>")
    if rep.keys is not None:
        parts.append(f'<section id="keys"><h2>Keys</h2><p>key markers: <span id="key_markers">{rep.keys}</span></p>'
                     "</section>")
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
             "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>razvilka session report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def write_report(path: str | Path, out: str | Path | None = None, progress: Progress = _quiet) -> Path:
    """Analyse ``path`` and write the HTML report (0600) to ``out`` (default: beside it, ``.html``)."""
    from razvilka.private import write_private

    rep = analyse(path, progress)
    target = Path(out) if out else Path(path).with_suffix(".html")
    progress(f"writing {target}")
    write_private(target, render_html(rep))
    return target
