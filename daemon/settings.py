"""Settings the person changes themselves (protocol 1.5 ``config.update`` / ``config.state``).

One list of the settings a person or a caregiver may change from a renderer (:data:`SETTINGS`); each
change is checked by the one typed configuration (razvilka/config.py: the same rules as a file's),
saved to the person's configuration file (0600; other keys, and comments, kept) and only then
applied to the running configuration. A setting not in the list, or a value the configuration refuses,
is ``BAD_CONFIG`` naming the key and why, and changes nothing.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from razvilka.config import Config, ConfigError, from_dict, to_toml_dict
from razvilka.daemon.errors import DaemonRefusal, ErrorCode
from razvilka.private import private_dir, write_private

__all__ = ["SETTINGS", "apply", "check", "save", "values"]

#: ``section.key`` of each setting the person can change, and who applies it: the daemon (K, markup, speech,
#: phrases) or the adapters and renderers that read ``config.state`` (gaze dwell and rest, scanning, theme).
SETTINGS = (
    "gating.k", "gating.keep_markup",
    "inputs.gaze.dwell_ms", "inputs.gaze.rest_ms",
    "scan.interval_ms",
    "renderers.web.theme",
    "speech.rate", "speech.pitch", "speech.volume", "speech.variant", "speech.voices.en", "speech.voices.ru",
    "speech.each_sentence",
    "phrases.action",
)

Value = str | int | float | bool


def _get(tree: Any, path: list[str]) -> Any:
    node = tree
    for part in path:
        node = node.get(part, "") if isinstance(node, dict) else getattr(node, part)
    return node


def values(config: Config) -> dict[str, Value]:
    """Each setting's value now (a voice not set is "": the engine's own voice for the language)."""
    tree = to_toml_dict(config)
    return {name: _get(tree, name.split(".")) for name in SETTINGS}


def check(config: Config, section: str, key: str, value: Value) -> tuple[str, Value]:
    """The setting's name and its value as the configuration reads it; ``BAD_CONFIG`` naming the key if it
    is not a setting the person can change or the configuration refuses the value."""
    name = f"{section}.{key}"
    if name not in SETTINGS:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{name} is not a setting that can be changed here "
                            f"(settings: {', '.join(SETTINGS)})")
    tree = to_toml_dict(config)
    path = name.split(".")
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    try:
        checked = from_dict(tree)
    except ConfigError as exc:
        why = str(exc).removeprefix("invalid configuration: ")
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{name} = {value!r} is refused: {why}") from None
    return name, _get(to_toml_dict(checked), path)


def apply(config: Config, name: str, value: Value) -> None:
    """Set a checked value on the running configuration, in place: every part holding a section sees it."""
    path = name.split(".")
    parent = _get(config, path[:-1]) if len(path) > 1 else config
    if isinstance(parent, dict):
        parent[path[-1]] = value
    else:
        setattr(parent, path[-1], value)


# ------------------------------------------------------------------------------------------- saving
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    """A TOML value (JSON's string escapes are TOML's)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _dump(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """A whole TOML document for ``tree`` (when the file cannot be edited in place)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in tree.items() if not isinstance(v, dict)]
    for k, v in tree.items():
        if isinstance(v, dict):
            name = f"{prefix}{_key(k)}"
            scalars = {a: b for a, b in v.items() if not isinstance(b, dict)}
            if scalars or not v:
                lines += ["", f"[{name}]"]
            lines += _dump(v, name + ".")
    return lines


def _edit(text: str, table: list[str], key: str, value: Any) -> str:
    """``text`` with ``key = value`` set in ``[table]``: the key's line replaced, or added at the end of its
    table, or the table added at the end. Comments and every other line stay as they are."""
    header = "[" + ".".join(_key(t) for t in table) + "]"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().replace(" ", "") == header.replace(" ", "")),
                 None)
    entry = f"{_key(key)} = {_value(value)}"
    if start is None:
        tail = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + tail + f"{header}\n{entry}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(_key(key))}\s*=")
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            lines[i] = entry
            return "\n".join(lines) + "\n"
    last = max((i for i in range(start, end) if lines[i].strip()), default=start)
    lines.insert(last + 1, entry)
    return "\n".join(lines) + "\n"


def save(path: Path, name: str, value: Value) -> None:
    """Write ``name = value`` to the TOML file ``path`` (made 0600, in a 0700 directory, if absent): in
    place when the file's shape allows it, checked by reading it back; else the whole file rewritten
    from its values (comments lost). A file that cannot be read or written is ``BAD_CONFIG``."""
    parts = name.split(".")
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        tree = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"cannot save {name}: the configuration file {path} "
                            f"cannot be read: {exc}") from None
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"cannot save {name}: in {path}, {part} is not a table")
        node = child
    node[parts[-1]] = value
    edited = _edit(text, parts[:-1], parts[-1], value)
    try:
        ok = tomllib.loads(edited) == tree
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:  # dotted keys, inline tables, a value over several lines: write the values out whole
        edited = "\n".join(_dump(tree)).lstrip("\n") + "\n"
    try:
        if not path.parent.exists():  # a folder of its own (~/.config/razvilka): private; an existing one is left
            private_dir(path.parent)
        write_private(path, edited)
    except OSError as exc:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"cannot save {name} to {path}: {exc}") from None
