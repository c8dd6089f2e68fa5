"""Words as the profile counts them: the units the engine offers, and the history before a fork."""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence

from razvilka.daemon.engine import WordCandidate

SEP = "\x1f"                 # joins history words in keys (never inside a word)
BOS = "<s>"                  # history before the first word of a document
WORD_RE = re.compile(r"\n|\w+(?:['’-]\w+)*|[^\w\s]")


def words_of(text: str) -> list[str]:
    """The units the engine offers: words (with inner ' and -), single punctuation, line breaks."""
    return WORD_RE.findall(text)


def history_of(context: str) -> tuple[str, str]:
    """The two words before the fork (``<s>`` where the document has fewer)."""
    tail = words_of(context[-120:])
    if len(tail) < 2 and len(context) > 120:
        tail = words_of(context)
    h = [BOS, BOS, *tail[-2:]]
    return h[-2], h[-1]


def decision_key(document: str | None, context: str, committed: str) -> str:
    """Names one decision (its document, where it was made, what it appended) across a restart."""
    return hashlib.sha1(SEP.join((document or "", context, committed)).encode("utf-8")).hexdigest()


def injectable(word: str) -> bool:
    """Only words are offered from the cache (punctuation and line breaks come from the LLM)."""
    return bool(word) and word[0].isalnum()


def lead(cands: Iterable[WordCandidate], context: str) -> str:
    """The whitespace before a new word here, as the engine writes it: its spaced words show it. A piece
    glued onto the previous word ("es" after "Miss") has none and says nothing about a new word's."""
    for c in cands:
        if c.word[:1].isalnum() and c.text[:1] in (" ", "\t"):
            return c.text[: len(c.text) - len(c.text.lstrip(" \t"))]
    return "" if not context or context[-1].isspace() else " "


def word_entropy(probs: Sequence[float]) -> float:
    """Entropy (bits) of the listed words plus one lump for the rest of the mass."""
    ps = [p for p in probs if p > 0]
    rest = max(0.0, 1.0 - sum(ps))
    return -sum(p * math.log2(p) for p in ps + ([rest] if rest > 0 else []))
