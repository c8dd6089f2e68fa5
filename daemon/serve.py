"""``razvilka serve``: llama.cpp's own HTTP server (llama-server, from the ``xllamacpp`` wheel) on a GGUF.

Why an existing server: several daemons (one per person) share one model on one machine, with
parallel slots and continuous batching, and that server is llama.cpp's well-kept one, not ours.
``xllamacpp`` ships it prebuilt in a manylinux wheel and runs it inside this process (its HTTP
threads and its one model loop are C++ threads); the daemons reach it with ``model.backend =
"llama-server"`` and ``model.url`` (daemon/backends/llama_server.py; docs/deployment.md).

Off loopback the README's rule holds: encrypted, or refused. This llama-server build has no TLS,
so it only ever listens on a loopback address; a LAN reaches it through a TLS reverse proxy on the
same machine (docs/deployment.md shows stunnel), never in clear text.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for a name or address that never leaves this machine (127.0.0.0/8, ::1, localhost)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def read_key_file(path: str, what: str) -> str:
    """A shared secret from a file only its owner can read (0600), never from a command line or a config
    value that ``razvilka config`` prints; a key others can read is refused, naming the file."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        key = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} {p}: cannot read it ({exc.strerror})") from None
    if mode & 0o077:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                            f"{what} {p} can be read by others (mode {mode & 0o777:o}): chmod 600 {p}")
    if not key:
        raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"{what} {p} is empty")
    return key


@dataclass
class ServeOptions:
    """What ``razvilka serve`` runs: the model, where it listens, how many people it serves at once."""

    model: str = ""            # a GGUF; "" = the embedded Gemma 3 270M
    host: str = "127.0.0.1"    # loopback only (see the module doc)
    port: int = 8080           # 0 = any free port (tests)
    parallel: int = 4          # slots: documents decoded together (continuous batching); one per person or more
    ctx_per_slot: int = 4096   # context of each slot, tokens (the KV pool holds parallel x this)
    threads: int = 0           # 0: every core this process may use
    loras: list[str] = field(default_factory=list)  # adapters loaded at start, off until a request selects one
    api_key_file: str = ""     # a 0600 file with the key every request must carry (Bearer); "" = none
    cache_ram_mib: int = 0     # llama-server's host-memory prompt cache, MiB (0 = off, -1 = no limit; its default 8192)
    verbose: bool = False


def refuse_unless_loopback(host: str) -> None:
    """The README's rule for anything that listens: loopback, or encrypted; this server cannot encrypt."""
    if not is_loopback(host):
        raise DaemonRefusal(
            ErrorCode.BAD_CONFIG,
            f"razvilka serve: refusing to listen on {host!r}: this llama-server has no TLS, and off loopback "
            "the model's traffic must be encrypted. Serve on 127.0.0.1 and put a TLS reverse proxy "
            "(stunnel or nginx) in front of it for the LAN: docs/deployment.md")


class LlamaServer:
    """llama-server running in this process. ``url`` is where it listens once ``start`` returned."""

    def __init__(self, opts: ServeOptions) -> None:
        refuse_unless_loopback(opts.host)
        if opts.parallel < 1 or opts.ctx_per_slot < 64:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"razvilka serve: --parallel must be >= 1 and --ctx-size >= 64 "
                                f"(got {opts.parallel} and {opts.ctx_per_slot})")
        from razvilka.daemon.engine import check_gguf, embedded_model_path

        self.model_path = check_gguf(opts.model) if opts.model else embedded_model_path()
        self.loras = [check_gguf(p, "LoRA") for p in opts.loras]
        self.api_key = read_key_file(opts.api_key_file, "--api-key-file") if opts.api_key_file else ""
        self.opts = opts
        self.url = ""
        self._server: Any = None

    def start(self) -> str:
        """Load the model and start listening (seconds: the model is read and warmed up). Returns the URL."""
        try:
            import xllamacpp as xlc
        except ImportError:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                "razvilka serve needs the xllamacpp package (pip install xllamacpp; "
                                "./dev.sh installs it)") from None
        o = self.opts
        p = xlc.CommonParams()
        p.model.path = str(self.model_path)
        p.hostnames = [o.host]
        p.port = o.port
        p.n_parallel = o.parallel
        p.cont_batching = True
        p.kv_unified = True                    # one KV pool: a slot uses what its document needs
        p.n_ctx = o.parallel * o.ctx_per_slot
        # Sliding-window models (Gemma 3) keep only a window of KV cells unless the cache is full-size;
        # without it a slot cannot be cut back to a shared prefix and every path re-reads its document.
        p.swa_full = True
        p.cache_prompt = True
        # llama-server's host-memory prompt cache (up to 8 GiB by default) saves and restores slots' KV cells
        # when prompts change hands. Off: with each person's daemon pinned to its own slots (model.slot) no
        # slot changes hands, and with it on, pinned slots working at once re-read whole documents now and
        # then (measured: 7 full re-reads in 12 requests of 2 pinned slots, none without it), and it only
        # grows the server (+155 MiB after 4 people's 300-token documents). Unpinned daemons sharing slots
        # need it (4 people on 4 slots: 43 s with it, 146 s without): ServeOptions.cache_ram_mib.
        p.cache_ram_mib = o.cache_ram_mib
        p.endpoint_slots = True                # /slots: what each slot is doing (tests, operators)
        p.no_extra_bufts = True                # as the embedded backend (model.extra_buffers off): AMX/repacked
                                               # kernels die with SIGILL in VMs that advertise AMX without enabling it
        threads = o.threads or len(os.sched_getaffinity(0))
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        # Its worker threads sleep as soon as a batch is done instead of spinning for the next one: between
        # two batches the server's one loop samples and writes answers, and the daemons (one per person,
        # on the same cores) need the CPU more than a spinning thread does. Measured, 4 people pinned to 4
        # slots on 2 cores: 12.4-12.6 s with no polling, 15.5-47 s with llama.cpp's default (50).
        p.cpuparams.poll = 0
        p.cpuparams_batch.poll = 0
        p.verbosity = 3 if o.verbose else 1
        if self.api_key:
            p.api_keys = [self.api_key]        # every endpoint but /health then wants "Authorization: Bearer KEY"
        if self.loras:
            infos = []
            for path in self.loras:
                info = xlc.CommonAdapterLoraInfo()
                info.path = str(path)
                info.scale = 0.0               # loaded, off: each request picks its adapter and scale
                infos.append(info)
            p.lora_adapters = infos
            p.lora_init_without_apply = True
        _fewer_malloc_arenas()
        try:
            self._server = xlc.Server(p)
        except RuntimeError as exc:
            raise DaemonRefusal(ErrorCode.MODEL_ERROR,
                                f"razvilka serve: llama-server did not start on {o.host}:{o.port} with "
                                f"{self.model_path} ({exc}); is the port taken?") from None
        self.url = str(self._server.listening_address)
        return self.url

    def close(self) -> None:
        """Stop serving (the C++ server shuts down when its object goes)."""
        self._server = None


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena and keeps what was freed there; the
    server's HTTP threads build a JSON answer each and so hold on to memory (measured: 22 MiB less RSS
    after 4 people's work with 2 arenas). Set before the server starts its threads; glibc only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def run_until(opts: ServeOptions, stop: threading.Event,
              ready: Callable[[LlamaServer], None] | None = None) -> str:
    """Start the server, call ``ready(server)``, serve until ``stop`` is set. Returns the URL it served."""
    server = LlamaServer(opts)
    url = server.start()
    if ready is not None:
        ready(server)
    try:
        stop.wait()
    finally:
        server.close()
    return url
