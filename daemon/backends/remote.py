"""What every backend over HTTP shares: llama-server (``llama_server.py``) and OpenAI-compatible servers
such as vLLM (``openai_compat.py``). One place for each rule of the wire:

* **The URL.** ``http://`` only to a loopback address; off the machine ``https://`` (a TLS proxy), its
  certificate checked against ``model.tls_ca`` (README: encrypted, or refused).
* **The key.** ``model.api_key_file``, a 0600 file, sent as ``Authorization: Bearer``.
* **One connection.** Persistent, reopened once when the server closed an idle one; any other failure
  drops it, so the next call reconnects and the daemon resumes by itself when the server is back.
* **Errors.** A server that is down, breaks the connection or says nothing for ``model.timeout_s`` is
  :class:`ServerUnavailable` (``MODEL_ERROR``, naming the server and why; the daemon retries); 401 is a
  wrong key (``BAD_CONFIG``); 503 not ready yet (retried); a prompt over the context is ``ContextFull``.
* **Streaming, so closing aborts.** Rows are asked for with ``stream: true``; when the daemon abandons the
  work a watcher closes the socket and the server drops the request (llama-server and vLLM both abort a
  streamed request whose client left; a non-streamed one runs to its end).
* **The vocabulary.** Each token's bytes and which are never offered come from a GGUF of the same model on
  this machine (llama.cpp ``vocab_only``: no weights): neither server lists its vocabulary. After the first
  read they come from the cache with the BOS token (``cached_tokenizer``), and the daemon never loads
  llama.cpp: measured, 125 -> 62 MiB peak for the backend alone, 143 -> 125 MiB for a whole daemon.
* **The engine's side.** :class:`RemoteBackend` is the part of ``LMBackend`` that is the same for every
  server (the document, rows and picks from top-N rows, counters); a subclass says how to ask for rows.
"""
from __future__ import annotations

import abc
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

from razvilka.daemon.backend import (
    Aborted,
    Capabilities,
    ContextFull,
    Row,
    TopRow,
    cached_tokenizer,
    cached_vocab,
    save_tokenizer,
)
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

    def __init__(self, name: str) -> None:
        self._cv = threading.Condition()
        self._job: tuple[socket.socket, threading.Event] | None = None
        self.fired = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-abort", daemon=True)
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


#: Turns a refusal the generic rules do not know into a clearer one (status, the server's message), or None.
Hint = Callable[[int, str], DaemonRefusal | None]


class HttpClient:
    """One server at ``cfg.url``, called ``what`` in every message (e.g. "llama-server")."""

    def __init__(self, cfg: ModelConfig, what: str, *, hint: Hint | None = None) -> None:
        parts = urlsplit(cfg.url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.url must be http://HOST:PORT or https://HOST:PORT of a {what} "
                                f"(got {cfg.url!r})")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.url {cfg.url!r}: plain http off loopback is refused (the text would cross "
                                "the network unencrypted); use https:// through a TLS proxy (docs/deployment.md)")
        self.what = what
        self.hint = hint
        self.timeout_s = float(cfg.timeout_s)
        self.url = cfg.url.rstrip("/")
        self.n_ctx = 0  # the context the backend settled on, for a ContextFull message
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=cfg.tls_ca or None)
        self._auth = {"Authorization": "Bearer " + read_key_file(cfg.api_key_file, "model.api_key_file")} \
            if cfg.api_key_file else {}
        self._conn: http.client.HTTPConnection | None = None
        self._watch = _Watcher(what.replace(" ", "-"))

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                                         context=self._tls)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""
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
                self.close()
                if attempt == 1:
                    raise self.down(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self.down(exc) from None
        raise AssertionError("unreachable")

    def down(self, exc: BaseException) -> ServerUnavailable:
        """The refusal for a server that cannot be reached or did not answer, saying why."""
        if isinstance(exc, TimeoutError | socket.timeout):
            why = f"no answer within {self.timeout_s:g} s (model.timeout_s)"
        elif isinstance(exc, ConnectionRefusedError):
            why = "connection refused: is it running?"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return ServerUnavailable(f"{self.what} at {self.url} is unavailable ({why})")

    def error(self, status: int, raw: bytes) -> DaemonRefusal:
        """The refusal for an answer with an error ``status``: the server's own message, classified."""
        try:
            err = json.loads(raw)
            err = err.get("error", err) if isinstance(err, dict) else {}
            msg = str((err.get("message") if isinstance(err, dict) else err) or raw[:200].decode(errors="replace"))
        except (ValueError, AttributeError):
            msg = raw[:200].decode(errors="replace")
        if self.hint is not None:
            better = self.hint(status, msg)
            if better is not None:
                return better
        low = msg.lower()
        if "context" in low and ("exceed" in low or "size" in low or "length" in low):
            return ContextFull(f"{self.what}: {msg} (n_ctx {self.n_ctx}): start a new text")
        if status == 401:
            return DaemonRefusal(ErrorCode.BAD_CONFIG, f"{self.what} at {self.url} refused the key ({msg}): "
                                 "model.api_key_file must hold the key it was started with")
        if status == 503:
            return ServerUnavailable(f"{self.what} at {self.url} is not ready ({msg})")
        return DaemonRefusal(ErrorCode.MODEL_ERROR, f"{self.what} at {self.url} refused the request ({status}: {msg})")

    def _answer(self, r: http.client.HTTPResponse) -> Any:
        try:
            raw = r.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self.down(exc) from None
        if r.status != 200:
            raise self.error(r.status, raw)
        return json.loads(raw)

    def get(self, path: str) -> Any:
        return self._answer(self._send("GET", path))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._answer(self._send("POST", path, body))

    def stream(self, path: str, body: dict[str, Any], abort: threading.Event | None) -> Iterator[dict[str, Any]]:
        """POST ``path`` with ``stream``; yields each server-sent event that is a JSON object. Setting
        ``abort`` closes the connection (the server then drops the request) and raises :class:`Aborted`."""
        if abort is not None and abort.is_set():
            raise Aborted()
        r = self._send("POST", path, dict(body, stream=True))
        if r.status != 200:
            raw = r.read()
            raise self.error(r.status, raw)
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
                    raise self.down(exc) from None
                if not line:
                    if abort is not None and abort.is_set():
                        raise Aborted()
                    return
                line = line.strip()
                if line.startswith(b"error:"):
                    raise self.error(500, line[6:])
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":  # the OpenAI stream's end (llama.cpp's /v1 and vLLM send it)
                    continue
                event = json.loads(payload)
                if isinstance(event, dict):  # llama.cpp's /v1 stream begins with "data: null"
                    if "error" in event:
                        err = event["error"]
                        code = err.get("code") if isinstance(err, dict) else None
                        raise self.error(int(code) if isinstance(code, int) else 500, payload)
                    yield event
        except BaseException:
            self.close()  # a half-read stream cannot carry the next request
            raise
        finally:
            if abort is not None:
                self._watch.done()


def local_vocab(cfg: ModelConfig, progress: Callable[[float], None]) -> tuple[Vocab, int, bool]:
    """Pieces and masks from the GGUF on this machine (``model.path``, else the embedded model); (vocabulary,
    BOS token, whether a document starts with it). From the cache when this file was read before, so the
    daemon of a remote backend never loads llama.cpp; else read by llama.cpp with ``vocab_only`` (no weights)."""
    from razvilka.daemon.backends.gguf import check_gguf, embedded_model_path

    path = check_gguf(cfg.path) if cfg.path else embedded_model_path()
    st = path.stat()
    tag = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    known = cached_tokenizer(tag)
    if known is not None:
        return known
    from razvilka.daemon.backends import embedded as emb

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

        vocab = cached_vocab(tag, n, lambda: emb.EmbeddedBackend._read_vocab(_Reader()))  # type: ignore[arg-type]
        bos, add_bos = int(L.llama_vocab_bos(vocab_p)), bool(L.llama_vocab_get_add_bos(vocab_p))
    finally:
        L.llama_model_free(model)
    save_tokenizer(tag, vocab, bos, add_bos)
    return vocab, bos, add_bos


def server_row(ids: Sequence[int], logprobs: Sequence[float], n: int) -> TopRow:
    """A :class:`TopRow` from a server's (id, logprob) list: likeliest first, at most ``n``, the rest's mass
    carried (a server may list one more: vLLM adds the sampled token to the top N)."""
    i = np.asarray(ids, dtype=np.int32)
    lp = np.asarray(logprobs, dtype=np.float32)
    order = np.argsort(-lp, kind="stable")[:n]
    i, lp = i[order], lp[order]
    return TopRow(i, lp, max(0.0, 1.0 - float(np.exp(lp.astype(np.float64)).sum())))


class RemoteBackend(abc.ABC):
    """The part of an ``LMBackend`` over HTTP that is the same for every server: the document is only
    remembered (the server evaluates it with the next path that starts with it), rows and picks come from
    one streamed request per batch, and the counters. A subclass sets ``http``, the vocabulary and
    ``capabilities``, and implements :meth:`ask` and :meth:`tokenize`."""

    http: HttpClient
    capabilities: Capabilities
    model_name: str
    n_vocab: int
    n_ctx: int
    vocab: Vocab
    bos: int
    add_bos: bool
    lora_path: str
    doc_slot: int = -1  # where the document's own row is asked for (llama-server: model.slot)

    def __init__(self) -> None:
        self.stats: dict[str, float] = {"decodes": 0, "rows": 0, "tokens": 0, "decode_ms": 0.0, "requests": 0,
                                        "prompt_tokens": 0}  # tokens the server evaluated (llama-server)
        self._doc: list[int] = []

    def attach_local_vocab(self, cfg: ModelConfig, progress: Callable[[float], None], what: str) -> None:
        """Read the tokenizer from the local GGUF (no server lists its vocabulary), check it against the
        server's token count, and state what a remote backend can do (top-N rows only)."""
        self.vocab, self.bos, self.add_bos = local_vocab(cfg, progress)
        if self.n_vocab and self.vocab.n != self.n_vocab:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"the server's model has {self.n_vocab} tokens, the local GGUF "
                                f"({cfg.path or 'the embedded model'}) {self.vocab.n}: model.path must name {what}")
        self.n_vocab = self.vocab.n
        self.capabilities = Capabilities(full_rows=False, max_top_n=min(cfg.top_n, self.n_vocab),
                                         runtime_lora=False, paths=max(1, int(cfg.side_sequences)))

    @abc.abstractmethod
    def ask(self, paths: Sequence[Sequence[int]], abort: threading.Event | None,
             slot: int) -> list[TopRow | None]:
        """The top-N row after each path, from one request (None where the answer had none)."""

    def _rows(self, paths: Sequence[Sequence[int]], abort: threading.Event | None, slot: int = -1) -> list[TopRow]:
        t0 = time.perf_counter()
        out = self.ask(paths, abort, slot)
        missing = [i for i, row in enumerate(out) if row is None]
        if missing or len(out) != len(paths):
            self.http.close()
            raise ServerUnavailable(f"{self.http.what} at {self.http.url} ended the answer without rows for "
                                    f"{len(missing) + len(paths) - len(out)} of {len(paths)} paths")
        self.stats["requests"] += 1
        self.stats["decodes"] += 1
        self.stats["rows"] += len(paths)
        self.stats["tokens"] += sum(len(p) for p in paths)
        self.stats["decode_ms"] += (time.perf_counter() - t0) * 1000.0
        return [row for row in out if row is not None]

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """The server's token ids for ``text`` (each server has its own endpoint and body)."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.vocab.text(tokens)

    def set_document(self, tokens: Sequence[int], *, row: bool = True, fresh: bool = False) -> Row | None:
        target = [int(t) for t in tokens]
        if len(target) > self.n_ctx - 16:
            raise ContextFull(f"the context is full (n_ctx={self.n_ctx} per server slot, document "
                              f"{len(target)} tokens): start a new text or give the server larger slots")
        self._doc = target
        if not row or not target:
            return None  # the server evaluates it with the next path that starts with it (prefix caching)
        return self._rows([target], None, slot=self.doc_slot)[0]

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

    def _document_row(self) -> Row | None:
        """The row after the document under a new adapter (None without a document)."""
        if not self._doc:
            return None
        return self._rows([self._doc], None, slot=self.doc_slot)[0]

    def forget(self) -> None:
        """Nothing to free here: the server keeps or evicts cached prefixes itself."""
        return

    def close(self) -> None:
        self.http.close()
