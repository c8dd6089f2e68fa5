"""Calibration that survives real data, on the real Muse runs (tests/data/eeg, see its PROVENANCE.md).

* The artefact limit follows the headset: the same runs with a 6x larger signal (a noisier
  headset, another amplifier gain) lose most epochs to the fixed 150 µV, and none extra to the
  adapted limit, which is saved in the model for online use.
* The pipeline is chosen per person by cross-validation, and the AUC comes with its interval.
* A recording at chance (its labels shuffled) yields a model marked unusable, and the adapter,
  on a real bus with a real BrainFlow board, refuses to select with it and says what to try.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_DATA

from razvilka.inputs.eeg.adapter import EegAdapter
from razvilka.inputs.eeg.calibrate import calibrate_recordings
from razvilka.inputs.eeg.classifier import PIPELINES, P300Model, auc_ci, robust_limit
from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.eeg.readers import EEGError, read_recording
from razvilka.inputs.eeg.recording import Recording
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import Candidate, ForkOpen, Select, SourceStatus, Stimulus

MUSE = TEST_DATA / "eeg" / "muse-visual-p300"


@pytest.fixture(scope="module")
def runs() -> list[Recording]:
    """Runs 1 and 2, read straight from the compressed files."""
    return [read_recording(p) for p in sorted(MUSE.glob("*.csv.xz"))[:2]]


def scaled(rec: Recording, factor: float) -> Recording:
    return Recording(rec.eeg * factor, rec.timestamps, rec.markers, rec.channels, rec.sampling_rate, rec.source,
                     rec.device)


def shuffled(rec: Recording, seed: int) -> Recording:
    """The same onsets with their target / non-target labels permuted: a person not attending."""
    markers = rec.markers.copy()
    ev = rec.events
    markers[ev] = np.random.default_rng(seed).permutation(markers[ev])
    return Recording(rec.eeg, rec.timestamps, markers, rec.channels, rec.sampling_rate, rec.source, rec.device)


def test_auc_interval_is_delong_around_sklearns_auc() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(60, int), np.zeros(300, int)]
    s = rng.normal(size=len(y)) + 0.8 * y
    auc, low, high = auc_ci(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s)) and low < auc < high
    # the interval shrinks as the data grow, roughly with sqrt(n)
    y4, s4 = np.tile(y, 4), np.r_[s, s + 1e-9, s + 2e-9, s + 3e-9]
    _, low4, high4 = auc_ci(y4, s4)
    assert (high4 - low4) == pytest.approx((high - low) / 2, rel=0.15)
    assert auc_ci(np.array([1, 1, 0, 0]), np.array([3.0, 2.0, 1.0, 0.0]))[0] == 1.0


def test_artefact_limit_follows_the_headset(runs: list[Recording]) -> None:
    """A 6x larger signal: the fixed 150 µV rejects most epochs; the adapted limit scales with it and keeps them."""
    one = ("xdawn-ts-lda",)
    clean = calibrate_recordings(EegConfig(), runs, pipelines=one)
    loud = [scaled(r, 6.0) for r in runs]
    fixed = calibrate_recordings(EegConfig(reject_mad=0), loud, pipelines=one)
    adapted = calibrate_recordings(EegConfig(), loud, pipelines=one)
    print(f"\nclean: {clean.report.line()}\nx6 fixed: {fixed.report.line()}\nx6 adapted: {adapted.report.line()}")
    assert fixed.report.rejected_share > 0.5 and not fixed.report.reject_adapted
    assert adapted.report.reject_adapted and adapted.report.rejected_share == clean.report.rejected_share < 0.1
    assert adapted.spec.reject_uv == pytest.approx(6 * clean.spec.reject_uv, rel=0.01)
    assert adapted.report.auc == pytest.approx(clean.report.auc, abs=0.02) and adapted.report.auc > 0.65
    assert adapted.report.n_target > 2 * fixed.report.n_target
    # the limit is the robust one: median + 5 MAD of the epochs' peak-to-peak
    assert robust_limit(np.array([10.0, 11, 12, 13, 1000]), 5) == pytest.approx(12 + 5 * 1.4826)


def test_pipeline_chosen_by_cross_validation_and_saved(runs: list[Recording], tmp_path: Path) -> None:
    model = calibrate_recordings(EegConfig(), runs)
    rep = model.report
    assert set(rep.candidates) == set(PIPELINES)
    assert rep.pipeline == max(rep.candidates, key=lambda k: rep.candidates[k])
    assert rep.auc == pytest.approx(rep.candidates[rep.pipeline], abs=1e-4)
    assert rep.auc_low < rep.auc < rep.auc_high and rep.usable and rep.min_auc == 0.6
    assert "95% CI" in rep.line() and "rejected" in rep.line()
    for name in PIPELINES:   # each candidate trains, scores, and survives a save and a load
        m = calibrate_recordings(EegConfig(), runs[:1], pipelines=(name,))
        back = P300Model.load(m.save(tmp_path / f"{name}.p300.pkl"))
        epochs = np.random.default_rng(0).normal(size=(3, 4, back.spec.length)) * 10
        assert back.report.pipeline == name and np.allclose(back.score(epochs), m.score(epochs))


def test_too_few_epochs_is_a_clear_error(runs: list[Recording]) -> None:
    rec = runs[0]
    markers = rec.markers.copy()
    markers[rec.events[rec.labels == 1][3:]] = 1        # keep 3 targets
    few = Recording(rec.eeg, rec.timestamps, markers, rec.channels, rec.sampling_rate, rec.source, rec.device)
    with pytest.raises(EEGError) as err:
        calibrate_recordings(EegConfig(), [few])
    assert err.value.code == ErrorCode.BAD_CALIBRATION
    assert "too few clean epochs to calibrate: 3 target" in str(err.value)


@pytest.fixture(scope="module")
def chance_model(runs: list[Recording]) -> P300Model:
    return calibrate_recordings(EegConfig(user="zed"), [shuffled(r, seed=i) for i, r in enumerate(runs)])


def test_recording_at_chance_yields_an_unusable_model(chance_model: P300Model, tmp_path: Path) -> None:
    rep = chance_model.report
    print(f"\nshuffled labels: {rep.line()}")
    assert not rep.usable and rep.auc < 0.6 and rep.auc_low < 0.5
    for hint in ("electrodes", "calibrate for longer", "montage"):
        assert hint in rep.advice
    assert "UNUSABLE" in rep.line()
    saved = P300Model.load(chance_model.save(tmp_path / "zed.p300.pkl"))
    assert not saved.report.usable
    with pytest.raises(EEGError, match="marked unusable") as err:
        saved.require_usable()
    assert err.value.code == ErrorCode.BAD_CALIBRATION


async def test_adapter_refuses_to_select_with_an_unusable_model(ipc_clients, chance_model: P300Model,
                                                                tmp_path: Path) -> None:
    """On a real bus with BrainFlow's synthetic board: the refusal and its advice go out in source.status,
    no model is used, and flashes select nothing; the adapter keeps serving."""
    chance_model.save(tmp_path / "zed.p300.pkl")
    cfg = EegConfig(board_id=-1, model_dir=str(tmp_path), user="zed")
    client = await ipc_clients(cfg.name, role="input", subscribe=["fork.", "render.stimulus.", "input.focus."])
    peer = await ipc_clients("researcher", subscribe=["input.", "source."])
    adapter = EegAdapter(cfg, client)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    seen: list = []

    async def collect(seconds: float, until: Callable[[object], bool]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = await peer.recv(timeout=0.1)
            if msg is not None and msg.header.sender == cfg.name:
                seen.append(msg.body)
                if until(msg.body):
                    return

    await collect(5.0, lambda b: isinstance(b, SourceStatus) and "Synthetic" in b.detail)
    errors = [b for b in seen if isinstance(b, SourceStatus) and b.state == "error"]
    assert errors, [b.detail for b in seen if isinstance(b, SourceStatus)]
    assert "marked unusable" in errors[0].detail and "electrodes" in errors[0].detail
    assert adapter.model is None
    # the board streaming does not hide the refusal: from the refusal on, every status is an error
    # that names it with its advice, the board's own news after it
    statuses = [b for b in seen if isinstance(b, SourceStatus)]
    after = statuses[statuses.index(errors[0]):]
    assert [b.state for b in after] == ["error"] * len(after) and len(after) >= 2, [(b.state, b.detail) for b in after]
    assert all(b.detail.startswith(errors[0].detail) and "electrodes" in b.detail for b in after)
    assert "Synthetic" in after[-1].detail and adapter.status == ("error", after[-1].detail)
    peer.publish(ForkOpen(candidates=[Candidate(index=i, word=f"w{i}", prob=0.25) for i in range(4)]), fork_id="f")
    await collect(0.5, lambda b: False)
    from razvilka.protocol.clock import now_s

    for n in range(8):
        peer.publish(Stimulus(indices=[n % 4], onset_ns=int((now_s() - 1.0) * 1e9), flash=n), fork_id="f")
    await collect(2.0, lambda b: isinstance(b, Select))
    assert not [b for b in seen if isinstance(b, Select)] and adapter.stats.scored == 0
    assert not task.done() and adapter.status[0] == "error" and "marked unusable" in adapter.status[1]
    assert not [b for b in seen if isinstance(b, SourceStatus) and b.state != "error"][1:]  # only "starting"
    stop.set()
    await asyncio.wait_for(task, 10)


def test_calibrate_from_recordings_at_chance_fails_with_the_advice(runs: list[Recording], tmp_path: Path) -> None:
    """``razvilka input eeg --calibrate-from`` on two runs whose labels are shuffled: the model is saved
    marked unusable (the adapter would refuse it), the advice is printed, and the exit status is 3."""
    import lzma
    import subprocess

    from key_helpers import cli_command, cli_env

    files = []
    for i, path in enumerate(sorted(MUSE.glob("*.csv.xz"))[:2]):
        lines = lzma.decompress(path.read_bytes()).decode().splitlines()
        col = lines[0].split(",").index("Marker")
        rows = [line.split(",") for line in lines[1:]]
        onsets = [r for r in rows if float(r[col]) != 0]
        labels = np.random.default_rng(i).permutation([r[col] for r in onsets])  # a person not attending
        for r, label in zip(onsets, labels):
            r[col] = str(label)
        files.append(tmp_path / f"shuffled-{i}.csv")
        files[-1].write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    models = tmp_path / "models"
    res = subprocess.run(cli_command("--set", f"inputs.eeg.model_dir={models}", "input", "eeg", "--user", "zed",
                                     "--calibrate-from", *map(str, files)),
                         env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "UNUSABLE" in res.stdout and f"saved {models / 'zed.p300.pkl'}" in res.stdout
    assert res.stderr.startswith("razvilka input eeg: BAD_CALIBRATION: "
                                 "the calibration of user 'zed' is marked unusable")
    assert "electrodes" in res.stderr and "Traceback" not in res.stderr
    assert not P300Model.load(models / "zed.p300.pkl").report.usable
