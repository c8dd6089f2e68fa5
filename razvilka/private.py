"""The person's files are private: what they write may be medical.

One place for the rule: every file razvilka writes that holds the person's text, choices or
logs is created 0600, and every directory that holds them 0700 (as ``bus.json`` already was).
Permissions are set at creation (no window in which another user could open the file) and
tightened again on files that already exist from older versions.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) as 0700; tighten it if it exists. Returns it."""
    p = Path(path)
    p.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(p, DIR_MODE)
    return p


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists and is 0600 (created empty if missing). Returns it."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    os.chmod(p, FILE_MODE)
    return p


def open_private(path: str | os.PathLike[str], mode: str = "w", **kw: Any) -> IO[Any]:
    """``open()`` for writing, with the file created 0600 (``mode``: "w", "wb", "a", "ab", "x", "xb")."""
    if not any(c in mode for c in "wax"):
        raise ValueError(f"open_private is for writing, not mode {mode!r}")
    flags = os.O_WRONLY | os.O_CREAT
    if "w" in mode:
        flags |= os.O_TRUNC
    if "a" in mode:
        flags |= os.O_APPEND
    if "x" in mode:
        flags |= os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    os.chmod(path, FILE_MODE)
    return os.fdopen(fd, mode, **kw)


def write_private(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, then rename), the result 0600."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    with open_private(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
