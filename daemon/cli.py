"""``razvilka daemon`` (the service) and ``razvilka sessions`` (list and export the store)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from razvilka.cli import positive_int
from razvilka.config import Config

if TYPE_CHECKING:
    from razvilka.daemon.engine import Engine
    from razvilka.daemon.service import Daemon

log = logging.getLogger("razvilka.daemon")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="run the generation daemon (hosts the bus) in the foreground")
    p.add_argument("--model", help="GGUF file (default: the embedded Gemma 3 270M)")
    p.add_argument("--prompt", help="start a new document from this prompt (default: resume the open one)")
    p.add_argument("--user", help="whose session store and profile to use")
    p.add_argument("--k", type=positive_int, help="candidates per fork (1 or more)")
    p.add_argument("--always-fork", action="store_true", help="fork at every word")
    p.add_argument("--input-cost", choices=["key", "switch", "gaze", "eeg"], help="the input in use (fork gating)")
    p.add_argument("--no-bus", action="store_true",
                   help="join a bus started with `razvilka bus` instead of hosting one")
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
    if args.k is not None:
        config.gating.k = args.k
    if args.always_fork:
        config.gating.mode = "always"
    if args.input_cost:
        config.daemon.input_cost = args.input_cost
    return config


def run_daemon(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol.errors import RazvilkaError

    config = _apply_flags(config, args)
    try:
        return asyncio.run(_serve(config, new_prompt=args.prompt is not None, host_bus=not args.no_bus,
                                  config_file=getattr(args, "config", None)))
    except RazvilkaError as exc:
        print(f"razvilka daemon: {exc}", file=sys.stderr)
        return 2


def build_daemon(config: Config, *, engine: Engine | None = None, host_bus: bool = True,
                 resume: bool = True, config_file: str | Path | None = None,
                 output_env: Mapping[str, str] | None = None) -> Daemon:
    """The daemon as ``razvilka daemon`` and ``razvilka up`` run it (and as the tests start it): a plain
    ``Daemon`` with the person's profile as its learner, unless ``daemon.profile`` is off. ``config_file``:
    where settings the person changes are saved (``--config``; default: razvilka/config.py's rule);
    ``output_env``: the environment of the speech and text-out programs (default: this process's).

    The profile reranks every fork and learns from every acknowledged decision (docs/learning.md)."""
    from razvilka.daemon.service import Daemon

    learner = None
    if config.daemon.profile:
        from razvilka.daemon.learn.live import ProfileLearner
        from razvilka.daemon.learn.persist import default_profile_path, load_profile

        profile = load_profile(default_profile_path(config.daemon.user, config.store.path), config.daemon.user)
        learner = ProfileLearner(profile, widen=config.daemon.profile_widen,
                                 memory_chars=config.daemon.profile_memory_chars)
    return Daemon(config, engine=engine, learner=learner, host_bus=host_bus, resume=resume, config_file=config_file,
                  output_env=output_env)


async def _serve(config: Config, *, new_prompt: bool, host_bus: bool, config_file: str | None = None) -> int:
    from razvilka.runtime import stop_event

    stop = stop_event()
    daemon = build_daemon(config, host_bus=host_bus, resume=not new_prompt, config_file=config_file)
    try:
        await daemon.start()
        log.info("daemon ready: model=%s store=%s", daemon.engine.model_name if daemon.engine else "?",
                 daemon.store.path)
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
    from razvilka.private import open_private

    store = Store(config.store.path)
    out = open_private(args.output, "w", encoding="utf-8") if args.output else sys.stdout
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
