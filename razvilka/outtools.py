"""The local programs that speech and text-out run, what to install when one is missing, and
where text that could not be sent is kept.

One place for the rule "a missing tool never loses the text": every failure of speech,
clipboard or typing is an :class:`OutputError` that names the Debian package to install and
carries the text, which :func:`keep_text` has also written to a private file.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from razvilka.private import open_private, private_dir
from razvilka.protocol.errors import ErrorCode, RazvilkaError

__all__ = ["ErrorCode", "OutputError", "PACKAGES", "failed", "find_tool", "keep_text", "kept_dir", "missing_tool"]

#: program -> the Debian package that provides it (named in every "install ..." message)
PACKAGES: dict[str, str] = {
    "espeak-ng": "espeak-ng",
    "spd-say": "speech-dispatcher",
    "xclip": "xclip",
    "xsel": "xsel",
    "wl-copy": "wl-clipboard",
    "xdotool": "xdotool",
    "wtype": "wtype",
}


class OutputError(RazvilkaError):
    """Speech or text-out failed: a missing program (``DEVICE_MISSING``), a program that ran and
    failed (``DEVICE_LOST``) or a setting that cannot work (``BAD_CONFIG``). ``text`` is the text
    that was to be spoken or sent; ``kept`` the private file it was saved to, if any."""

    def __init__(self, code: ErrorCode, message: str, *, text: str = "", kept: Path | None = None) -> None:
        super().__init__(code, message)
        self.text = text
        self.kept = kept


def find_tool(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The program's path on ``env``'s PATH (the environment the program will run in), or None."""
    env = os.environ if env is None else env
    return shutil.which(name, path=env.get("PATH", os.defpath))


def kept_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/razvilka/kept``: texts that could not be sent wait here (0700)."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "razvilka" / "kept"


def keep_text(text: str, directory: str | Path = "", env: Mapping[str, str] | None = None) -> Path:
    """Save ``text`` to a new private file (0600 in a 0700 directory) and return its path."""
    folder = private_dir(Path(directory) if directory else kept_dir(env))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = folder / (f"{stamp}.txt" if n == 0 else f"{stamp}-{n}.txt")
        try:
            with open_private(path, "x", encoding="utf-8") as f:
                f.write(text)
            return path
        except FileExistsError:
            continue
    raise OutputError(ErrorCode.DEVICE_LOST, f"could not find a free file name in {folder} to keep the text", text=text)


def missing_tool(what: str, tools: tuple[str, ...], text: str, keep_in: str | Path = "",
                 env: Mapping[str, str] | None = None) -> OutputError:
    """The error for "none of ``tools`` is installed": names the Debian package of the first one,
    keeps the text (when there is one) and says where."""
    package = PACKAGES.get(tools[0], tools[0])
    names = " or ".join(tools)
    message = (f"{what} needs {names}, which is not installed: install the Debian package {package} "
               f"(apt-get install {package})")
    kept = keep_text(text, keep_in, env) if text else None
    if kept is not None:
        message += f"; the text is kept in {kept}"
    return OutputError(ErrorCode.DEVICE_MISSING, message, text=text, kept=kept)


def failed(what: str, code: ErrorCode, detail: str, text: str, keep_in: str | Path = "",
           env: Mapping[str, str] | None = None) -> OutputError:
    """The error for a program that ran and failed (or cannot run here); keeps the text too."""
    kept = keep_text(text, keep_in, env) if text else None
    message = f"{what}: {detail}" + (f"; the text is kept in {kept}" if kept is not None else "")
    return OutputError(code, message, text=text, kept=kept)
