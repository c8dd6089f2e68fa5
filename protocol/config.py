"""The bus section of the configuration."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec


class BusConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the bus lives and how it is secured.

    ``transport = "ipc"`` (default) puts the sockets in a private runtime directory;
    ``"tcp"`` binds ``host`` (127.0.0.1 by default). Binding any other address
    requires CurveZMQ: the daemon refuses to start without server keys.
    """

    transport: Literal["ipc", "tcp"] = "ipc"
    host: str = "127.0.0.1"
    pub_port: int = 5571       # publishers connect here (proxy XSUB side)
    sub_port: int = 5572       # subscribers connect here (proxy XPUB side)
    snapshot_port: int = 5573  # late joiners ask for state here (ROUTER)
    runtime_dir: str = ""      # default: $XDG_RUNTIME_DIR/razvilka or /tmp/razvilka-$UID
    discovery_file: str = ""   # default: <runtime_dir>/bus.json
    hmac_key: str = ""         # non-empty: sign every message, reject unsigned/forged ones
    curve: bool = False        # force CURVE even on loopback (always on off loopback)
    curve_keys_dir: str = ""   # default: <runtime_dir>/curve (server.key_secret, authorized/*.key)
    heartbeat_ms: int = 1000
    missed_beats: int = 3
    max_frame_bytes: int = 1 << 20
    hwm: int = 100_000

    def resolved_runtime_dir(self) -> Path:
        if self.runtime_dir:
            return Path(self.runtime_dir).expanduser()
        base = os.environ.get("XDG_RUNTIME_DIR")
        return Path(base) / "razvilka" if base else Path(f"/tmp/razvilka-{os.getuid()}")

    def resolved_discovery_file(self) -> Path:
        if self.discovery_file:
            return Path(self.discovery_file).expanduser()
        return self.resolved_runtime_dir() / "bus.json"

    def resolved_curve_dir(self) -> Path:
        return Path(self.curve_keys_dir).expanduser() if self.curve_keys_dir else self.resolved_runtime_dir() / "curve"

    @property
    def loopback(self) -> bool:
        return self.transport == "ipc" or self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def curve_required(self) -> bool:
        return self.curve or not self.loopback
