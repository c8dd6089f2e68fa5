"""The input adapters' sections of the configuration."""
from __future__ import annotations

from typing import Literal

import msgspec

from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.gaze.config import GazeConfig


class KeyboardConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``razvilka input keyboard``: a global key listener (docs/inputs.md, "Keyboard")."""

    name: str = "keyboard"          # sender and source name on the bus (input.*.keyboard.)
    backend: Literal["x11", "evdev"] = "x11"  # x11: pynput on $DISPLAY; evdev: read /dev/input directly
    defaults: bool = True           # start from the built-in map (1-9 select, arrows, Enter/Space, ...)
    keys: dict[str, str] = msgspec.field(default_factory=dict)  # key name -> action, over the defaults
    typing: bool = True             # unmapped letters type "my own word" (candidates narrow to the prefix)
    debounce_ms: float = 60.0       # a second press of the same key within this is a duplicate
    device: str = ""                # evdev: "vendor:product", "/dev/input/eventN" or a name part; "" = first keyboard
    grab: bool = False              # evdev: take the keyboard away from other programs while running


class FootswitchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``razvilka input footswitch``: a USB foot pedal (docs/inputs.md, "Foot switch")."""

    name: str = "footswitch"        # sender and source name on the bus (input.*.footswitch.)
    backend: Literal["evdev", "x11"] = "evdev"  # evdev: read and grab the pedal; x11: HID-keyboard pedal via pynput
    device: str = "05f3:00ff"       # evdev: "vendor:product", "/dev/input/eventN" or a name part (VEC/Infinity default)
    grab: bool = True               # evdev: keep the pedal's keys out of other windows
    pedals: dict[str, str] = msgspec.field(  # key name -> action on press (on release if it has a long action)
        default_factory=lambda: {"btn_0": "back", "btn_1": "confirm", "btn_2": "more"})
    long_press: dict[str, str] = msgspec.field(default_factory=dict)  # key name -> action when held long
    long_press_ms: float = 600.0    # a press held at least this long is a long press
    debounce_ms: float = 60.0       # pedal contacts bounce: a second press within this is dropped
    reconnect_ms: float = 500.0     # how often to look for an unplugged pedal


class InputsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keyboard: KeyboardConfig = msgspec.field(default_factory=KeyboardConfig)
    footswitch: FootswitchConfig = msgspec.field(default_factory=FootswitchConfig)
    gaze: GazeConfig = msgspec.field(default_factory=GazeConfig)
    eeg: EegConfig = msgspec.field(default_factory=EegConfig)
