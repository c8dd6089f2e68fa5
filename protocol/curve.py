"""CurveZMQ keys: the bus requires them off loopback (an EEG laptop on the LAN, say).

Layout of the keys directory::

    server.key, server.key_secret      the bus's keypair
    client.key, client.key_secret      this machine's client keypair
    authorized/*.key                   public keys of clients allowed to connect
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from razvilka.protocol.errors import ErrorCode, ProtocolError


def ensure_keys(keys_dir: Path) -> None:
    """Create the server and local client keypairs once, and authorize the local client."""
    if not zmq.has("curve"):
        raise ProtocolError(ErrorCode.BAD_CONFIG, "this libzmq has no CURVE support; cannot secure a non-loopback bus")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    authorized = keys_dir / "authorized"
    authorized.mkdir(exist_ok=True, mode=0o700)
    for name in ("server", "client"):
        if not (keys_dir / f"{name}.key_secret").exists():
            zmq.auth.create_certificates(str(keys_dir), name)
    local = authorized / "local-client.key"
    if not local.exists():
        shutil.copy(keys_dir / "client.key", local)


def load_secret(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"cannot load CURVE key {path}: {exc}") from None
    if secret is None:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"{path} holds no secret key")
    return public, secret


def make_server(sock: zmq.Socket[Any], keys_dir: Path) -> None:
    public, secret = load_secret(keys_dir / "server.key_secret")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def make_client(sock: zmq.Socket[Any], server_public: bytes, client_secret_file: Path) -> None:
    public, secret = load_secret(client_secret_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
