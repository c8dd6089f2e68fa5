"""``razvilka input keyboard``: steer forks from the keyboard.

Defaults: 1-9 and 0 select a candidate, arrows move focus, Enter/Space confirm, End takes
the focused candidate with its look-ahead (Shift+arrows mark how many words), Backspace goes
back (or deletes a typed letter), Tab/+ asks for more candidates, Esc/F12 toggle pause,
letters type "my own word". The key logic lives in :mod:`razvilka.inputs.keymap`; the
events come from X (pynput, default) or from ``/dev/input`` (``--backend evdev``).
``--scan auto|step`` makes a confirm key (and a focus_next key) a switch that scans the layout's
targets (:mod:`razvilka.inputs.scanswitch`).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

from razvilka.inputs.keyadapter import KeySource, add_lsl_argument, key_names, main, serve_source
from razvilka.inputs.keymap import DEFAULT_KEYBOARD_KEYS, KeyInterpreter, KeyMap
from razvilka.inputs.scanswitch import add_scan_argument, with_scanning

if TYPE_CHECKING:
    from razvilka.config import Config
    from razvilka.inputs.config import KeyboardConfig

COMMAND = "razvilka input keyboard"
log = logging.getLogger("razvilka.inputs.keyboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("x11", "evdev"),
                        help="x11: global listener on $DISPLAY (default); evdev: read /dev/input directly")
    parser.add_argument("--device", help="evdev: vendor:product, /dev/input/eventN or part of the name")
    parser.add_argument("--no-typing", action="store_true", help="letters do not start 'my own word'")
    add_scan_argument(parser)
    add_lsl_argument(parser)


def build_keymap(cfg: KeyboardConfig, backend: str) -> KeyMap:
    """The validated key map for ``backend`` (``ProtocolError(BAD_CONFIG)`` on unknown names)."""
    return KeyMap.build(cfg.keys, key_names(backend), where="inputs.keyboard.keys",
                        defaults=DEFAULT_KEYBOARD_KEYS if cfg.defaults else None)


def make_interpreter(cfg: KeyboardConfig, keymap: KeyMap, typing: bool | None = None) -> KeyInterpreter:
    return KeyInterpreter(keymap, source=cfg.name, debounce_ms=cfg.debounce_ms,
                          typing=cfg.typing if typing is None else typing)


def make_source(cfg: KeyboardConfig, keymap: KeyMap, backend: str, device: str, typing: bool) -> KeySource:
    if backend == "evdev":
        from razvilka.inputs.evdevkeys import DeviceSpec, EvdevSource

        spec = DeviceSpec.parse(device)
        # With no device named, take the first real keyboard (letters and Enter), never a pedal.
        named = spec != DeviceSpec()
        return EvdevSource(spec, keymap.keys(), grab=cfg.grab, typing=typing,
                           require_names=() if named else ("a", "enter"))
    from razvilka.inputs.x11keys import X11KeySource

    return X11KeySource(COMMAND)


async def _main(config: Config, args: argparse.Namespace, stop: asyncio.Event) -> int:
    cfg = config.inputs.keyboard
    backend = args.backend or cfg.backend
    typing = cfg.typing and not args.no_typing
    keymap = build_keymap(cfg, backend)
    interp, scanner = with_scanning(config.scan, args.scan, make_interpreter(cfg, keymap, typing),
                                    "inputs.keyboard.keys")
    source = make_source(cfg, keymap, backend, args.device if args.device is not None else cfg.device, typing)
    return await serve_source(config, cfg.name, source, interp, stop, companion=scanner, lsl=bool(args.lsl))


def run(config: Config, args: argparse.Namespace) -> int:
    return main(COMMAND, lambda stop: _main(config, args, stop))
