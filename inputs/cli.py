"""``razvilka input NAME``: one process per input adapter (members: see razvilka/plugins.py)."""
from __future__ import annotations

import argparse

from razvilka.plugins import register_group

ADAPTERS = {
    "keyboard": ("razvilka.inputs.keyboard", "global keyboard (pynput): numbers, arrows, Enter, letters"),
    "footswitch": ("razvilka.inputs.footswitch", "USB foot pedal (HID keyboard or evdev)"),
    "gaze": ("razvilka.inputs.gaze.adapter", "eye tracker over Lab Streaming Layer (Tobii connector)"),
    "eeg": ("razvilka.inputs.eeg.adapter", "P300 selection from EEG through BrainFlow"),
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "input", "run an input adapter", ADAPTERS, dest="adapter")
