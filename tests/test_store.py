"""The session store: durable entries, undo kept as data, export, schema guard."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.store import SCHEMA_VERSION, Entry, Store
from razvilka.protocol.errors import ErrorCode


def test_entries_survive_reopen_and_undo_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    doc = store.new_document("ann", "Hello", "gemma")
    store.add_fork(doc.id, "f1", position=0, context="Hello", prefix="", page=0, reason="uncertain",
                   entropy=2.0, margin=0.1, candidates=[{"index": 0, "word": "world", "prob": 0.4, "lookahead": []},
                                                       {"index": 1, "word": "there", "prob": 0.3, "lookahead": []}])
    store.add_entry(doc.id, Entry("e1", 0, "human", " world", [1], ["world"], fork_id="f1", idx=0,
                                  sources=["gaze", "keyboard"], rule="focus+confirm", latency_ms=812.0))
    store.add_entry(doc.id, Entry("e2", 0, "model", ",", [2], [","]))
    store.undo_last(doc.id)
    # no close(): as after kill -9
    again = Store(path)
    reopened = again.open_document("ann")
    assert reopened is not None and reopened.id == doc.id
    live = again.entries(doc.id)
    assert [e.id for e in live] == ["e1"] and live[0].sources == ["gaze", "keyboard"]
    assert [e.id for e in again.entries(doc.id, include_undone=True)] == ["e1", "e2"]
    rows = [json.loads(line) for line in again.export_jsonl(doc.id)]
    assert rows[0]["decision"]["index"] == 0 and rows[0]["candidates"][1]["word"] == "there"
    assert rows[0]["context"] == "Hello" and rows[0]["decision"]["sources"] == ["gaze", "keyboard"]


def test_new_document_closes_the_old_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    a = store.new_document("ann", "One", "m")
    b = store.new_document("ann", "Two", "m")
    current = store.open_document("ann")
    assert current is not None and current.id == b.id
    assert {d.id for d, _, _ in store.documents("ann")} == {a.id, b.id}


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(DaemonRefusal) as err:
        Store(path)
    assert err.value.code == ErrorCode.STORE_ERROR and "newer" in str(err.value)


def test_corrupt_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DaemonRefusal) as err:
        Store(path)
    assert err.value.code == ErrorCode.STORE_ERROR and str(path) in str(err.value)


def test_a_write_sqlite_refuses_is_a_store_error_and_keeps_nothing(tmp_path: Path) -> None:
    """A store that cannot write (here SQLite itself refuses: ``query_only``, then a closed connection)
    raises STORE_ERROR naming the file and what it was writing; nothing of the write is kept."""
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    doc = store.new_document("ann", "Hello", "gemma")
    store.db.execute("PRAGMA query_only = ON")
    with pytest.raises(DaemonRefusal) as err:
        store.add_entry(doc.id, Entry("e1", 0, "human", " world", [1], ["world"], fork_id="f1", idx=0))
    assert err.value.code == ErrorCode.STORE_ERROR
    assert str(path) in err.value.detail and "decision ' world'" in err.value.detail and "readonly" in err.value.detail
    store.db.execute("PRAGMA query_only = OFF")
    assert store.entries(doc.id) == []
    store.add_entry(doc.id, Entry("e1", 0, "human", " world", [1], ["world"], fork_id="f1", idx=0))
    assert [e.id for e in store.entries(doc.id)] == ["e1"]
    store.close()
    with pytest.raises(DaemonRefusal) as err:
        store.add_fork(doc.id, "f2", position=1, context="Hello world", prefix="", page=0, reason="uncertain",
                       entropy=1.0, margin=0.1, candidates=[])
    assert err.value.code == ErrorCode.STORE_ERROR and "fork f2" in err.value.detail
