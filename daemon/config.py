"""The daemon's sections of the configuration: model, fork gating, daemon behaviour, store."""
from __future__ import annotations

from typing import Literal

import msgspec


class ModelConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which GGUF to run. An empty ``path`` means the embedded Gemma 3 270M."""

    path: str = ""
    n_ctx: int = 2048
    n_threads: int = 0          # 0: all cores
    n_batch: int = 512
    lora_path: str = ""
    lora_scale: float = 1.0
    seed: int = 0


class GatingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """When to stop and ask the human (see docs/gating.md)."""

    mode: Literal["auto", "always"] = "auto"
    k: int = 8                      # candidates per fork
    max_entropy_bits: float = 1.0   # write on below this entropy (scaled by selection cost)...
    min_margin: float = 0.35        # ...and when the top word leads the second by this much
    lookahead_tokens: int = 6       # short look-ahead per candidate
    long_lookahead_tokens: int = 16 # the focused candidate's look-ahead
    max_auto_words: int = 12        # force a fork after this many auto-written words


class DaemonConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "daemon"
    prompt: str = ""
    user: str = "default"
    input_cost: Literal["key", "switch", "gaze", "eeg"] = "key"
    stale_focus_ms: int = 1500
    pregenerate: bool = True


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The durable session store (SQLite, WAL)."""

    path: str = ""  # default: $XDG_DATA_HOME/razvilka/sessions.sqlite3
