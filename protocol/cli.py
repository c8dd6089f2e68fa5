"""``razvilka bus`` (host, keys, demo) and ``razvilka protocol schema|vectors``.

Handlers import what they need inside, so building the parser stays cheap.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from razvilka.config import Config
    from razvilka.protocol.config import BusConfig

log = logging.getLogger("razvilka.bus")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bus = sub.add_parser("bus", help="run the bus alone (no daemon); keys; a demo publisher",
                         description="Run the bus host (XSUB/XPUB proxy + snapshot) in the foreground.")
    _bus_flags(bus)
    bus.set_defaults(handler=run_bus)
    bus_sub = bus.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    keys = bus_sub.add_parser("keys", help="create CURVE keys; authorize remote clients")
    keys.add_argument("--new-client", metavar="NAME",
                      help="make and authorize a keypair for a remote client, and write its discovery file")
    keys.add_argument("--address", metavar="HOST",
                      help="with --new-client: the address the remote client reaches this bus at")
    keys.add_argument("--authorize", metavar="FILE.key", type=Path,
                      help="authorize a client's existing public key file")
    keys.set_defaults(handler=run_keys)
    demo = bus_sub.add_parser("demo", help="publish a scripted sequence of forks (no model needed)")
    demo.add_argument("--forks", type=int, default=0, help="forks to play, then stop (0: the whole script)")
    demo.add_argument("--interval", type=float, default=0.6, help="seconds between steps")
    demo.add_argument("--loop", action="store_true", help="repeat the script until stopped")
    demo.add_argument("--leave-open", action="store_true", help="end with a fork open (to show late joiners)")
    demo.set_defaults(handler=run_demo)

    proto = sub.add_parser("protocol", help="the language-neutral contract: JSON Schema and vectors")
    proto_sub = proto.add_subparsers(dest="protocol_command", metavar="SUBCOMMAND")
    proto_sub.required = True
    schema = proto_sub.add_parser("schema", help="regenerate protocol/schema.json from messages.py")
    schema.add_argument("--check", action="store_true", help="exit 1 if the file is stale; write nothing")
    schema.add_argument("--out", type=Path, help="file to write or check (default: the package's schema.json)")
    schema.add_argument("--stdout", action="store_true", help="print the schema instead of writing it")
    schema.set_defaults(handler=run_schema)
    vectors = proto_sub.add_parser("vectors", help="regenerate the conformance vectors protocol/vectors/*.json")
    vectors.add_argument("--check", action="store_true", help="exit 1 if any file is stale; write nothing")
    vectors.add_argument("--out", type=Path, help="directory to write or check (default: the package's vectors/)")
    vectors.set_defaults(handler=run_vectors)


def _bus_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["ipc", "tcp"], help="override bus.transport")
    parser.add_argument("--host", help="override bus.host (tcp); anything but loopback turns CURVE on")
    parser.add_argument("--curve", action="store_true", default=None, help="require CURVE even on loopback")


def bus_config(config: Config, args: argparse.Namespace) -> BusConfig:
    """The bus section with this command's flags applied."""
    import msgspec

    changes = {k: v for k, v in (("transport", getattr(args, "transport", None)),
                                  ("host", getattr(args, "host", None)),
                                  ("curve", getattr(args, "curve", None))) if v is not None}
    return msgspec.structs.replace(config.bus, **changes) if changes else config.bus


# ---------------------------------------------------------------------------- bus host
def run_bus(config: Config, args: argparse.Namespace) -> int:
    """Host the bus until SIGINT/SIGTERM; remove the discovery file on the way out."""
    import contextlib

    from razvilka.protocol.bus import BusHost
    from razvilka.protocol.errors import ProtocolError
    from razvilka.runtime import stop_event

    cfg = bus_config(config, args)
    host = BusHost(cfg)
    try:
        endpoints = host.start()
    except ProtocolError as exc:
        print(f"razvilka bus: {exc}", file=sys.stderr)
        return 1
    log.info("bus: protocol %s, discovery file %s, CURVE %s, HMAC signing %s; SIGINT/SIGTERM stops it",
             endpoints.version, host.discovery_path, "on" if endpoints.curve_server_public else "off",
             "on" if endpoints.hmac_key else "off")

    async def hold() -> None:
        """Until SIGINT/SIGTERM; every 10 s, say if the state cache has seen bad messages."""
        stop, rejected = stop_event(), 0
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 10.0)
            if host.rejected != rejected:
                log.warning("bus: %d bad messages seen by the state cache so far", host.rejected)
                rejected = host.rejected

    try:
        asyncio.run(hold())
    finally:
        host.stop()
    log.info("bus stopped; discovery file removed")
    return 0


# ---------------------------------------------------------------------------- CURVE keys
def run_keys(config: Config, args: argparse.Namespace) -> int:
    """Create the bus's CURVE keys; optionally make or authorize a remote client's key."""
    import shutil

    import zmq.auth

    from razvilka.protocol import curve
    from razvilka.protocol.errors import ProtocolError

    cfg = bus_config(config, args)
    keys = cfg.resolved_curve_dir()
    try:
        curve.ensure_keys(keys)
    except ProtocolError as exc:
        print(f"razvilka bus keys: {exc}", file=sys.stderr)
        return 1
    server_public, _ = zmq.auth.load_certificate(str(keys / "server.key"))
    print(f"keys directory:     {keys}")
    print(f"bus public key:     {server_public.decode()}")
    print(f"authorized clients: {', '.join(sorted(p.stem for p in (keys / 'authorized').glob('*.key'))) or '-'}")
    if args.authorize:
        try:
            public, _ = zmq.auth.load_certificate(str(args.authorize))
        except (OSError, ValueError) as exc:
            print(f"razvilka bus keys: cannot read public key {args.authorize}: {exc}", file=sys.stderr)
            return 1
        target = keys / "authorized" / args.authorize.name
        shutil.copy(args.authorize, target)
        print(f"authorized {public.decode()} ({target}); restart the bus or daemon to load it")
    if args.new_client:
        name = args.new_client
        if not name.replace("-", "").replace("_", "").isalnum():
            print("razvilka bus keys: --new-client NAME takes letters, digits, '-' and '_'", file=sys.stderr)
            return 1
        out = keys / "clients"
        out.mkdir(mode=0o700, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(str(out), name)
        Path(secret_file).chmod(0o600)
        shutil.copy(public_file, keys / "authorized" / f"{name}.key")
        discovery = _remote_discovery(cfg, server_public.decode(), args.address, out / f"{name}.bus.json")
        print(f"\nnew client {name!r}: authorized. Copy these two files to the remote machine:")
        print(f"  {secret_file}  -> its bus.curve_keys_dir as client.key_secret (mode 0600)")
        print(f"  {discovery}  -> its bus.discovery_file (mode 0600)")
        print("then run the adapter there, e.g.")
        print("  RAZVILKA_BUS__DISCOVERY_FILE=bus.json RAZVILKA_BUS__CURVE_KEYS_DIR=keys razvilka input eeg")
        print("and restart this bus (or daemon) so that it loads the new key.")
    else:
        print("\nTo let a remote client in (an EEG laptop, say):")
        print("  1. here:  razvilka bus keys --new-client eeg-laptop --address <this host's LAN address>")
        print("  2. copy the secret key and discovery file it names to the laptop;")
        print("  3. run this bus with --host 0.0.0.0 (CURVE is then required) and restart it after adding keys.")
        print("  Or authorize a key made elsewhere: razvilka bus keys --authorize laptop.key")
    return 0


def _remote_discovery(cfg: BusConfig, server_public: str, address: str | None, path: Path) -> Path:
    """A discovery file for a client on another machine: tcp endpoints at ``address``."""
    from razvilka.protocol.discovery import Endpoints, write_discovery
    from razvilka.protocol.messages import PROTOCOL_VERSION

    host = address or cfg.host
    write_discovery(path, Endpoints(
        pub=f"tcp://{host}:{cfg.pub_port}", sub=f"tcp://{host}:{cfg.sub_port}",
        snapshot=f"tcp://{host}:{cfg.snapshot_port}", version=PROTOCOL_VERSION,
        hmac_key=cfg.hmac_key, curve_server_public=server_public,
    ))
    return path


# ---------------------------------------------------------------------------- demo publisher
def run_demo(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol.demo import play
    from razvilka.protocol.errors import ProtocolError

    try:
        return asyncio.run(play(bus_config(config, args), forks=args.forks, interval=args.interval,
                                loop_forever=args.loop, leave_open=args.leave_open))
    except ProtocolError as exc:
        print(f"razvilka bus demo: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- schema and vectors
def run_schema(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol import schema

    path = args.out or schema.SCHEMA_PATH
    if args.stdout:
        sys.stdout.write(schema.render_schema())
        return 0
    if args.check:
        if schema.schema_is_current(path):
            print(f"{path} is current")
            return 0
        print(f"{path} is stale: run `razvilka protocol schema` and commit it", file=sys.stderr)
        return 1
    print(f"wrote {schema.write_schema(path)}")
    return 0


def run_vectors(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol import vectors

    directory = args.out or vectors.VECTORS_DIR
    if args.check:
        stale = vectors.stale_vectors(directory)
        if not stale:
            print(f"{directory}: {len(vectors.load_vectors(directory))} vectors, all current")
            return 0
        print(f"{directory}: stale {', '.join(stale)}: run `razvilka protocol vectors` and commit them",
              file=sys.stderr)
        return 1
    for path in vectors.write_vectors(directory):
        print(f"wrote {path}")
    return 0
