"""Bus benchmark: the protocol layer (BusClient + Codec) against raw pyzmq sending the same bytes.

One run measures, through the real XSUB/XPUB proxy (``BusHost``), over ipc and tcp:

* publish -> receive latency, p50/p99, at 1,000 msg/s (one-way, CLOCK_MONOTONIC across processes);
* sustained throughput: a publisher floods N messages, the subscriber's receive rate;
* a 10 s mixed load: 1,200 gaze msg/s + 250 other msg/s, counting anything dropped.

Publisher, subscriber and bus run in separate processes (spawned workers; the bus's proxy
thread runs in this one). The baselines send the same bytes, with pyzmq's asyncio sockets and
the very I/O pattern of BusClient (non-blocking drain, one awaited recv when idle):

* "raw+msgpack": header and body as plain dicts, packed and unpacked with msgpack -- what a
  client without the protocol layer would write; protocol/raw+msgpack is the layer's cost;
* "raw": the codec's frames sent and received as opaque bytes (no decoding at all);
* "raw-sync": the same with plain blocking sockets, the floor for any asyncio client.

    .venv/bin/python bench/bus_bench.py            # full run (~1 min)
    .venv/bin/python bench/bus_bench.py --quick    # smaller counts, 3 s mixed load
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from typing import Any, Literal

WARM_TOPIC = b"bench.warm."
MODES = ("protocol", "raw+msgpack", "raw", "raw-sync")


# ----------------------------------------------------------------------------- messages
def gaze_body() -> Any:
    from razvilka.protocol.messages import Focus

    return Focus(index=2, source="gaze", confidence=0.875, dwell=0.42, x=812.5, y=440.25)


def other_bodies() -> list[tuple[Any, str | None]]:
    """A realistic mix of the non-gaze traffic (fork, look-ahead, layout, status, text, inputs)."""
    from razvilka.protocol.messages import (
        Box,
        Candidate,
        Confirm,
        DaemonStatus,
        ForkLookahead,
        ForkOpen,
        Layout,
        Lookahead,
        Stimulus,
        TextAuto,
        TextState,
    )

    words = ["river", "road", "forest", "lake", "town", "bay", "hill", "field"]
    return [
        (ForkOpen(candidates=[Candidate(index=i, word=w, prob=0.1) for i, w in enumerate(words)],
                  context="She walked down to the " * 4, entropy=2.5), "f1"),
        (ForkLookahead(entries=[Lookahead(index=i, phrases=[f"{w} and then the rain came"])
                                for i, w in enumerate(words)]), "f1"),
        (Layout(boxes=[Box(index=i, x=100.0 * i, y=400.0, w=90.0, h=40.0) for i in range(8)],
                screen_w=1920.0, screen_h=1080.0, renderer="web"), "f1"),
        (DaemonStatus(state="waiting", model="gemma-3-270m", k=8, sources={"gaze": "ok"}), None),
        (TextAuto(text=" and then the", words=["and", "then", "the"]), None),
        (TextState(text="She walked down to the road and then the " * 3), None),
        (Confirm(source="footswitch", index=2), "f1"),
        (Stimulus(indices=[0, 3], onset_ns=123, flash=4, renderer="web"), "f1"),
    ]


# ----------------------------------------------------------------------------- workers
def _endpoints(d: dict[str, Any]) -> Any:
    import msgspec

    from razvilka.protocol.discovery import Endpoints

    return msgspec.convert(d, Endpoints)


def worker(conn: Any, warm: Any) -> None:
    """A long-lived process running publisher or subscriber jobs sent over ``conn``."""
    while True:
        job = conn.recv()
        if job is None:
            return
        role = job["role"]
        if job["mode"] == "raw-sync":
            result = (sync_pub if role == "pub" else sync_sub)(job, warm)
        else:
            result = asyncio.run((async_pub if role == "pub" else async_sub)(job, warm))
        conn.send(result)


async def async_sub(job: dict[str, Any], warm: Any) -> dict[str, Any]:
    import zmq
    import zmq.asyncio

    from razvilka.protocol.client import BusClient

    ep, mode, n, idle = _endpoints(job["endpoints"]), job["mode"], job["n"], job["idle_s"]
    stamps: list[int] = []
    counts: dict[str, int] = {}
    stats: dict[str, Any] = {}
    now = time.monotonic_ns
    if mode == "protocol":
        client = BusClient("bench-sub", ep, subscribe=[""], heartbeat_ms=0)
        await client.start()
        await client.wait_connected(5.0)
        warm.set()
        try:
            c0 = time.process_time()
            if job.get("count_senders"):  # the mixed load: count per sender, skip heartbeats
                while len(stamps) < n:
                    msg = await client.recv(timeout=idle)
                    if msg is None:
                        break
                    if msg.type != "heartbeat":
                        stamps.append(now())
                        counts[msg.header.sender] = counts.get(msg.header.sender, 0) + 1
            else:  # as lean as the raw loops: only our publisher is sending
                while len(stamps) < n:
                    if await client.recv(timeout=idle) is None:
                        break
                    stamps.append(now())
            cpu = time.process_time() - c0
            s = client.stats
            stats = {"gaps": s.gaps, "rejected": s.rejected, "received": s.received}
        finally:
            await client.close(goodbye=False)
    else:
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.linger, sock.rcvhwm = 0, 100_000
        sock.subscribe(b"")
        sock.connect(ep.sub)
        plain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        burst = 0
        unpack = None
        if mode == "raw+msgpack":
            import msgpack

            unpack = msgpack.unpackb
        c0 = time.process_time()
        try:
            while len(stamps) < n:  # the same I/O pattern as BusClient.recv, minus the protocol
                try:
                    frames = plain.recv_multipart(zmq.NOBLOCK)
                    burst += 1
                    if burst >= 64:
                        burst = 0
                        await asyncio.sleep(0)
                except zmq.Again:
                    burst = 0
                    plain.rcvtimeo = int(idle * 1000)
                    try:
                        frames = await sock.recv_multipart()
                    except zmq.Again:
                        break
                    finally:
                        plain.rcvtimeo = -1
                if frames[0] == WARM_TOPIC:
                    warm.set()
                    continue
                if unpack is not None:
                    unpack(frames[1])
                    unpack(frames[2])
                stamps.append(now())
            cpu = time.process_time() - c0
        finally:
            sock.close(linger=0)
    return {"stamps": stamps, "counts": counts, "stats": stats, "cpu": cpu}


def sync_sub(job: dict[str, Any], warm: Any) -> dict[str, Any]:
    import zmq

    ep, n, idle = _endpoints(job["endpoints"]), job["n"], job["idle_s"]
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.linger, sock.rcvhwm, sock.rcvtimeo = 0, 100_000, int(idle * 1000)
    sock.subscribe(b"")
    sock.connect(ep.sub)
    stamps: list[int] = []
    now = time.monotonic_ns
    c0 = time.process_time()
    try:
        while len(stamps) < n:
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                break
            t = now()
            if frames[0] == WARM_TOPIC:
                warm.set()
                continue
            stamps.append(t)
    finally:
        sock.close(linger=0)
    return {"stamps": stamps, "counts": {}, "stats": {}, "cpu": time.process_time() - c0}


def _frames(name: str, body: Any, fork_id: str | None, subtopic: tuple[str, ...]) -> list[bytes]:
    from razvilka.protocol.codec import Codec

    return Codec(name).encode(body, fork_id=fork_id, subtopic=subtopic)


async def async_pub(job: dict[str, Any], warm: Any) -> dict[str, Any]:
    import zmq
    import zmq.asyncio

    from razvilka.protocol.client import BusClient

    ep, mode, n, rate = _endpoints(job["endpoints"]), job["mode"], job["n"], job["rate"]
    name = job["name"]
    bodies = [(gaze_body(), "f1")] if job["kind"] == "gaze" else other_bodies()
    subtopic = ("gaze",) if job["kind"] == "gaze" else ()
    now = time.monotonic_ns
    sent: list[int] = []
    if mode == "protocol":
        client = BusClient(name, ep, role="input", heartbeat_ms=job["heartbeat_ms"])
        await client.start()
        await client.wait_connected(5.0)
        warm.wait(10)

        def send(i: int) -> None:
            body, fork_id = bodies[i % len(bodies)]
            client.publish(body, fork_id=fork_id, subtopic=subtopic)
    else:
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.PUB)
        sock.linger, sock.sndhwm = 0, 100_000
        sock.connect(ep.pub)
        plain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)  # as BusClient.publish sends
        frames = [_frames(name, b, f, subtopic) for b, f in bodies]
        while not warm.is_set():  # until the subscriber sees us
            plain.send_multipart([WARM_TOPIC, b"", b""])
            await asyncio.sleep(0.01)

        if mode == "raw+msgpack":  # what a client without the protocol layer would write
            import msgpack
            import msgspec

            plain_bodies = [(f[0], b.TYPE, fork, msgspec.to_builtins(b)) for f, (b, fork) in zip(frames, bodies)]
            session = os.urandom(16).hex()

            def send(i: int) -> None:
                topic, kind, fork, body = plain_bodies[i % len(plain_bodies)]
                header = {"version": "1.0", "type": kind, "id": f"{name}-{i}", "sender": name,
                          "session": session, "seq": i, "ts_ns": now(), "fork_id": fork}
                plain.send_multipart([topic, msgpack.packb(header), msgpack.packb(dict(body))])
        else:
            def send(i: int) -> None:
                plain.send_multipart(frames[i % len(frames)])
    try:
        t0, c0 = time.monotonic(), time.process_time()
        for i in range(n):
            if rate:
                due = t0 + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent.append(now())
            send(i)
        cpu = time.process_time() - c0
        await asyncio.sleep(job.get("linger_s", 0.5))  # let the frames leave before closing
    finally:
        if mode == "protocol":
            await client.close(goodbye=False)
        else:
            sock.close(linger=0)
    return {"sent": sent, "cpu": cpu}


def sync_pub(job: dict[str, Any], warm: Any) -> dict[str, Any]:
    import zmq

    ep, n, rate = _endpoints(job["endpoints"]), job["n"], job["rate"]
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.linger, sock.sndhwm = 0, 100_000
    sock.connect(ep.pub)
    frames = _frames(job["name"], gaze_body(), "f1", ("gaze",))
    while not warm.is_set():
        sock.send_multipart([WARM_TOPIC, b"", b""])
        time.sleep(0.01)
    sent: list[int] = []
    now = time.monotonic_ns
    t0, c0 = time.monotonic(), time.process_time()
    try:
        for i in range(n):
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent.append(now())
            sock.send_multipart(frames)
        cpu = time.process_time() - c0
        time.sleep(job.get("linger_s", 0.5))
    finally:
        sock.close(linger=0)
    return {"sent": sent, "cpu": cpu}


# ----------------------------------------------------------------------------- driver
class Pool:
    """Three spawned worker processes: two publishers and one subscriber."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.warm = ctx.Event()
        self.procs, self.conns = [], []
        for _ in range(3):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker, args=(child, self.warm), daemon=True)
            p.start()
            self.procs.append(p)
            self.conns.append(parent)

    def run(self, sub: dict[str, Any], *pubs: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.warm.clear()
        self.conns[0].send({**sub, "role": "sub"})
        for conn, pub in zip(self.conns[1:], pubs):
            conn.send({**pub, "role": "pub"})
        sent = [conn.recv() for conn in self.conns[1:1 + len(pubs)]]
        return self.conns[0].recv(), sent

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for p in self.procs:
            p.join(5)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def latency(pool: Pool, ep: dict[str, Any], mode: str, n: int) -> dict[str, float]:
    sub, (pub,) = pool.run(
        {"mode": mode, "endpoints": ep, "n": n, "idle_s": 2.0},
        {"mode": mode, "endpoints": ep, "n": n, "rate": 1000, "kind": "gaze", "name": "bench-gaze",
         "heartbeat_ms": 0},
    )
    rx, tx = sub["stamps"], pub["sent"]
    if len(rx) != len(tx):
        return {"p50_us": float("nan"), "p99_us": float("nan"), "lost": len(tx) - len(rx)}
    lat = [(r - s) / 1000 for r, s in zip(rx, tx)][n // 10:]  # skip the first 10 % (warm-up)
    return {"p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99), "lost": 0}


def throughput(pool: Pool, ep: dict[str, Any], mode: str, n: int) -> dict[str, float]:
    sub, (pub,) = pool.run(
        {"mode": mode, "endpoints": ep, "n": n, "idle_s": 2.0},
        {"mode": mode, "endpoints": ep, "n": n, "rate": 0, "kind": "gaze", "name": "bench-gaze",
         "heartbeat_ms": 0, "linger_s": 1.0},
    )
    rx, tx = sub["stamps"], pub["sent"]
    window = (rx[-1] - tx[0]) / 1e9 if rx else float("inf")
    return {"msgs_per_s": len(rx) / window, "send_per_s": len(tx) / ((tx[-1] - tx[0]) / 1e9),
            "lost": len(tx) - len(rx),
            "cpu_pub_us": pub["cpu"] / max(1, len(tx)) * 1e6, "cpu_sub_us": sub["cpu"] / max(1, len(rx)) * 1e6}


def sustained(pool: Pool, ep: dict[str, Any], seconds: float) -> dict[str, Any]:
    n_gaze, n_other = int(1200 * seconds), int(250 * seconds)
    sub, (gaze, other) = pool.run(
        {"mode": "protocol", "endpoints": ep, "n": n_gaze + n_other, "idle_s": 3.0, "count_senders": True},
        {"mode": "protocol", "endpoints": ep, "n": n_gaze, "rate": 1200, "kind": "gaze", "name": "bench-gaze",
         "heartbeat_ms": 1000},
        {"mode": "protocol", "endpoints": ep, "n": n_other, "rate": 250, "kind": "other", "name": "bench-other",
         "heartbeat_ms": 1000},
    )
    return {"sent": {"bench-gaze": len(gaze["sent"]), "bench-other": len(other["sent"])},
            "received": sub["counts"], **{k: v for k, v in sub["stats"].items() if k != "received"}}


def start_bus(transport: Literal["ipc", "tcp"], runtime_dir: str) -> Any:
    from razvilka.protocol.bus import BusHost
    from razvilka.protocol.config import BusConfig

    host = BusHost(BusConfig(transport=transport, runtime_dir=runtime_dir, pub_port=0, sub_port=0, snapshot_port=0))
    host.start()
    return host


def main(argv: list[str] | None = None) -> int:
    import msgspec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts and a 3 s mixed load")
    ap.add_argument("--transports", nargs="+", default=["ipc", "tcp"], choices=["ipc", "tcp"])
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per mode, interleaved; the best is reported (the least disturbed by other load)")
    args = ap.parse_args(argv)
    n_lat, n_tp, secs = (500, 20_000, 3.0) if args.quick else (2000, 100_000, 10.0)

    print(f"bus benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"python {sys.version.split()[0]}")
    pool = Pool()
    ok = True
    try:
        for transport in args.transports:
            with tempfile.TemporaryDirectory(prefix="rzb-", dir="/tmp") as rd:
                host = start_bus(transport, rd)
                ep = msgspec.to_builtins(host.endpoints)
                try:
                    print(f"\n== {transport} ({host.endpoints.pub})")
                    lats: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
                    tps: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
                    for _ in range(args.repeat):  # interleaved, so a burst of outside load hits all modes alike
                        for m in MODES:
                            lats[m].append(latency(pool, ep, m, n_lat))
                            tps[m].append(throughput(pool, ep, m, n_tp))
                    lat = {m: min(runs, key=lambda r: r["p50_us"]) for m, runs in lats.items()}
                    tp = {m: max(runs, key=lambda r: r["msgs_per_s"]) for m, runs in tps.items()}
                    lost_all = sum(r["lost"] for runs in (*lats.values(), *tps.values()) for r in runs)
                    print(f"best of {args.repeat} runs per mode ({n_lat} msgs at 1,000/s for latency, "
                          f"{n_tp:,} flooded for throughput)")
                    cpu = {m: (min(r["cpu_pub_us"] for r in tps[m]), min(r["cpu_sub_us"] for r in tps[m]))
                           for m in MODES}
                    print(f"{'':10} {'p50 us':>8} {'p99 us':>8}   {'recv msg/s':>11} {'send msg/s':>11}   "
                          f"{'CPU us/msg pub':>14} {'sub':>5}   all p50 / all recv msg/s")
                    for m in MODES:
                        print(f"{m:10} {lat[m]['p50_us']:8.1f} {lat[m]['p99_us']:8.1f}   "
                              f"{tp[m]['msgs_per_s']:11,.0f} {tp[m]['send_per_s']:11,.0f}   "
                              f"{cpu[m][0]:14.1f} {cpu[m][1]:5.1f}   "
                              + " ".join(f"{r['p50_us']:.0f}" for r in lats[m]) + " / "
                              + " ".join(f"{r['msgs_per_s'] / 1000:.1f}k" for r in tps[m]))
                    base = "raw+msgpack"
                    p, r = lat["protocol"], lat[base]
                    lat_ratio = p["p50_us"] / r["p50_us"]
                    tp_ratio = tp[base]["msgs_per_s"] / tp["protocol"]["msgs_per_s"]
                    cpu_ratio = sum(cpu["protocol"]) / sum(cpu[base])
                    print(f"protocol/raw+msgpack: p50 latency x{lat_ratio:.2f}, p99 x{p['p99_us'] / r['p99_us']:.2f}, "
                          f"time per message (1/throughput) x{tp_ratio:.2f}, "
                          f"CPU per message (pub+sub) x{cpu_ratio:.2f}")
                    for other in ("raw", "raw-sync"):
                        print(f"protocol/{other}: p50 latency x{p['p50_us'] / lat[other]['p50_us']:.2f}, "
                              f"time per message x{tp[other]['msgs_per_s'] / tp['protocol']['msgs_per_s']:.2f}, "
                              f"CPU per message x{sum(cpu['protocol']) / sum(cpu[other]):.2f}")
                    checks = [
                        ("protocol layer <= 30% over raw+msgpack (p50 latency)", lat_ratio <= 1.30),
                        ("protocol layer <= 30% over raw+msgpack (time per message)", tp_ratio <= 1.30),
                        ("protocol layer <= 30% over raw+msgpack (CPU per message, pub+sub)", cpu_ratio <= 1.30),
                        (">= 50,000 msg/s through the proxy (protocol)", tp["protocol"]["msgs_per_s"] >= 50_000),
                        ("nothing lost in the latency and throughput runs", lost_all == 0),
                    ]
                    if transport == "ipc":
                        checks.append(("p50 hop <= 150 us over ipc (protocol)", p["p50_us"] <= 150))
                    mixed = sustained(pool, ep, secs)
                    lost = {k: mixed["sent"][k] - mixed["received"].get(k, 0) for k in mixed["sent"]}
                    print(f"mixed load {secs:.0f} s (1,200 gaze/s + 250 other/s): sent {mixed['sent']}, "
                          f"lost {lost}, gaps {mixed.get('gaps')}, rejected {mixed.get('rejected')}")
                    checks.append((f"nothing dropped at 1,200 + 250 msg/s over {secs:.0f} s",
                                   not any(lost.values()) and mixed.get("gaps") == 0 and mixed.get("rejected") == 0))
                    for label, passed in checks:
                        ok &= passed
                        print(f"  [{'PASS' if passed else 'MISS'}] {label}")
                finally:
                    host.stop()
    finally:
        pool.close()
    print(f"\nload average {os.getloadavg()[0]:.2f} at end; {'all targets met' if ok else 'some targets missed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
