"""Preference data from the session store (``razvilka learn export``): one JSON object per line.

* ``pairs.jsonl`` — DPO pairs: the full context at a fork as ``prompt``; ``chosen`` = the word the
  person took plus what the document really went on with; ``rejected`` = a word they passed over
  plus its look-ahead phrase (what the model would have gone on with).
* ``sft.jsonl`` — what the person wrote, one document per line (``prompt`` + ``completion``).
* ``labels.jsonl`` — token-level labels: every fork, its candidates, and which one was chosen
  (or the word typed instead, or that it was passed by).

Formats: docs/learning.md. Undone decisions are labelled (``undone``) but give no pairs or text.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from razvilka.daemon.learn.history import DocumentHistory, candidate_text, documents, open_store
from razvilka.daemon.learn.text import WORD_RE, words_of
from razvilka.private import open_private, private_dir

CHOSEN_WORDS = 6   # words of the real continuation kept after the chosen word when the rejected side has no look-ahead


def _first_words(text: str, n: int) -> str:
    """The head of ``text`` holding its first ``n`` words (punctuation counts as a word), exact characters."""
    if n <= 0:
        return ""
    i = 0
    for count, m in enumerate(WORD_RE.finditer(text), 1):
        i = m.end()
        if count >= n:
            break
    return text[:i]


def pairs(doc: DocumentHistory) -> Iterator[dict[str, Any]]:
    """DPO pairs for the live decisions of one document (one per passed-over candidate)."""
    for d in doc.decisions:
        if d.undone:
            continue
        taken = {d.word}
        seen: set[str] = set()
        for s in d.shown:
            if s.word in taken or s.word in seen:
                continue
            seen.add(s.word)
            rej_text = candidate_text(s.word, d.context, d.text)
            rejected = rej_text + s.lookahead
            n = len(words_of(s.lookahead)) if s.lookahead else CHOSEN_WORDS
            chosen = d.text + _first_words(d.following, n)
            if chosen == rejected or not chosen.strip():
                continue
            yield {
                "prompt": d.context, "chosen": chosen, "rejected": rejected,
                "chosen_word": d.word, "rejected_word": s.word,
                "chosen_prob": d.probs.get(d.word), "rejected_prob": s.prob,
                "kind": d.kind, "rejected_has_lookahead": bool(s.lookahead),
                "fork_id": d.fork.id if d.fork else None, "rejected_fork_id": s.fork_id,
                "document_id": doc.id, "user": doc.user, "model": doc.model,
            }


def sft(doc: DocumentHistory) -> Iterator[dict[str, Any]]:
    """The person's text of one document: prompt, completion, and who wrote which part."""
    text = doc.text
    if not text.strip():
        return
    human = sum(len(words_of(t)) for o, t in doc.segments if o == "human")
    yield {
        "prompt": doc.prompt, "completion": text, "text": doc.prompt + text,
        "segments": [{"origin": o, "text": t} for o, t in doc.segments],
        "human_words": human, "words": len(words_of(text)),
        "document_id": doc.id, "user": doc.user, "model": doc.model,
    }


def labels(doc: DocumentHistory) -> Iterator[dict[str, Any]]:
    """Every fork with its candidates and what happened there (chosen / typed / passed)."""
    decided = {d.fork.id: d for d in doc.decisions if d.fork is not None}
    for f in doc.forks:
        d = decided.get(f.id)
        outcome = "passed" if d is None else d.kind
        yield {
            "fork_id": f.id, "document_id": doc.id, "user": doc.user, "position": f.position,
            "offset": len(f.context) - len(doc.prompt), "context": f.context, "prefix": f.prefix, "page": f.page,
            "candidates": [{"index": s.index, "word": s.word, "prob": s.prob, "lookahead": s.lookahead}
                           for s in f.candidates],
            "outcome": outcome,
            "label": d.index if d is not None and d.kind == "chosen" else None,
            "word": d.word if d is not None else None,
            "text": d.text if d is not None else None,
            "tokens": d.tokens if d is not None else None,
            "phrase": bool(d.phrase) if d is not None else False,
            "undone": bool(d.undone) if d is not None else False,
            "sources": d.sources if d is not None else [],
            "rule": d.rule if d is not None else "",
        }


KINDS = {"pairs": pairs, "sft": sft, "labels": labels}


def export(store_path: str | Path, out_dir: str | Path, user: str | None = None) -> dict[str, int]:
    """Write ``pairs.jsonl``, ``sft.jsonl`` and ``labels.jsonl`` into ``out_dir``; returns line counts."""
    out = Path(out_dir)
    private_dir(out)
    db = open_store(store_path)
    counts = dict.fromkeys(KINDS, 0)
    files = {k: open_private(out / f"{k}.jsonl", "w", encoding="utf-8") for k in KINDS}
    try:
        for doc in documents(db, user):
            for kind, fn in KINDS.items():
                for item in fn(doc):
                    files[kind].write(json.dumps(item, ensure_ascii=False) + "\n")
                    counts[kind] += 1
    finally:
        for f in files.values():
            f.close()
        db.close()
    return counts


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
