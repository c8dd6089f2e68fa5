"""The renderers' sections of the configuration."""
from __future__ import annotations

import msgspec


class TuiConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "tui"


class WebConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "web"
    host: str = "127.0.0.1"
    port: int = 8765


class RenderersConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tui: TuiConfig = msgspec.field(default_factory=TuiConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
