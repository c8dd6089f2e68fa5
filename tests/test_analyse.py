"""``razvilka analyse``: bad files get a clear error naming them; a recording with parts missing still
gets a report that says what is missing; the ITR is Wolpaw's.

The full report from a whole recorded session (daemon, gaze, EEG, LabRecorder) is tested in
tests/test_lsl_record.py, which records that session once.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pylsl
import pytest

from razvilka.analyse import analyse, wolpaw_bits
from razvilka.cli import main
from razvilka.lslrecord import ROLE_SESSION, MarkerOutlet, source_id
from razvilka.protocol.errors import ErrorCode, RazvilkaError


def test_wolpaw_bits() -> None:
    assert wolpaw_bits(2, 1.0) == pytest.approx(1.0)
    assert wolpaw_bits(5, 1.0) == pytest.approx(2.321928, abs=1e-6)
    assert wolpaw_bits(5, 0.75) == pytest.approx(1.0107, abs=1e-4)   # log2 5 + .75 log2 .75 + .25 log2(.25/4)
    assert wolpaw_bits(5, 0.2) == 0.0 and wolpaw_bits(1, 1.0) == 0.0  # chance, or nothing to choose from


@pytest.mark.parametrize(("content", "says"), [
    (b"", "the file is empty"),
    (b"this is not an XDF file\n", "not a readable XDF recording"),
    (b"XDF:<?xml version='1.0'?><info><version>1.0", "holds no streams"),  # cut off: pyxdf finds nothing
])
def test_bad_files_are_refused_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           content: bytes, says: str) -> None:
    path = tmp_path / "session.xdf"
    path.write_bytes(content)
    with pytest.raises(RazvilkaError) as err:
        analyse(path)
    assert err.value.code == ErrorCode.BAD_STREAM and str(path) in str(err.value) and says in str(err.value)
    assert main(["analyse", str(path), "-q"]) == 2
    printed = capsys.readouterr().err
    assert str(path) in printed and says in printed
    assert not (tmp_path / "session.html").exists()


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RazvilkaError, match="no such file") as err:
        analyse(tmp_path / "nowhere.xdf")
    assert "nowhere.xdf" in str(err.value)


def test_a_recording_of_markers_only_reports_what_it_has_and_says_what_is_missing(tmp_path: Path) -> None:
    """A session stream alone (no EEG, no gaze), recorded by LabRecorder from a real LSL outlet."""
    import labrecorder

    name = f"rz-session-{uuid.uuid4().hex[:8]}"
    outlet = MarkerOutlet(name, source_id(name), ROLE_SESSION)
    found = pylsl.resolve_byprop("name", name, 1, 10.0)
    assert found
    xdf = tmp_path / "markers-only.xdf"
    rec = labrecorder.Recording(str(xdf), found)
    # LabRecorder gets only what is sent after its inlet opens: wait until it is the outlet's consumer
    assert outlet.outlet is not None and outlet.outlet.wait_for_consumers(10.0), "LabRecorder never connected"
    probe = pylsl.StreamInlet(found[0])
    probe.open_stream(5.0)
    t0 = pylsl.local_clock()
    cands = [{"index": i, "word": w, "prob": 0.25} for i, w in enumerate(["a", "b", "c", "d"])]
    script: list[tuple[dict[str, Any], float]] = [({"type": "fork.open", "fork_id": "f1", "candidates": cands}, 0.0),
              ({"type": "input.select", "fork_id": "f1", "source": "keyboard", "index": 1}, 1.5),
              ({"type": "fork.decided", "fork_id": "f1", "index": 1, "words": ["b"], "rule": "select"}, 1.6),
              ({"type": "fork.open", "fork_id": "f2", "candidates": cands}, 2.0),
              ({"type": "fork.decided", "fork_id": "f2", "index": 0, "words": ["a"], "rule": "select"}, 4.0)]
    for marker, dt in script:
        outlet.push(marker, t0 + dt)
    got = 0
    deadline = time.monotonic() + 10
    while got < len(script) and time.monotonic() < deadline:   # the markers are on the wire
        sample, _ = probe.pull_sample(0.5)
        got += sample is not None
    assert got == len(script)
    time.sleep(1.0)  # LabRecorder pulls its inlets every 500 ms and shows nothing until it closes the file
    rec.stop()
    del rec, probe
    outlet.close()

    out = tmp_path / "report.html"
    assert main(["analyse", str(xdf), "-o", str(out), "-q"]) == 0
    page = out.read_text(encoding="utf-8")
    assert out.stat().st_mode & 0o777 == 0o600
    assert '<td id="forks">2</td>' in page and '<td id="decisions">2</td>' in page
    assert '<td id="seconds_per_selection">1.80</td>' in page           # (1.6 + 2.0) / 2
    assert '<td id="itr_bits">2.000</td>' in page                       # 4 candidates, none taken back
    assert '<td id="flashes_per_selection">n/a</td>' in page
    missing = page[page.index('<section id="missing">'):]
    assert "EEG (no stream of type EEG)" in missing and "gaze (no razvilka gaze streams" in missing
    assert '<section id="eeg">' not in page and '<section id="gaze">' not in page
    assert json.dumps(script[0][0])  # the markers were plain JSON objects
