"""The ``razvilka`` command. Each area registers its own subcommands; heavy imports stay inside handlers."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from razvilka.config import Config, ConfigError, load_config

#: Modules that expose ``register(subparsers)``; each adds its subcommands.
AREAS = (
    "razvilka.protocol.cli",
    "razvilka.daemon.cli",
    "razvilka.daemon.learn_cli",
    "razvilka.inputs.cli",
    "razvilka.renderers.cli",
    "razvilka.up",
    "razvilka.say_cli",
    "razvilka.analyse_cli",
    "razvilka.serve_cli",
)

Handler = Callable[[Config, argparse.Namespace], int]


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1 (``--k 0`` is an error, not ignored)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="razvilka", description="Steer a local LLM at its forks.")
    parser.add_argument("--config", help="TOML configuration file (default: ~/.config/razvilka/config.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one configuration value; repeatable")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--log-json", action="store_true", help="structured logs: one JSON object per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cfg = sub.add_parser("config", help="print the effective configuration (every default included) as JSON")
    cfg.set_defaults(handler=_show_config)
    for name in AREAS:
        importlib.import_module(name).register(sub)
    return parser


def _show_config(config: Config, args: argparse.Namespace) -> int:
    import json

    from razvilka.config import to_toml_dict

    print(json.dumps(to_toml_dict(config), indent=2))
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald/log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(verbosity: int, json_lines: bool = False) -> None:
    level = logging.WARNING - 10 * min(verbosity + 1, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_json)
    try:
        config = load_config(args.config, overrides=args.set)
    except ConfigError as exc:
        print(f"razvilka: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return int(handler(config, args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
