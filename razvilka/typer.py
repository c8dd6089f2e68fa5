"""Typing the text into the window that has focus, as if on a keyboard: xdotool on X11, wtype on
Wayland. Any Unicode text, Cyrillic included: xdotool binds a spare key code to each character the
keyboard map lacks, for the moment it is typed, and sends real (XTEST) key events.

Not pynput's keyboard Controller: it sends synthetic events (which xterm ignores) and, measured
under Xvfb with pynput 1.8.2, typed "ёлка ✓" as "ё«ка €" (on the text that tests/test_textout.py
types with xdotool).
The display decides (``WAYLAND_DISPLAY`` first, then ``DISPLAY``) unless ``[textout] typer`` names a tool.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping

from razvilka.outconfig import TextOutConfig
from razvilka.outtools import ErrorCode, failed, find_tool, missing_tool

__all__ = ["choose_typer", "type_command", "type_text"]


def choose_typer(text: str, config: TextOutConfig, env: Mapping[str, str]) -> str:
    """The tool to type with; an :class:`OutputError` (the text kept) when there is none."""
    if config.typer != "auto":
        tool, what = config.typer, f"textout.typer = {config.typer!r}"
    elif env.get("WAYLAND_DISPLAY"):
        tool, what = "wtype", "typing into a Wayland window"
    elif env.get("DISPLAY"):
        tool, what = "xdotool", "typing into an X11 window"
    else:
        raise failed("typing the text", ErrorCode.DEVICE_MISSING,
                     "there is no desktop to type into (neither WAYLAND_DISPLAY nor DISPLAY is set)",
                     text, config.kept_dir, env)
    if find_tool(tool, env) is None:
        raise missing_tool(what, (tool,), text, config.kept_dir, env)
    return tool


def type_command(tool: str, config: TextOutConfig) -> list[str]:
    """The command that reads the text on stdin and types it."""
    if tool == "wtype":
        return ["wtype", "-d", str(config.type_delay_ms), "-"]
    return ["xdotool", "type", "--clearmodifiers", "--delay", str(config.type_delay_ms), "--file", "-"]


def type_text(text: str, config: TextOutConfig, env: Mapping[str, str] | None = None) -> str:
    """Type ``text`` into the focused window; returns the tool used. On failure the
    :class:`OutputError` carries the text and names the private file it was kept in."""
    env = dict(os.environ if env is None else env)
    tool = choose_typer(text, config, env)
    timeout = 30 + len(text) * (config.type_delay_ms / 1000 + 0.05)
    with tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(type_command(tool, config), input=text.encode("utf-8"), env=env,
                                  stdout=subprocess.DEVNULL, stderr=err, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise failed(f"typing with {tool}", ErrorCode.DEVICE_LOST, str(exc), text, config.kept_dir, env) from None
        if done.returncode != 0:
            err.seek(0)
            detail = err.read().decode(errors="replace").strip()[-500:] or f"exit status {done.returncode}"
            raise failed(f"typing with {tool}", ErrorCode.DEVICE_LOST, detail, text, config.kept_dir, env)
    return tool
