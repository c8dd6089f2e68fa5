"""The recordings researchers bring, read by one entry point (``read_recording``), or refused clearly.

A real eeg-notebooks run (tests/data/eeg, see its PROVENANCE.md) is rewritten here into every
header and timestamp form muse-lsl and eeg-notebooks wrote over their versions, into BrainFlow's
file format, and into XDF (written by the small XDF writer below, read back by pyxdf). Each must
give the same samples and the same onsets as the original. Broken files must be refused with the
file, the line (or stream) and what was expected, and a refused calibration loses nothing.
"""
from __future__ import annotations

import csv
import hashlib
import lzma
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from conftest import TEST_DATA

from razvilka.inputs.eeg.classifier import P300Model
from razvilka.inputs.eeg.readers import EEGError, detect_format, read_recording
from razvilka.inputs.eeg.recording import NON_TARGET, TARGET, Recording, write_playback_file
from razvilka.protocol.errors import ErrorCode

MUSE = TEST_DATA / "eeg" / "muse-visual-p300"
CHANNELS = ("TP9", "AF7", "AF8", "TP10")


@pytest.fixture(scope="module")
def run1() -> tuple[list[str], list[list[str]]]:
    """Header and rows of run 1 exactly as eeg-notebooks v0.1 published it."""
    with lzma.open(sorted(MUSE.glob("*.csv.xz"))[0], "rt", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamps", "TP9", "AF7", "AF8", "TP10", "Right AUX", "Marker"]
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def original(run1: tuple[list[str], list[list[str]]], tmp_path_factory: pytest.TempPathFactory) -> Recording:
    path = tmp_path_factory.mktemp("orig") / "run1.csv"
    write_csv(path, *run1)
    rec = read_recording(path)
    assert rec.channels == CHANNELS and rec.sampling_rate == 256
    assert (rec.markers == NON_TARGET).sum() == 165 and (rec.markers == TARGET).sum() == 32   # as PROVENANCE.md
    return rec


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def same(rec: Recording, ref: Recording) -> None:
    """The same samples, channels, rate and onsets (the marker on the same sample)."""
    assert rec.channels == ref.channels and rec.sampling_rate == ref.sampling_rate
    assert rec.eeg.shape == ref.eeg.shape and np.allclose(rec.eeg, ref.eeg, atol=1e-3)
    assert np.array_equal(rec.markers, ref.markers)
    assert np.allclose(rec.timestamps - rec.timestamps[0], ref.timestamps - ref.timestamps[0], atol=2e-3)


# ---------------------------------------------------------------------------- CSV variants
def _marker0(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """``muselsl record``: the marker stream's one channel becomes Marker0."""
    return h[:-1] + ["Marker0"], rows


def _two_marker_columns(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """A two-channel marker stream (Marker0, Marker1): the code, and a second value (here a trial count,
    which also takes the values 1 and 2: the first column with an event speaks for the row)."""
    out, n = [], 0
    for r in rows:
        n += r[-1] != "0"
        out.append(r + [str(n) if r[-1] != "0" else "0"])
    return h[:-1] + ["Marker0", "Marker1"], out


def _split_marker_columns(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Non-targets in Marker0, targets in Marker1 (two marker streams merged)."""
    return (h[:-1] + ["Marker0", "Marker1"],
            [r[:-1] + ([r[-1], "0"] if r[-1] != "2" else ["0", "2"]) for r in rows])


def _stim(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """eeg-notebooks on BrainFlow boards: ``timestamps,<channels>,stim`` (floats; no AUX column)."""
    return (["timestamps", *CHANNELS, "stim"], [r[:5] + [f"{float(r[-1]):.1f}"] for r in rows])


def _ms(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Unix milliseconds as integers, under ``timestamp``."""
    return (["timestamp", *h[1:-1], "Markers"], [[str(round(float(r[0]) * 1000))] + r[1:] for r in rows])


def _relative_ms(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Milliseconds from the start of the recording (small numbers: recognised by their step)."""
    t0 = float(rows[0][0])
    return (["time", *h[1:-1], "marker"], [[f"{(float(r[0]) - t0) * 1000:.0f}"] + r[1:] for r in rows])


def _iso(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """ISO 8601 date-times with a space and no zone (taken as UTC), as spreadsheet exports write them."""
    return (["TimeStamp", *h[1:]],
            [[datetime.fromtimestamp(float(r[0]), UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]] + r[1:]
             for r in rows])


def _iso_t_z(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    return (h, [[datetime.fromtimestamp(float(r[0]), UTC).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z")] + r[1:] for r in rows])


def _pandas_index_time_last(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Early ``muse_record.py``: a pandas index column first, timestamps last (here with a Marker0)."""
    return (["", *h[1:-1], "Marker0", "timestamps"], [[str(i), *r[1:-1], r[-1], r[0]] for i, r in enumerate(rows)])


def _words(h: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """String markers (a string LSL marker stream), tab-separated."""
    names = {"0": "", "1": "non-target", "2": "target"}
    return h, [r[:-1] + [names[r[-1]]] for r in rows]


VARIANTS: dict[str, Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]] = {
    "Marker0": _marker0, "Marker0+Marker1": _two_marker_columns, "split Marker0/Marker1": _split_marker_columns,
    "stim": _stim, "ms timestamps": _ms, "relative ms": _relative_ms, "ISO timestamps": _iso,
    "ISO T..Z": _iso_t_z, "pandas index, time last": _pandas_index_time_last, "word markers": _words,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_known_csv_form_reads_the_same(variant: str, run1, original: Recording, tmp_path: Path) -> None:
    header, rows = VARIANTS[variant](list(run1[0]), [list(r) for r in run1[1]])
    path = write_csv(tmp_path / "rec.csv", header, rows, delimiter="\t" if variant == "word markers" else ",")
    assert detect_format(path) == "csv"
    same(read_recording(path), original)


def test_compressed_csv_is_read_as_is(original: Recording) -> None:
    same(read_recording(sorted(MUSE.glob("*.csv.xz"))[0]), original)


def test_calibrate_from_accepts_the_other_forms(run1, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--calibrate-from`` on two runs written as ``muselsl record`` (Marker0) and as eeg-notebooks' BrainFlow CSV."""
    from razvilka.cli import main

    a = write_csv(tmp_path / "a.csv", *_marker0(list(run1[0]), [list(r) for r in run1[1]]))
    with lzma.open(sorted(MUSE.glob("*.csv.xz"))[1], "rt", encoding="utf-8") as fh:
        rows2 = list(csv.reader(fh))
    b = write_csv(tmp_path / "b.csv", *_stim(rows2[0], rows2[1:]))
    code = main(["--set", f"inputs.eeg.model_dir={tmp_path}", "input", "eeg", "--user", "kim",
                 "--calibrate-from", str(a), str(b)])
    out = capsys.readouterr().out
    assert code == 0 and "cross-validated AUC" in out, out
    model = P300Model.load(tmp_path / "kim.p300.pkl")
    assert model.montage.channels == CHANNELS and model.report.n_target > 40 and model.report.auc > 0.6


# ---------------------------------------------------------------------------- BrainFlow files
@pytest.mark.parametrize("board_id", [None, 41])
def test_brainflow_file_reads_the_same(board_id: int | None, original: Recording, tmp_path: Path) -> None:
    """DataFilter.write_file's format for the Muse 2016 board (41): recognised by its 7 columns and 256 Hz stamps."""
    path = write_playback_file(tmp_path / "rec.csv", original, 41)
    assert detect_format(path) == "brainflow"
    rec = read_recording(path, board_id=board_id)
    same(rec, original)
    assert rec.device == "Muse2016"


def test_brainflow_file_with_a_board_that_does_not_fit_is_read_by_its_shape(original: Recording,
                                                                            tmp_path: Path) -> None:
    """The configured board (the synthetic board's 32 rows) does not fit a Muse file: its own shape decides."""
    path = write_playback_file(tmp_path / "rec.csv", original, 41)
    same(read_recording(path, board_id=-1), original)


# ---------------------------------------------------------------------------- XDF
def _chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return struct.pack("<BQ", 8, len(body)) + body


def _varlen(n: int) -> bytes:
    return struct.pack("<BQ", 8, n)


def write_xdf(path: Path, streams: list[dict]) -> Path:
    """A minimal XDF 1.0 writer (FileHeader, StreamHeader, Samples, ClockOffset, StreamFooter chunks).

    Each stream: name, type, rate, format ("float32" or "string"), labels, stamps, values, and
    optional clock offsets [(collection time, offset)] that a reader must add to its stamps.
    """
    out = b"XDF:" + _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for sid, s in enumerate(streams, start=1):
        chans = "".join(f"<channel><label>{escape(c)}</label><unit>microvolts</unit></channel>"
                        for c in s.get("labels", []))
        xml = (f'<?xml version="1.0"?><info><name>{escape(s["name"])}</name><type>{escape(s["type"])}</type>'
               f'<channel_count>{s["channels"]}</channel_count><nominal_srate>{s["rate"]}</nominal_srate>'
               f'<channel_format>{s["format"]}</channel_format><source_id>{sid}</source_id>'
               f'<created_at>0</created_at><desc><channels>{chans}</channels></desc></info>')
        out += _chunk(2, struct.pack("<I", sid) + xml.encode())
    for sid, s in enumerate(streams, start=1):
        stamps, values = s["stamps"], s["values"]
        for start in range(0, len(stamps), 512):
            body = struct.pack("<I", sid) + _varlen(len(stamps[start:start + 512]))
            for t, v in zip(stamps[start:start + 512], values[start:start + 512]):
                body += b"\x08" + struct.pack("<d", t)
                if s["format"] == "string":
                    for text in v:
                        raw = text.encode()
                        body += _varlen(len(raw)) + raw
                else:
                    body += np.asarray(v, dtype="<f4").tobytes()
            out += _chunk(3, body)
        for when, offset in s.get("offsets", []):
            out += _chunk(4, struct.pack("<Idd", sid, when, offset))
    for sid, s in enumerate(streams, start=1):
        footer = (f'<?xml version="1.0"?><info><first_timestamp>{s["stamps"][0]}</first_timestamp><last_timestamp>'
                  f'{s["stamps"][-1]}</last_timestamp><sample_count>{len(s["stamps"])}</sample_count></info>')
        out += _chunk(6, struct.pack("<I", sid) + footer.encode())
    path.write_bytes(out)
    return path


def xdf_streams(rec: Recording, *, marker_lag: float = 0.25, extra_markers: bool = False) -> list[dict]:
    """The run as LabRecorder would hold it: EEG on the recorder's LSL clock, and a string marker stream
    from another computer whose clock runs ``marker_lag`` s behind (the ClockOffset chunks say so)."""
    base = rec.timestamps - rec.timestamps[0] + 5000.0      # LSL clock: seconds since boot
    onsets = rec.events
    words = {NON_TARGET: "non-target", TARGET: "target"}
    streams = [
        {"name": "Muse", "type": "EEG", "rate": 256, "format": "float32", "channels": 5,
         "labels": [*CHANNELS, "Right AUX"], "stamps": base.tolist(),
         "values": np.c_[rec.eeg, np.zeros(len(base))].tolist(),
         "offsets": [(5000.0 + 10 * i, 0.0) for i in range(13)]},
        {"name": "psychopy", "type": "Markers", "rate": 0, "format": "string", "channels": 1,
         "stamps": (base[onsets] - marker_lag).tolist(), "values": [[words[int(rec.markers[i])]] for i in onsets],
         "offsets": [(5000.0 + 10 * i, marker_lag) for i in range(13)]},
    ]
    if extra_markers:
        streams.append({"name": "razvilka-markers", "type": "Markers", "rate": 0, "format": "string", "channels": 1,
                        "stamps": [5001.0, 5002.0], "values": [['{"event": "fork.open"}'], ['{"event": "flash"}']]})
    return streams


def test_xdf_picks_eeg_and_markers_and_uses_lsl_time(original: Recording, tmp_path: Path) -> None:
    path = write_xdf(tmp_path / "session.xdf", xdf_streams(original))
    assert detect_format(path) == "xdf"
    rec = read_recording(path)
    same(rec, original)            # the markers land on their samples only once the clock offset is applied
    assert rec.device == "Muse" and rec.channels == CHANNELS     # the AUX channel is not EEG


def test_xdf_with_two_marker_streams_asks_which_then_takes_it_by_name(original: Recording, tmp_path: Path) -> None:
    path = write_xdf(tmp_path / "session.xdf", xdf_streams(original, extra_markers=True))
    with pytest.raises(EEGError) as err:
        read_recording(path)
    assert err.value.code == ErrorCode.BAD_STREAM
    text = str(err.value)
    assert "'psychopy'" in text and "'razvilka-markers'" in text and "marker_stream" in text
    same(read_recording(path, marker_stream="psychopy"), original)
    with pytest.raises(EEGError, match="no target or non-target onsets"):
        read_recording(path, marker_stream="razvilka-markers")


def test_xdf_without_eeg_names_what_it_holds(original: Recording, tmp_path: Path) -> None:
    streams = xdf_streams(original)
    streams[0]["type"] = "Gaze"
    path = write_xdf(tmp_path / "gaze.xdf", streams)
    with pytest.raises(EEGError) as err:
        read_recording(path)
    assert f"{path}" in str(err.value) and "no EEG stream of type 'eeg'" in str(err.value)
    assert "'Muse' (type 'Gaze'" in str(err.value)
    same(read_recording(path, eeg_stream="Muse"), original)


# ---------------------------------------------------------------------------- refusals
def _broken(run1, how: str) -> tuple[list[str], list[list[str]]]:
    h, rows = list(run1[0]), [list(r) for r in run1[1][:3000]]
    if how == "short row":
        rows[1233] = rows[1233][:4]
    elif how == "text in EEG":
        rows[99][2] = "n/a uV"
    elif how == "no marker column":
        h, rows = h[:-1], [r[:-1] for r in rows]
    elif how == "time runs back":
        rows[2000][0] = str(float(rows[2000][0]) - 10)
    elif how == "bad time":
        rows[49][0] = "yesterday"
    elif how == "only other codes":
        rows = [r[:-1] + [{"0": "0", "1": "11", "2": "12"}[r[-1]]] for r in rows]
    elif how == "no events":
        rows = [r[:-1] + ["0"] for r in rows]
    return h, rows


@pytest.mark.parametrize(("how", "where", "says"), [
    ("short row", "line 1235", "4 fields; expected 7"),
    ("text in EEG", "line 101", "column 'AF7' holds 'n/a uV'; expected a number"),
    ("no marker column", "line 1", "no marker column in the header"),
    ("time runs back", "line 2002", "runs back"),
    ("bad time", "line 51", "holds 'yesterday'; expected Unix/LSL seconds"),
    ("only other codes", "columns Marker", "only other marker codes ('11'"),
    ("no events", "columns Marker", "every marker is 0 or empty"),
])
def test_broken_csv_is_refused_naming_file_line_and_expectation(run1, tmp_path: Path, how: str, where: str,
                                                                says: str) -> None:
    path = write_csv(tmp_path / "broken.csv", *_broken(run1, how))
    with pytest.raises(EEGError) as err:
        read_recording(path)
    text = str(err.value)
    assert text.startswith(f"{err.value.code.name}: {path}, {where}") and says in text, text
    assert err.value.code == (ErrorCode.BAD_CALIBRATION if how in ("only other codes", "no events")
                              else ErrorCode.BAD_STREAM)


def test_other_codes_are_read_when_named(run1, original: Recording, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "codes.csv", *_broken(run1, "only other codes"))
    rec = read_recording(path, targets=(12,), non_targets=(11,))
    assert np.array_equal(rec.markers, original.markers[:3000])


@pytest.mark.parametrize(("content", "says"), [
    (b"", "line 1: the file is empty"),
    (b"1.0\t2.0\t3.0\n4.0\t5.0\n", "line 2: 2 tab-separated values; expected 3"),
    (b"1.0,2.0,3.0\n", "line 1: a line of numbers with no header"),
    (b"XDF:garbage", "holds no readable stream"),
])
def test_unreadable_files_are_refused(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / ("rec.xdf" if content.startswith(b"XDF") else "rec.csv")
    path.write_bytes(content)
    with pytest.raises(EEGError) as err:
        read_recording(path)
    assert str(path) in str(err.value) and says in str(err.value), str(err.value)


def test_recording_with_nothing_usable_is_refused_and_loses_nothing(run1, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI refuses it (exit 2, naming the file and why); the user's saved model and the file stay as they were."""
    from razvilka.cli import main

    good = write_csv(tmp_path / "good.csv", *run1)
    base = ["--set", f"inputs.eeg.model_dir={tmp_path / 'models'}", "input", "eeg", "--user", "ann", "--calibrate-from"]
    assert main([*base, str(good)]) == 0
    model_file = tmp_path / "models" / "ann.p300.pkl"
    before = model_file.read_bytes()
    empty = write_csv(tmp_path / "empty.csv", *_broken(run1, "no events"))
    digest = hashlib.sha256(empty.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main([*base, str(good), str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"{empty}" in err and "no target or non-target onsets" in err, err
    assert model_file.read_bytes() == before and hashlib.sha256(empty.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["ann.p300.pkl"]   # no half-written file
