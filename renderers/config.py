"""The renderers' sections of the configuration."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class TuiConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``razvilka render tui``: the terminal view, which is also a keyboard input source."""

    name: str = "tui"                 # bus sender name; also the ``source`` of the keys it publishes
    keys: bool = True                 # publish key presses as input events (False: view only)
    show_probabilities: bool = True   # write each candidate's probability beside it in the cloud
    focused_lines: Annotated[int, msgspec.Meta(ge=1)] = 3   # long look-ahead phrases shown for the focused candidate
    refresh_ms: Annotated[int, msgspec.Meta(ge=50)] = 500   # how often the liveness of input sources is re-checked
    snapshot_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0  # wait this long for the bus's snapshot at start


class WebConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``razvilka render web``: the HTTP/WebSocket bridge and the page it serves.

    Page settings (theme, P300 timing, cursor) can be overridden per page with query
    parameters: ``?p300=1&flash=100&isi=75&rounds=5&theme=light&cursor=1``.
    """

    name: str = "web"                 # bus sender name; also the ``source``/``renderer`` of what the page sends
    host: str = "127.0.0.1"           # bind address: loopback only; see docs/renderers.md to expose it safely
    port: int = 8765                  # HTTP + WebSocket port (0 = any free port, logged at start)
    # extra Host names accepted (a reverse proxy's); loopback names always are
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # extra Origins that may open the WebSocket; same-origin always may
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    theme: Literal["contrast", "light"] = "contrast"  # high-contrast dark (yellow/white on black) or light
    min_font_px: Annotated[int, msgspec.Meta(ge=8)] = 34   # font size of the least likely candidate
    max_font_px: Annotated[int, msgspec.Meta(ge=8)] = 96   # font size of the most likely candidate
    gaze_cursor: bool = False         # draw a dot where gaze Focus messages (x, y) land
    touch_peek_ms: Annotated[int, msgspec.Meta(ge=0)] = 450  # a longer touch only shows the look-ahead; a tap selects
    p300: bool = False                # flash the candidates for EEG P300 selection
    flash_ms: Annotated[float, msgspec.Meta(gt=0)] = 100.0  # P300: how long one flash stays lit
    isi_ms: Annotated[float, msgspec.Meta(ge=0)] = 75.0     # P300: dark time between two flashes
    # P300: rounds (each candidate once per round) per fork; 0 = until decided
    p300_rounds: Annotated[int, msgspec.Meta(ge=0)] = 0
    clock_pings: Annotated[int, msgspec.Meta(ge=1)] = 8     # page<->bus clock sync: pings per burst (min-RTT one wins)
    clock_resync_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # seconds between sync bursts
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65536  # largest WebSocket message accepted from a page
    page_queue: Annotated[int, msgspec.Meta(ge=16)] = 1000  # messages buffered per page before a stuck page is dropped


class RenderersConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tui: TuiConfig = msgspec.field(default_factory=TuiConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
