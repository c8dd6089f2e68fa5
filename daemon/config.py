"""The daemon's sections of the configuration: model, fork gating, daemon behaviour, quick phrases, store."""
from __future__ import annotations

from typing import Annotated, Literal

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
    # Where the model runs (docs/deployment.md): "embedded" = llama.cpp in the daemon; "llama-server" = over HTTP
    # to llama.cpp's server (razvilka serve), with ``path`` naming the same GGUF here for its vocabulary;
    # "openai" (or "vllm") = an OpenAI-compatible /v1/completions server such as vLLM (daemon/backends/openai_compat.py)
    backend: Literal["embedded", "llama-server", "openai", "vllm"] = "embedded"
    name: str = ""              # "openai": the served model, or a LoRA adapter's name (vLLM); "" = the server's first
    url: str = "http://127.0.0.1:8080"  # the server; plain http only on loopback, else https (a TLS proxy)
    tls_ca: str = ""            # CA file that signed the TLS proxy's certificate ("" = the system's)
    api_key_file: str = ""      # a 0600 file with the server's key (razvilka serve --api-key-file); "" = none
    top_n: int = 256            # tokens per row a server returns (n_probs): the rest's mass is carried, unseen
    timeout_s: float = 30.0     # a server that does not answer within this is reported down
    slot: int = -1              # llama-server: this daemon's own slot, every request pinned there (id_slot); -1 = the
                                # server spreads paths over its free slots (fine for one person; several thrash)
    slots: int = 1              # llama-server, with slot: use slots slot .. slot+slots-1 (a path stays in one of them)


def _default_cost_weights() -> dict[str, float]:
    return {"key": 1.0, "switch": 1.5, "gaze": 2.0, "eeg": 4.0}


class GatingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """When to stop and ask the human (daemon/gating.py; the rule and why: docs/gating.md).

    Write on only while BOTH hold: entropy <= max_entropy_bits * w and margin >= min_margin / w, where w
    is the cost of one selection with the input in use (cost_weights, a key press = 1). A costlier input
    therefore forks less often: only a real toss-up is worth a P300 round.
    """

    mode: Literal["auto", "always"] = "auto"  # "always": a fork at every word
    k: Annotated[int, msgspec.Meta(ge=1)] = 8  # candidates per fork (0 would be a fork with nothing to choose)
    max_entropy_bits: float = 2.5   # token-level entropy (bits) above which a key user is asked (x w)
    min_margin: float = 0.5         # word-level p(top1) - p(top2) below which a key user is asked (/ w)
    cost_weights: dict[str, float] = msgspec.field(default_factory=_default_cost_weights)
    # ^ cost of one selection per input, relative to a key press (key < switch < gaze < eeg)
    lookahead_tokens: int = 6       # short look-ahead per candidate
    long_lookahead_tokens: int = 16 # the focused candidate's look-ahead
    max_auto_words: int = 12        # force a fork after this many auto-written words
    # A sensible start (docs/daemon.md, "A sensible start"): a new document with an empty prompt begins from a
    # plain-prose framing the model reads but the text does not hold, and candidates that are markup or code (<h1>,
    # `import`, {, backticks, #include) are left out; keep_markup keeps them (a person who writes HTML or code)
    prose: bool = True
    keep_markup: bool = False


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
    letter_words: int = 0  # no longer used: the letters come from the rows of the fork's own search, every token
                           # that agrees with the prefix (docs/engine.md, "Letters"); kept so older files still load


class RecordConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The research record (docs/research.md): one LSL marker stream of the whole session, for LabRecorder.

    Off by default: LSL announces its streams to the whole local network (multicast discovery) and any
    program there may read them, and this one carries the person's words. A lab turns it on."""

    lsl: bool = False                 # publish every fork, focus, confirm, decision, stimulus and command over LSL
    lsl_name: str = "razvilka-session"  # the stream's name (its source_id adds the host and the user)


class PhrasesConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Quick phrases (daemon/phrases.py): a TOML list the person or a caregiver edits, and the sentences the
    person writes most often, shown as ``phrase:<id>`` targets (protocol 1.5 ``phrases.state``)."""

    file: str = ""  # "" = phrases.toml beside the configuration file ($XDG_CONFIG_HOME/razvilka/); made if absent
    action: Literal["speak", "insert", "both"] = "speak"  # what selecting a phrase does
    frequent: Annotated[int, msgspec.Meta(ge=0, le=50)] = 6  # how many of the most frequent sentences (0: none)
    frequent_min: Annotated[int, msgspec.Meta(ge=1)] = 2      # written at least this often to count


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The durable session store (SQLite, WAL)."""

    path: str = ""  # default: $XDG_DATA_HOME/razvilka/sessions.sqlite3
