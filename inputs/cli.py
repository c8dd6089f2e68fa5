"""``razvilka input NAME``: one process per input adapter.

Each adapter module exposes ``add_arguments(parser)`` and ``run(config, args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib

ADAPTERS = {
    "keyboard": ("razvilka.inputs.keyboard", "global keyboard (pynput): numbers, arrows, Enter, letters"),
    "footswitch": ("razvilka.inputs.footswitch", "USB foot pedal (HID keyboard or evdev)"),
    "gaze": ("razvilka.inputs.gaze.adapter", "eye tracker over Lab Streaming Layer (Tobii connector)"),
    "eeg": ("razvilka.inputs.eeg.adapter", "P300 selection from EEG through BrainFlow"),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("input", help="run an input adapter")
    names = parser.add_subparsers(dest="adapter", metavar="NAME")
    names.required = True
    for name, (module, help_text) in ADAPTERS.items():
        p = names.add_parser(name, help=help_text)
        p.set_defaults(handler=_runner(module), adapter_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _runner(module: str):  # type: ignore[no-untyped-def]
    def handler(config, args):  # type: ignore[no-untyped-def]
        return importlib.import_module(module).run(config, args)
    return handler
