"""The EEG adapter's section of the configuration."""
from __future__ import annotations

import msgspec


class EegConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "eeg"
    board_id: int = -1
