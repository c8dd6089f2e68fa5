"""The seam between razvilka's engine and a language model: the ``LMBackend`` interface.

Above the seam (daemon/engine.py) is everything that is razvilka's own: growing tokens into whole
words and merging them, the prefix constraint, bias and masks, look-ahead bookkeeping, pre-generation
and the caches. Below it a backend answers a few questions about token paths; it knows nothing of
words. Backends live in daemon/backends/ (docs/engine.md, "Backends"): ``embedded`` (llama.cpp in this
process, through ctypes) and ``topn`` (any backend seen through top-N rows only, as a server's API gives
them). A remote backend (llama-server, vLLM) implements the same protocol.

Why it is shaped this way:

* **Token paths, never text.** Every question is "after these tokens" with the whole path from
  position 0. A path almost always starts with the document (the checkpoint set by
  ``set_document``); a backend reuses whatever it already holds of a path (the embedded backend:
  KV cells in side sequences, copied as metadata; a server: a slot holding the document with
  ``cache_prompt``), and the engine never has to know how.
* **Rows.** The answer after a path is a *row*: either the full next-token logits (a float32 array
  over the vocabulary) or a :class:`TopRow` - the N likeliest tokens with their log-probabilities and
  the probability mass of everything else (``rest``). The engine's word search works from both; with
  top-N rows the mass it could not see is carried and stated (``WordDistribution.unseen``).
* **Raw rows.** Rows are the model's own distribution: razvilka's bias and masks (banned words,
  control tokens) are applied above the seam, so a cached row stays valid when a bias changes.
* **Cancellation.** Every call that computes takes ``abort`` (a ``threading.Event``, set from another
  thread when the daemon no longer wants the work) and raises :class:`Aborted` when it is set before
  the work is done; a remote backend closes its connection, which makes the server drop the request.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np

from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.words import Vocab
from razvilka.protocol.errors import ErrorCode

log = logging.getLogger(__name__)


class Aborted(Exception):
    """The work was stopped because its abort event was set (the daemon cancels stale pre-generation)."""


class ContextFull(DaemonRefusal):
    """The model's context has no room left, even after freeing every speculative path."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.MODEL_ERROR, message)


@dataclass(frozen=True)
class TopRow:
    """The N likeliest next tokens after a path, and the mass of all the others.

    ``logprobs`` are natural-log probabilities under the model's whole distribution (before razvilka's
    bias and masks), likeliest first; ``rest`` = 1 - sum(exp(logprobs)), the probability of every token
    not listed. A backend that cannot give full rows gives these."""

    ids: np.ndarray        # int32 token ids, likeliest first
    logprobs: np.ndarray   # float32, same length
    rest: float


Row: TypeAlias = np.ndarray | TopRow
"""What follows a token path: full float32 logits over the vocabulary, or a :class:`TopRow`."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the engine adapts to it (docs/engine.md, "Backends")."""

    full_rows: bool       # rows over the whole vocabulary; False: TopRow only
    max_top_n: int        # the most tokens a TopRow lists (a full-row backend: its vocabulary size)
    runtime_lora: bool    # set_adapter loads any adapter file at run time (False: only those the server has)
    paths: int            # token paths one call serves at once (side sequences, server slots): the search's batch


class LMBackend(Protocol):
    """A language model as the engine sees it: token paths in, rows and tokens out.

    Not thread-safe: the daemon calls it from its one engine thread; only ``abort`` events are set from
    other threads. Errors are ``DaemonRefusal`` with a code (``MODEL_ERROR`` for a model that fails,
    ``BAD_CONFIG`` for a bad file), :class:`ContextFull` and :class:`Aborted`."""

    capabilities: Capabilities
    model_name: str
    n_vocab: int
    n_ctx: int              # tokens of context: the document and every path are at most this long
    vocab: Vocab            # each token's exact bytes and whether it is never offered (daemon/words.py)
    bos: int                # the beginning-of-sequence token
    add_bos: bool           # whether a document starts with it
    stats: dict[str, float]  # decodes, rows, tokens, decode_ms: counters for tests and benchmarks

    @property
    def lora_path(self) -> str:
        """The adapter in use ("" none)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as it would continue a document (no BOS, special tokens not parsed)."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The exact text of ``tokens`` (the concatenation of their pieces)."""
        ...

    def set_document(self, tokens: Sequence[int], *, row: bool = True, fresh: bool = False) -> Row | None:
        """Make ``tokens`` the document: the checkpoint the next paths start from, kept evaluated.

        Whatever the new document shares with the one held before is kept; only the rest is evaluated
        (``rewind`` is a shorter document: nothing to evaluate). ``row``: return the row after the last
        token (the engine asks only when it has none cached); without it a backend may take the new
        tokens from a path it already evaluated (the embedded backend copies KV cells). ``fresh``: a new
        document; every speculative path may be dropped to make room."""
        ...

    def rows(self, paths: Sequence[Sequence[int]], *, abort: threading.Event | None = None) -> list[Row]:
        """The row after each token path, all of them computed together (one batch where possible)."""
        ...

    def pick(self, paths: Sequence[Sequence[int]], choose: Callable[[Row], int], *,
             keep: Sequence[bool], abort: threading.Event | None = None) -> list[tuple[int, Row | None]]:
        """One batched step of greedy (or sampled) continuation: ``choose(row)`` after each path.

        ``choose`` applies razvilka's bias and picks a token; it may be handed a transient row (the
        embedded backend: a view of llama.cpp's logits, never copied). Where ``keep[i]`` the row itself
        is returned too (the engine caches it), else None. The engine calls this once per look-ahead
        step, so steps stream and stop between and inside steps on ``abort``."""
        ...

    def set_adapter(self, path: str, scale: float = 1.0) -> Row | None:
        """Switch the LoRA adapter ("" removes it) and re-evaluate the document under it; return the row
        after the document. Refused (``BAD_CONFIG``) without any change when it does not fit the model."""
        ...

    def forget(self) -> None:
        """Drop every speculative path (side sequences, slot copies); the document stays."""
        ...

    def close(self) -> None:
        """Free the model (safe to call twice, and on a half-built backend)."""
        ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists (slice compares run in C; binary search keeps it
    O(n log n))."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def top_row(logits: np.ndarray, n: int) -> TopRow:
    """The top-``n`` view of a full row: what a server's ``n_probs`` / ``logprobs`` would return."""
    if n < 1:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"top-N rows need N >= 1 (got {n})")
    lg = np.asarray(logits, dtype=np.float32)
    m = float(np.max(lg))
    lse = m + float(np.log(np.exp((lg - np.float32(m)).astype(np.float64)).sum()))
    n = min(n, len(lg))
    ids = np.argpartition(-lg, n - 1)[:n] if n < len(lg) else np.arange(len(lg))
    ids = ids[np.argsort(-lg[ids], kind="stable")].astype(np.int32)
    lp = (lg[ids].astype(np.float64) - lse).astype(np.float32)
    rest = max(0.0, 1.0 - float(np.exp(lp.astype(np.float64)).sum()))
    return TopRow(ids, lp, rest)


def _vocab_cache(tag: str) -> Path:
    """Where the vocabulary table of the model ``tag`` names is cached (``.npz``; ``.json`` beside it)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "razvilka" / "vocab"
    return cache / (hashlib.sha1(f"{tag}:{Vocab.FORMAT}".encode()).hexdigest()[:20] + ".npz")


def cached_vocab(tag: str, n_vocab: int, read: Callable[[], Vocab]) -> Vocab:
    """The vocabulary table for the model that ``tag`` names, from the cache when it was seen before.

    ``tag`` must change when the model does (the embedded backend: the file's path, size and mtime;
    a server: the model it reports). A read-only cache costs only start-up time."""
    path = _vocab_cache(tag)
    vocab = Vocab.load(path) if path.exists() else None
    if vocab is not None and vocab.n == n_vocab:
        return vocab
    vocab = read()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        vocab.save(path)
    except OSError as exc:
        log.warning("could not cache the vocabulary table at %s: %s", path, exc)
    return vocab


def cached_tokenizer(tag: str) -> tuple[Vocab, int, bool] | None:
    """(vocabulary, BOS token, whether a document starts with it) of the model ``tag`` names, from the cache
    alone, or None when it was never saved (:func:`save_tokenizer`). A remote backend reads it this way so
    that the daemon never loads llama.cpp (its library, and a vocabulary-only model: ~90 MiB at peak)."""
    path = _vocab_cache(tag)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        n, bos, add_bos = int(meta["n_vocab"]), int(meta["bos"]), bool(meta["add_bos"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    vocab = _load_lean(path)
    return (vocab, bos, add_bos) if vocab is not None and vocab.n == n else None


def _load_lean(path: Path) -> Vocab | None:
    """``Vocab.load`` without its two transient lists of 262,144 Python ints (~20 MiB of peak memory, which a
    daemon on a server keeps as its high-water mark): the pieces are cut from the blob one by one."""
    try:
        with np.load(path) as z:
            if int(z["format"][0]) != Vocab.FORMAT:
                return None
            blob, ends = z["blob"].tobytes(), z["ends"]
            kinds, order = z["kinds"].copy(), z["order"].copy()
    except (OSError, KeyError, ValueError):
        return None
    pieces: list[bytes] = []
    start = 0
    for end in ends.flat:  # numpy scalars, one at a time
        pieces.append(blob[start:int(end)])
        start = int(end)
    return Vocab(pieces, kinds=kinds, order=order)


def save_tokenizer(tag: str, vocab: Vocab, bos: int, add_bos: bool) -> None:
    """Remember what :func:`cached_tokenizer` gives (the table itself is saved by :func:`cached_vocab`)."""
    path = _vocab_cache(tag).with_suffix(".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"n_vocab": vocab.n, "bos": int(bos), "add_bos": bool(add_bos)}))
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not cache the tokenizer's settings at %s: %s", path, exc)
