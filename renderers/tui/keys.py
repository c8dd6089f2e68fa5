"""Keys inside the terminal view -> the shared key rules (no Textual here).

The TUI is an input source like any adapter: it publishes intent (focus, confirm, select,
commands) and never decides; the daemon's decider does. What each key does is not written
here: Textual's key names are turned into the canonical names of :mod:`razvilka.inputs.keymap`
and go through the same :class:`~razvilka.inputs.keymap.KeyInterpreter` and default map as the
global keyboard adapter, so a person gets the same behaviour from either (docs/renderers.md
lists the keys).
"""
from __future__ import annotations

from razvilka.inputs.keymap import DEFAULT_KEYBOARD_KEYS, X11_NAMES, KeyInterpreter, KeyMap, is_char_name

#: Textual's names for keys whose canonical (pynput) name differs; the rest are the same.
TEXTUAL_NAMES: dict[str, str] = {"escape": "esc", "pageup": "page_up", "pagedown": "page_down"}


def canonical_key(key: str, character: str | None) -> str:
    """The canonical name of a Textual key event: its character when it types one, else its name."""
    if character and is_char_name(character):
        return character.lower()
    return TEXTUAL_NAMES.get(key, key)


def tui_interpreter(source: str) -> KeyInterpreter:
    """The key rules with the keyboard adapter's default map, typing on (keys come one press each)."""
    keymap = KeyMap.build({}, X11_NAMES, where="renderers.tui", defaults=DEFAULT_KEYBOARD_KEYS)
    return KeyInterpreter(keymap, source=source, typing=True)
