"""The embedded backend: llama.cpp in this process (llama-cpp-python's low-level ctypes API), full rows.

Why it is built this way (docs/engine.md, "How it works"):

* **One context, many sequences.** The document lives in sequence 0. Every other path (growing a
  token into a word, look-ahead phrases, the fork after a candidate) lives in a side sequence that
  shares the document's KV cells (``kv_unified``: ``llama_memory_seq_cp`` is metadata only). The
  document is never evaluated twice: a side sequence starts as a copy of a prefix and decodes only
  what is new, and all paths of one request advance together, one row each, in one ``llama_decode``.
* **Rows are expensive.** Gemma's vocabulary has 262,144 tokens, so each logits row costs about as
  much as the transformer itself. Logits are requested only on the rows read, and a row handed to
  ``pick`` is read in place, never copied, unless the engine keeps it.

The engine above (daemon/engine.py) speaks only the ``LMBackend`` protocol (daemon/backend.py).
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from razvilka.daemon.backend import Aborted, Capabilities, ContextFull, Row, cached_vocab, common_prefix
from razvilka.daemon.backends.gguf import check_gguf, check_memory, embedded_model_path
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.words import Vocab
from razvilka.protocol.errors import ErrorCode, RazvilkaError

log = logging.getLogger(__name__)

# ggml's "tiled" CPU matmul takes over at 8+ rows and rounds differently from the 1-row path (logit
# differences up to ~1 measured on Gemma 3 270M), so a batched look-ahead could pick other greedy tokens
# than the same candidate decoded alone. Off, a row's logits are bitwise the same at any batch size.
# It is read once when llama.cpp initialises its CPU backend, so it is set before llama_cpp is imported.
os.environ.setdefault("GGML_CPU_TILED_MM", "0")

_SPECIAL_PIECE = re.compile(rb"^(\[multimodal\]|<(start|end)_of_[a-z_]+>)$")

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


def read_vocab(L: Any, vocab_p: Any, n_vocab: int, progress: Callable[[float], None]) -> Vocab:
    """Every token's piece, and which are never offered (control, unused, unknown, end of generation,
    image and turn markers, bare control bytes): one rule for every backend that reads a GGUF's
    vocabulary through llama.cpp (``L``: llama_cpp, ``vocab_p``: a model's vocabulary)."""
    buf = ctypes.create_string_buffer(512)
    pieces: list[bytes] = []
    masked = np.zeros(n_vocab, dtype=bool)
    bad_attr = L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_UNUSED | L.LLAMA_TOKEN_ATTR_UNKNOWN
    for t in range(n_vocab):
        n = L.llama_token_to_piece(vocab_p, t, buf, len(buf), 0, False)
        piece = buf.raw[: max(0, n)]
        pieces.append(piece)
        attr = L.llama_vocab_get_attr(vocab_p, t)
        if (attr & bad_attr or L.llama_vocab_is_eog(vocab_p, t) or _SPECIAL_PIECE.match(piece)
                or (attr & L.LLAMA_TOKEN_ATTR_BYTE and len(piece) == 1 and piece[0] < 0x20
                    and piece not in (b"\t", b"\n", b"\r"))):
            masked[t] = True
        if t % 32768 == 0:
            progress(0.85 + 0.1 * t / n_vocab)
    return Vocab(pieces, masked)


@dataclass
class _Seq:
    """A side sequence: the tokens whose KV it holds, from position 0."""

    id: int
    tokens: list[int]
    used: int = 0
    cm: int = 0           # common prefix with the document (valid while cm_version == the document's version)
    cm_version: int = -1


class _DecodeError(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(f"llama_decode returned {rc}")
        self.rc = rc


class EmbeddedBackend:
    """The model, the document's KV cells and every speculative path's, on one llama.cpp context."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None,
                 reserve_rows: int = 0) -> None:
        """Load ``cfg.path`` (the embedded Gemma 3 270M when empty). ``progress`` gets 0 .. 0.95;
        ``reserve_rows``: rows the caller will cache, counted in the memory check."""
        self._progress = progress or (lambda _x: None)
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
        rows = reserve_rows * self.n_vocab * 4 + 2 * self.n_vocab * 4 * (self.n_side + 1)
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

        st = path.stat()
        self.vocab = cached_vocab(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", self.n_vocab, self._read_vocab)
        self.bos = L.llama_vocab_bos(self._vocab_p)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self._vocab_p))
        self.capabilities = Capabilities(full_rows=True, max_top_n=self.n_vocab, runtime_lora=True,
                                         paths=self.n_side)
        self.stats: dict[str, float] = {"decodes": 0, "rows": 0, "tokens": 0, "decode_ms": 0.0}
        self._lora: Any = None
        self.lora_path = ""
        self._doc: list[int] = []           # the document: what sequence 0 holds
        self._doc_version = 0
        self._side: dict[int, _Seq] = {}
        self._free = list(range(self.n_side, 0, -1))
        self._tick = 0
        if cfg.lora_path:
            self.set_adapter(cfg.lora_path, cfg.lora_scale)
        self._progress(0.95)

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

    def _read_vocab(self) -> Vocab:
        return read_vocab(self._L, self._vocab_p, self.n_vocab, self._progress)

    def close(self) -> None:
        """Free the context and the model (also at garbage collection; safe on a half-built backend)."""
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
                        raise ContextFull(f"the context is full (n_ctx={self.n_ctx}, document {len(self._doc)} "
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

    def _set_doc(self, tokens: list[int]) -> None:
        self._doc = tokens
        self._doc_version += 1

    def _shared(self, s: _Seq, tgt: list[int], extends_doc: bool) -> int:
        """Common prefix of a side sequence and a target, in O(suffix) when the target extends the document
        (it nearly always does): each sequence's common prefix with the document is remembered."""
        if not extends_doc:
            return common_prefix(s.tokens, tgt)
        n = len(self._doc)
        if s.cm_version != self._doc_version:
            s.cm, s.cm_version = common_prefix(s.tokens, self._doc), self._doc_version
        if s.cm < n:
            return s.cm
        return n + common_prefix(s.tokens[n:], tgt[n:])

    def _seq_tokens(self, s: _Seq, tokens: list[int]) -> None:
        """Set what a side sequence holds, keeping its remembered common prefix with the document when it can."""
        old = s.tokens
        n = len(self._doc)
        if s.cm_version == self._doc_version:
            if len(tokens) <= len(old) and tokens == old[:len(tokens)]:
                s.cm = min(s.cm, len(tokens))
            elif not (tokens[:len(old)] == old and (s.cm < len(old) or s.cm == n)):
                s.cm_version = -1
        s.tokens = tokens

    def _next(self, targets: Sequence[Sequence[int]], abort: threading.Event | None,
              reduce: Sequence[Callable[[np.ndarray], Any] | None] | None) -> list[Any]:
        """The row after each token path (or ``reduce[i]`` of it), all decoded in ONE batch.

        Each path reuses the longest prefix any sequence already holds: a side sequence that holds
        exactly that prefix is extended in place, otherwise a new one starts as a (metadata) copy of it.
        """
        plan: list[tuple[int, _Seq, int, list[int]]] = []
        claimed: set[int] = set()
        for i, tgt_in in enumerate(targets):
            tgt = list(tgt_in)
            n_doc = len(self._doc)
            ext = len(tgt) >= n_doc and tgt[:n_doc] == self._doc
            best_id, best_len, best_exact = 0, (n_doc if ext else common_prefix(self._doc, tgt)), False
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
        rows = self._decode([(seq.id, keep, new) for _, seq, keep, new in plan], abort, claimed, reduce)
        for i, seq, _keep, _new in plan:
            self._seq_tokens(seq, list(targets[i]))
        return rows

    # ------------------------------------------------------------------------------------------- LMBackend
    def rows(self, paths: Sequence[Sequence[int]], *, abort: threading.Event | None = None) -> list[Row]:
        if not paths:
            return []
        return self._next(paths, abort, None)

    def pick(self, paths: Sequence[Sequence[int]], choose: Callable[[Row], int], *,
             keep: Sequence[bool], abort: threading.Event | None = None) -> list[tuple[int, Row | None]]:
        if not paths:
            return []
        got = self._next(paths, abort, [None if k else choose for k in keep])
        return [(choose(r), r) if k else (int(r), None) for r, k in zip(got, keep)]

    def set_document(self, tokens: Sequence[int], *, row: bool = True, fresh: bool = False) -> Row | None:
        target = list(tokens)
        n = len(self._doc)
        if fresh:
            for sid in list(self._side):
                self._drop(sid)
            self._free = list(range(self.n_side, 0, -1))
        if not row and len(target) <= n and target == self._doc[:len(target)]:  # back to a checkpoint
            self._L.llama_memory_seq_rm(self._mem, 0, len(target), -1)
            self._set_doc(target)
            return None
        if not row and len(target) > n and target[:n] == self._doc:
            for s in self._side.values():  # a side sequence holds it (grown, pre-generated): copy, no decode
                if len(s.tokens) >= len(target) and s.tokens[n:len(target)] == target[n:] and s.tokens[:n] == self._doc:
                    self._L.llama_memory_seq_cp(self._mem, s.id, 0, n, len(target))
                    self._set_doc(target)
                    return None
        if not target:  # nothing to evaluate: an empty cache
            self._L.llama_memory_clear(self._mem, True)
            self._set_doc([])
            return None
        keep = min(common_prefix(self._doc, target), len(target) - 1)
        if keep > 0 or not fresh:
            if keep < n:
                self._L.llama_memory_seq_rm(self._mem, 0, keep, -1)
            out = self._decode([(0, keep, target[keep:])], None)[0]
        else:  # nothing in common with a new document: start from an empty cache
            self._L.llama_memory_clear(self._mem, True)
            self._set_doc([])
            out = self._decode([(0, 0, target)], None)[0]
        self._set_doc(target)
        return out

    def forget(self) -> None:
        for sid in list(self._side):
            self._drop(sid)

    def set_adapter(self, path: str, scale: float = 1.0) -> Row | None:
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
        if not self._doc:
            return None
        # every KV cell was computed with the old weights: evaluate the document afresh
        doc = self._doc
        L.llama_memory_clear(self._mem, True)
        self._side.clear()
        self._free = list(range(self.n_side, 0, -1))
        out: Row = self._decode([(0, 0, doc)], None)[0]
        self._set_doc(list(doc))
        return out
