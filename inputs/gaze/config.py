"""The gaze adapter's section of the configuration."""
from __future__ import annotations

import msgspec


class GazeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "gaze"
    dwell_ms: int = 600
