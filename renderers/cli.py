"""``razvilka render NAME``: renderers as separate processes.

Each renderer module exposes ``add_arguments(parser)`` and ``run(config, args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib

RENDERERS = {
    "print": ("razvilka.renderers.printer", "print every bus event as a line of text"),
    "tui": ("razvilka.renderers.tui.app", "terminal view (Textual)"),
    "web": ("razvilka.renderers.web.server", "browser view: HTTP/WebSocket bridge and page"),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("render", help="run a renderer")
    names = parser.add_subparsers(dest="renderer", metavar="NAME")
    names.required = True
    for name, (module, help_text) in RENDERERS.items():
        p = names.add_parser(name, help=help_text)
        p.set_defaults(handler=_runner(module))
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _runner(module: str):  # type: ignore[no-untyped-def]
    def handler(config, args):  # type: ignore[no-untyped-def]
        return importlib.import_module(module).run(config, args)
    return handler
