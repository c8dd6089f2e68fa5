"""An ``LMBackend`` over HTTP to llama.cpp's own server (``razvilka serve``, or any llama-server).

Why it is shaped this way (daemon/backend.py is the seam; docs/deployment.md says where it runs):

* **Token ids, never text.** Every path goes to ``/completion`` as a token-id prompt, so the server
  evaluates exactly the tokens the embedded backend would. ``/tokenize`` (``parse_special`` off) is the
  server's own tokenizer.
* **Top-N rows.** ``n_predict: 1`` with ``n_probs: N`` returns the N likeliest next tokens after the path
  with log-probabilities under the model's whole softmax (before any sampler: ``post_sampling_probs``
  off), which is what a :class:`TopRow` is; the rest's mass is ``1 - sum``. razvilka's bias and masks
  are applied above the seam, so no ``logit_bias`` is sent: the server's rows stay raw and cacheable.
* **One request per batch and slot.** All paths of a search level (or of one look-ahead step) go as a
  list of token arrays in one request per slot; the server decodes every slot's next path together
  (continuous batching). ``cache_prompt`` lets a slot keep what it holds of a path, so a path that
  extends the document costs its new tokens only.
* **A person's own slots.** With ``model.slot`` set, every request of this daemon is pinned (``id_slot``)
  to its slots ``slot .. slot + model.slots - 1``: path i to ``slot + i % slots``, one streamed request per
  slot at once on its own connection, so a candidate's next look-ahead step meets its last one there.
  Unpinned (-1), the paths of one request spread over every free slot, each of which then holds another
  person's document and re-reads this one from its start (measured: 4 people, 300-token documents, 16
  paths a request: 146 s unpinned against 37 s pinned, the server's host-memory prompt cache off; that
  cache must stay off for pinned slots, ``razvilka serve`` does so: daemon/serve.py).
* **Streaming, so closing aborts.** Requests stream (``stream: true``): when the daemon abandons work
  (stale pre-generation), a watcher closes the connection and llama-server drops the request; a
  non-streaming request would run to its end (measured: still decoding 20 s after the close).
* **A server that is down** gives ``MODEL_ERROR`` with what failed and where; the next call reconnects,
  so the daemon resumes by itself when the server is back.
* **The vocabulary** (each token's bytes, which tokens are never offered) is read from the same GGUF on
  this machine (``model.path``, or the embedded model), through llama.cpp with ``vocab_only`` the first
  time and from the cache after that, so the daemon never loads llama.cpp (remote.py): the server has
  no endpoint that lists it. Its size is checked against the server's model.

The wire's rules (the URL, the key, the connection, errors, streaming and aborts, the vocabulary) and the
part of the backend every server shares are in ``remote.py``, with the OpenAI-compatible backend.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from razvilka.daemon.backend import Row, TopRow
from razvilka.daemon.backends.remote import HttpClient, RemoteBackend, ServerUnavailable, server_row
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode

__all__ = ["LlamaServerBackend", "ServerUnavailable"]


class LlamaServerBackend(RemoteBackend):
    """llama-server at ``cfg.url``: top-N rows, batched paths, streaming requests that a close aborts."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None) -> None:
        super().__init__()
        progress = progress or (lambda _x: None)
        self.cfg = cfg
        if cfg.top_n < 1:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"model.top_n must be >= 1 (got {cfg.top_n})")
        self.http = HttpClient(cfg, "llama-server")
        self.url = self.http.url
        self.doc_slot = cfg.slot
        self.pin_slots = max(1, int(cfg.slots)) if cfg.slot >= 0 else 1
        self._more: list[HttpClient] = []   # one connection per further pinned slot (model.slots > 1)
        self._pool: ThreadPoolExecutor | None = None
        self._count = threading.Lock()

        progress(0.1)
        models = self.http.get("/v1/models")
        meta = (models.get("data") or [{}])[0].get("meta") or {}
        props = self.http.get("/props")
        self.model_name = str(props.get("model_alias") or props.get("model_path") or self.url).rsplit("/", 1)[-1]
        self.n_vocab = int(meta.get("n_vocab") or 0)
        slot_ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0)
        self.n_ctx = min(cfg.n_ctx, slot_ctx) if cfg.n_ctx and slot_ctx else (slot_ctx or cfg.n_ctx)
        self.http.n_ctx = self.n_ctx
        self.slots = int(props.get("total_slots") or 1)
        if cfg.slot >= 0 and cfg.slot + self.pin_slots > self.slots:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.slot {cfg.slot} with model.slots {self.pin_slots}: the llama-server at "
                                f"{self.url} has slots 0..{self.slots - 1} (razvilka serve --parallel)")
        adapters = self.http.get("/lora-adapters")
        self._adapters: list[dict[str, Any]] = adapters if isinstance(adapters, list) else []
        progress(0.3)
        self.attach_local_vocab(cfg, progress, "the GGUF the server runs")
        self._lora: list[dict[str, float]] = []
        self.lora_path = ""
        if cfg.lora_path:
            self.set_adapter(cfg.lora_path, cfg.lora_scale)
        progress(0.95)

    # ------------------------------------------------------------------------------------------- rows
    def ask(self, paths: Sequence[Sequence[int]], abort: threading.Event | None,
             slot: int) -> list[TopRow | None]:
        """The top-N row after each path: one request to /completion pinned to ``model.slot``, or with
        ``model.slots`` S > 1 one request per slot at once (path i to slot ``model.slot + i % S``, so a
        candidate's look-ahead stays where its last step is); unpinned, the server spreads the paths."""
        if slot >= 0 or self.pin_slots == 1 or len(paths) == 1:
            return self._ask_one(self.http, paths, abort, slot if slot >= 0 else self.doc_slot)
        groups = [list(range(j, len(paths), self.pin_slots)) for j in range(min(self.pin_slots, len(paths)))]
        while len(self._more) < len(groups) - 1:
            self._more.append(HttpClient(self.cfg, "llama-server"))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.pin_slots - 1, thread_name_prefix="llama-server-slot")
        futures = [self._pool.submit(self._ask_one, self._more[j - 1], [paths[i] for i in idx], abort,
                                     self.doc_slot + j) for j, idx in enumerate(groups) if j > 0]
        answers: list[list[TopRow | None]] = []
        error: BaseException | None = None
        try:
            answers.append(self._ask_one(self.http, [paths[i] for i in groups[0]], abort, self.doc_slot))
        except BaseException as exc:  # wait for the others all the same: their connections must be left clean
            error = exc
        for f in futures:
            try:
                answers.append(f.result())
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        out: list[TopRow | None] = [None] * len(paths)
        for idx, rows in zip(groups, answers):
            for i, row in zip(idx, rows):
                out[i] = row
        return out

    def _ask_one(self, http: HttpClient, paths: Sequence[Sequence[int]], abort: threading.Event | None,
                 slot: int) -> list[TopRow | None]:
        n = self.capabilities.max_top_n
        body: dict[str, Any] = {
            "prompt": [list(map(int, p)) for p in paths] if len(paths) > 1 else list(map(int, paths[0])),
            "n_predict": 1, "n_probs": n, "temperature": -1.0, "cache_prompt": True,
            "return_tokens": True, "samplers": [], "lora": self._lora,
        }
        if slot >= 0:  # every question of this daemon stays in its own slot(s) (model.slot): see the module doc
            body["id_slot"] = slot
        out: list[TopRow | None] = [None] * len(paths)
        evaluated = 0
        for ev in http.stream("/completion", body, abort):
            timings = ev.get("timings")
            if isinstance(timings, dict):  # each path's last event: the tokens the server evaluated for it
                evaluated += int(timings.get("prompt_n") or 0)
            probs = ev.get("completion_probabilities")
            if not probs:
                continue
            top = probs[0].get("top_logprobs") or []
            out[int(ev.get("index", 0))] = server_row([int(x["id"]) for x in top],
                                                   [float(x["logprob"]) for x in top], n)
        with self._count:
            self.stats["prompt_tokens"] += evaluated
        return out

    def close(self) -> None:
        if getattr(self, "http", None) is not None:
            super().close()
        for http in getattr(self, "_more", []):
            http.close()
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.shutdown(wait=False)

    # ------------------------------------------------------------------------------------------- LMBackend
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        got = self.http.post("/tokenize", {"content": text, "add_special": False, "parse_special": False})
        return [int(t) for t in got.get("tokens", [])]

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
        return self._document_row()
