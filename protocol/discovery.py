"""The discovery file: where the bus is, which protocol it speaks, and its secrets (mode 0600)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from razvilka.protocol.errors import ErrorCode, ProtocolError


class Endpoints(msgspec.Struct, kw_only=True):
    """What a client needs to join the bus."""

    pub: str          # connect a PUB here to publish
    sub: str          # connect a SUB here to receive
    snapshot: str     # connect a DEALER here to ask for the current state
    version: str
    hmac_key: str = ""
    curve_server_public: str = ""
    pid: int = 0


def write_discovery(path: Path, endpoints: Endpoints) -> None:
    """Write atomically with mode 0600: the file may hold the HMAC key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(msgspec.to_builtins(endpoints), fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_discovery(path: Path) -> Endpoints:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProtocolError(
            ErrorCode.BAD_CONFIG,
            f"no bus discovery file at {path}: is the bus running? Start it with `razvilka daemon` or `razvilka bus`",
        ) from None
    except (OSError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"cannot read discovery file {path}: {exc}") from None
    try:
        return msgspec.convert(data, Endpoints)
    except msgspec.ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"discovery file {path} is invalid: {exc}") from None
