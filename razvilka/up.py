"""``razvilka up``: the main job — the daemon with the default model, a renderer, and keyboard input.

Each part is its own process, exactly as a user would start them by hand; this only starts
them in order and stops them together.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from razvilka.config import Config
from razvilka.private import open_private, private_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the daemon, a renderer and keyboard input together")
    p.add_argument("--renderer", choices=["tui", "web", "print"], default=None,
                   help="default: tui on a terminal, print otherwise")
    p.add_argument("--prompt", help="start a new document from this prompt")
    p.add_argument("--no-keyboard", action="store_true", help="do not start the global keyboard adapter")
    p.set_defaults(handler=run)


def _base(args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "razvilka.cli"]
    if args.config:
        cmd += ["--config", args.config]
    for item in args.set:
        cmd += ["--set", item]
    return cmd


def run(config: Config, args: argparse.Namespace) -> int:
    base = _base(args)
    discovery = config.bus.resolved_discovery_file()
    log_dir = config.bus.resolved_runtime_dir()
    private_dir(log_dir)
    children: list[subprocess.Popen[bytes]] = []
    renderer = args.renderer or ("tui" if sys.stdout.isatty() else "print")
    try:
        daemon_cmd = base + ["daemon"] + (["--prompt", args.prompt] if args.prompt else [])
        daemon_log = open_private(log_dir / "daemon.log", "ab")
        print(f"razvilka: starting the daemon (log: {log_dir / 'daemon.log'})", file=sys.stderr)
        if discovery.exists():
            discovery.unlink()
        children.append(subprocess.Popen(daemon_cmd, stdout=daemon_log, stderr=daemon_log))
        deadline = time.monotonic() + 60
        while not discovery.exists():
            if children[0].poll() is not None:
                print(f"razvilka: the daemon exited; see {log_dir / 'daemon.log'}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print("razvilka: the bus did not come up in 60 s", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if not args.no_keyboard:
            if os.environ.get("DISPLAY"):
                kb_log = open_private(log_dir / "keyboard.log", "ab")
                children.append(subprocess.Popen(base + ["input", "keyboard"], stdout=kb_log, stderr=kb_log))
            else:
                print("razvilka: no X display, so no global keyboard adapter; keys typed into the "
                      f"{renderer} view are the input", file=sys.stderr)
        return subprocess.call(base + ["render", renderer])
    except KeyboardInterrupt:
        return 130
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
