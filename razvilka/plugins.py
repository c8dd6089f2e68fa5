"""Subcommand groups whose members live in their own modules (``razvilka input NAME``, ``razvilka render NAME``).

Each member module exposes ``add_arguments(parser)`` and ``run(config, args) -> int`` and keeps
heavy or display-bound imports inside ``run``, because building ``--help`` imports every member.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any


def register_group(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str,
                   members: dict[str, tuple[str, str]], dest: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    names = parser.add_subparsers(dest=dest, metavar="NAME")
    names.required = True
    for member, (module, member_help) in members.items():
        p = names.add_parser(member, help=member_help)
        p.set_defaults(handler=_runner(module), **{f"{dest}_module": module})
        importlib.import_module(module).add_arguments(p)


def _runner(module: str) -> Any:
    def handler(config: Any, args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(config, args) or 0)
    return handler
