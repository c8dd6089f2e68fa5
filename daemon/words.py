"""What a token means for whole words: its class at a word boundary, and prefix look-up.

The engine offers whole words, but the model speaks in tokens. A candidate starts with one
token and grows until the model's *next* token starts something else. This module decides,
once per model and for all 262,144 tokens at a time (numpy masks), which tokens continue a word
(``pomegran`` + ``ate``, ``don`` + ``'t``) and which start a new one (`` the``, ``,``, ``\\n``),
and finds the tokens that agree with a prefix the user typed. No llama.cpp here: it works on
the token pieces (their exact bytes), so it is tested without a model.
"""
from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

import numpy as np

JOINERS = "'’-"
"""Characters that join two word parts (``don't``, ``well-known``); alone at a word's end they are punctuation."""


class Kind(IntEnum):
    """The class of a token's piece, seen from the end of the text before it."""

    MASKED = 0       # control, unused, image tokens, empty pieces: never offered, never generated
    WORD_START = 1   # spaces then a word character: " the", " pomegran"
    WORD_CONT = 2    # a word character (or a joiner then one) right away: "ate", "'t", "my" at line start
    JOINER = 3       # only joiner characters: "'", "-"  (continues a word only if a word character follows)
    PUNCT = 4        # punctuation or symbols right away: ",", ".", "...", "<b>"
    SPACE_PUNCT = 5  # spaces then punctuation: " ,", " ("
    NEWLINE = 6      # whitespace with a line break: "\n", "\n\n"
    SPACE = 7        # spaces or tabs only: "  ", "\t"


def is_word_char(ch: str) -> bool:
    """Letters, digits and combining marks make words; everything else is punctuation or space."""
    if ch == "_":
        return True
    cat = unicodedata.category(ch)
    return cat[0] in "LNM"


def classify(piece: bytes) -> Kind:
    """The class of one token piece (its exact bytes)."""
    if not piece:
        return Kind.MASKED
    text = piece.decode("utf-8", errors="ignore")
    if not text:  # a lone byte of a multi-byte character: part of a word (accented letters, CJK)
        return Kind.WORD_CONT
    stripped = text.lstrip()  # any Unicode space (a no-break space too)
    lead = text[: len(text) - len(stripped)]
    if not stripped:
        return Kind.NEWLINE if "\n" in text else Kind.SPACE
    if "\n" in lead:
        return Kind.NEWLINE
    first = stripped[0]
    if lead:
        return Kind.WORD_START if is_word_char(first) else Kind.SPACE_PUNCT
    if is_word_char(first):
        return Kind.WORD_CONT
    if first in JOINERS:
        rest = stripped.lstrip(JOINERS)
        if not rest:
            return Kind.JOINER
        return Kind.WORD_CONT if is_word_char(rest[0]) else Kind.PUNCT
    return Kind.PUNCT


def joins(before: str, text: str) -> bool:
    """Whether ``text`` appended to ``before`` continues its last word ("es" after "Miss", "'s" after
    "Darcy"): renderers then show what it makes, not a bare piece (protocol 1.2 ``Candidate.joins``)."""
    if not before or not text or not is_word_char(before[-1]):
        return False
    rest = text.lstrip(JOINERS)
    return bool(rest) and is_word_char(rest[0])


def display_word(text: str) -> str:
    """The form a renderer shows: no leading spaces (a line break alone stays a line break)."""
    word = text.lstrip()
    return word if word else text


def lstrip_space(raw: bytes) -> bytes:
    """Bytes without leading (Unicode) spaces; a character split across tokens keeps its bytes."""
    text = raw.decode("utf-8", errors="surrogateescape")
    return text.lstrip().encode("utf-8", errors="surrogateescape")


class Vocab:
    """Pieces and classes of every token of one model, with masks for vectorized word growth."""

    FORMAT = 2  # bump when classify() changes: cached tables of an older format are rebuilt

    def __init__(self, pieces: Sequence[bytes], masked: Sequence[bool] | np.ndarray | None = None, *,
                 kinds: np.ndarray | None = None, order: np.ndarray | None = None) -> None:
        self.pieces: list[bytes] = list(pieces)
        self.n = len(self.pieces)
        if kinds is None:
            kinds = np.fromiter((classify(p) for p in self.pieces), dtype=np.int8, count=self.n)
            if masked is not None:
                kinds[np.asarray(masked, dtype=bool)] = Kind.MASKED
        self.kind = kinds
        self.masked = kinds == Kind.MASKED
        self.cont = kinds == Kind.WORD_CONT          # continues a word that has begun
        self.joiner = kinds == Kind.JOINER           # may continue it, if a word character follows
        self.grows = self.cont | self.joiner
        if order is None:  # unmasked pieces in byte order, for prefix look-up (a prefix may end inside a character)
            ids = np.flatnonzero(~self.masked)
            order = ids[np.array(sorted(range(len(ids)), key=lambda j: self.pieces[ids[j]]), dtype=np.int64)]
        self._order = np.asarray(order, dtype=np.int32)
        self._sorted = [self.pieces[i] for i in self._order]

    def save(self, path: str | Path) -> None:
        """Write the table (pieces, classes, prefix order) so the next start skips building it."""
        blob = b"".join(self.pieces)
        ends = np.cumsum([len(p) for p in self.pieces], dtype=np.int64)
        tmp = Path(str(path) + ".tmp.npz")
        np.savez(tmp, format=np.array([self.FORMAT]), blob=np.frombuffer(blob, dtype=np.uint8), ends=ends,
                 kinds=self.kind, order=self._order)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Vocab | None:
        """A saved table, or None when it is missing, unreadable or of another format."""
        try:
            with np.load(path) as z:
                if int(z["format"][0]) != cls.FORMAT:
                    return None
                blob, ends = z["blob"].tobytes(), z["ends"]
                starts = np.concatenate(([0], ends[:-1]))
                pieces = [blob[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
                return cls(pieces, kinds=z["kinds"].copy(), order=z["order"].copy())
        except (OSError, KeyError, ValueError):
            return None

    def matching(self, rest: bytes) -> np.ndarray:
        """Tokens that agree with the bytes ``rest`` still to be typed: they start with it, or it starts with them."""
        if not rest:
            return np.zeros(0, dtype=np.int32)
        srt = self._sorted
        lo = bisect.bisect_left(srt, rest)
        hi = bisect.bisect_left(srt, rest + b"\xff" * 8, lo)
        parts = [self._order[lo:hi]]
        for n in range(1, len(rest)):  # pieces that are a proper prefix of what is left
            head = rest[:n]
            i = bisect.bisect_left(srt, head)
            j = i
            while j < len(srt) and srt[j] == head:
                j += 1
            if j > i:
                parts.append(self._order[i:j])
        return np.unique(np.concatenate(parts))

    def text(self, tokens: Sequence[int]) -> str:
        """The exact text of a token run (bytes joined first, so split characters come back whole)."""
        return b"".join(self.pieces[t] for t in tokens).decode("utf-8", errors="replace")


def trim_to_words(vocab: Vocab, tokens: Sequence[int]) -> list[int]:
    """The longest head of a greedy run that ends on a word boundary we can see.

    The last token's word may go on (we have not decoded past it), so the run is cut before the
    last token that starts a new word; a run that is one long word stays whole.
    """
    cut = 0
    for i in range(1, len(tokens)):
        if not vocab.grows[tokens[i]]:
            cut = i
    return list(tokens[:cut]) if cut else list(tokens)


def head_words(vocab: Vocab, tokens: Sequence[int], n: int) -> tuple[str, list[int]]:
    """The first ``n`` words (split at white space, as a person reads them) of a look-ahead run.

    Returns (text, tokens). The tokens are the run's own head when the cut falls between two tokens,
    else ``[]`` (the caller tokenizes the text); a run with ``n`` words or fewer comes back whole.
    """
    text = vocab.text(tokens)
    words = re.match(rf"(?:\s*\S+){{{max(1, n)}}}", text)
    if words is None or not text[words.end():].strip():
        return text, list(tokens)
    want = text[:words.end()]
    for j in range(1, len(tokens)):
        got = vocab.text(tokens[:j])
        if got == want:
            return want, list(tokens[:j])
        if len(got) >= len(want):
            break
    return want, []
