"""The daemon's GGUF model in PyTorch (transformers), dequantised once and cached.

transformers reads the GGUF itself (``gguf_file=``), but dequantising the embedded Gemma 3 270M
takes one to two minutes on two cores, so the float32 result (config, safetensors, tokenizer) is
saved under ``$XDG_CACHE_HOME/razvilka/hf/<model>-<size>-<mtime>/`` and later loads take seconds.
A file lock makes concurrent first loads (tests, CLI) wait for one dequantisation.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from razvilka.daemon.learn.errors import ErrorCode, LearnError

log = logging.getLogger("razvilka.learn.hf")

INSTALL_HINT = ('pip install "razvilka[learn]"   (in this repository: .venv/bin/pip install torch==2.13.0 '
                'transformers peft gguf)')


def require_learn_extra() -> None:
    """A clear message naming what to install when torch/transformers/peft/gguf are missing."""
    missing = []
    for mod in ("torch", "transformers", "peft", "gguf"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise LearnError(ErrorCode.BAD_CONFIG, f"LoRA training needs {', '.join(missing)}, which "
                            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}")


def resolve_model_path(path: str | Path = "") -> Path:
    """The GGUF the daemon runs: ``path`` (checked) or the embedded Gemma 3 270M."""
    from razvilka.daemon.engine import check_gguf, embedded_model_path

    return check_gguf(path) if path else embedded_model_path()


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "razvilka" / "hf"


def cache_dir_for(gguf: Path) -> Path:
    st = gguf.stat()
    return cache_root() / f"{gguf.stem}-{st.st_size}-{st.st_mtime_ns}"


def load_model(gguf_path: str | Path = "", *, say: Callable[[str], None] = print) -> tuple[Any, Any, Path]:
    """(model in float32, tokenizer, cache directory) for the daemon's GGUF; dequantises on first use."""
    require_learn_extra()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = resolve_model_path(gguf_path)
    target = cache_dir_for(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "ok").exists():
            say(f"dequantising {gguf.name} for PyTorch (once per machine, about 1-2 min on 2 cores)...")
            started = time.perf_counter()
            tmp = target.with_name(target.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # Any: transformers declares no `hf_quantizer` attribute, so mypy reads the one set below as a submodule
            model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              dtype=torch.float32)
            # the weights are plain float32 now; transformers only refuses to save a "gguf-quantized" model
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                delattr(model.config, "quantization_config")
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            (tmp / "source.txt").write_text(f"{gguf}\n")
            (tmp / "ok").write_text("ok\n")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            say(f"cached in {target} ({time.perf_counter() - started:.0f} s)")
    tok = AutoTokenizer.from_pretrained(str(target))
    model = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32)
    model.eval()
    return model, tok, target
