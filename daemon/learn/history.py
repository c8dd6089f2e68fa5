"""The person's decisions, read back out of the session store for learning.

The store is opened **read-only** (``mode=ro``): exporting or rebuilding a profile never changes
it. Its schema is checked first: a store from a newer razvilka, or an older one that lacks a
table or column learning needs, gets a clear ``STORE_ERROR`` naming what is missing.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from razvilka.daemon.learn.errors import ErrorCode, LearnError
from razvilka.daemon.store import SCHEMA_VERSION, default_store_path

#: What learning reads (schema 1). A store lacking any of it is too old to learn from.
REQUIRED = {
    "documents": ("id", "user", "prompt", "model", "created_ns"),
    "forks": ("id", "document_id", "position", "context", "prefix", "page", "candidates", "opened_ns"),
    "entries": ("id", "document_id", "ord", "kind", "fork_id", "idx", "text", "tokens", "words", "sources",
                "rule", "phrase", "typed", "undone", "created_ns"),
}


def open_store(path: str | Path = "") -> sqlite3.Connection:
    """A read-only connection to the session store, after checking its schema."""
    p = Path(path) if path else default_store_path()
    if not p.is_file():
        raise LearnError(ErrorCode.STORE_ERROR, f"no session store at {p}")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise LearnError(ErrorCode.STORE_ERROR, f"cannot read the session store {p}: {exc}") from None
    version: int | None = None
    if "meta" in tables:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else None
    if version is not None and version > SCHEMA_VERSION:
        db.close()
        raise LearnError(ErrorCode.STORE_ERROR, f"{p} has store schema {version}, newer than this razvilka "
                            f"reads ({SCHEMA_VERSION}); upgrade razvilka")
    missing = []
    for table, cols in REQUIRED.items():
        if table not in tables:
            missing.append(f"table {table}")
            continue
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        missing += [f"{table}.{c}" for c in cols if c not in have]
    if missing:
        db.close()
        what = f"schema {version}" if version is not None else "no schema version (older than schema 1)"
        raise LearnError(ErrorCode.STORE_ERROR, f"{p} is a session store from an older razvilka ({what}): it "
                            f"lacks {', '.join(missing)}, which learning needs; this razvilka reads schema "
                            f"{SCHEMA_VERSION}. The file was not changed.")
    return db


@dataclass
class Shown:
    """A candidate the person saw at a fork."""

    index: int
    word: str
    prob: float
    lookahead: str = ""
    fork_id: str = ""


@dataclass
class Fork:
    id: str
    position: int
    context: str
    prefix: str
    page: int
    candidates: list[Shown]
    opened_ns: int


@dataclass
class Decision:
    """One human decision with everything shown at its place in the text."""

    document_id: str
    user: str
    prompt: str
    fork: Fork | None               # the fork it decided (None: typed with no fork open)
    kind: str                       # "chosen" (a candidate) or "typed"
    index: int | None
    word: str                       # the chosen (or typed) word
    text: str                       # exact text appended (with a look-ahead phrase if one was taken)
    tokens: list[int]
    phrase: bool
    undone: bool
    sources: list[str]
    rule: str
    context: str                    # the document text at the fork
    shown: list[Shown] = field(default_factory=list)  # every candidate shown at this context, all its forks
    probs: dict[str, float] = field(default_factory=dict)  # the LLM's word probabilities (page 0, no prefix)
    following: str = ""             # the text the document goes on with after it (live decisions only)
    created_ns: int = 0             # when the store wrote it (wall clock, ns)


@dataclass
class DocumentHistory:
    id: str
    user: str
    prompt: str
    model: str
    segments: list[tuple[str, str]]   # (origin "human"|"model", text) of the live text, in order
    decisions: list[Decision]         # live and undone, in order
    forks: list[Fork]

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.segments)


def _forks(db: sqlite3.Connection, doc_id: str) -> list[Fork]:
    rows = db.execute("SELECT id, position, context, prefix, page, candidates, opened_ns FROM forks "
                      "WHERE document_id=? ORDER BY opened_ns", (doc_id,)).fetchall()
    out = []
    for fid, pos, ctx, prefix, page, cands, opened in rows:
        shown = [Shown(int(c.get("index", i)), str(c["word"]), float(c.get("prob", 0.0)),
                       (c.get("lookahead") or [""])[0] or "", fid)
                 for i, c in enumerate(json.loads(cands))]
        out.append(Fork(fid, int(pos), ctx, prefix or "", int(page or 0), shown, int(opened)))
    return out


def documents(db: sqlite3.Connection, user: str | None = None, *, since_ns: int = 0) -> Iterator[DocumentHistory]:
    """Each document (of ``user``, or everyone's), oldest first, with its decisions and forks;
    with ``since_ns``, only documents that have an entry written after that time."""
    q = "SELECT id, user, prompt, model FROM documents WHERE 1=1"
    args: tuple[Any, ...] = ()
    if user:
        q, args = q + " AND user=?", (user,)
    if since_ns:
        q, args = q + " AND id IN (SELECT document_id FROM entries WHERE created_ns > ?)", (*args, since_ns)
    for doc_id, doc_user, prompt, model in db.execute(q + " ORDER BY created_ns", args).fetchall():
        forks = _forks(db, doc_id)
        by_id = {f.id: f for f in forks}
        by_context: dict[str, list[Fork]] = {}
        for f in forks:
            by_context.setdefault(f.context, []).append(f)
        rows = db.execute("SELECT kind, fork_id, idx, text, tokens, words, sources, rule, phrase, typed, undone, "
                          "created_ns FROM entries WHERE document_id=? ORDER BY ord", (doc_id,)).fetchall()
        segments: list[tuple[str, str]] = []
        decisions: list[Decision] = []
        live_after: list[tuple[Decision, int]] = []   # live decisions and where their text ends in the document
        text_len = 0
        for kind, fork_id, idx, text, tokens, words, sources, rule, phrase, typed, undone, created in rows:
            before = prompt + "".join(t for _, t in segments)
            if not undone:
                segments.append(("human" if kind == "human" else "model", text))
            if kind != "human":
                if not undone:
                    text_len += len(text)
                continue
            fork = by_id.get(fork_id) if fork_id else None
            context = fork.context if fork else before
            same = by_context.get(context, [fork] if fork else [])
            shown = [s for f in same for s in f.candidates]
            base = next((f for f in same if not f.prefix and f.page == 0), None)
            word_list = json.loads(words)
            d = Decision(doc_id, doc_user, prompt, fork, "typed" if typed or idx is None else "chosen",
                         None if idx is None else int(idx), word_list[0] if word_list else text.strip(),
                         text, json.loads(tokens), bool(phrase), bool(undone), json.loads(sources), rule or "",
                         context, shown, {s.word: s.prob for s in base.candidates} if base else {},
                         created_ns=int(created or 0))
            decisions.append(d)
            if not undone:
                text_len += len(text)
                live_after.append((d, text_len))
        written = "".join(t for _, t in segments)
        for d, end in live_after:
            d.following = written[end:]
        yield DocumentHistory(doc_id, doc_user, prompt, model, segments, decisions, forks)


def candidate_text(word: str, context: str, like: str = "") -> str:
    """The text a shown word would have appended (the store keeps the word; the engine adds the space)."""
    if not word[:1].isalnum():
        return word
    if like[:1] in (" ", "\t") and like.strip()[:1].isalnum():
        return like[: len(like) - len(like.lstrip(" \t"))] + word
    return word if not context or context[-1].isspace() else " " + word
