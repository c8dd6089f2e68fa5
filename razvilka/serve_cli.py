"""``razvilka serve``: llama.cpp's server on a GGUF (the embedded model by default), with parallel slots
and continuous batching, for daemons configured with ``model.backend = "llama-server"``.

Loopback only: off this machine, traffic goes through a TLS reverse proxy (docs/deployment.md)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from razvilka.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    from razvilka.cli import positive_int

    p = sub.add_parser("serve", help="run llama.cpp's server on a GGUF for daemons with model.backend=llama-server")
    p.add_argument("--model", metavar="GGUF", help="the model (default: model.path, else the embedded Gemma 3 270M)")
    p.add_argument("--host", default="127.0.0.1",
                   help="listen address: loopback only (a LAN goes through a TLS proxy: docs/deployment.md)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--parallel", type=positive_int, default=4,
                   help="slots decoded together: documents (people) served at once without waiting (default 4)")
    p.add_argument("--ctx-size", type=positive_int, default=None,
                   help="context per slot in tokens (default: model.n_ctx)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: model.n_threads, 0 = all)")
    p.add_argument("--lora", action="append", default=[], metavar="GGUF",
                   help="a LoRA adapter to load, off until a daemon selects it (repeatable; id = order given)")
    p.add_argument("--cache-ram-mib", type=int, default=0, metavar="MIB",
                   help="llama-server's host-memory prompt cache, MiB (default 0: off, for daemons pinned to their own "
                        "slots with model.slot; unpinned daemons sharing slots want it, e.g. 8192; -1: no limit)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="a file (mode 0600) with a key every request must carry; daemons: model.api_key_file")
    p.set_defaults(handler=run)


def run(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.serve import LlamaServer, ServeOptions, run_until
    from razvilka.protocol.errors import RazvilkaError

    opts = ServeOptions(
        model=args.model or config.model.path, host=args.host, port=args.port, parallel=args.parallel,
        ctx_per_slot=args.ctx_size or config.model.n_ctx, threads=config.model.n_threads
        if args.threads is None else args.threads, loras=list(args.lora), api_key_file=args.api_key_file or "",
        cache_ram_mib=args.cache_ram_mib, verbose=args.verbose > 0)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_a: stop.set())

    def ready(server: LlamaServer) -> None:
        print(f"razvilka serve: {server.model_path.name} at {server.url} ({opts.parallel} slots x "
              f"{opts.ctx_per_slot} tokens); daemons: model.backend = \"llama-server\", model.url = \"{server.url}\"",
              file=sys.stderr, flush=True)

    try:
        run_until(opts, stop, ready)
    except RazvilkaError as exc:
        print(exc.detail, file=sys.stderr)
        return 2
    return 0
