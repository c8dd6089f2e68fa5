"""An ``LMBackend`` over HTTP to llama.cpp's own server (``razvilka serve``, or any llama-server).

Why it is shaped this way (daemon/backend.py is the seam; docs/deployment.md says where it runs):

* **Token ids, never text.** Every path goes to ``/completion`` as a token-id prompt, so the server
  evaluates exactly the tokens the embedded backend would. ``/tokenize`` (``parse_special`` off) is the
  server's own tokenizer.
* **Top-N rows.** ``n_predict: 1`` with ``n_probs: N`` returns the N likeliest next tokens after the path
  with log-probabilities under the model's whole softmax (before any sampler: ``post_sampling_probs``
  off), which is what a :class:`TopRow` is; the rest's mass is ``1 - sum``. razvilka's bias and masks
  are applied above the seam, so no ``logit_bias`` is sent: the server's rows stay raw and cacheable.
* **One request per batch.** All paths of a search level (or of one look-ahead step) go in ONE request
  as a list of token arrays; the server spreads them over its slots and decodes them together
  (continuous batching). ``cache_prompt`` lets a slot keep what it holds of a path, so a path that
  extends the document costs its new tokens only; the document's own evaluation goes to ``model.slot``
  when one is set (``id_slot``), so it stays in that slot.
* **Streaming, so closing aborts.** Requests stream (``stream: true``): when the daemon abandons work
  (stale pre-generation), a watcher closes the connection and llama-server drops the request; a
  non-streaming request would run to its end (measured: still decoding 20 s after the close).
* **A server that is down** gives ``MODEL_ERROR`` with what failed and where; the next call reconnects,
  so the daemon resumes by itself when the server is back.
* **The vocabulary** (each token's bytes, which tokens are never offered) is read from the same GGUF on
  this machine (``model.path``, or the embedded model), through llama.cpp with ``vocab_only``: the
  server has no endpoint that lists it. Its size is checked against the server's model.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from razvilka.daemon.backend import Aborted, Capabilities, ContextFull, Row, TopRow, cached_vocab
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.serve import is_loopback, read_key_file
from razvilka.daemon.words import Vocab
from razvilka.protocol.errors import ErrorCode

log = logging.getLogger(__name__)


class ServerUnavailable(DaemonRefusal):
    """The server cannot be reached, broke the connection, or did not answer in time (MODEL_ERROR)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.MODEL_ERROR, message)


class _Watcher:
    """Closes the socket of the request in flight when its abort event is set (one thread per backend)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._job: tuple[socket.socket, threading.Event] | None = None
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="llama-server-abort", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket, abort: threading.Event) -> None:
        with self._cv:
            self._job, self.fired = (sock, abort), False
            self._cv.notify()

    def done(self) -> None:
        with self._cv:
            self._job = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._job is None:
                    self._cv.wait()
                sock, abort = self._job
            if abort.wait(0.02):
                with self._cv:
                    if self._job is not None and self._job[0] is sock:
                        self.fired = True
                        self._job = None
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass


class LlamaServerBackend:
    """llama-server at ``cfg.url``: top-N rows, batched paths, streaming requests that a close aborts."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None) -> None:
        progress = progress or (lambda _x: None)
        self.cfg = cfg
        parts = urlsplit(cfg.url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.url must be http://HOST:PORT or https://HOST:PORT of a llama-server "
                                f"(got {cfg.url!r})")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.url {cfg.url!r}: plain http off loopback is refused (the text would cross "
                                "the network unencrypted); use https:// through a TLS proxy (docs/deployment.md)")
        if cfg.top_n < 1:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"model.top_n must be >= 1 (got {cfg.top_n})")
        self.url = cfg.url.rstrip("/")
        self._scheme, self._host = parts.scheme, parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=cfg.tls_ca or None)
        self._auth = {"Authorization": "Bearer " + read_key_file(cfg.api_key_file, "model.api_key_file")} \
            if cfg.api_key_file else {}
        self._conn: http.client.HTTPConnection | None = None
        self._watch = _Watcher()
        self.stats: dict[str, float] = {"decodes": 0, "rows": 0, "tokens": 0, "decode_ms": 0.0, "requests": 0}

        progress(0.1)
        models = self._get("/v1/models")
        meta = (models.get("data") or [{}])[0].get("meta") or {}
        props = self._get("/props")
        self.model_name = str(props.get("model_alias") or props.get("model_path") or self.url).rsplit("/", 1)[-1]
        self.n_vocab = int(meta.get("n_vocab") or 0)
        slot_ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0)
        self.n_ctx = min(cfg.n_ctx, slot_ctx) if cfg.n_ctx and slot_ctx else (slot_ctx or cfg.n_ctx)
        self.slots = int(props.get("total_slots") or 1)
        adapters = self._get("/lora-adapters")
        self._adapters: list[dict[str, Any]] = adapters if isinstance(adapters, list) else []
        progress(0.3)
        self.vocab, self.bos, self.add_bos = self._local_vocab(progress)
        if self.n_vocab and self.vocab.n != self.n_vocab:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"the server's model has {self.n_vocab} tokens, the local GGUF "
                                f"({cfg.path or 'the embedded model'}) {self.vocab.n}: model.path must name the "
                                "GGUF the server runs")
        self.n_vocab = self.vocab.n
        self.capabilities = Capabilities(full_rows=False, max_top_n=min(cfg.top_n, self.n_vocab),
                                         runtime_lora=False, paths=max(1, int(cfg.side_sequences)))
        self._lora: list[dict[str, float]] = []
        self.lora_path = ""
        self._doc: list[int] = []
        if cfg.lora_path:
            self.set_adapter(cfg.lora_path, cfg.lora_scale)
        progress(0.95)

    # ------------------------------------------------------------------------------------------- setup
    def _local_vocab(self, progress: Callable[[float], None]) -> tuple[Vocab, int, bool]:
        """Pieces and masks from the GGUF on this machine (llama.cpp, vocab only: no weights are loaded)."""
        from razvilka.daemon.backends import embedded as emb
        from razvilka.daemon.backends.gguf import check_gguf, embedded_model_path

        path = check_gguf(self.cfg.path) if self.cfg.path else embedded_model_path()
        L = emb._llama()
        mp = L.llama_model_default_params()
        mp.vocab_only = True
        model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not model:
            raise DaemonRefusal(ErrorCode.MODEL_ERROR, f"llama.cpp could not read the vocabulary of {path}")
        try:
            vocab_p = L.llama_model_get_vocab(model)
            n = int(L.llama_vocab_n_tokens(vocab_p))

            class _Reader:  # what EmbeddedBackend._read_vocab reads: one rule for which tokens are masked
                _L, _vocab_p, n_vocab = L, vocab_p, n
                _progress = staticmethod(progress)

            st = path.stat()
            vocab = cached_vocab(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", n,
                                 lambda: emb.EmbeddedBackend._read_vocab(_Reader()))  # type: ignore[arg-type]
            return vocab, int(L.llama_vocab_bos(vocab_p)), bool(L.llama_vocab_get_add_bos(vocab_p))
        finally:
            L.llama_model_free(model)

    # ------------------------------------------------------------------------------------------- HTTP
    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            timeout = float(self.cfg.timeout_s)
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return self._conn

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _send(self, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
        """One request on the persistent connection (reopened once when the server closed an idle one)."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = dict(self._auth, **({"Content-Type": "application/json"} if data is not None else {}))
        for attempt in (0, 1):
            conn = self._connect()
            try:
                conn.request(method, self._prefix + path, data, headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop_conn()
                if attempt == 1:
                    raise self._down(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_conn()
                raise self._down(exc) from None
        raise AssertionError("unreachable")

    def _down(self, exc: BaseException) -> ServerUnavailable:
        if isinstance(exc, TimeoutError | socket.timeout):
            why = f"no answer within {self.cfg.timeout_s:g} s (model.timeout_s)"
        elif isinstance(exc, ConnectionRefusedError):
            why = "connection refused: is it running?"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return ServerUnavailable(f"llama-server at {self.url} is unavailable ({why})")

    def _error(self, status: int, raw: bytes) -> DaemonRefusal:
        try:
            err = json.loads(raw).get("error") or {}
            msg = str(err.get("message") or raw[:200].decode(errors="replace"))
        except (ValueError, AttributeError):
            msg = raw[:200].decode(errors="replace")
        if "context" in msg and ("exceed" in msg or "size" in msg):
            return ContextFull(f"llama-server: {msg} (n_ctx per slot {self.n_ctx}): start a new text")
        if status == 401:
            return DaemonRefusal(ErrorCode.BAD_CONFIG, f"llama-server at {self.url} refused the key ({msg}): "
                                 "model.api_key_file must hold the key it was started with")
        if status == 503:
            return ServerUnavailable(f"llama-server at {self.url} is not ready ({msg})")
        return DaemonRefusal(ErrorCode.MODEL_ERROR, f"llama-server at {self.url} refused the request ({status}: {msg})")

    def _get(self, path: str) -> Any:
        r = self._send("GET", path)
        try:
            raw = r.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_conn()
            raise self._down(exc) from None
        if r.status != 200:
            raise self._error(r.status, raw)
        return json.loads(raw)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        r = self._send("POST", path, body)
        try:
            raw = r.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_conn()
            raise self._down(exc) from None
        if r.status != 200:
            raise self._error(r.status, raw)
        return json.loads(raw)

    def _stream(self, body: dict[str, Any], abort: threading.Event | None) -> Iterator[dict[str, Any]]:
        """POST /completion with ``stream``; yields each event. Setting ``abort`` closes the connection
        (llama-server then drops the request) and raises :class:`Aborted`."""
        if abort is not None and abort.is_set():
            raise Aborted()
        r = self._send("POST", "/completion", dict(body, stream=True))
        if r.status != 200:
            raw = r.read()
            raise self._error(r.status, raw)
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if abort is not None and sock is not None:
            self._watch.watch(sock, abort)
        try:
            while True:
                try:
                    line = r.readline()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    if abort is not None and abort.is_set():
                        raise Aborted() from None
                    raise self._down(exc) from None
                if not line:
                    if abort is not None and abort.is_set():
                        raise Aborted()
                    return
                line = line.strip()
                if line.startswith(b"error:"):
                    raise self._error(500, line[6:])
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if isinstance(event, dict):
                    if "error" in event:
                        raise self._error(int((event["error"] or {}).get("code") or 500), line[5:])
                    yield event
        except BaseException:
            self._drop_conn()  # a half-read stream cannot carry the next request
            raise
        finally:
            if abort is not None:
                self._watch.done()

    # ------------------------------------------------------------------------------------------- rows
    def _rows(self, paths: Sequence[Sequence[int]], abort: threading.Event | None,
              slot: int = -1) -> list[TopRow]:
        """The top-N row after each path: one request, the paths spread over the server's slots."""
        n = self.capabilities.max_top_n
        body: dict[str, Any] = {
            "prompt": [list(map(int, p)) for p in paths] if len(paths) > 1 else list(map(int, paths[0])),
            "n_predict": 1, "n_probs": n, "temperature": -1.0, "cache_prompt": True,
            "return_tokens": True, "samplers": [], "lora": self._lora,
        }
        if slot >= 0:
            body["id_slot"] = slot
        t0 = time.perf_counter()
        out: list[TopRow | None] = [None] * len(paths)
        for ev in self._stream(body, abort):
            probs = ev.get("completion_probabilities")
            if not probs:
                continue
            top = probs[0].get("top_logprobs") or []
            ids = np.fromiter((int(x["id"]) for x in top), dtype=np.int32, count=len(top))
            lp = np.fromiter((float(x["logprob"]) for x in top), dtype=np.float32, count=len(top))
            rest = max(0.0, 1.0 - float(np.exp(lp.astype(np.float64)).sum()))
            out[int(ev.get("index", 0))] = TopRow(ids, lp, rest)
        missing = [i for i, row in enumerate(out) if row is None]
        if missing:
            self._drop_conn()
            raise ServerUnavailable(f"llama-server at {self.url} ended the answer without rows for "
                                    f"{len(missing)} of {len(paths)} paths")
        self.stats["requests"] += 1
        self.stats["decodes"] += 1
        self.stats["rows"] += len(paths)
        self.stats["tokens"] += sum(len(p) for p in paths)
        self.stats["decode_ms"] += (time.perf_counter() - t0) * 1000.0
        return [row for row in out if row is not None]

    # ------------------------------------------------------------------------------------------- LMBackend
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        got = self._post("/tokenize", {"content": text, "add_special": False, "parse_special": False})
        return [int(t) for t in got.get("tokens", [])]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.vocab.text(tokens)

    def set_document(self, tokens: Sequence[int], *, row: bool = True, fresh: bool = False) -> Row | None:
        target = [int(t) for t in tokens]
        if len(target) > self.n_ctx - 16:
            raise ContextFull(f"the context is full (n_ctx={self.n_ctx} per server slot, document "
                              f"{len(target)} tokens): start a new text or give the server larger slots")
        self._doc = target
        if not row or not target:
            return None  # the server evaluates it with the next path that starts with it (cache_prompt)
        return self._rows([target], None, slot=self.cfg.slot)[0]

    def rows(self, paths: Sequence[Sequence[int]], *, abort: threading.Event | None = None) -> list[Row]:
        if not paths:
            return []
        return list(self._rows(paths, abort))

    def pick(self, paths: Sequence[Sequence[int]], choose: Callable[[Row], int], *,
             keep: Sequence[bool], abort: threading.Event | None = None) -> list[tuple[int, Row | None]]:
        if not paths:
            return []
        rows = self._rows(paths, abort)
        return [(choose(r), r if k else None) for r, k in zip(rows, keep)]

    def set_adapter(self, path: str, scale: float = 1.0) -> Row | None:
        """Select one of the adapters the server was started with (``razvilka serve --lora``), by path or
        file name; the server cannot load new ones at run time. "" turns adapters off."""
        if path:
            name = path.rsplit("/", 1)[-1]
            hit = [a for a in self._adapters if str(a.get("path", "")) == path
                   or str(a.get("path", "")).rsplit("/", 1)[-1] == name]
            if not hit:
                have = ", ".join(str(a.get("path")) for a in self._adapters) or "none"
                raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                    f"LoRA {path}: the llama-server at {self.url} was not started with it "
                                    f"(it has: {have}); start it with razvilka serve --lora {path}")
            self._lora = [{"id": int(a["id"]), "scale": float(scale if a is hit[0] else 0.0)}
                          for a in self._adapters]
        else:
            self._lora = [{"id": int(a["id"]), "scale": 0.0} for a in self._adapters]
        self.lora_path = str(path)
        if not self._doc:
            return None
        return self._rows([self._doc], None, slot=self.cfg.slot)[0]

    def forget(self) -> None:
        """Nothing to free here: the server keeps or evicts slot contents itself."""

    def close(self) -> None:
        self._drop_conn()
