"""The input adapters' sections of the configuration."""
from __future__ import annotations

import msgspec

from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.gaze.config import GazeConfig


class KeyboardConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "keyboard"


class FootswitchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "footswitch"


class InputsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keyboard: KeyboardConfig = msgspec.field(default_factory=KeyboardConfig)
    footswitch: FootswitchConfig = msgspec.field(default_factory=FootswitchConfig)
    gaze: GazeConfig = msgspec.field(default_factory=GazeConfig)
    eeg: EegConfig = msgspec.field(default_factory=EegConfig)
