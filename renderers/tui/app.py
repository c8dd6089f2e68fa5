"""``razvilka render tui``: the terminal view.

Textual is imported inside :func:`run` only: the CLI imports this module to build ``--help``
even where no terminal UI can start.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from collections.abc import Iterator

import msgspec

from razvilka.config import Config
from razvilka.protocol.client import BusClient
from razvilka.protocol.errors import ProtocolError

log = logging.getLogger("razvilka.render.tui")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="sender and input-source name on the bus (default: renderers.tui.name)")
    parser.add_argument("--view-only", action="store_true", help="draw only; do not publish key presses")
    parser.add_argument("--no-probabilities", action="store_true", help="hide the percentages in the cloud")


def run(config: Config, args: argparse.Namespace) -> int:
    cfg = config.renderers.tui
    changes: dict[str, object] = {}
    if getattr(args, "name", None):
        changes["name"] = args.name
    if getattr(args, "view_only", False):
        changes["keys"] = False
    if getattr(args, "no_probabilities", False):
        changes["show_probabilities"] = False
    cfg = msgspec.structs.replace(cfg, **changes)
    try:
        from razvilka.renderers.tui.view import SUBSCRIBE, TuiApp

        client = BusClient.from_config(cfg.name, config.bus, role="renderer", subscribe=SUBSCRIBE)
    except ProtocolError as exc:
        print(f"razvilka render tui: {exc}", file=sys.stderr)
        return 2
    if not (sys.__stderr__ and sys.__stderr__.isatty() and sys.stdin.isatty()):
        # Textual draws on stderr and reads keys from stdin.
        print("razvilka render tui: needs a terminal on stdin and stderr; use `razvilka render print` for plain lines",
              file=sys.stderr)
        return 2
    app = TuiApp(client, cfg, own_client=True)
    with _logs_held_back():
        app.run()
    log.info("tui closed: published %d input messages", app.published)
    return app.return_code or 0


@contextlib.contextmanager
def _logs_held_back() -> Iterator[None]:
    """Log lines written to the terminal would tear the screen: keep them, print them after."""
    held = io.StringIO()
    swapped = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__, sys.stdout):
            swapped.append((handler, handler.setStream(held)))
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
        if held.getvalue():
            sys.stderr.write(held.getvalue())
