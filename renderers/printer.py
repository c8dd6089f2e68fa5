"""``razvilka render print``: every bus event as one readable line (or JSON line).

It joins late like any renderer (subscribe, then snapshot), so a fork already open is printed
first, marked ``=``. It also reports what the client layer notices: sequence gaps, rejected
messages (with their error code), and peers that went silent or stopped.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from razvilka.config import Config
    from razvilka.protocol.client import BusClient
    from razvilka.protocol.messages import Message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topics", nargs="*", default=[""], metavar="PREFIX",
                        help="topic prefixes to show, e.g. fork. input. (default: everything)")
    parser.add_argument("--heartbeats", action="store_true", help="print heartbeats too (hidden by default)")
    parser.add_argument("--json", action="store_true",
                        help="print each message as one JSON object {topic, header, body} (protocol/schema.json)")
    parser.add_argument("--count", type=int, default=0, help="exit after printing this many messages")
    parser.add_argument("--no-snapshot", action="store_true", help="do not ask for the current state first")


def run(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol.client import BusClient
    from razvilka.protocol.errors import ProtocolError

    async def main() -> int:
        from razvilka.runtime import stop_event

        stop = stop_event()
        client = BusClient.from_config("printer", config.bus, role="renderer", subscribe=args.topics)
        async with client:
            await client.wait_connected(5.0)
            printer = Printer(sys.stdout, heartbeats=args.heartbeats, json_lines=args.json)
            return await printer.follow(client, stop, count=args.count, snapshot=not args.no_snapshot)

    try:
        return asyncio.run(main())
    except ProtocolError as exc:
        print(f"razvilka render print: {exc}", file=sys.stderr)
        return 1


def _p(x: float) -> str:
    return f"{x:.2f}".lstrip("0") if 0 <= x < 1 else f"{x:.2f}"


def _quote(text: str, limit: int = 60) -> str:
    return json.dumps(text if len(text) <= limit else "…" + text[-(limit - 1):], ensure_ascii=False)


def _idx(index: int | None) -> str:
    return "none" if index is None else f"#{index}"


#: One formatter per known type: body -> the part of the line after the type.
FORMATS: dict[str, Callable[[Any], str]] = {
    "fork.open": lambda b: " | ".join(f"{'‿' if c.joins else ''}{c.word} {_p(c.prob)}" for c in b.candidates)
    + f"  ({b.reason}, H={b.entropy:.2f}{', pregenerated' if b.pregenerated else ''})",
    "fork.lookahead": lambda b: "; ".join(f"#{e.index} {' / '.join(map(_quote, e.phrases))}" for e in b.entries)
    + (" (done)" if b.done else ""),
    "fork.decided": lambda b: f"-> {' '.join(b.words) or '(none)'} ({_idx(b.index)}) by {'+'.join(b.sources) or '?'}"
    f" in {b.latency_ms:.0f} ms{f' [{b.rule}]' if b.rule else ''}",
    "text.auto": lambda b: f"+{_quote(b.text)}",
    "text.undo": lambda b: f"-{_quote(b.removed)} ({b.decisions_undone} decision(s) undone)",
    "text.state": lambda b: f"{_quote(b.text)} ({len(b.text)} chars)",
    "daemon.status": lambda b: f"{b.state}{f' model={b.model}' if b.model else ''}{f' k={b.k}' if b.k else ''}"
    + (" sources=" + ",".join(f"{k}:{v}" for k, v in b.sources.items()) if b.sources else "")
    + (f" ({b.detail})" if b.detail else ""),
    "daemon.error": lambda b: f"{b.name}({b.code}): {b.message}",
    "input.focus": lambda b: f"{b.source} -> {_idx(b.index)} (confidence {_p(b.confidence)})",
    "input.confirm": lambda b: f"{b.source} confirms {_idx(b.index) if b.index is not None else 'the focus'}",
    "input.select": lambda b: f"{b.source} selects #{b.index}{' as phrase' if b.phrase else ''}"
    f" (confidence {_p(b.confidence)})",
    "input.command": lambda b: f"{b.source}: {b.command}{f' {_quote(b.text)}' if b.text else ''}",
    "render.layout": lambda b: f"{b.renderer}: {len(b.boxes)} boxes on {b.screen_w:.0f}x{b.screen_h:.0f}",
    "render.stimulus": lambda b: f"flash {b.flash}: {b.indices} for {b.duration_ms:.0f} ms",
    "heartbeat": lambda b: f"{b.role} {b.state}, every {b.interval_ms} ms",
    "source.status": lambda b: f"{b.source} {b.state}{f': {b.detail}' if b.detail else ''}",
}


def format_message(msg: Message, *, snapshot: bool = False) -> str:
    """One line: wall time, ``=`` for snapshot state, sender#seq, type, fork, summary."""
    h = msg.header
    fmt = FORMATS.get(h.type)
    summary = fmt(msg.body) if fmt else json.dumps(msg.body, default=str)
    fork = f" [{h.fork_id}]" if h.fork_id else ""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return f"{stamp} {'=' if snapshot else ' '} {h.sender}#{h.seq} {h.type}{fork}  {summary}"


class Printer:
    """Writes lines for messages and for what the client noticed (gaps, rejections, silences)."""

    def __init__(self, out: TextIO, *, heartbeats: bool = False, json_lines: bool = False) -> None:
        self.out = out
        self.heartbeats = heartbeats
        self.json_lines = json_lines
        self.printed = 0
        self._gaps = 0
        self._rejected = 0
        self._peers: dict[str, str] = {}

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def message(self, msg: Message, *, snapshot: bool = False) -> None:
        if msg.type == "heartbeat" and not self.heartbeats:
            return
        if self.json_lines:
            from razvilka.protocol.schema import message_to_json

            self.line(json.dumps(message_to_json(msg), ensure_ascii=False))
        else:
            self.line(format_message(msg, snapshot=snapshot))
        self.printed += 1

    def notice(self, client: BusClient) -> None:
        """Report new gaps, rejections and peer changes since the last call."""
        stats = client.stats
        if stats.gaps != self._gaps:
            self.line(f"! gap: {stats.gaps - self._gaps} message(s) missed ({stats.gaps} in all)")
            self._gaps = stats.gaps
        if stats.rejected != self._rejected:
            err = stats.last_error
            what = f"{err.code.name}({int(err.code)}): {err.detail}" if err else "?"
            new = stats.rejected - self._rejected
            self.line(f"! rejected {new} message(s) ({stats.rejected} in all); last: {what}")
            self._rejected = stats.rejected
        peers = client.alive()
        for name, state in sorted(peers.items()):
            before = self._peers.get(name)
            if state == before:
                continue
            if state == "silent":
                self.line(f"! {name} went silent: {client.missed_beats} heartbeats missed")
            elif state == "stopped":
                self.line(f"· {name} stopped")
            elif before is not None:
                self.line(f"· {name} is back")
        self._peers = peers

    async def follow(self, client: BusClient, stop: asyncio.Event, *, count: int = 0, snapshot: bool = True) -> int:
        """Print the snapshot, then live messages until ``stop`` is set or ``count`` is reached."""
        from razvilka.protocol.errors import ProtocolError

        if snapshot:
            try:
                for msg in await client.snapshot():
                    self.message(msg, snapshot=True)
            except ProtocolError as exc:
                self.line(f"! no snapshot: {exc}")
        tick = max(0.05, min(0.5, client.heartbeat_ms / 2000 if client.heartbeat_ms > 0 else 0.5))
        while not stop.is_set() and not (count and self.printed >= count):
            live = await client.recv(timeout=tick)
            if live is not None:
                self.message(live)
            self.notice(client)
        return 0
