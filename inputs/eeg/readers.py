"""Readers for the EEG recordings researchers bring: muse-lsl / eeg-notebooks CSVs, BrainFlow files, XDF.

:func:`read_recording` detects the format and returns a :class:`~razvilka.inputs.eeg.recording.Recording`
whose markers follow the project's convention (0 none, 1 non-target onset, 2 target onset).
Every refusal is an :class:`EEGError` that names the file, the line (or stream) and what was
expected, so a researcher can fix the file or pass the option that reads it.

What the public tools wrote over their versions (checked in their sources):

* muse-lsl ``lsl-record.py`` (2017) and eeg-notebooks v0.1: ``timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker``;
* muse-lsl ``muselsl record`` (2018-): ``timestamps,<channels>,Marker0[,Marker1..]``, one column per
  channel of the marker stream, or no marker column when no marker stream was found;
* eeg-notebooks (``eegnb``) on BrainFlow boards: ``timestamps,<channels>,stim``;
* early ``muse_record.py``: a pandas index column first and ``timestamps`` last, no markers.

Timestamps are LSL or Unix seconds in all of them; milliseconds or microseconds (other loggers)
are recognised by their size or their step, and ISO 8601 date-times are parsed (a time without a
zone is taken as UTC). A column whose name contains ``AUX`` is not EEG (the Muse's floating input).
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from razvilka.inputs.eeg.recording import NON_TARGET, TARGET, Recording
from razvilka.protocol.errors import ErrorCode, RazvilkaError

Format = Literal["auto", "csv", "brainflow", "xdf"]

#: Column names taken as the time column (compared in lower case).
TIME_COLUMNS = ("timestamps", "timestamp", "time_stamp", "time", "times", "lsl_timestamp", "unix_time", "ts")
#: Marker columns: Marker, Markers, Marker0..MarkerN, marker, stim, Stimulus, Event(s), Trigger (any case).
MARKER_COLUMN = re.compile(r"^(markers?|stim|stimulus|events?|triggers?)\s*\d*$", re.IGNORECASE)
#: Columns that are neither EEG nor markers: a pandas index, the Muse's floating AUX inputs.
INDEX_COLUMNS = ("", "unnamed: 0", "index", "sample", "sample_index")
#: Marker words understood besides numeric codes (compared in lower case).
TARGET_WORDS = ("target", "deviant", "oddball")
NON_TARGET_WORDS = ("non-target", "nontarget", "non_target", "non target", "standard", "distractor")
#: Sampling rates of common EEG devices: an estimate within 2 % of one of them is snapped to it.
COMMON_RATES = (100, 125, 128, 200, 250, 256, 300, 500, 512, 600, 1000, 1024, 1600, 2000, 2048)
#: BrainFlow boards whose files are recognised by their row count and rate when no board id is given.
KNOWN_BOARDS = (-1, 0, 1, 2, 3, 4, 5, 6, 7, 21, 22, 38, 39, 41, 42)


class EEGError(RazvilkaError):
    """An EEG recording or calibration that cannot be used; the message says which file, where, and why."""


def _err(code: ErrorCode, path: Path | str, where: str, message: str) -> EEGError:
    place = f"{path}" + (f", {where}" if where else "")
    return EEGError(code, f"{place}: {message}")


# ---------------------------------------------------------------------------- marker codes
def _classify(value: Any, targets: Sequence[float], non_targets: Sequence[float]) -> int:
    """Map one marker value to 2 (target), 1 (non-target), 0 (none) or -1 (an event of another kind)."""
    if value is None:
        return 0
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        low = text.lower()
        if low in TARGET_WORDS:
            return TARGET
        if low in NON_TARGET_WORDS:
            return NON_TARGET
        if low.startswith("{"):
            try:  # a JSON marker: {"label": ...} / {"target": true}
                obj = json.loads(text)
            except ValueError:
                return -1
            if isinstance(obj, dict):
                if isinstance(obj.get("target"), bool):
                    return TARGET if obj["target"] else NON_TARGET
                for key in ("label", "code", "marker", "value"):
                    if key in obj:
                        return _classify(obj[key], targets, non_targets)
            return -1
        try:
            value = float(text)
        except ValueError:
            return -1
    try:
        num = float(value)
    except (TypeError, ValueError):
        return -1
    if math.isnan(num) or num == 0:
        return 0
    if num in targets:
        return TARGET
    if num in non_targets:
        return NON_TARGET
    return -1


def _no_events(path: Path | str, where: str, other: Counter, targets: Sequence[float],
               non_targets: Sequence[float]) -> EEGError:
    found = (f"it holds only other marker codes ({', '.join(f'{k!r} x{n}' for k, n in other.most_common(6))})"
             if other else "every marker is 0 or empty")
    return _err(ErrorCode.BAD_CALIBRATION, path, where,
                f"no target or non-target onsets: expected marker codes {list(non_targets)} (non-target) and "
                f"{list(targets)} (target), or the words target / non-target; {found}. "
                "Pass target=/non_target= codes to read another paradigm's markers")


# ---------------------------------------------------------------------------- text input
def _open_bytes(path: Path) -> gzip.GzipFile | lzma.LZMAFile | bz2.BZ2File | io.BufferedReader:
    """Open a file to read, transparently decompressing .gz, .xz and .bz2 (recordings are stored compressed)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path)
    if suffix == ".xz":
        return lzma.open(path)
    if suffix == ".bz2":
        return bz2.open(path)
    return path.open("rb")


def _open_text(path: Path) -> IO[str]:
    """Open a (perhaps compressed) text file."""
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", newline="")


def _head(path: Path) -> bytes:
    with _open_bytes(path) as fh:
        return bytes(fh.read(4096))


def detect_format(path: str | Path) -> Format:
    """``xdf`` (magic ``XDF:``), ``brainflow`` (a first line of tab-separated numbers) or ``csv`` (a header)."""
    p = Path(path)
    try:
        head = _head(p)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise _err(ErrorCode.BAD_STREAM, p, "", f"cannot read it ({exc})") from None
    if head.startswith(b"XDF:") or p.suffix.lower() in (".xdf", ".xdfz"):
        return "xdf"
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    if not first:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", "the file is empty; expected a CSV header, "
                   "BrainFlow rows of numbers, or an XDF file")
    fields = re.split(r"[\t,;]", first)
    if all(_is_number(f) for f in fields):
        if "\t" in first:
            return "brainflow"
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"a line of numbers with no header ({first[:60]!r}); expected a "
                   "header such as timestamps,TP9,AF7,AF8,TP10,Marker, or BrainFlow's tab-separated rows")
    return "csv"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- timestamps and rate
def _parse_iso(text: str) -> float:
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _to_seconds(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Numeric timestamps in seconds, recognising milliseconds / microseconds by size or by step."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return values, "s"
    size = float(np.median(np.abs(finite)))
    if size > 1e14:
        return values / 1e6, "us"
    if size > 1e11:
        return values / 1e3, "ms"
    steps = np.diff(finite)
    steps = steps[steps > 0]
    if len(steps) and float(np.median(steps)) >= 0.5:   # no EEG samples slower than 2 Hz: these are ms
        return values / 1e3, "ms"
    return values, "s"


def estimate_rate(timestamps: np.ndarray) -> float:
    """Samples per second over the whole span (robust to rounded stamps), snapped to a common device rate."""
    ts = np.asarray(timestamps, dtype=float)
    if len(ts) < 2 or not ts[-1] > ts[0]:
        return float("nan")
    rate = (len(ts) - 1) / (ts[-1] - ts[0])
    nearest = min(COMMON_RATES, key=lambda c: abs(rate - c) / c)
    return float(nearest) if abs(rate - nearest) <= 0.02 * nearest else float(rate)


def _check_time(path: Path | str, ts: np.ndarray, first_line: int) -> None:
    """Stamps must not run backwards: that is two files joined or a clock step, which epoching cannot undo."""
    back = np.flatnonzero(np.diff(ts) < -1e-6)
    if len(back):
        i = int(back[0]) + 1
        raise _err(ErrorCode.BAD_STREAM, path, f"line {first_line + i}",
                   f"the timestamp {ts[i]:.3f} runs back from {ts[i - 1]:.3f} on the line before; expected "
                   "non-decreasing timestamps (split the file where the clock jumped)")


def _fill_nan(path: Path | str, eeg: np.ndarray, names: Sequence[str]) -> None:
    """Bridge short NaN runs (dropped values) linearly, in place; a channel with no values is refused."""
    for c in range(eeg.shape[1]):
        bad = ~np.isfinite(eeg[:, c])
        if not bad.any():
            continue
        if bad.all():
            raise _err(ErrorCode.BAD_STREAM, path, f"column {names[c]!r}", "has no numeric value at all; expected µV")
        idx = np.arange(len(eeg))
        eeg[bad, c] = np.interp(idx[bad], idx[~bad], eeg[~bad, c])


# ---------------------------------------------------------------------------- CSV (muse-lsl, eeg-notebooks)
def read_csv(path: str | Path, *, sampling_rate: float | None = None, marker_columns: Sequence[str] = (),
             channels: Sequence[str] = (), targets: Sequence[float] = (TARGET,),
             non_targets: Sequence[float] = (NON_TARGET,)) -> Recording:
    """A CSV with a header: a time column, EEG columns and one or more marker columns.

    Several marker columns (``Marker0..MarkerN``) are combined row by row: the first column with
    a non-zero value speaks for the row. That reads both a multi-channel marker stream (the code
    in Marker0, more values after it) and several single-channel streams (one column each);
    ``marker_columns`` picks the columns (and their order) when the code is elsewhere.
    """
    p = Path(path)
    try:
        with _open_text(p) as fh:
            sample = fh.read(4096)
            fh.seek(0)
            delim = "\t" if sample.count("\t") > sample.count(",") else (";" if sample.count(";") > sample.count(",")
                                                                         else ",")
            rows = list(csv.reader(fh, delimiter=delim))
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, csv.Error) as exc:
        raise _err(ErrorCode.BAD_STREAM, p, "", f"cannot read it as text ({exc})") from None
    if not rows:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", "the file is empty; expected a header such as "
                   "timestamps,TP9,AF7,AF8,TP10,Marker")
    header = [h.strip() for h in rows[0]]
    low = [h.lower() for h in header]
    time_col = next((low.index(n) for n in TIME_COLUMNS if n in low), None)
    if marker_columns:
        missing = [m for m in marker_columns if m not in header]
        if missing:
            raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"no column {missing[0]!r}; the header is {header}")
        mark_cols = [header.index(m) for m in marker_columns]
    else:
        mark_cols = [i for i, h in enumerate(header) if MARKER_COLUMN.match(h)]
    skip = {i for i, h in enumerate(low) if h in INDEX_COLUMNS or "aux" in h} | set(mark_cols)
    if time_col is not None:
        skip.add(time_col)
    eeg_cols = [i for i in range(len(header)) if i not in skip]
    if channels:
        absent = [c for c in channels if c not in header]
        if absent:
            raise _err(ErrorCode.BAD_CONFIG, p, "line 1", f"no channel {absent[0]!r}; the header is {header}")
        eeg_cols = [header.index(c) for c in channels]
    if not mark_cols:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1",
                   f"no marker column in the header {header}; expected one named Marker, Markers, Marker0..MarkerN, "
                   "marker or stim (muse-lsl writes none when it found no marker stream while recording)")
    if not eeg_cols:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"no EEG column in the header {header}")
    body = rows[1:]
    while body and not any(c.strip() for c in body[-1]):
        body.pop()   # trailing blank lines
    if not body:
        raise _err(ErrorCode.BAD_STREAM, p, "line 2", "the header is followed by no samples")
    n = len(body)
    eeg = np.empty((n, len(eeg_cols)))
    codes = np.zeros(n, dtype=int)
    stamps: list[str] = []
    other: Counter = Counter()
    width = len(header)
    for r, row in enumerate(body):
        line = r + 2
        if len(row) != width:
            if not any(c.strip() for c in row):
                raise _err(ErrorCode.BAD_STREAM, p, f"line {line}", "a blank line inside the samples")
            raise _err(ErrorCode.BAD_STREAM, p, f"line {line}",
                       f"{len(row)} fields; expected {width}, as in the header {header}")
        for j, c in enumerate(eeg_cols):
            cell = row[c].strip()
            try:
                eeg[r, j] = float(cell) if cell else math.nan
            except ValueError:
                raise _err(ErrorCode.BAD_STREAM, p, f"line {line}",
                           f"column {header[c]!r} holds {cell[:40]!r}; expected a number (µV)") from None
        for c in mark_cols:   # the first marker column with an event speaks for the row
            kind = _classify(row[c], targets, non_targets)
            if kind > 0:
                codes[r] = kind
            elif kind < 0:
                other[row[c].strip()] += 1
            if kind:
                break
        if time_col is not None:
            stamps.append(row[time_col])
    names = tuple(header[c] for c in eeg_cols)
    _fill_nan(p, eeg, names)
    if time_col is not None:
        ts = _parse_times(p, stamps, header[time_col])
        _check_time(p, ts, 2)
    else:
        if not sampling_rate:
            raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"no time column in the header {header} (expected one of "
                       f"{', '.join(TIME_COLUMNS)}); pass sampling_rate to read it by sample count")
        ts = np.arange(n) / float(sampling_rate)
    rate = float(sampling_rate) if sampling_rate else estimate_rate(ts)
    if not rate > 0:
        raise _err(ErrorCode.BAD_STREAM, p, f"column {header[time_col or 0]!r}",
                   "the timestamps do not advance, so the sampling rate is unknown; pass sampling_rate")
    if not (codes > 0).any():
        raise _no_events(p, f"columns {', '.join(header[c] for c in mark_cols)}", other, targets, non_targets)
    device = "Muse2016" if set(names) == {"TP9", "AF7", "AF8", "TP10"} else "CSV"
    return Recording(eeg=eeg, timestamps=ts, markers=codes, channels=names, sampling_rate=_int_rate(rate),
                     source=str(p), device=device)


def _int_rate(rate: float) -> int:
    return int(round(rate))


def _parse_times(path: Path, cells: list[str], name: str) -> np.ndarray:
    try:
        values = np.array([float(c) for c in cells])
    except ValueError:
        values = None
    if values is not None:
        if not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise _err(ErrorCode.BAD_STREAM, path, f"line {i + 2}", f"column {name!r} holds {cells[i]!r}; "
                       "expected a timestamp")
        return _to_seconds(values)[0]
    out = np.empty(len(cells))
    for i, c in enumerate(cells):
        try:
            out[i] = float(c)
        except ValueError:
            try:
                out[i] = _parse_iso(c)
            except ValueError:
                raise _err(ErrorCode.BAD_STREAM, path, f"line {i + 2}",
                           f"column {name!r} holds {c[:40]!r}; expected Unix/LSL seconds, milliseconds, or an "
                           "ISO 8601 date-time such as 2017-02-04 15:45:13.483") from None
    return out


# ---------------------------------------------------------------------------- BrainFlow files
def _layout(board_id: int) -> Any:
    from razvilka.inputs.eeg.boards import board_info

    return board_info(board_id)


def read_brainflow(path: str | Path, *, board_id: int | None = None, channels: Sequence[str] = (),
                   targets: Sequence[float] = (TARGET,), non_targets: Sequence[float] = (NON_TARGET,)) -> Recording:
    """A file of ``DataFilter.write_file`` (one sample per line, one board row per tab-separated column).

    Which column is which comes from the board's description: ``board_id`` when given and its
    row count fits, else the known board whose row count and timestamp rate fit the file.
    """
    from razvilka.inputs.eeg.boards import brainflow

    brainflow()
    p = Path(path)
    data = _read_numeric_rows(p)
    ncols = data.shape[1]
    info = None
    if board_id is not None:
        cand = _layout(board_id)
        if cand.num_rows == ncols:
            info = cand
    if info is None:
        info = _guess_board(p, data, asked=board_id)
    rows, names = info.select(list(channels))
    ts = data[:, info.timestamp_row].copy()
    _check_time(p, ts, 1)
    markers = np.array([_classify(v, targets, non_targets) for v in data[:, info.marker_row]])
    other = Counter(str(v) for v in data[markers == -1, info.marker_row])
    markers[markers < 0] = 0
    if not (markers > 0).any():
        raise _no_events(p, f"marker row {info.marker_row} ({info.name})", other, targets, non_targets)
    eeg = data[:, list(rows)].copy()
    _fill_nan(p, eeg, names)
    return Recording(eeg=eeg, timestamps=ts, markers=markers, channels=tuple(names),
                     sampling_rate=info.sampling_rate, source=str(p), device=info.name)


def _read_numeric_rows(p: Path) -> np.ndarray:
    try:
        with _open_text(p) as fh:
            text = fh.read()
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise _err(ErrorCode.BAD_STREAM, p, "", f"cannot read it ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", "the file is empty")
    width = len(lines[0].split("\t"))
    try:
        return np.loadtxt(io.StringIO("\n".join(lines)), delimiter="\t", ndmin=2)
    except ValueError:
        pass
    for i, line in enumerate(lines):   # find the line that failed, to name it
        fields = line.split("\t")
        if len(fields) != width:
            raise _err(ErrorCode.BAD_STREAM, p, f"line {i + 1}", f"{len(fields)} tab-separated values; expected "
                       f"{width} like line 1 (one per row of the board)") from None
        for j, f in enumerate(fields):
            if not _is_number(f):
                raise _err(ErrorCode.BAD_STREAM, p, f"line {i + 1}", f"value {j + 1} is {f[:40]!r}; expected "
                           "a number (BrainFlow files hold only numbers)") from None
    raise _err(ErrorCode.BAD_STREAM, p, "", "cannot parse it as BrainFlow rows")


def _guess_board(p: Path, data: np.ndarray, *, asked: int | None) -> Any:
    fits = []
    for b in KNOWN_BOARDS:
        try:
            info = _layout(b)
        except RazvilkaError:
            continue
        if info.num_rows != data.shape[1]:
            continue
        rate = estimate_rate(data[:, info.timestamp_row])
        if math.isfinite(rate) and abs(rate - info.sampling_rate) <= 0.05 * info.sampling_rate:
            fits.append(info)
    layouts = {(f.eeg_rows, f.eeg_names, f.timestamp_row, f.marker_row) for f in fits}
    if len(layouts) == 1:
        return fits[0]
    told = f"board {asked} writes {_layout(asked).num_rows} columns; " if asked is not None else ""
    if not fits:
        raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"{data.shape[1]} columns; {told}no known board writes "
                   f"{data.shape[1]} columns at the rate of its timestamps: pass the board id that recorded it")
    raise _err(ErrorCode.BAD_STREAM, p, "line 1", f"{data.shape[1]} columns fit several boards "
               f"({', '.join(f'{f.name} ({f.board_id})' for f in fits)}); {told}pass the board id that recorded it")


# ---------------------------------------------------------------------------- XDF (LabRecorder)
def _info(stream: dict[str, Any], key: str) -> str:
    value = stream.get("info", {}).get(key, [""])
    return str(value[0] if isinstance(value, list) and value else value)


def _describe(streams: Iterable[dict[str, Any]]) -> str:
    return "; ".join(f"{_info(s, 'name')!r} (type {_info(s, 'type')!r}, {_info(s, 'channel_count')} ch, "
                     f"{_info(s, 'nominal_srate')} Hz)" for s in streams) or "none"


def _pick(streams: list[dict[str, Any]], want: str | None, default_types: Sequence[str], what: str,
          p: Path, eeg: bool) -> dict[str, Any]:
    if want:
        hits = [s for s in streams if want.lower() in (_info(s, "name").lower(), _info(s, "type").lower())]
    else:
        hits = [s for s in streams if _info(s, "type").lower() in default_types]
        if not eeg:   # irregular streams of strings are markers even when typed otherwise
            hits = hits or [s for s in streams if float(_info(s, "nominal_srate") or 0) == 0
                            and _info(s, "type").lower() not in ("eeg",)]
    if len(hits) == 1:
        return hits[0]
    how = f"named or typed {want!r}" if want else f"of type {' or '.join(repr(t) for t in default_types)}"
    if not hits:
        raise _err(ErrorCode.BAD_STREAM, p, "", f"no {what} stream {how}; the file holds: {_describe(streams)}")
    raise _err(ErrorCode.BAD_STREAM, p, "", f"{len(hits)} {what} streams {how} ({_describe(hits)}); "
               f"choose one by name ({'eeg_stream' if eeg else 'marker_stream'}=...)")


def _channel_labels(stream: dict[str, Any], n: int) -> tuple[list[str], list[str]]:
    labels, units = [], []
    try:
        chans = stream["info"]["desc"][0]["channels"][0]["channel"]
        for ch in chans:
            labels.append(str(ch.get("label", [""])[0]))
            units.append(str(ch.get("unit", [""])[0]).lower())
    except (KeyError, IndexError, TypeError):
        pass
    if len(labels) != n or not all(labels):
        labels = [f"EEG{i + 1}" for i in range(n)]
        units = [""] * n
    return labels, units


def read_xdf(path: str | Path, *, eeg_stream: str | None = None, marker_stream: str | None = None,
             channels: Sequence[str] = (), targets: Sequence[float] = (TARGET,),
             non_targets: Sequence[float] = (NON_TARGET,)) -> Recording:
    """An XDF file (LabRecorder): the EEG stream and the marker stream, by name or type, on LSL time.

    Defaults: the one stream of type ``EEG``, and the one of type ``Markers`` (else the one irregular
    stream). Each marker lands on the EEG sample nearest its LSL timestamp (pyxdf applies the
    recorded clock offsets); markers outside the EEG's span are dropped. Channels in volts are
    converted to µV.
    """
    import pyxdf

    p = Path(path)
    try:
        streams, _ = pyxdf.load_xdf(str(p))
    except Exception as exc:  # pyxdf raises plain Exceptions, struct errors, XML errors
        raise _err(ErrorCode.BAD_STREAM, p, "", f"cannot read it as XDF ({type(exc).__name__}: {exc})") from None
    if not streams:
        raise _err(ErrorCode.BAD_STREAM, p, "", "holds no readable stream: expected an XDF file as LabRecorder "
                   "writes it (this one is empty, cut off, or not XDF)")
    eeg_s = _pick(streams, eeg_stream, ("eeg",), "EEG", p, eeg=True)
    mark_s = _pick([s for s in streams if s is not eeg_s], marker_stream, ("markers", "marker", "stim", "events"),
                   "marker", p, eeg=False)
    data = np.asarray(eeg_s["time_series"], dtype=float)
    ts = np.asarray(eeg_s["time_stamps"], dtype=float)
    name = _info(eeg_s, "name")
    if data.ndim != 2 or len(ts) < 2:
        raise _err(ErrorCode.BAD_STREAM, p, f"stream {name!r}", f"holds {len(ts)} samples; expected a recording")
    labels, units = _channel_labels(eeg_s, data.shape[1])
    for c, unit in enumerate(units):
        if unit in ("v", "volt", "volts"):
            data[:, c] *= 1e6
        elif unit in ("mv", "millivolt", "millivolts"):
            data[:, c] *= 1e3
    pick = list(range(data.shape[1]))
    if channels:
        absent = [c for c in channels if c not in labels]
        if absent:
            raise _err(ErrorCode.BAD_CONFIG, p, f"stream {name!r}", f"no channel {absent[0]!r}; it has {labels}")
        pick = [labels.index(c) for c in channels]
    else:
        pick = [i for i in pick if "aux" not in labels[i].lower()]
    order = np.argsort(ts, kind="stable")
    data, ts = data[order], ts[order]
    markers = np.zeros(len(ts), dtype=int)
    other: Counter = Counter()
    m_ts = np.asarray(mark_s["time_stamps"], dtype=float)
    for value, t in zip(mark_s["time_series"], m_ts):
        v = value[0] if isinstance(value, (list, tuple, np.ndarray)) and len(value) else value
        kind = _classify(v, targets, non_targets)
        if kind <= 0:
            if kind < 0:
                other[str(v)[:40]] += 1
            continue
        if t < ts[0] or t > ts[-1]:
            continue
        markers[int(np.argmin(np.abs(ts - t)))] = kind
    if not (markers > 0).any():
        raise _no_events(p, f"stream {_info(mark_s, 'name')!r}", other, targets, non_targets)
    srate = float(_info(eeg_s, "nominal_srate") or 0) or estimate_rate(ts)
    eeg = data[:, pick].copy()
    names = tuple(labels[i] for i in pick)
    _fill_nan(p, eeg, names)
    return Recording(eeg=eeg, timestamps=ts, markers=markers, channels=names, sampling_rate=_int_rate(srate),
                     source=str(p), device=name or "XDF")


# ---------------------------------------------------------------------------- one entry point
def read_recording(path: str | Path, *, fmt: Format = "auto", board_id: int | None = None,
                   channels: Sequence[str] = (), sampling_rate: float | None = None,
                   marker_columns: Sequence[str] = (), eeg_stream: str | None = None,
                   marker_stream: str | None = None, targets: Sequence[float] = (TARGET,),
                   non_targets: Sequence[float] = (NON_TARGET,)) -> Recording:
    """Read any recording this module knows, detecting the format unless ``fmt`` says it.

    Raises :class:`EEGError` (``BAD_STREAM`` for an unreadable file, ``BAD_CALIBRATION`` for one
    with no target / non-target onsets) naming the file and the line or stream.
    """
    p = Path(path)
    if not p.is_file():
        raise _err(ErrorCode.BAD_STREAM, p, "", "no such file")
    kind = detect_format(p) if fmt == "auto" else fmt
    if kind == "xdf":
        return read_xdf(p, eeg_stream=eeg_stream, marker_stream=marker_stream, channels=channels,
                        targets=targets, non_targets=non_targets)
    if kind == "brainflow":
        return read_brainflow(p, board_id=board_id, channels=channels, targets=targets, non_targets=non_targets)
    return read_csv(p, sampling_rate=sampling_rate, marker_columns=marker_columns, channels=channels,
                    targets=targets, non_targets=non_targets)


__all__ = ["EEGError", "read_recording", "read_csv", "read_brainflow", "read_xdf", "detect_format", "estimate_rate"]
