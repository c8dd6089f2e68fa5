"""The person's files are private: 0600 files in 0700 directories (razvilka/private.py).

What they write may be medical, so the session store (and SQLite's -wal/-shm beside it), the
profiles, the logs, every export, LoRA adapters and their reports, and the EEG and gaze calibrations
are created private, whatever the umask, and files left readable by an older version are tightened
when opened. Each test runs the real code that writes the file (the real daemon in one of them)
under a permissive umask of 022, the usual default, under which anything not made private
explicitly comes out 0644/0755.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_fixtures import daemon_config, next_of

from razvilka.cli import main
from razvilka.daemon.learn.export import export
from razvilka.daemon.learn.persist import default_profile_path, load_profile, save_profile
from razvilka.daemon.store import Store, default_store_path
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import ForkOpen, Select


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(*paths: Path) -> None:
    """Every file 0600 and every directory 0700 (each must exist: a missing file proves nothing)."""
    wrong = {str(p): oct(mode(p)) for p in paths
             if mode(p) != (0o700 if p.is_dir() else 0o600)}
    assert not wrong, f"not private: {wrong}"


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """Umask 022 (files 0644, directories 0755 unless the code says otherwise), restored afterwards."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default locations point under ``tmp_path`` (for this process and the ones it starts)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path


def sqlite_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def written_store(path: Path | str) -> Store:
    """A store with one document, still open: SQLite's -wal and -shm exist only while it is."""
    store = Store(path)
    store.new_document("sam", "Dear doctor,", "test")
    return store


# --------------------------------------------------------------------------------------- the store
def test_new_store_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "sessions.sqlite3"
    store = written_store(db)
    try:
        assert_private(db.parent, *sqlite_files(db))
    finally:
        store.close()


def test_default_store_location_is_private(xdg: Path) -> None:
    store = written_store("")
    try:
        assert store.path == default_store_path() and store.path.is_relative_to(xdg)
        assert_private(store.path.parent, *sqlite_files(store.path))
    finally:
        store.close()


def test_store_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir(mode=0o755)
    db = folder / "sessions.sqlite3"
    older = sqlite3.connect(db)  # an older version, still running: its WAL and shared memory exist too
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE t (x)")
    assert [mode(p) for p in (folder, *sqlite_files(db))] == [0o755, 0o644, 0o644, 0o644]
    store = written_store(db)
    try:
        assert_private(folder, *sqlite_files(db))
    finally:
        store.close()
        older.close()


# --------------------------------------------------------------------------------------- exports
def test_preference_export_is_private(tmp_path: Path) -> None:
    db = tmp_path / "store" / "sessions.sqlite3"
    written_store(db).close()
    out = tmp_path / "export"
    counts = export(db, out)
    assert set(counts) == {"pairs", "sft", "labels"}
    assert_private(out, *(out / f"{kind}.jsonl" for kind in counts))


def test_sessions_export_file_is_private(tmp_path: Path, xdg: Path) -> None:
    db = tmp_path / "store" / "sessions.sqlite3"
    written_store(db).close()
    out = tmp_path / "sessions.jsonl"
    assert main(["--set", f"store.path={db}", "sessions", "export", "--output", str(out)]) == 0
    assert_private(out)


# --------------------------------------------------------------------------------------- profiles
def test_profile_directory_and_file_are_private(tmp_path: Path) -> None:
    db = tmp_path / "store" / "sessions.sqlite3"
    path = default_profile_path("sam", db)
    save_profile(load_profile(path, "sam"))
    assert path.parent == db.parent / "profiles"
    assert_private(path.parent, path)
    copy = tmp_path / "exported-profile.json"  # `razvilka learn profile --export FILE` writes through here
    save_profile(load_profile(path, "sam"), copy)
    assert_private(copy)


# --------------------------------------------------------------------------------------- logs
def test_up_writes_the_daemon_log_privately(tmp_path: Path, xdg: Path) -> None:
    """``razvilka up`` logs the daemon into the runtime directory; here the daemon fails at once (no model)."""
    run = tmp_path / "rt"
    code = main(["--set", f"bus.runtime_dir={run}", "--set", f"store.path={tmp_path / 's' / 'sessions.sqlite3'}",
                 "--set", f"model.path={tmp_path / 'no-such-model.gguf'}",
                 "up", "--no-keyboard", "--renderer", "print"])
    log = run / "daemon.log"
    assert code == 1 and "no-such-model.gguf" in log.read_text(), log.read_text()
    assert_private(run, log)


# --------------------------------------------------------------------------------------- learned from the person
def test_lora_adapter_and_its_report_are_private(tmp_path: Path) -> None:
    """`razvilka learn lora` writes the adapter (weights learned from what the person wrote) and its report
    through these two calls; a tiny adapter for a stand-in model is as private as a trained one."""
    pytest.importorskip("gguf", reason="the optional extra razvilka[learn] is not installed")
    from razvilka.daemon.learn.adapter_gguf import read_adapter, write_adapter
    from razvilka.daemon.learn.lora import LoraOptions, TrainReport, save_report

    base = {"arch": "gemma3", "name": "stand-in", "file": "stand-in.gguf", "size": 1,
            "shapes": {"blk.0.attn_q.weight": [16, 32]}}
    rng = np.random.default_rng(0)
    pairs = {"blk.0.attn_q.weight": (rng.normal(size=(4, 16)).astype(np.float32),
                                     rng.normal(size=(32, 4)).astype(np.float32))}
    folder = tmp_path / "adapters"
    out = write_adapter(folder / "sam.gguf", pairs, alpha=8, base=base)
    assert read_adapter(out)["adapter_type"] == "lora"
    report = out.with_suffix(".json")
    save_report(report, TrainReport(sft_steps=3), LoraOptions(steps=3), {"counts": {"sft": 2}})
    assert json.loads(report.read_text())["report"]["sft_steps"] == 3
    assert_private(folder, out, report)
    assert sorted(p.name for p in folder.iterdir()) == ["sam.gguf", "sam.json"]  # no temporary file left


def test_eeg_calibration_model_is_private(xdg: Path) -> None:
    """The P300 model (a person's brain responses) at its default place, $XDG_DATA_HOME/razvilka/eeg."""
    from razvilka.inputs.eeg.classifier import Montage, P300Model, calibrate
    from razvilka.inputs.eeg.config import EegConfig
    from razvilka.inputs.eeg.epochs import EpochSpec

    channels, rate = ("Fz", "Cz", "Pz", "Oz"), 250
    spec = EpochSpec(rate)
    rng = np.random.default_rng(1)
    labels = np.array([1, 0, 0, 0] * 10)
    epochs = rng.normal(0.0, 5.0, size=(len(labels), len(channels), spec.length))
    epochs[labels == 1, :, spec.length // 3: spec.length // 2] += 8.0  # a target response to learn
    model = calibrate(epochs, labels, montage=Montage("Stand-in", channels, rate), spec=spec, user="sam")
    path = model.save(EegConfig(user="sam").model_path())
    assert path.is_relative_to(xdg) and P300Model.load(path).user == "sam"
    assert_private(path.parent, path)


def test_gaze_calibration_is_private(xdg: Path) -> None:
    """Where a person's eyes rest, measured per screen region, at its default place."""
    from razvilka.inputs.gaze.adapter import load_calibration
    from razvilka.inputs.gaze.calibration import Calibration, Region, calibration_path
    from razvilka.inputs.gaze.config import GazeConfig

    cfg = GazeConfig(user="sam")
    cal = Calibration(user="sam", screen_px=(1920.0, 1080.0),
                      regions=[Region(target=(0.5, 0.5), offset=(0.01, -0.02), spread_px=14.0, samples=30)])
    path = cal.save(calibration_path(cfg))
    assert path.is_relative_to(xdg)
    again = load_calibration(cfg)
    assert again is not None and again.regions == cal.regions
    assert_private(path.parent, path)
    assert [p.name for p in path.parent.iterdir()] == ["sam.json"]  # no temporary file left


# --------------------------------------------------------------------------------------- the real daemon
@pytest.mark.model
async def test_real_daemon_keeps_store_and_profile_private(tmp_path: Path, xdg: Path, runtime_dir: Path) -> None:
    """``razvilka daemon`` as a user runs it: after one decision its store, WAL, shared memory and profile are
    private."""
    store = tmp_path / "state" / "sessions.sqlite3"
    config = daemon_config(runtime_dir)
    cmd = [sys.executable, "-m", "razvilka.cli", "--set", f"bus.runtime_dir={runtime_dir}",
           "--set", "bus.heartbeat_ms=200", "--set", f"store.path={store}", "--set", "model.n_threads=1",
           "daemon", "--prompt", "My favourite thing about the weekend is", "--always-fork", "--k", "3"]
    # the daemon under test runs beside the event loop: the log opens and Popen returns at once
    with open(tmp_path / "daemon.err", "wb") as err:  # noqa: ASYNC230
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)  # noqa: ASYNC220
    client: BusClient | None = None
    try:
        deadline = time.monotonic() + 120
        discovery = config.bus.resolved_discovery_file()
        while not discovery.exists():  # the model loads first; the bus comes up after it
            assert proc.poll() is None, (tmp_path / "daemon.err").read_text()
            assert time.monotonic() < deadline, "the daemon's bus did not come up in 120 s"
            await asyncio.sleep(0.1)
        client = BusClient.from_config("person", config.bus, subscribe=["fork."])
        await client.start()
        assert await client.wait_connected(10)
        fork = await next_of(client, ForkOpen, 120)
        client.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
        await next_of(client, "fork.decided", 60, where=lambda m: m.header.fork_id == fork.header.fork_id)
        profile = default_profile_path("default", store)
        deadline = time.monotonic() + 10
        while not profile.exists():  # saved off the event loop right after the decision
            assert time.monotonic() < deadline, f"no profile written at {profile}"
            await asyncio.sleep(0.05)
        assert_private(store.parent, *sqlite_files(store), profile.parent, profile)
    finally:
        if client is not None:
            await client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, (tmp_path / "daemon.err").read_text()
    assert_private(store.parent, store, profile.parent, profile)
