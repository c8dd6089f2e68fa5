"""The durable session store: SQLite in WAL mode.

Every fork, its candidates, each decision and its sources are written (and committed)
before the decision is acknowledged on the bus, so ``kill -9`` at any moment loses
nothing: on restart the daemon replays the open document's entries and goes on.

The schema keeps what learning needs later: every candidate shown with its probability,
the chosen one and by which sources, and the context at the fork; and the conversation a
document replies to (``turns``: the partner's turns and the person's earlier replies), which the
model reads before the document, so a resumed document is framed as before.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from razvilka.daemon.errors import DaemonRefusal, ErrorCode
from razvilka.private import private_dir, private_file

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS forks (
    id TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,          -- words committed before the fork
    context TEXT NOT NULL,              -- the whole document text at the fork
    prefix TEXT NOT NULL DEFAULT '',
    page INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    entropy REAL NOT NULL,
    margin REAL NOT NULL,
    candidates TEXT NOT NULL,           -- JSON [{index, word, prob, lookahead}]
    opened_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id),
    ord INTEGER NOT NULL,               -- order within the document
    kind TEXT NOT NULL,                 -- 'human' (a fork decided) | 'model' (auto-written)
    fork_id TEXT,                       -- the fork decided ('human' entries)
    idx INTEGER,                        -- candidate index, NULL for a typed word
    text TEXT NOT NULL,                 -- exact text appended
    tokens TEXT NOT NULL,               -- JSON token ids appended
    words TEXT NOT NULL,                -- JSON words committed
    sources TEXT NOT NULL DEFAULT '[]', -- JSON input sources that decided it
    rule TEXT NOT NULL DEFAULT '',
    latency_ms REAL NOT NULL DEFAULT 0,
    phrase INTEGER NOT NULL DEFAULT 0,
    typed INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_doc ON entries(document_id, ord);
CREATE INDEX IF NOT EXISTS forks_doc ON forks(document_id);
CREATE TABLE IF NOT EXISTS turns (      -- the conversation a document replies to (protocol 1.5 partner)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL REFERENCES documents(id),
    who TEXT NOT NULL,                  -- 'partner' | 'person' (the person's earlier reply)
    text TEXT NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_doc ON turns(document_id, id);
"""


def default_store_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "razvilka" / "sessions.sqlite3"


@dataclass
class Entry:
    """One step of a document: a human decision or a stretch the model wrote alone."""

    id: str
    ord: int
    kind: str
    text: str
    tokens: list[int]
    words: list[str]
    fork_id: str | None = None
    idx: int | None = None
    sources: list[str] = field(default_factory=list)
    rule: str = ""
    latency_ms: float = 0.0
    phrase: bool = False
    typed: bool = False


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of the conversation a document replies to: the partner's, or the person's earlier reply."""

    who: Literal["partner", "person"]
    text: str


@dataclass
class Document:
    id: str
    user: str
    prompt: str
    model: str
    created_ns: int
    closed: bool = False

    #: The columns :meth:`from_row` reads, in its order.
    COLUMNS: ClassVar[str] = "id, user, prompt, model, created_ns, closed"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Document:
        """A row selected with :attr:`COLUMNS` (SQLite stores ``closed`` as 0 or 1)."""
        return cls(id=row[0], user=row[1], prompt=row[2], model=row[3], created_ns=row[4], closed=bool(row[5]))


class Store:
    """One SQLite file; one connection used from the daemon's event-loop thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path) if path else default_store_path()
        # private before SQLite opens it: the -wal and -shm files it creates take the database file's mode
        private_dir(self.path.parent)
        private_file(self.path)
        for side in (self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")):
            if side.exists():  # left readable by an older version
                private_file(side)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._check_schema()
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise DaemonRefusal(ErrorCode.STORE_ERROR, f"cannot open the session store {self.path}: {exc}") from None

    def _check_schema(self) -> None:
        row = self.db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if row is None:
            return
        ver = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if ver is not None and int(ver[0]) > SCHEMA_VERSION:
            raise DaemonRefusal(
                ErrorCode.STORE_ERROR,
                f"{self.path} has store schema {ver[0]}, newer than this razvilka ({SCHEMA_VERSION}); upgrade razvilka",
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One transaction; a write SQLite refuses (read-only, disk full, closed) is a ``STORE_ERROR``
        naming the file and what was being written, and nothing of it is kept."""
        try:
            with self.db:
                yield
        except sqlite3.Error as exc:
            raise DaemonRefusal(ErrorCode.STORE_ERROR,
                                f"the session store {self.path} could not write {what}: {exc}") from None

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()

    # ------------------------------------------------------------------ documents
    def new_document(self, user: str, prompt: str, model: str) -> Document:
        doc = Document(uuid.uuid4().hex[:12], user, prompt, model, time.time_ns())
        with self._writing("a new document"):
            self.db.execute("UPDATE documents SET closed=1 WHERE user=? AND closed=0", (user,))
            self.db.execute(
                "INSERT INTO documents (id, user, prompt, model, created_ns) VALUES (?,?,?,?,?)",
                (doc.id, user, prompt, model, doc.created_ns),
            )
        return doc

    def open_document(self, user: str) -> Document | None:
        """The user's document that was still open when the daemon last stopped (or crashed)."""
        row = self.db.execute(
            f"SELECT {Document.COLUMNS} FROM documents WHERE user=? AND closed=0 "
            "ORDER BY created_ns DESC LIMIT 1",
            (user,),
        ).fetchone()
        return Document.from_row(row) if row else None

    def documents(self, user: str | None = None) -> list[tuple[Document, int, str]]:
        """(document, number of live entries, text written) newest first."""
        q = f"SELECT {Document.COLUMNS} FROM documents"
        rows = self.db.execute(q + (" WHERE user=?" if user else "") + " ORDER BY created_ns DESC",
                               (user,) if user else ()).fetchall()
        out = []
        for row in rows:
            doc = Document.from_row(row)
            entries = self.entries(doc.id)
            out.append((doc, len(entries), "".join(e.text for e in entries)))
        return out

    # ------------------------------------------------------------------ forks and entries
    def add_fork(self, document_id: str, fork_id: str, *, position: int, context: str, prefix: str, page: int,
                 reason: str, entropy: float, margin: float, candidates: list[dict[str, Any]]) -> None:
        with self._writing(f"fork {fork_id}"):
            self.db.execute(
                "INSERT OR REPLACE INTO forks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (fork_id, document_id, position, context, prefix, page, reason, entropy, margin,
                 json.dumps(candidates), time.time_ns()),
            )

    def update_fork_candidates(self, fork_id: str, candidates: list[dict[str, Any]]) -> None:
        with self._writing(f"the look-aheads of fork {fork_id}"):
            self.db.execute("UPDATE forks SET candidates=? WHERE id=?", (json.dumps(candidates), fork_id))

    def add_entry(self, document_id: str, entry: Entry) -> Entry:
        with self._writing(f"the {'decision' if entry.kind == 'human' else 'auto-written text'} {entry.text!r}"):
            row = self.db.execute("SELECT COALESCE(MAX(ord), -1) + 1 FROM entries WHERE document_id=?",
                                  (document_id,)).fetchone()
            entry.ord = int(row[0])
            self.db.execute(
                "INSERT INTO entries (id, document_id, ord, kind, fork_id, idx, text, tokens, words, sources, rule,"
                " latency_ms, phrase, typed, created_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.id, document_id, entry.ord, entry.kind, entry.fork_id, entry.idx, entry.text,
                 json.dumps(entry.tokens), json.dumps(entry.words), json.dumps(entry.sources), entry.rule,
                 entry.latency_ms, int(entry.phrase), int(entry.typed), time.time_ns()),
            )
        return entry

    def undo_last(self, document_id: str) -> Entry | None:
        """Mark the newest live entry undone (it stays in the store: passed-over choices are data too)."""
        live = self.entries(document_id)
        if not live:
            return None
        last = live[-1]
        with self._writing("an undo"):
            self.db.execute("UPDATE entries SET undone=1 WHERE id=?", (last.id,))
        return last

    def entries(self, document_id: str, *, include_undone: bool = False) -> list[Entry]:
        rows = self.db.execute(
            "SELECT id, ord, kind, text, tokens, words, fork_id, idx, sources, rule, latency_ms, phrase, typed"
            " FROM entries WHERE document_id=?" + ("" if include_undone else " AND undone=0") + " ORDER BY ord",
            (document_id,),
        ).fetchall()
        return [
            Entry(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6], r[7], json.loads(r[8]), r[9],
                  r[10], bool(r[11]), bool(r[12]))
            for r in rows
        ]

    # ------------------------------------------------------------------ the conversation (turns)
    def add_turns(self, document_id: str, turns: list[Turn]) -> None:
        """Append turns to the document's conversation (one transaction)."""
        with self._writing(f"{len(turns)} conversation turn(s)"):
            for turn in turns:
                self.db.execute("INSERT INTO turns (document_id, who, text, ts_ns) VALUES (?,?,?,?)",
                                (document_id, turn.who, turn.text, time.time_ns()))

    def turns(self, document_id: str) -> list[Turn]:
        """The document's conversation, oldest first."""
        rows = self.db.execute("SELECT who, text FROM turns WHERE document_id=? ORDER BY id", (document_id,))
        return [Turn(r[0], r[1]) for r in rows.fetchall()]

    def written(self, user: str, documents: int = 200) -> list[str]:
        """The text the person wrote (prompt left out) in each of their last ``documents`` documents."""
        rows = self.db.execute(
            "SELECT e.document_id, e.text FROM entries e JOIN (SELECT id, created_ns FROM documents WHERE user=?"
            " ORDER BY created_ns DESC LIMIT ?) d ON d.id=e.document_id WHERE e.undone=0"
            " ORDER BY d.created_ns, e.ord", (user, documents)).fetchall()
        texts: dict[str, list[str]] = {}
        for doc, text in rows:
            texts.setdefault(doc, []).append(text)
        return ["".join(parts) for parts in texts.values()]

    # ------------------------------------------------------------------ export
    def export_jsonl(self, document_id: str | None = None) -> Iterator[str]:
        """One JSON line per fork with its candidates, the decision (if any) and its sources."""
        where, args = ("WHERE f.document_id=?", (document_id,)) if document_id else ("", ())
        rows = self.db.execute(
            "SELECT f.id, f.document_id, d.user, d.prompt, f.position, f.context, f.prefix, f.page, f.reason,"
            " f.entropy, f.margin, f.candidates, f.opened_ns, e.idx, e.words, e.sources, e.rule, e.latency_ms,"
            " e.undone, e.typed, e.phrase"
            f" FROM forks f JOIN documents d ON d.id=f.document_id LEFT JOIN entries e ON e.fork_id=f.id {where}"
            " ORDER BY f.opened_ns",
            args,
        ).fetchall()
        for r in rows:
            yield json.dumps({
                "fork_id": r[0], "document_id": r[1], "user": r[2], "prompt": r[3], "position": r[4],
                "context": r[5], "prefix": r[6], "page": r[7], "reason": r[8], "entropy": r[9], "margin": r[10],
                "candidates": json.loads(r[11]), "opened_ns": r[12],
                "decision": None if r[14] is None else {
                    "index": r[13], "words": json.loads(r[14]), "sources": json.loads(r[15]), "rule": r[16],
                    "latency_ms": r[17], "undone": bool(r[18]), "typed": bool(r[19]), "phrase": bool(r[20]),
                },
            }, ensure_ascii=False)
