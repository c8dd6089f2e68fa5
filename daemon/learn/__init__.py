"""Learning from the person's choices (docs/learning.md).

* ``profile``  — the per-user profile the daemon applies at every fork (cache LM + accept/reject
  statistics), updated after every decision; no heavy dependencies.
* ``history``  — reads decisions back out of the session store (read-only, schema-checked).
* ``export``   — DPO pairs, SFT text and token-level labels as JSON lines.
* ``live``     — the profile wrapped around an engine, as the daemon uses it.
* ``hf`` / ``lora`` / ``adapter_gguf`` — the optional LoRA path (``razvilka[learn]``: torch,
  transformers, peft, gguf), imported only when ``razvilka learn lora`` runs.
"""
