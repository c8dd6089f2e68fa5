"""``razvilka daemon`` (the service) and ``razvilka sessions`` (list and export the store)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from razvilka.config import Config

log = logging.getLogger("razvilka.daemon")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("daemon", help="run the generation daemon (hosts the bus) in the foreground")
    p.add_argument("--model", help="GGUF file (default: the embedded Gemma 3 270M)")
    p.add_argument("--prompt", help="start a new document from this prompt (default: resume the open one)")
    p.add_argument("--user", help="whose session store and profile to use")
    p.add_argument("--k", type=int, help="candidates per fork")
    p.add_argument("--always-fork", action="store_true", help="fork at every word")
    p.add_argument("--input-cost", choices=["key", "switch", "gaze", "eeg"], help="the input in use (fork gating)")
    p.add_argument("--no-bus", action="store_true", help="join a bus started with `razvilka bus` instead of hosting one")
    p.set_defaults(handler=run_daemon)

    s = sub.add_parser("sessions", help="list or export stored sessions")
    ss = s.add_subparsers(dest="sessions_command", metavar="ACTION")
    ss.required = True
    ls = ss.add_parser("list", help="list documents, newest first")
    ls.add_argument("--user")
    ls.set_defaults(handler=list_sessions)
    ex = ss.add_parser("export", help="export forks and decisions as JSON lines")
    ex.add_argument("--document", help="one document id (default: all)")
    ex.add_argument("-o", "--output", help="file to write (default: standard output)")
    ex.set_defaults(handler=export_sessions)


def _apply_flags(config: Config, args: argparse.Namespace) -> Config:
    if args.model:
        config.model.path = args.model
    if args.prompt is not None:
        config.daemon.prompt = args.prompt
    if args.user:
        config.daemon.user = args.user
    if args.k:
        config.gating.k = args.k
    if args.always_fork:
        config.gating.mode = "always"
    if args.input_cost:
        config.daemon.input_cost = args.input_cost
    return config


def run_daemon(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol.errors import ProtocolError

    config = _apply_flags(config, args)
    try:
        return asyncio.run(_serve(config, new_prompt=args.prompt is not None, host_bus=not args.no_bus))
    except ProtocolError as exc:
        print(f"razvilka daemon: {exc}", file=sys.stderr)
        return 2


async def _serve(config: Config, *, new_prompt: bool, host_bus: bool) -> int:
    from razvilka.daemon.service import Daemon

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if config.daemon.profile:  # the person's profile reranks every fork and learns from every decision
        from razvilka.daemon.learn.live import profiled_daemon
        from razvilka.daemon.learn.profile import Profile, default_profile_path

        profile = Profile.load(default_profile_path(config.daemon.user, config.store.path), config.daemon.user)
        daemon = profiled_daemon(config, profile=profile, widen=config.daemon.profile_widen,
                                 host_bus=host_bus, resume=not new_prompt)
    else:
        daemon = Daemon(config, host_bus=host_bus, resume=not new_prompt)
    try:
        await daemon.start()
        log.info("daemon ready: model=%s store=%s", daemon.engine.model_name if daemon.engine else "?", daemon.store.path)
        await daemon.run_until(stop)
    finally:
        await daemon.close()
        log.info("daemon stopped cleanly")
    return 1 if daemon.fatal else 0


def list_sessions(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.store import Store

    store = Store(config.store.path)
    for doc, n, text in store.documents(args.user):
        state = "closed" if doc.closed else "open"
        snippet = (doc.prompt + text).replace("\n", " ")[-70:]
        print(f"{doc.id}  {doc.user:10s} {state:6s} {n:4d} entries  …{snippet}")
    return 0


def export_sessions(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.store import Store

    store = Store(config.store.path)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        count = 0
        for line in store.export_jsonl(args.document):
            out.write(line + "\n")
            count += 1
    finally:
        if args.output:
            out.close()
    print(f"exported {count} forks", file=sys.stderr)
    return 0
