"""Copying the text to the desktop clipboard: wl-copy on Wayland, xclip or xsel on X11.

The display decides (``WAYLAND_DISPLAY`` first, then ``DISPLAY``) unless ``[textout] clipboard``
names a tool. These tools stay running in the background to serve the clipboard until another
program takes it, as X11 and Wayland clipboards need; only their first process is waited for.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping

from razvilka.outconfig import TextOutConfig
from razvilka.outtools import ErrorCode, failed, find_tool, missing_tool

__all__ = ["COMMANDS", "choose_clipboard", "copy_text"]

#: tool -> the command that reads the text on stdin and puts it on the clipboard
COMMANDS: dict[str, list[str]] = {
    "wl-copy": ["wl-copy", "--type", "text/plain;charset=utf-8"],
    "xclip": ["xclip", "-selection", "clipboard", "-in"],
    "xsel": ["xsel", "--clipboard", "--input"],
}


def choose_clipboard(text: str, config: TextOutConfig, env: Mapping[str, str]) -> str:
    """The tool to copy with; an :class:`OutputError` (the text kept) when there is none."""
    if config.clipboard != "auto":
        candidates: tuple[str, ...] = (config.clipboard,)
        what = f"textout.clipboard = {config.clipboard!r}"
    elif env.get("WAYLAND_DISPLAY"):
        candidates, what = ("wl-copy",), "copying to the Wayland clipboard"
    elif env.get("DISPLAY"):
        candidates, what = ("xclip", "xsel"), "copying to the X11 clipboard"
    else:
        raise failed("copying to the clipboard", ErrorCode.DEVICE_MISSING,
                     "there is no desktop to copy to (neither WAYLAND_DISPLAY nor DISPLAY is set)",
                     text, config.kept_dir, env)
    for tool in candidates:
        if find_tool(tool, env):
            return tool
    raise missing_tool(what, candidates, text, config.kept_dir, env)


def copy_text(text: str, config: TextOutConfig, env: Mapping[str, str] | None = None) -> str:
    """Put ``text`` on the clipboard; returns the tool used. On failure the :class:`OutputError`
    carries the text and names the private file it was kept in."""
    env = dict(os.environ if env is None else env)
    tool = choose_clipboard(text, config, env)
    with tempfile.TemporaryFile() as err:
        try:
            # stderr to a file, not a pipe: the tool's background child keeps its copy open
            done = subprocess.run(COMMANDS[tool], input=text.encode("utf-8"), env=env, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise failed(f"copying with {tool}", ErrorCode.DEVICE_LOST, str(exc), text, config.kept_dir, env) from None
        if done.returncode != 0:
            err.seek(0)
            detail = err.read().decode(errors="replace").strip() or f"exit status {done.returncode}"
            raise failed(f"copying with {tool}", ErrorCode.DEVICE_LOST, detail, text, config.kept_dir, env)
    return tool
