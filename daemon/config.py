"""The daemon's sections of the configuration: model, fork gating, daemon behaviour, store."""
from __future__ import annotations

from typing import Literal

import msgspec


class ModelConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which GGUF to run, and how. An empty ``path`` means the embedded Gemma 3 270M
    (assembled once into ``$XDG_CACHE_HOME/razvilka/models/``)."""

    path: str = ""              # a GGUF file; "" = the embedded Gemma 3 270M
    n_ctx: int = 4096           # context (tokens), shared by the memory, the document and all side sequences
    n_threads: int = 0          # 0: all cores this process may use
    n_batch: int = 512          # tokens per llama_decode call (prefill chunks)
    lora_path: str = ""         # optional LoRA adapter (GGUF) for this model
    lora_scale: float = 1.0     # its strength
    seed: int = 0               # for sampled look-aheads (regenerate); greedy ones need none
    side_sequences: int = 32    # KV sequences for candidates, look-ahead and pre-generation (n_seq_max - 1)
    extra_buffers: bool = False # llama.cpp extra weight buffers (AMX / repacking). Off: AMX kernels die with
                                # SIGILL in VMs that advertise AMX without enabling it (docs/engine.md)


def _default_cost_weights() -> dict[str, float]:
    return {"key": 1.0, "switch": 1.5, "gaze": 2.0, "eeg": 4.0}


class GatingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """When to stop and ask the human (daemon/gating.py; the rule and why: docs/gating.md).

    Write on only while BOTH hold: entropy <= max_entropy_bits * w and margin >= min_margin / w, where w
    is the cost of one selection with the input in use (cost_weights, a key press = 1). A costlier input
    therefore forks less often: only a real toss-up is worth a P300 round.
    """

    mode: Literal["auto", "always"] = "auto"  # "always": a fork at every word
    k: int = 8                      # candidates per fork
    max_entropy_bits: float = 2.5   # token-level entropy (bits) above which a key user is asked (x w)
    min_margin: float = 0.5         # word-level p(top1) - p(top2) below which a key user is asked (/ w)
    cost_weights: dict[str, float] = msgspec.field(default_factory=_default_cost_weights)
    # ^ cost of one selection per input, relative to a key press (key < switch < gaze < eeg)
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
    profile: bool = True        # apply and update the user's learned profile (docs/learning.md)
    profile_widen: int = 2      # with a profile, ask the model for widen x K words and rerank them to K
    profile_memory_chars: int = 8000  # the model first reads up to this much of the person's earlier writing (0: off)


class KeyboardConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The on-screen keyboard the daemon announces with each fork (protocol 1.4 ``fork.open`` script, letters)."""

    script: Literal["auto", "latin", "cyrillic"] = "auto"  # auto: the script of the text's letters
    letter_words: int = 0  # words the next-letter probabilities are counted from; 0 = the fork's own search
                           # (free: cached); more widens the search (about 2x a fork's time at 32: docs/engine.md)


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The durable session store (SQLite, WAL)."""

    path: str = ""  # default: $XDG_DATA_HOME/razvilka/sessions.sqlite3
