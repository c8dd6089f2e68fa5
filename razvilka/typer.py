"""Typing the text into the window that has focus, as if on a keyboard: xdotool on X11, wtype on
Wayland. Any Unicode text, Cyrillic included, sent as real (XTEST) key events.

On X11 the characters the keyboard map lacks are first bound to spare key codes, one each, and left
bound (:func:`bind_missing`). Left to itself xdotool rebinds one scratch key code for every such
character as it types it; a busy receiver then reads an event with the next character's map and
drops or garbles letters: measured under Xvfb with two CPU burners, a Russian sentence typed into Tk
lost letters in 8 of 8 tries that way and in 0 of 8 with the codes bound first (see tests/test_textout.py).

Not pynput's keyboard Controller: it sends synthetic events (which xterm ignores) and, measured
under Xvfb with pynput 1.8.2, typed "ёлка ✓" as "ё«ка €" (on the text that tests/test_textout.py
types with xdotool).
The display decides (``WAYLAND_DISPLAY`` first, then ``DISPLAY``) unless ``[textout] typer`` names a tool.
"""
from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping

from razvilka.outconfig import TextOutConfig
from razvilka.outtools import ErrorCode, failed, find_tool, missing_tool

__all__ = ["bind_missing", "choose_typer", "type_command", "type_text"]

log = logging.getLogger("razvilka.textout")

#: Spare key codes left unbound, for xdotool's own scratch binding when the text needs more.
KEEP_FREE = 1

#: Key codes this process bound, per display: rebound for the next text (the others are the desktop's).
_ours: dict[str, set[int]] = {}


def _keysym(c: str) -> int:
    # a Latin-1 character has its legacy keysym (its code point: Tk misreads the Unicode one), the others
    # their Unicode keysym (0x1000000 + code point), which X maps to the legacy one where it has one
    return ord(c) if ord(c) <= 0xFF else 0x1000000 + ord(c)


def _pairs(chars: list[str]) -> list[tuple[str, str]]:
    """Two characters per key code, plain and shifted: a letter with its capital where both are wanted."""
    left, out = list(chars), []
    while left:
        c = left.pop(0)
        mate = c.upper() if c != c.upper() else c.lower()
        if mate != c and mate in left:
            left.remove(mate)
            out.append((c.lower(), c.upper()))
        else:
            out.append((c, left.pop(0) if left else c))
    return out


def bind_missing(text: str, display: str) -> int:
    """Bind the characters of ``text`` the X keyboard map lacks to spare key codes (two per code, plain
    and shifted), so xdotool finds them there and never rebinds a key while typing. Best effort: returns
    how many characters were bound; with no python-xlib or no display it binds nothing and xdotool falls
    back to its own way (as it does for characters beyond the spare codes)."""
    try:
        from Xlib import display as xdisplay
    except ImportError:
        return 0
    try:
        d = xdisplay.Display(display)
    except Exception as exc:  # python-xlib raises its own types for a display it cannot open
        log.debug("binding keys: cannot open %s: %s", display, exc)
        return 0
    try:
        first = d.display.info.min_keycode
        rows = d.get_keyboard_mapping(first, d.display.info.max_keycode - first + 1)
        ours = _ours.setdefault(display, set())
        wanted = {_keysym(c) for c in text if not c.isascii() and c.isprintable()}
        kept = {first + i for i, row in enumerate(rows) if first + i in ours and wanted & set(row)}
        have = {ks for i, row in enumerate(rows) if first + i not in ours or first + i in kept for ks in row if ks}
        missing = sorted({c for c in text if not c.isascii() and c.isprintable() and _keysym(c) not in have})
        empty = [first + i for i, row in enumerate(rows) if not any(row)]
        pool = sorted((ours - kept) | set(empty[KEEP_FREE:]))
        bound = 0
        for code, (plain, shifted) in zip(pool, _pairs(missing)):
            d.change_keyboard_mapping(code, [(_keysym(plain), _keysym(shifted))])
            ours.add(code)
            bound += 1 if plain == shifted else 2
        d.sync()
        if bound < len(missing):
            log.info("typing: %d characters have no spare key code; xdotool binds them as it types",
                     len(missing) - bound)
        return bound
    finally:
        d.close()


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
    if tool == "xdotool" and env.get("DISPLAY"):
        bind_missing(text, env["DISPLAY"])
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
