"""``razvilka render web``: serve the browser renderer and bridge it to the bus.

Only light imports at module level: the CLI imports this module to build ``--help``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import msgspec

from razvilka.config import Config
from razvilka.renderers.config import WebConfig

log = logging.getLogger("razvilka.web")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default from renderers.web.host: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP/WebSocket port (default from renderers.web.port: 8765; 0 = any)")
    parser.add_argument("--p300", action="store_true", default=None, help="flash candidates for EEG P300 selection")
    parser.add_argument("--theme", choices=("contrast", "light"), help="high-contrast dark (default) or light")


def settings(config: Config, args: argparse.Namespace) -> WebConfig:
    """The web section with command-line flags applied on top."""
    changes = {
        key: value
        for key in ("host", "port", "p300", "theme")
        if (value := getattr(args, key, None)) is not None
    }
    return msgspec.structs.replace(config.renderers.web, **changes)


def run(config: Config, args: argparse.Namespace) -> int:
    from razvilka.protocol.errors import ProtocolError

    web = settings(config, args)
    try:
        return asyncio.run(_serve(config, web))
    except ProtocolError as exc:
        print(f"razvilka render web: {exc}", file=sys.stderr)
        return 2


async def _serve(config: Config, web: WebConfig) -> int:
    from razvilka.protocol.client import BusClient
    from razvilka.renderers.web.bridge import SUBSCRIBE, WebBridge
    from razvilka.runtime import stop_event

    stop = stop_event()
    client = BusClient.from_config(web.name, config.bus, role="renderer", subscribe=SUBSCRIBE)
    async with client:
        if not await client.wait_connected(5.0):
            log.warning("web: the bus did not answer within 5 s; serving anyway")
        bridge = WebBridge(web, client)
        url = await bridge.start()
        print(f"razvilka render web: open {url}", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            log.info("web: stopping (%d published, %d refused)", bridge.published, bridge.rejected)
            await bridge.close()
    return 0
