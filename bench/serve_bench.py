#!/usr/bin/env python3
"""Many people on one server: N simulated people, each with their own daemon, on ONE llama-server, against
N daemons that each embed the model, in the same run (issue 18; docs/performance.md, "Many people on one
server"; docs/deployment.md, "Capacity").

    python bench/serve_bench.py --quick                 # N = 1, 2, 4, 8; 1 phrase per person; stops at 15 min
    python bench/serve_bench.py --counts 1,4 --phrases-per-person 5

One ``razvilka serve`` (llama-server from xllamacpp, ``--parallel`` slots) is started once. For each N, N
daemons are started as separate processes (on the server each pinned to its own ``--parallel // N`` slots:
``model.slot``, ``model.slots``) (``razvilka daemon``, each with its own runtime directory, bus,
store and profile directory) on ``model.backend = "llama-server"``, and N simulated people (the
simulated-user benchmark's ``Person``, the headline configuration auto-k8) write different phrases at the
same time, one person per daemon; then the same with N daemons that embed the model. Reported per row:

* forks per second: forks served to all N people together, divided by the phase's wall time;
* p50 / p95 from a selection (a candidate or a look-ahead phrase) to the next fork being usable;
* the pre-generation hit rate: selections answered by a pre-generated fork;
* resident memory per person: each daemon's peak RSS (VmHWM), plus for the server rows the server's RSS
  divided among the N people; PSS too (shared pages, such as the GGUF mapped by every embedded daemon,
  split among the processes that map them).

Ratios are printed against the baselines measured in the same run (N = 1 of the same kind; the embedded
daemon at the same N). Writes ``bench/results/serve/<run>/`` (config.json, results.json, table.md) after
every phase, so a run cut short keeps what it measured; ``--budget-s`` starts no phase after that long (the
phases not run are listed).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from simulated_user import PHRASES, git_rev, load_phrases  # noqa: E402
from simuser.costs import PhraseResult  # noqa: E402
from simuser.driver import Person  # noqa: E402
from simuser.matrix import HEADLINE, known  # noqa: E402

OUT = ROOT / "bench" / "results" / "serve"
#: The issue's targets at N = 4: memory per person at most this share of an embedded daemon's, and p50
#: selection-to-next-fork at most this multiple of the single person's.
TARGET_N = 4
TARGET_MEMORY_SHARE = 0.25
TARGET_P50_RATIO = 2.0


# ---------------------------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_memory(pid: int) -> dict[str, float]:
    """MiB: current RSS, peak RSS (VmHWM) and PSS of a process (Linux /proc), 0 where unreadable."""
    out = {"rss_mib": 0.0, "hwm_mib": 0.0, "pss_mib": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mib"] = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                out["hwm_mib"] = int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_mib"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """``razvilka serve`` as its own process (loopback, ``parallel`` slots); ``url`` once it is ready."""

    def __init__(self, parallel: int, ctx: int, threads: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "razvilka.cli", "serve", "--port", str(self.port), "--parallel",
                    str(parallel), "--ctx-size", str(ctx), "--threads", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> None:
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=ROOT)
        assert self.proc.stderr is not None
        deadline, seen = time.monotonic() + timeout, b""
        while b"razvilka serve: " not in seen or b"\n" not in seen.split(b"razvilka serve: ", 1)[1]:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                why = seen.decode(errors="replace")[-2000:]
                raise SystemExit(f"serve_bench: razvilka serve did not come up: {why}")
            if select.select([self.proc.stderr], [], [], left)[0]:
                seen += os.read(self.proc.stderr.fileno(), 65536)
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:  # keep reading its log so a full pipe never blocks it
        proc = self.proc
        while proc is not None and proc.stderr is not None and proc.stderr.read(65536):
            pass

    def prefill_tokens_per_s(self) -> float:
        """The server's prompt throughput on this machine: 8 fresh 96-token paths in one request, from the
        server's own timings (tokens evaluated / ms). What the extrapolation scales."""
        paths = [[2] + [1000 + 37 * i + j for j in range(96)] for i in range(8)]
        body = json.dumps({"prompt": paths, "n_predict": 1, "cache_prompt": False}).encode()
        req = urllib.request.Request(self.url + "/completion", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:  # once to warm up (the first decode is slow)
            r.read()
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=300) as r:
            answers = json.loads(r.read())
        wall = time.monotonic() - t0
        n = sum(int(a.get("timings", {}).get("prompt_n", 0)) for a in answers)
        return n / wall if wall > 0 else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


def daemon_env(home: Path, model: dict[str, Any], gating: dict[str, Any], daemon: dict[str, Any]) -> dict[str, str]:
    """A daemon's own world: runtime directory (bus), store, profile and config directories under ``home``;
    everything else from RAZVILKA_* variables (razvilka/config.py reads SECTION__KEY)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAZVILKA_")}
    env.update({"XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_STATE_HOME": str(home / "state"), "PYTHONUNBUFFERED": "1",
                "RAZVILKA_BUS__RUNTIME_DIR": str(home / "run"), "RAZVILKA_BUS__HEARTBEAT_MS": "1000",
                "RAZVILKA_STORE__PATH": str(home / "store.sqlite3")})
    for section, values in (("MODEL", model), ("GATING", gating), ("DAEMON", daemon)):
        for key, value in values.items():
            env[f"RAZVILKA_{section}__{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def start_daemon(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``razvilka daemon`` in ``home``, its log in ``home/daemon.log``."""
    with open(home / "daemon.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "razvilka.cli", "daemon"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


async def join(home: Path, proc: subprocess.Popen[bytes], timeout: float) -> Any:
    """A bus client on the daemon in ``home`` once its bus is up (its discovery file names its pid)."""
    from razvilka.protocol.client import BusClient
    from razvilka.protocol.discovery import read_discovery

    disc = home / "run" / "bus.json"
    deadline = time.monotonic() + timeout
    while not (disc.exists() and read_discovery(disc).pid == proc.pid):
        if proc.poll() is not None:
            raise SystemExit(f"serve_bench: a daemon died at start: {(home / 'daemon.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"serve_bench: a daemon's bus did not come up in {timeout:.0f} s")
        await asyncio.sleep(0.1)
    client = BusClient("simuser", read_discovery(disc), subscribe=["fork.", "text.", "daemon."], heartbeat_ms=1000)
    await client.start()
    if not await client.wait_connected(30.0):
        raise SystemExit("serve_bench: could not join a daemon's bus")
    return client


async def first_fork(client: Any, timeout: float) -> None:
    """Wait until the daemon has loaded its model and opened its first fork (it is ready for a person)."""
    from razvilka.protocol.messages import ForkOpen

    if any(m.type == ForkOpen.TYPE for m in await client.snapshot()):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        if msg is not None and isinstance(msg.body, ForkOpen):
            return
    raise SystemExit(f"serve_bench: a daemon opened no fork within {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------- one phase
async def phase(kind: str, n: int, jobs: list[list[tuple[str, str]]], args: argparse.Namespace,
                server: Server | None) -> dict[str, Any]:
    """N daemons of ``kind`` ("server" or "embedded"), N people writing at once; the row of the table."""
    cfg = known()[HEADLINE]
    cores = len(os.sched_getaffinity(0))
    if kind == "server":
        assert server is not None
        model: dict[str, Any] = {"backend": "llama-server", "url": server.url, "timeout_s": 120.0}
    else:  # each embedded daemon gets its share of the cores (more threads than cores only spin)
        model = {"backend": "embedded", "n_threads": max(1, cores // n)}
    homes = [Path(tempfile.mkdtemp(prefix=f"rz-sb-{kind}{n}-{i}-", dir="/tmp")) for i in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Any] = []
    try:
        for i, home in enumerate(homes):
            # on the server each person has their own slot (model.slot; docs/deployment.md), as deployed
            # and an equal share of the slots (model.slots: a person's paths are decoded together there)
            share = max(1, args.parallel // n)
            own = {**model, "slot": (i * share) % args.parallel, "slots": share} if kind == "server" else model
            env = daemon_env(home, own, cfg.gating(), {**cfg.daemon(), "profile": False, "prompt": ""})
            procs.append(await asyncio.to_thread(start_daemon, home, env))
        t_load = time.monotonic()
        clients = [await join(h, p, 300.0) for h, p in zip(homes, procs)]
        await asyncio.gather(*(first_fork(c, 600.0) for c in clients))
        load_s = time.monotonic() - t_load
        server_cpu0 = proc_cpu_s(server.proc.pid) if server is not None and server.proc is not None else 0.0
        daemon_cpu0 = [proc_cpu_s(p.pid) for p in procs]

        async def person(i: int) -> list[PhraseResult]:
            p = Person(clients[i], cfg.person(think_s=args.think_ms / 1000, seed=i))
            p.opt.timeout_s = 600.0
            return [await p.write(phrase, prompt) for phrase, prompt in jobs[i]]

        t0 = time.monotonic()
        results = await asyncio.gather(*(person(i) for i in range(n)))
        wall = time.monotonic() - t0
        mem = [proc_memory(p.pid) for p in procs]
        srv_mem = proc_memory(server.proc.pid) if server is not None and server.proc is not None else None
        server_cpu = (proc_cpu_s(server.proc.pid) - server_cpu0) if server is not None and server.proc else 0.0
        daemon_cpu = sum(proc_cpu_s(p.pid) - c0 for p, c0 in zip(procs, daemon_cpu0))
    finally:
        for c in clients:
            await c.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)
        for h in homes:
            shutil.rmtree(h, ignore_errors=True)
    return row(kind, n, results, wall, load_s, mem, srv_mem, server_cpu, daemon_cpu)


def pct(xs: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank on the sorted values); None for no values."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def selection_waits(r: PhraseResult) -> list[float]:
    """ms from each selection (a candidate or a look-ahead phrase) to the next usable fork: the driver
    records one wait per action, in the order of the action steps."""
    actions = [s for s in r.steps if s.kind != "read"]
    return [w for s, w in zip(actions, r.wait_ms) if s.kind in ("select", "phrase")]


def row(kind: str, n: int, results: list[list[PhraseResult]], wall: float, load_s: float,
        mem: list[dict[str, float]], srv_mem: dict[str, float] | None, server_cpu: float,
        daemon_cpu: float) -> dict[str, Any]:
    flat = [r for rs in results for r in rs]
    waits = [w for r in flat for w in selection_waits(r)]
    forks = sum(len(r.wait_ms) + 1 for r in flat)  # every action's next fork, and each phrase's first
    selects = sum(r.selects for r in flat)
    share = (lambda key: srv_mem[key] / n) if srv_mem is not None else (lambda key: 0.0)
    hwm = statistics.fmean(m["hwm_mib"] for m in mem)
    pss = statistics.fmean(m["pss_mib"] for m in mem)
    return {
        "kind": kind, "people": n, "phrases": len(flat), "done": sum(r.done for r in flat), "wall_s": round(wall, 1),
        "load_s": round(load_s, 1), "forks": forks, "forks_per_s": round(forks / wall, 3) if wall else None,
        "select_to_fork_p50_ms": pct(waits, 50), "select_to_fork_p95_ms": pct(waits, 95), "selections": len(waits),
        "pregen_hit_rate": round(sum(r.pregen_hits for r in flat) / selects, 3) if selects else None,
        "daemon_rss_mib": round(hwm, 1), "daemon_pss_mib": round(pss, 1),
        "server_rss_mib": round(srv_mem["hwm_mib"], 1) if srv_mem else None,
        "server_pss_mib": round(srv_mem["pss_mib"], 1) if srv_mem else None,
        "rss_per_person_mib": round(hwm + share("hwm_mib"), 1),
        "pss_per_person_mib": round(pss + share("pss_mib"), 1),
        "server_cpu_s": round(server_cpu, 1), "daemon_cpu_s": round(daemon_cpu, 1),
        "server_cpu_s_per_fork": round(server_cpu / forks, 4) if forks and srv_mem else None,
        "results": [[r.to_json() for r in rs] for rs in results],
    }


# ---------------------------------------------------------------------------------------------- the report
def ratios(rows: list[dict[str, Any]]) -> None:
    """Add each row's ratios to the baselines of the same run: N = 1 of its kind, the embedded daemon at
    its N (memory), and the targets at N = 4."""
    by = {(r["kind"], r["people"]): r for r in rows}
    for r in rows:
        one = by.get((r["kind"], 1))
        emb = by.get(("embedded", r["people"]))
        p50, p50_1 = r["select_to_fork_p50_ms"], one["select_to_fork_p50_ms"] if one else None
        r["p50_vs_one_person"] = round(p50 / p50_1, 2) if p50 and p50_1 else None
        r["rss_vs_embedded"] = round(r["rss_per_person_mib"] / emb["rss_per_person_mib"], 3) if emb else None
        r["pss_vs_embedded"] = round(r["pss_per_person_mib"] / emb["pss_per_person_mib"], 3) if emb else None
        r["forks_per_s_vs_one_person"] = round(r["forks_per_s"] / one["forks_per_s"], 2) \
            if one and one["forks_per_s"] and r["forks_per_s"] else None


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["kind"], r["people"]): r for r in rows}
    s = by.get(("server", TARGET_N))
    if s is None:
        return {}
    return {
        "n": TARGET_N,
        "memory_per_person_vs_embedded": s["rss_vs_embedded"], "memory_target": TARGET_MEMORY_SHARE,
        "memory_met": s["rss_vs_embedded"] is not None and s["rss_vs_embedded"] <= TARGET_MEMORY_SHARE,
        "pss_per_person_vs_embedded": s["pss_vs_embedded"],
        "p50_vs_one_person": s["p50_vs_one_person"], "p50_target": TARGET_P50_RATIO,
        "p50_met": s["p50_vs_one_person"] is not None and s["p50_vs_one_person"] <= TARGET_P50_RATIO,
    }


def capacity(rows: list[dict[str, Any]], tokens_per_s: float, cores: int, gpu_tokens_per_s: float) -> dict[str, Any]:
    """How many people one server carries, from what this run measured (docs/deployment.md, "Capacity"):

    * the server's work per fork: CPU seconds per fork (its /proc counters over the busiest phase), turned
      into tokens evaluated per fork with its prompt throughput on this machine (``tokens_per_s`` per
      ``cores``);
    * a person's demand: forks per second of one person alone (the N = 1 server row);
    * people = throughput / (tokens per fork x forks per person per second), here and, for a GPU, with
      ``gpu_tokens_per_s`` (an assumption, stated: no GPU ran this).
    It ignores latency (a GPU decodes one batch in milliseconds; the CPU's forks wait for the batch)."""
    srv = [r for r in rows if r["kind"] == "server" and r["server_cpu_s_per_fork"]]
    one = next((r for r in srv if r["people"] == 1), None)
    if not srv or one is None or not tokens_per_s:
        return {}
    busiest = max(srv, key=lambda r: r["people"])
    cpu_per_fork = busiest["server_cpu_s_per_fork"]
    tokens_per_fork = cpu_per_fork * tokens_per_s / cores  # tokens_per_s was measured on all the cores
    demand = one["forks_per_s"]
    return {
        "server_cpu_s_per_fork": cpu_per_fork, "measured_at_people": busiest["people"],
        "prefill_tokens_per_s_this_cpu": round(tokens_per_s, 1), "cores": cores,
        "tokens_per_fork": round(tokens_per_fork, 1), "forks_per_s_one_person": demand,
        "people_this_cpu": round(tokens_per_s / (tokens_per_fork * demand), 1) if tokens_per_fork and demand else None,
        "gpu_tokens_per_s_assumed": gpu_tokens_per_s,
        "people_one_gpu": round(gpu_tokens_per_s / (tokens_per_fork * demand)) if tokens_per_fork and demand else None,
    }


def fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:.3g}{unit}"
    return f"{x}{unit}"


def table(rows: list[dict[str, Any]], tgt: dict[str, Any], cap: dict[str, Any]) -> str:
    head = ("| daemons | people | forks/s | p50 sel→fork | p95 | p50 vs 1 person | pre-gen hits | RSS/person "
            "| vs embedded | PSS/person | vs embedded | phrases done |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['people']} | {fmt(r['forks_per_s'])} | {fmt(r['select_to_fork_p50_ms'], ' ms')} "
            f"| {fmt(r['select_to_fork_p95_ms'], ' ms')} | {fmt(r['p50_vs_one_person'], '×')} "
            f"| {fmt(r['pregen_hit_rate'])} | {fmt(r['rss_per_person_mib'], ' MiB')} "
            f"| {fmt(r['rss_vs_embedded'], '×')} | {fmt(r['pss_per_person_mib'], ' MiB')} "
            f"| {fmt(r['pss_vs_embedded'], '×')} | {r['done']}/{r['phrases']} |")
    if tgt:
        lines += ["", (f"Targets at N = {tgt['n']}: memory per person {fmt(tgt['memory_per_person_vs_embedded'], '×')} "
                  f"of an embedded daemon's (RSS; target ≤ {tgt['memory_target']}×: "
                  f"{'met' if tgt['memory_met'] else 'NOT met'}; PSS {fmt(tgt['pss_per_person_vs_embedded'], '×')}); "
                  f"p50 selection→fork {fmt(tgt['p50_vs_one_person'], '×')} the single person's (target ≤ "
                  f"{tgt['p50_target']}×: {'met' if tgt['p50_met'] else 'NOT met'}).")]
    if cap:
        lines += ["", (f"Capacity: the server spent {cap['server_cpu_s_per_fork']} CPU-s per fork (at "
                  f"{cap['measured_at_people']} people) ≈ {cap['tokens_per_fork']} tokens at its "
                  f"{cap['prefill_tokens_per_s_this_cpu']} tokens/s prompt throughput on {cap['cores']} cores; "
                  f"one person alone asks {cap['forks_per_s_one_person']} forks/s: this CPU carries ≈ "
                  f"{cap['people_this_cpu']} people; a GPU at an assumed "
                  f"{cap['gpu_tokens_per_s_assumed']:,.0f} tokens/s ≈ "
                  f"{cap['people_one_gpu']} people (throughput only).")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main
async def run(args: argparse.Namespace) -> Path:
    counts = [int(x) for x in args.counts.split(",")]
    kinds = args.kinds.split(",")
    per = args.phrases_per_person
    phrases_all, chosen = load_phrases(Path(args.phrases), args.offset, max(counts) * per)
    # person i writes the same phrases in every phase (each after a line of context: the file's phrase before)
    jobs = [[(chosen[i * per + j], phrases_all[(args.offset + i * per + j - 1) % len(phrases_all)] + "\n")
             for j in range(per)] for i in range(max(counts))]
    cores = len(os.sched_getaffinity(0))
    server = Server(args.parallel, args.ctx_size, args.server_threads or cores) if "server" in kinds else None
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    tokens_per_s = 0.0
    out = OUT / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    try:
        if server is not None:
            server.start()
            tokens_per_s = server.prefill_tokens_per_s()
            print(f"server at {server.url}: prompt throughput {tokens_per_s:.0f} tokens/s", flush=True)
        for n in counts:
            for kind in kinds:
                if args.budget_s and time.monotonic() - started > args.budget_s:
                    skipped.append(f"{kind} N={n}")
                    continue
                r = await phase(kind, n, jobs[:n], args, server if kind == "server" else None)
                rows.append(r)
                print(f"{kind:8s} N={n}: {r['forks_per_s']} forks/s, p50 {r['select_to_fork_p50_ms']} ms, "
                      f"p95 {r['select_to_fork_p95_ms']} ms, pre-gen {r['pregen_hit_rate']}, "
                      f"{r['rss_per_person_mib']} MiB/person (daemon {r['daemon_rss_mib']}, server "
                      f"{r['server_rss_mib']}), {r['done']}/{r['phrases']} done, {r['wall_s']} s "
                      f"(+{r['load_s']} s to load)", flush=True)
                save(out, args, rows, skipped, tokens_per_s, cores, counts, kinds, jobs, started)
    finally:
        if server is not None:
            server.stop()
    text = save(out, args, rows, skipped, tokens_per_s, cores, counts, kinds, jobs, started)
    print("\n" + text)
    print(f"wrote {out} in {time.monotonic() - started:.0f} s")
    return out


def save(out: Path, args: argparse.Namespace, rows: list[dict[str, Any]], skipped: list[str], tokens_per_s: float,
         cores: int, counts: list[int], kinds: list[str], jobs: list[list[tuple[str, str]]], started: float) -> str:
    """Write config.json, results.json and table.md for the phases measured so far; returns the table."""
    ratios(rows)
    tgt = targets(rows)
    cap = capacity(rows, tokens_per_s, cores, args.gpu_tokens_per_s)
    text = table(rows, tgt, cap)
    if skipped:
        text += f"\nNot run (past --budget-s {args.budget_s:g} s): {', '.join(skipped)}.\n"
    per = args.phrases_per_person
    config = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "git": git_rev(), "host": platform.node(),
        "cpu_cores": cores, "load_avg_at_start": os.getloadavg(), "counts": counts, "kinds": kinds,
        "phrases_per_person": per, "phrases": [[p for p, _ in j] for j in jobs], "think_ms": args.think_ms,
        "configuration": known()[HEADLINE].to_json(), "daemon_profile": False,
        "server": {"parallel": args.parallel, "ctx_per_slot": args.ctx_size, "threads": args.server_threads or cores,
                   "model": "embedded Gemma 3 270M (Q4_K_M)",
                   "slots_per_person": {str(n): max(1, args.parallel // n) for n in counts}},
        "embedded_threads": {str(n): max(1, cores // n) for n in counts},
        "gpu_tokens_per_s_assumed": args.gpu_tokens_per_s, "total_s": round(time.monotonic() - started, 1),
        "budget_s": args.budget_s, "not_run": skipped,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "targets": tgt, "capacity": cap,
                                                  "not_run": skipped}, indent=2) + "\n")
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", default="1,2,4,8", help="people (daemons) per phase, comma-separated (default 1,2,4,8)")
    p.add_argument("--kinds", default="server,embedded", help="server, embedded or both (default both)")
    p.add_argument("--phrases-per-person", type=int, default=4, help="phrases each person writes (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="1 phrase per person and --budget-s 900: one run in about 15 min on 2 cores")
    p.add_argument("--budget-s", type=float, default=0.0, help="start no phase after this many seconds (0: no limit)")
    p.add_argument("--phrases", default=str(PHRASES), help="phrase file, one per line")
    p.add_argument("--offset", type=int, default=0, help="first phrase of the file to use")
    p.add_argument("--think-ms", type=int, default=1000, help="a selection takes at least this long (default 1000)")
    p.add_argument("--parallel", type=int, default=8, help="the server's slots (default 8: one per person at N=8)")
    p.add_argument("--ctx-size", type=int, default=512,
                   help="context per server slot, tokens (default 512: a KV pool of 8 x 512 = 4096 tokens, shared by "
                        "the slots, each of which may use all of it: the embedded daemon's own n_ctx)")
    p.add_argument("--server-threads", type=int, default=0, help="the server's threads (default: every core)")
    p.add_argument("--gpu-tokens-per-s", type=float, default=20000.0,
                   help="assumed prompt throughput of one GPU for the extrapolation (default 20000: an assumption)")
    args = p.parse_args()
    if args.quick:
        args.phrases_per_person = 1
        args.budget_s = args.budget_s or 900.0
    if args.phrases_per_person < 1:
        p.error("--phrases-per-person must be >= 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
