"""The person's files are private: 0600 files in 0700 directories (razvilka/private.py).

What they write may be medical, so the session store (and SQLite's -wal/-shm beside it), the
profiles, the logs and every export are created private, whatever the umask, and files left
readable by an older version are tightened when opened. Each test runs the real code that
writes the file (the real daemon in one of them) under a permissive umask of 022, the usual
default, under which anything not made private explicitly comes out 0644/0755.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from razvilka.cli import main
from razvilka.daemon.learn.export import export
from razvilka.daemon.learn.persist import default_profile_path, load_profile, save_profile
from razvilka.daemon.store import Store, default_store_path
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Select
from daemon_fixtures import daemon_config, next_of


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
                 "--set", f"model.path={tmp_path / 'no-such-model.gguf'}", "up", "--no-keyboard", "--renderer", "print"])
    log = run / "daemon.log"
    assert code == 1 and "no-such-model.gguf" in log.read_text(), log.read_text()
    assert_private(run, log)


# --------------------------------------------------------------------------------------- the real daemon
@pytest.mark.model
async def test_real_daemon_keeps_store_and_profile_private(tmp_path: Path, xdg: Path, runtime_dir: Path) -> None:
    """``razvilka daemon`` as a user runs it: after one decision its store, WAL, shared memory and profile are private."""
    store = tmp_path / "state" / "sessions.sqlite3"
    config = daemon_config(runtime_dir)
    cmd = [sys.executable, "-m", "razvilka.cli", "--set", f"bus.runtime_dir={runtime_dir}", "--set", "bus.heartbeat_ms=200",
           "--set", f"store.path={store}", "--set", "model.n_threads=1",
           "daemon", "--prompt", "My favourite thing about the weekend is", "--always-fork", "--k", "3"]
    with open(tmp_path / "daemon.err", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
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
        fork = await next_of(client, "fork.open", 120)
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
