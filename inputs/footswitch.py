"""``razvilka input footswitch``: steer forks with a USB foot pedal.

Two kinds of pedal:

* HID-keyboard pedals (PCsensor and the like) send ordinary keys (a, b, c or whatever
  they were programmed to). Read them with evdev (default) so they can be grabbed and do
  not also type into other windows, or with ``--backend x11`` through the keyboard's X
  listener when /dev/input is out of reach (then their keys do reach other windows).
* Pedals that send no key events to X at all (VEC/Infinity, 05f3:00ff: buttons BTN_0..2)
  can only be read through evdev.

Each pedal maps to an action (``pedals``); a pedal with a ``long_press`` action decides on
release by how long it was held (one pedal: short = confirm, long = back). The key logic
is :mod:`razvilka.inputs.keymap`, shared with the keyboard. ``--scan auto|step``: the confirm pedal
(and a focus_next pedal) scans the layout's targets (:mod:`razvilka.inputs.scanswitch`).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from razvilka.inputs.keyadapter import KeySource, add_lsl_argument, fail, key_names, main, serve_source
from razvilka.inputs.keymap import KeyInterpreter, KeyMap
from razvilka.inputs.scanswitch import add_scan_argument, with_scanning
from razvilka.protocol.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from razvilka.config import Config
    from razvilka.inputs.config import FootswitchConfig

COMMAND = "razvilka input footswitch"
log = logging.getLogger("razvilka.inputs.footswitch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("evdev", "x11"),
                        help="evdev: read and grab the pedal (default); x11: HID-keyboard pedal via the X listener")
    parser.add_argument("--device", help="vendor:product (05f3:00ff), /dev/input/eventN or part of the device name")
    parser.add_argument("--list", action="store_true",
                        help="list input devices with vendor:product and keys, then exit")
    parser.add_argument("--list-keys", action="store_true", help="print every key name the evdev backend knows")
    parser.add_argument("--record", metavar="FILE", help="save the device's raw events to FILE (JSON), then exit")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long --record listens (default 15)")
    parser.add_argument("--replay", metavar="FILE",
                        help="play a recorded event file through the adapter instead of a device")
    parser.add_argument("--realtime", action="store_true", help="--replay at the recorded pace")
    add_scan_argument(parser)
    add_lsl_argument(parser)


def build_keymap(cfg: FootswitchConfig, backend: str) -> KeyMap:
    return KeyMap.build(cfg.pedals, key_names(backend), where="inputs.footswitch.pedals", long=cfg.long_press,
                        long_press_ms=cfg.long_press_ms)


def make_interpreter(cfg: FootswitchConfig, keymap: KeyMap) -> KeyInterpreter:
    return KeyInterpreter(keymap, source=cfg.name, debounce_ms=cfg.debounce_ms, typing=False, kind="switch")


def make_source(cfg: FootswitchConfig, keymap: KeyMap, backend: str, device: str,
                replay: str | None = None, realtime: bool = False) -> KeySource:
    if backend == "x11":
        from razvilka.inputs.x11keys import X11KeySource

        log.warning("x11 backend: the pedal's keys also reach the focused window (no grab); "
                    "use the evdev backend to keep them out")
        return X11KeySource(COMMAND)
    from razvilka.inputs.evdevkeys import DeviceSpec, EvdevSource, RecordedFinder, Recording

    finder = RecordedFinder(Recording.load(replay), realtime=realtime) if replay else None
    spec = DeviceSpec.parse(device)
    if spec == DeviceSpec() and not replay:
        raise ProtocolError(ErrorCode.BAD_CONFIG, "inputs.footswitch.device is empty: name the pedal by vendor:product "
                            f"or name (list them with `{COMMAND} --list`), so that no keyboard gets grabbed")
    return EvdevSource(spec, keymap.keys(), finder=finder, grab=cfg.grab, reconnect_s=cfg.reconnect_ms / 1000)


async def _main(config: Config, args: argparse.Namespace, stop: asyncio.Event) -> int:
    cfg = config.inputs.footswitch
    backend = args.backend or cfg.backend
    keymap = build_keymap(cfg, backend)
    device = args.device if args.device is not None else cfg.device
    if args.replay and args.device is None:
        device = ""  # the recording is the device
    interp, scanner = with_scanning(config.scan, args.scan, make_interpreter(cfg, keymap), "inputs.footswitch.pedals")
    source = make_source(cfg, keymap, backend, device, args.replay, args.realtime)
    return await serve_source(config, cfg.name, source, interp, stop, drain_s=0.3 if args.replay else 0.0,
                              companion=scanner, lsl=bool(args.lsl))


def _tools(config: Config, args: argparse.Namespace) -> int | None:
    """--list, --list-keys, --record: device helpers that need no bus."""
    if args.list_keys:
        from razvilka.inputs.evdevkeys import evdev_names

        print("\n".join(sorted(evdev_names().named)))
        return 0
    if args.list:
        from razvilka.inputs.evdevkeys import list_devices_text

        print(list_devices_text())
        return 0
    if args.record:
        from razvilka.inputs.evdevkeys import DeviceSpec, record

        spec = DeviceSpec.parse(args.device if args.device is not None else config.inputs.footswitch.device)
        print(f"recording {spec} for {args.seconds:g} s: press the pedals now", file=sys.stderr)
        n = asyncio.run(record(spec, Path(args.record), seconds=args.seconds))
        print(f"wrote {n} events to {args.record}", file=sys.stderr)
        return 0
    return None


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        done = _tools(config, args)
    except ProtocolError as exc:
        return fail(COMMAND, exc)
    return done if done is not None else main(COMMAND, lambda stop: _main(config, args, stop))
