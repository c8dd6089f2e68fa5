"""An ``LMBackend`` over an OpenAI-compatible ``/v1/completions`` server: vLLM on a GPU host (``model.backend
= "openai"`` or ``"vllm"``), or llama.cpp's server through its OpenAI endpoint (how it is tested here).

Why it is shaped this way (the wire's common rules are in ``remote.py``, shared with ``llama_server.py``;
docs/deployment.md, "vLLM", says what was run and what was not):

* **Token ids, never text.** ``prompt`` is a list of token-id lists (both servers take them), so the
  server evaluates exactly the tokens the engine means. Text is tokenized by the server's ``/tokenize``.
* **Top-N rows.** ``max_tokens: 1`` with ``logprobs: N`` (``model.top_n``) returns the N likeliest next
  tokens with their log-probabilities. vLLM gives them from the raw model output (its default
  ``logprobs_mode``), refuses an N above its ``--max-logprobs`` (20 unless started with more: a clear
  BAD_CONFIG names the flag), and may list the sampled token as an N+1th; ``return_tokens_as_token_ids``
  makes it name tokens ``token_id:ID`` (a token's text is ambiguous, its id is not). llama.cpp lists
  ``{id, logprob}`` objects instead (the chat format); both are read.
* **One request per batch.** All paths of a search level (or of one look-ahead step) go in ONE request;
  both servers batch them (vLLM: continuous batching; llama.cpp: its slots).
* **Prefix caching** needs nothing sent: vLLM's automatic prefix caching (on by default in its V1 engine)
  and llama.cpp's ``cache_prompt`` (on by default) keep the document's KV, so a path that extends it
  costs its new tokens. With vLLM each daemon sends its own random ``cache_salt``: a shared prefix cache
  would otherwise let one person time another's text.
* **Adapters per request (multi-LoRA).** vLLM serves LoRA adapters under their own model names
  (``--enable-lora --lora-modules NAME=PATH``); the ``model`` field of each request picks one, so
  ``set_adapter`` selects an adapter the server lists, by name, path or file name, and a vLLM that allows
  it (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``) is asked to load one it does not list yet.
* **Streaming, so closing aborts** (``remote.py``): both servers drop a streamed request whose client left.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from razvilka.daemon.backend import Row, TopRow
from razvilka.daemon.backends.remote import HttpClient, RemoteBackend, ServerUnavailable, server_row
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode

WHAT = "OpenAI-compatible server"
TOKEN_ID = "token_id:"  # how vLLM names a token with return_tokens_as_token_ids


class OpenAIBackend(RemoteBackend):
    """An OpenAI-compatible server at ``cfg.url``: vLLM, or llama.cpp's ``/v1`` endpoints (``flavor``)."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None) -> None:
        super().__init__()
        progress = progress or (lambda _x: None)
        self.cfg = cfg
        if cfg.top_n < 1:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"model.top_n must be >= 1 (got {cfg.top_n})")
        self.http = HttpClient(cfg, WHAT, hint=self._hint)
        self.url = self.http.url

        progress(0.1)
        listed = self.http.get("/v1/models")
        models: list[dict[str, Any]] = [m for m in (listed.get("data") or []) if isinstance(m, dict)]
        if not models:
            raise DaemonRefusal(ErrorCode.MODEL_ERROR, f"{WHAT} at {self.url} lists no model at /v1/models")
        owners = {str(m.get("owned_by", "")) for m in models}
        self.flavor = "llama.cpp" if "llamacpp" in owners else "vllm"  # vLLM says owned_by "vllm"
        bases = [m for m in models if not m.get("parent")]
        # vLLM lists each LoRA adapter as a model whose parent is the base model
        self._adapters = [m for m in models if m.get("parent")]
        base = bases[0] if bases else models[0]
        self._base = str(base.get("id"))
        if cfg.name and cfg.name not in {str(m.get("id")) for m in models}:
            have = ", ".join(str(m.get("id")) for m in models)
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"model.name {cfg.name!r}: the {WHAT} at {self.url} does not serve it "
                                f"(it serves: {have})")
        self._model = cfg.name or self._base
        self.model_name = self._model.rstrip("/").rsplit("/", 1)[-1]
        meta = base.get("meta") or {}  # llama.cpp: n_vocab, n_ctx
        self.n_vocab = int(meta.get("n_vocab") or 0)
        server_ctx = int(base.get("max_model_len") or meta.get("n_ctx") or 0)
        if self.flavor == "llama.cpp":  # meta.n_ctx is the whole KV pool; one slot holds at most its share
            props = self.http.get("/props")
            server_ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or server_ctx)
        self.n_ctx = min(cfg.n_ctx, server_ctx) if cfg.n_ctx and server_ctx else (server_ctx or cfg.n_ctx)
        self.http.n_ctx = self.n_ctx
        self._salt = os.urandom(16).hex() if self.flavor == "vllm" else ""
        progress(0.3)
        self.attach_local_vocab(cfg, progress, "a GGUF with the tokenizer the server runs")
        self.lora_path = ""
        if cfg.lora_path:
            self.set_adapter(cfg.lora_path, cfg.lora_scale)
        progress(0.95)

    def _hint(self, status: int, msg: str) -> DaemonRefusal | None:
        """vLLM's refusal of more logprobs than ``--max-logprobs`` allows, said in razvilka's terms."""
        if status == 400 and "logprob" in msg.lower():
            return DaemonRefusal(ErrorCode.BAD_CONFIG,
                                 f"{WHAT} at {self.url} refused {self.cfg.top_n} logprobs per row ({msg}): start vLLM "
                                 f"with --max-logprobs {self.cfg.top_n}, or lower model.top_n")
        return None

    # ------------------------------------------------------------------------------------------- rows
    def ask(self, paths: Sequence[Sequence[int]], abort: threading.Event | None,
             slot: int) -> list[TopRow | None]:
        """The top-N row after each path: one streamed /v1/completions request with every path in it."""
        n = self.capabilities.max_top_n
        body: dict[str, Any] = {
            "model": self._model, "prompt": [list(map(int, p)) for p in paths],
            "max_tokens": 1, "logprobs": n, "temperature": 0.0, "echo": False,
        }
        if self.flavor == "vllm":
            body["return_tokens_as_token_ids"] = True
            body["cache_salt"] = self._salt
        out: list[TopRow | None] = [None] * len(paths)
        for ev in self.http.stream("/v1/completions", body, abort):
            for choice in ev.get("choices") or []:
                row = choice_row(choice.get("logprobs"), n, self.url)
                i = int(choice.get("index", 0))
                if row is not None and 0 <= i < len(out):
                    out[i] = row
        return out

    # ------------------------------------------------------------------------------------------- LMBackend
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        if self.flavor == "llama.cpp":  # llama.cpp's /tokenize reads "content"; given vLLM's "prompt" it
            body: dict[str, Any] = {"content": text, "add_special": False, "parse_special": False}  # says []
        else:
            body = {"model": self._model, "prompt": text, "add_special_tokens": False}
        got = self.http.post("/tokenize", body)
        tokens = got.get("tokens") if isinstance(got, dict) else None
        if not isinstance(tokens, list):
            raise ServerUnavailable(f"{WHAT} at {self.url}: /tokenize answered without tokens")
        return [int(t) for t in tokens]

    def set_adapter(self, path: str, scale: float = 1.0) -> Row | None:
        """Select a LoRA adapter the server serves (vLLM: a model whose parent is the base model), by its
        name, its path or its file name; "" goes back to ``model.name``. The adapter is applied at the scale
        it was trained with: vLLM has no per-request scale."""
        if not path:
            self._model, self.lora_path = self.cfg.name or self._base, ""
            return self._document_row()
        if self.flavor != "vllm":
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"LoRA {path}: llama.cpp's OpenAI endpoint selects adapters by id, not by model name; "
                                "use model.backend = \"llama-server\" with razvilka serve --lora")
        if abs(scale - 1.0) > 1e-6:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"LoRA {path}: vLLM applies an adapter at its trained strength; model.lora_scale "
                                f"must be 1.0 (got {scale:g})")
        name = self._adapter_name(path)
        if name is None:
            name = self._load_adapter(path)
        self._model, self.lora_path = name, str(path)
        return self._document_row()

    def _adapter_name(self, path: str) -> str | None:
        file = Path(path).name
        for m in self._adapters:
            root = str(m.get("root") or "")
            if path in (m.get("id"), root) or (root and Path(root).name == file) or m.get("id") == Path(path).stem:
                return str(m["id"])
        return None

    def _load_adapter(self, path: str) -> str:
        """Ask vLLM to load an adapter it does not serve yet (allowed only with
        ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); ``path`` is a path on the server."""
        name = Path(path).stem
        have = ", ".join(str(m.get("id")) for m in self._adapters) or "none"
        try:
            self.http.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        except ServerUnavailable:
            raise
        except DaemonRefusal as exc:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"LoRA {path}: the {WHAT} at {self.url} does not serve it (it has: {have}) and did "
                                f"not load it ({exc.detail}); start vLLM with --enable-lora --lora-modules "
                                f"{name}={path}") from None
        self._adapters.append({"id": name, "root": str(path), "parent": self._base})
        return name


def choice_row(lp: Any, n: int, url: str) -> TopRow | None:
    """The row in one choice's ``logprobs`` (None when it has none): vLLM's completions format
    (``top_logprobs``: one dict per generated token, keys ``token_id:ID`` with ``return_tokens_as_token_ids``)
    or llama.cpp's (``content``: objects with ``id`` and ``logprob``, the chat format)."""
    if not isinstance(lp, dict):
        return None
    if isinstance(lp.get("content"), list) and lp["content"]:  # llama.cpp
        top = lp["content"][0].get("top_logprobs") or []
        return server_row([int(x["id"]) for x in top], [float(x["logprob"]) for x in top], n)
    tops = lp.get("top_logprobs")
    if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
        return None
    ids: list[int] = []
    lps: list[float] = []
    for key, value in tops[0].items():
        if not str(key).startswith(TOKEN_ID):
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"{WHAT} at {url} named tokens by their text ({key!r}), not by id: this vLLM "
                                "ignores return_tokens_as_token_ids; start it with --return-tokens-as-token-ids")
        ids.append(int(str(key)[len(TOKEN_ID):]))
        lps.append(float(value) if value is not None else float("-inf"))
    return server_row(ids, lps, n)
