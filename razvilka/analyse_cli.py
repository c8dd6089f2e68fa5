"""``razvilka analyse SESSION.xdf [-o report.html]``: a recorded session's report (docs/research.md)."""
from __future__ import annotations

import argparse
import sys

from razvilka.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyse", help="read a session recorded with LabRecorder (XDF) and write an HTML report")
    p.add_argument("xdf", metavar="SESSION.xdf", help="the XDF file LabRecorder wrote")
    p.add_argument("-o", "--output", help="the report to write (default: SESSION.html beside the recording)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run)


def run(config: Config, args: argparse.Namespace) -> int:
    from razvilka.analyse import write_report
    from razvilka.protocol.errors import RazvilkaError

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"razvilka analyse: {line}", file=sys.stderr, flush=True)

    try:
        out = write_report(args.xdf, args.output, progress)
    except RazvilkaError as exc:
        print(f"razvilka analyse: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0
