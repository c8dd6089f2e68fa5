"""The bus host: an XSUB/XPUB proxy, a state cache for late joiners, and the discovery file.

Every component publishes to one endpoint and subscribes at another. The proxy runs in
libzmq (``zmq.proxy_steerable``) on its own thread; a second thread keeps the retained
state (the zguide *Clone* pattern) and answers snapshot requests on a ROUTER socket.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import msgspec
import zmq
from zmq.auth.thread import ThreadAuthenticator

from razvilka.protocol import curve
from razvilka.protocol.client import ForkTracker
from razvilka.protocol.codec import Codec
from razvilka.protocol.config import BusConfig
from razvilka.protocol.discovery import Endpoints, write_discovery
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import PROTOCOL_VERSION, Message

log = logging.getLogger("razvilka.bus")

#: Topics whose latest message (per sender) a late joiner needs.
RETAINED = ("fork.", "text.state.", "daemon.status.", "render.layout.", "source.status.", "heartbeat.",
            "config.state.", "phrases.state.")  # 1.5: the settings and the quick phrases
#: Followed only for what they do to the open fork (``text.undo`` ends it), never retained.
FORK_ONLY = ("text.undo",)
SNAPSHOT_REQUEST = b"SNAPSHOT"


def endpoints_for(config: BusConfig) -> tuple[str, str, str]:
    if config.transport == "ipc":
        base = config.resolved_runtime_dir()
        return (f"ipc://{base}/pub", f"ipc://{base}/sub", f"ipc://{base}/snapshot")
    host = config.host
    return (f"tcp://{host}:{config.pub_port}", f"tcp://{host}:{config.sub_port}", f"tcp://{host}:{config.snapshot_port}")


class StateCache:
    """The retained messages, as the exact frames received (signatures stay valid)."""

    def __init__(self) -> None:
        self.latest: OrderedDict[tuple[str, str], list[bytes]] = OrderedDict()
        self.forks = ForkTracker()
        self.last_seq: dict[str, int] = {}

    @property
    def fork_id(self) -> str | None:
        return self.forks.fork_id

    def add(self, msg: Message, frames: list[bytes]) -> None:
        h = msg.header
        self.last_seq[f"{h.sender}/{h.session}/{h.type}"] = h.seq
        if msg.frames is None:
            msg.frames = list(frames)
        if self.forks.update(msg) == "decided":
            self.latest[(h.type, h.sender)] = frames  # the last decision, drawn by a late joiner
        elif not h.type.startswith("fork.") and h.type not in FORK_ONLY:
            key = (msg.topic, h.sender)
            self.latest.pop(key, None)
            self.latest[key] = frames

    def messages(self) -> list[list[bytes]]:
        out = list(self.latest.values())
        out.extend(m.frames for m in self.forks.messages() if m.frames is not None)
        return out


class BusHost:
    """Host the bus in this process. ``start()`` binds; ``stop()`` closes everything."""

    def __init__(self, config: BusConfig, *, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self._own_ctx = context is None
        self.pub_endpoint, self.sub_endpoint, self.snapshot_endpoint = endpoints_for(config)
        self._inproc = f"inproc://razvilka-bus-{uuid.uuid4().hex}"
        self._ctl = f"inproc://razvilka-bus-ctl-{uuid.uuid4().hex}"
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._auth: ThreadAuthenticator | None = None
        self._server_public = ""
        self.codec = Codec("bus", key=config.hmac_key.encode() or None, max_frame=config.max_frame_bytes)
        self.cache = StateCache()
        self.rejected = 0
        self.discovery_path: Path = config.resolved_discovery_file()
        self._ready = threading.Event()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Endpoints:
        cfg = self.config
        if not cfg.loopback and not cfg.curve_required:  # pragma: no cover - guarded by curve_required
            raise ProtocolError(ErrorCode.BAD_CONFIG, "a non-loopback bus needs CURVE")
        other = read_pid(self.discovery_path)
        if other and other != os.getpid() and _pid_alive(other):
            # Binding ipc paths would silently take them over from the running bus.
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"a bus is already running (pid {other}, "
                                f"{self.discovery_path}); stop it first or use another runtime_dir")
        if cfg.transport == "ipc":
            rd = cfg.resolved_runtime_dir()
            rd.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(rd, 0o700)
            for ep in (self.pub_endpoint, self.sub_endpoint, self.snapshot_endpoint):
                if len(ep) - len("ipc://") > 107:
                    raise ProtocolError(ErrorCode.BAD_CONFIG, f"ipc path too long (107 chars max): {ep}")
        self.xsub = self.ctx.socket(zmq.XSUB)
        self.xpub = self.ctx.socket(zmq.XPUB)
        self.router = self.ctx.socket(zmq.ROUTER)
        for s in (self.xsub, self.xpub, self.router):
            s.linger = 0
        self.xsub.rcvhwm = cfg.hwm
        self.xpub.sndhwm = cfg.hwm
        if cfg.curve_required:
            keys = cfg.resolved_curve_dir()
            curve.ensure_keys(keys)
            self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("razvilka.bus.auth"))
            _start_authenticator(self._auth)
            self._auth.configure_curve(domain="*", location=str(keys / "authorized"))
            for s in (self.xsub, self.xpub, self.router):
                curve.make_server(s, keys)
            self._server_public = (keys / "server.key").read_text().split('public-key = "')[1].split('"')[0]
        try:
            self.xsub.bind(self.pub_endpoint)
            self.xpub.bind(self.sub_endpoint)
            self.router.bind(self.snapshot_endpoint)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"cannot bind the bus ({exc}); is another bus running?") from None
        # Real endpoints (tcp port 0 binds an ephemeral port), read before the inproc bind.
        self.pub_endpoint = self.xsub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sub_endpoint = self.xpub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.snapshot_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.xpub.bind(self._inproc)  # the state cache listens here, inside the CURVE boundary
        endpoints = Endpoints(
            pub=self.pub_endpoint,
            sub=self.sub_endpoint,
            snapshot=self.snapshot_endpoint,
            version=PROTOCOL_VERSION,
            hmac_key=cfg.hmac_key,
            curve_server_public=self._server_public,
            pid=os.getpid(),
        )
        self.endpoints = endpoints
        t1 = threading.Thread(target=self._run_proxy, name="bus-proxy", daemon=True)
        t2 = threading.Thread(target=self._run_state, name="bus-state", daemon=True)
        self._threads = [t1, t2]
        t2.start()
        self._ready.wait(5)
        t1.start()
        write_discovery(self.discovery_path, endpoints)
        log.info("bus up: pub=%s sub=%s snapshot=%s", endpoints.pub, endpoints.sub, endpoints.snapshot)
        return endpoints

    def stop(self) -> None:
        self._stop.set()
        ctl = None
        try:
            ctl = self.ctx.socket(zmq.PAIR)
            ctl.linger = 0
            ctl.connect(self._ctl)
            ctl.send(b"TERMINATE")
        except zmq.ZMQError:  # pragma: no cover
            pass
        # Keep the control socket open until the proxy has read TERMINATE: closing it at
        # once with linger=0 could drop the command, leaving the proxy thread running.
        for t in self._threads:
            t.join(timeout=5)
            if t.is_alive():  # pragma: no cover
                log.error("bus thread %s did not stop within 5 s", t.name)
        if ctl is not None:
            ctl.close(linger=0)
        self._close_sockets()
        if self._auth is not None:
            self._auth.stop()
        try:
            if self.discovery_path.exists() and read_pid(self.discovery_path) == os.getpid():
                self.discovery_path.unlink()
        except OSError:  # pragma: no cover
            pass
        if self._own_ctx:
            pass  # the shared instance context is left for the process

    def _close_sockets(self) -> None:
        for name in ("xsub", "xpub", "router"):
            s = getattr(self, name, None)
            if s is not None and not s.closed:
                s.close(linger=0)

    def __enter__(self) -> BusHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ threads
    def _run_proxy(self) -> None:
        ctl = self.ctx.socket(zmq.PAIR)
        ctl.linger = 0
        ctl.bind(self._ctl)
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, ctl)
        except zmq.ZMQError as exc:  # context terminated
            if not self._stop.is_set():  # pragma: no cover
                log.error("bus proxy stopped: %s", exc)
        finally:
            ctl.close(linger=0)

    def _run_state(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.rcvhwm = self.config.hwm
        for prefix in (*RETAINED, *(f"{t}." for t in FORK_ONLY)):
            sub.subscribe(prefix.encode())
        sub.connect(self._inproc)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        self._ready.set()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if sub in events:
                    while True:
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            msg = self.codec.decode(frames)
                        except ProtocolError as exc:
                            self.rejected += 1
                            log.debug("state cache ignored a bad message: %s", exc)
                            continue
                        self.cache.add(msg, frames)
                if self.router in events:
                    self._answer_snapshot()
        except zmq.ZMQError as exc:  # pragma: no cover
            if not self._stop.is_set():
                log.error("bus state thread stopped: %s", exc)
        finally:
            sub.close(linger=0)

    def _answer_snapshot(self) -> None:
        while True:
            try:
                request = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, payload = request[0], request[-1]
            if payload != SNAPSHOT_REQUEST:
                self.router.send_multipart([identity, b"", b"ERROR", b"expected SNAPSHOT"])
                continue
            msgs = self.cache.messages()
            meta = msgspec.msgpack.encode(
                {"version": PROTOCOL_VERSION, "sizes": [len(m) for m in msgs], "last_seq": self.cache.last_seq}
            )
            flat = [frame for m in msgs for frame in m]
            self.router.send_multipart([identity, b"", b"STATE", meta, *flat])


def _start_authenticator(auth: ThreadAuthenticator, attempts: int = 100) -> None:
    """Start the ZAP handler, waiting out a previous one's endpoint.

    There is one ZAP endpoint per context (``inproc://zeromq.zap.01``), and libzmq releases
    it only when the old socket is reaped, shortly after ``close()``: a bus restarted in the
    same process (tests, a daemon restarting its bus) could otherwise fail with EADDRINUSE.
    """
    for attempt in range(attempts):
        try:
            auth.start()
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or attempt == attempts - 1:
                raise
            if auth.zap_socket is not None:  # created but not bound: close it before retrying
                auth.zap_socket.close(linger=0)
                auth.zap_socket = None  # type: ignore[assignment]
            time.sleep(0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_pid(path: Path) -> int:
    try:
        return int(msgspec.json.decode(path.read_bytes()).get("pid", 0))
    except (OSError, ValueError, msgspec.DecodeError):
        return 0
