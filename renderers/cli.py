"""``razvilka render NAME``: renderers as separate processes (members: see razvilka/plugins.py)."""
from __future__ import annotations

import argparse

from razvilka.plugins import register_group

RENDERERS = {
    "print": ("razvilka.renderers.printer", "print every bus event as a line of text"),
    "tui": ("razvilka.renderers.tui.app", "terminal view (Textual)"),
    "web": ("razvilka.renderers.web.server", "browser view: HTTP/WebSocket bridge and page"),
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "render", "run a renderer", RENDERERS, dest="renderer")
