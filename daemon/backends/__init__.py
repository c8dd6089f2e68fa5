"""The backends below the engine's seam (daemon/backend.py: ``LMBackend``; docs/engine.md, "Backends").

``embedded``: llama.cpp in this process (full rows). ``llama_server``: llama.cpp's server over HTTP
(top-N rows). ``topn``: any backend seen through top-N rows. ``gguf``: model files and memory checks
shared by them and by ``razvilka learn``.
"""
from __future__ import annotations

from collections.abc import Callable

from razvilka.daemon.backend import LMBackend
from razvilka.daemon.config import ModelConfig


def open_backend(cfg: ModelConfig, *, progress: Callable[[float], None] | None = None,
                 reserve_rows: int = 0) -> LMBackend:
    """The backend ``cfg.backend`` names: "embedded" (llama.cpp here) or "llama-server" (over HTTP).
    ``progress`` gets 0 .. 0.95; ``reserve_rows``: logits rows the engine will cache, counted where the
    backend checks memory (the embedded one)."""
    if cfg.backend == "llama-server":  # over HTTP to llama.cpp's server (daemon/backends/llama_server.py)
        from razvilka.daemon.backends.llama_server import LlamaServerBackend

        return LlamaServerBackend(cfg, progress=progress)
    if cfg.backend in ("openai", "vllm"):  # an OpenAI-compatible /v1/completions server (openai_compat.py)
        from razvilka.daemon.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(cfg, progress=progress)
    from razvilka.daemon.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(cfg, progress=progress, reserve_rows=reserve_rows)
