#!/usr/bin/env python3
"""The simulated-user benchmark: how much effort the system saves a person (docs/simulated_user.md).

A simulated person writes the MacKenzie & Soukoreff phrases through the REAL daemon over the bus
(one in-process daemon per configuration, all on ONE loaded model), and every configuration is
compared over the same phrases in the same run with two baselines: letter-by-letter typing and
classic word prediction with the same model.

    python bench/simulated_user.py --limit 30                 # the full matrix on 30 phrases
    python bench/simulated_user.py --set quick --limit 10     # headline vs baseline only
    python bench/simulated_user.py --configs auto-k8,wordpred-k8 --inject

Writes ``bench/results/simulated_user/<run>/`` (config.json: every setting; results.json:
per-configuration metrics and per-phrase logs; table.md) and the plots ``docs/img/simuser_*.png``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from simuser import report  # noqa: E402
from simuser.costs import (  # noqa: E402
    CostParams,
    Modality,
    PhraseResult,
    summarize,
    summarize_letters,
    with_overrides,
)
from simuser.driver import Person, prompt_for  # noqa: E402
from simuser.matrix import BASELINE, HEADLINE, SINGLE_BASELINES, BenchConfig, known, matrix  # noqa: E402
from simuser.screen import p300_letters_steps, switch_letters_steps  # noqa: E402

PHRASES = ROOT.parent / "shared" / "data" / "phrases" / "mackenzie-soukoreff-500-cleaned.txt"
log = logging.getLogger("simuser")


def load_phrases(path: Path, offset: int = 0, limit: int | None = None) -> tuple[list[str], list[str]]:
    """(all phrases of the file, the ones to write): one phrase per non-empty line."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise SystemExit(f"simulated_user: phrase file {path} does not exist") from None
    phrases = [ln for ln in lines if ln]
    if not phrases:
        raise SystemExit(f"simulated_user: {path} holds no phrases")
    chosen = phrases[offset: offset + limit if limit else None]
    return phrases, chosen


def daemon_config(cfg: BenchConfig, runtime_dir: Path, model: dict[str, Any]) -> Any:
    from razvilka.config import from_dict

    return from_dict({
        "bus": {"transport": "ipc", "runtime_dir": str(runtime_dir), "heartbeat_ms": 1000},
        "store": {"path": str(runtime_dir / "store.sqlite3")},
        "model": model,
        "gating": cfg.gating(),
        "daemon": {"prompt": "", **cfg.daemon()},
    })


async def run_config(cfg: BenchConfig, engine: Any, phrases_all: list[str], chosen: list[str], offset: int,
                     args: argparse.Namespace, *, error: float = 0.0, seed: int = 0) -> tuple[list[PhraseResult], Any]:
    """Start a daemon with ``cfg`` on the shared engine, write every chosen phrase, stop it."""
    from razvilka.daemon.service import Daemon
    from razvilka.protocol.client import BusClient

    clear = getattr(engine, "clear_cache", None)
    if clear is not None:  # every configuration starts cold: comparable timings, no order effects
        clear()
    runtime_dir = Path(tempfile.mkdtemp(prefix="rz-su-", dir="/tmp"))
    config = daemon_config(cfg, runtime_dir, args.model)
    daemon = Daemon(config, engine=engine, resume=False)
    await daemon.start()
    assert daemon.bus is not None  # start() opened it
    client = BusClient("simuser", daemon.bus.endpoints, subscribe=["fork.", "text.", "daemon.error."],
                       heartbeat_ms=1000)
    await client.start()
    results: list[PhraseResult] = []
    try:
        if not await client.wait_connected(10.0):
            raise RuntimeError(f"{cfg.name}: the person could not join the daemon's bus")
        person = Person(client, cfg.person(think_s=args.think_ms / 1000, error=error, seed=seed))
        for j, phrase in enumerate(chosen):
            i = offset + j
            res = await person.write(phrase, prompt_for(phrases_all, i, args.context))
            results.append(res)
            if not res.done:
                log.warning("%s: phrase %d not produced exactly: %r", cfg.name, i, phrase)
            if args.verbose:
                print(f"  [{cfg.name}] {i:3d} {res.actions:3d} actions / {res.chars:3d} chars  "
                      f"{res.wall_s:5.1f}s  {phrase}", flush=True)
    finally:
        await client.close()
        await daemon.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return results, config


def git_rev() -> str:
    """HEAD, with "+dirty" when the working tree has uncommitted changes (the code that ran is not HEAD)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except Exception:
        return ""


def score(label: str, results: list[PhraseResult], params: CostParams, injected: str = "",
          error: float = 0.0, single: str = "") -> dict[str, Any]:
    """The metrics of one run. With injected errors (``injected`` = the modality) the errors really
    happened, so that modality is costed as it went, with no expected errors on top. A single-input
    person (``single``) is costed with their own modality only (its WPM lands in that column)."""
    if injected:
        mod = next(m for m in params.modalities if m.name == injected)
        params = replace(params, modalities=(replace(mod, error=0.0),))
    mods = [params.single_modality(single)] if single else None
    summary = summarize(results, params, mods)
    summary["name"] = label
    summary["injected_error"] = error
    return summary


async def measure(args: argparse.Namespace, params: CostParams) -> tuple[dict[str, Any], dict[str, Any],
                                                                         dict[str, list[PhraseResult]]]:
    """Run every configuration through the daemon; returns (run description, per-run configs, results)."""
    from razvilka.config import to_toml_dict
    from razvilka.daemon.config import ModelConfig
    from razvilka.daemon.engine import Engine

    phrases_all, chosen = load_phrases(Path(args.phrases), args.offset, args.limit)
    configs = matrix(args.set)
    if args.configs:
        wanted = args.configs.split(",")
        names = known()
        missing = [w for w in wanted if w not in names]
        if missing:
            raise SystemExit(f"simulated_user: unknown configuration(s) {missing}; known: {sorted(names)}")
        configs = [names[w] for w in wanted]
    runs: list[tuple[BenchConfig, Modality | None, str]] = [(c, None, c.name) for c in configs]
    if args.inject:
        base = known()[HEADLINE]
        runs += [(base, mod, f"{HEADLINE}+{mod.name}-errors") for mod in params.modalities if mod.error > 0]

    print(f"simulated user: {len(chosen)} phrases from {args.phrases} (offset {args.offset}), "
          f"{len(configs)} configurations, prompt = the {args.context} phrases before each", flush=True)
    t_load = time.perf_counter()
    engine = Engine(ModelConfig(**args.model))
    print(f"model loaded in {time.perf_counter() - t_load:.1f}s: {getattr(engine, 'model_name', '')}", flush=True)
    stored: dict[str, Any] = {}
    by_label: dict[str, list[PhraseResult]] = {}
    try:
        for cfg, injected, label in runs:
            started = time.perf_counter()
            error = injected.error if injected else 0.0
            results, config = await run_config(cfg, engine, phrases_all, chosen, args.offset, args,
                                               error=error, seed=args.seed)
            by_label[label] = results
            stored[label] = {"bench": cfg.to_json(), "injected": injected.name if injected else "",
                             "injected_error": error, "run_s": time.perf_counter() - started,
                             "daemon_config": to_toml_dict(config)}
            s = score(label, results, params, stored[label]["injected"], error, cfg.single)
            print(f"{label}: KSR {s['ksr']:.1%}, {s['actions_per_char']:.3f} actions/char, "
                  f"{s['done']}/{s['phrases']} exact, {stored[label]['run_s']:.0f}s", flush=True)
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()
    run = {
        "run": time.strftime("%Y%m%d-%H%M%S"), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git": git_rev(), "python": platform.python_version(), "phrases_file": str(args.phrases),
        "offset": args.offset, "limit": args.limit, "phrases": chosen, "context_phrases": args.context,
        "think_ms": args.think_ms, "seed": args.seed, "model": args.model,
        "decoding": "greedy (the daemon's look-ahead and words are argmax/ranked; no sampling)",
        "configurations": [c.name for c in configs],
    }
    return run, stored, by_label


def finish(out_dir: Path, run: dict[str, Any], stored: dict[str, Any], by_label: dict[str, list[PhraseResult]],
           params: CostParams, args: argparse.Namespace) -> None:
    """Score, print the table and the targets, write config.json / results.json / table.md, plot."""
    rows: list[dict[str, Any]] = [{"name": "letters", **summarize_letters(run["phrases"], params)}]
    if any(st.get("bench", {}).get("single") for st in stored.values()):  # the single-input baselines
        steps_of = {"switch": switch_letters_steps, "p300": p300_letters_steps}
        for name, kind in SINGLE_BASELINES.items():
            rows.append({"name": name, **summarize_letters(run["phrases"], params, steps_of[kind],
                                                           [params.single_modality(kind)])})
    for label, results in by_label.items():
        st = stored[label]
        row = score(label, results, params, st.get("injected", ""), st.get("injected_error", 0.0),
                    st.get("bench", {}).get("single", ""))
        row["run_s"] = st.get("run_s", 0.0)
        if not st.get("bench", {}).get("lookahead", True):
            row["lookahead_compute_ms_mean"] = None  # a 0-token look-ahead is no look-ahead
        rows.append(row)
    by_name = {r["name"]: r for r in rows}
    head = report.headline(by_name, HEADLINE, BASELINE)
    singles = report.single_targets(by_name)
    if singles:
        head["single_input"] = singles
    for label, st in stored.items():  # real injected errors against the expected-error model, same p
        if st.get("injected") and HEADLINE in by_label:
            mod = next(m for m in params.modalities if m.name == st["injected"])
            expected = summarize(by_label[HEADLINE],
                                 replace(params, modalities=(replace(mod, error=st["injected_error"]),)))
            head.setdefault("injected", {})[mod.name] = {
                "error": st["injected_error"], "measured_ksr": by_name[label]["ksr"],
                "expected_ksr": expected[f"ksr_{mod.name}"], "measured_wpm": by_name[label][f"wpm_{mod.name}"],
                "expected_wpm": expected[f"wpm_{mod.name}"]}
    configs = run["configurations"]
    total_s = sum(st.get("run_s", 0.0) for st in stored.values())
    est_500_s = sum(stored[c]["run_s"] / max(1, len(run["phrases"])) for c in configs if c in stored) * 500
    timing = {"measured_s": total_s, "phrases": len(run["phrases"]), "estimated_500_phrases_s": est_500_s,
              "cores": os.cpu_count()}
    out_dir.mkdir(parents=True, exist_ok=True)
    config_json = {**run, "cost_params": asdict(params), "configs": stored}
    (out_dir / "config.json").write_text(json.dumps(config_json, indent=2, default=str))
    per_config = {label: {"summary": by_name[label], "phrases": [r.to_json() for r in results]}
                  for label, results in by_label.items()}
    (out_dir / "results.json").write_text(json.dumps({"headline": head, "timing": timing, "rows": rows,
                                                       "per_config": per_config}, indent=2, default=str))
    (out_dir / "table.md").write_text(report.table(rows, markdown=True) + "\n")
    print()
    print(report.table(rows))
    print()
    if "fewer_actions_ratio" in head:
        print(f"actions per character: {BASELINE} / {HEADLINE} = {head['fewer_actions_ratio']:.2f}x "
              f"(target >= 1.3x: {'met' if head['ratio_met'] else 'NOT met'})")
    if "ksr" in head:
        print(f"KSR of {HEADLINE}: {head['ksr']:.1%} (target >= 65%: {'met' if head['ksr_met'] else 'NOT met'})")
    for name, v in head.get("single_input", {}).items():
        print(report.single_line(name, v))
    for mod, v in head.get("injected", {}).items():
        print(f"{mod} errors injected (p={v['error']:.3f}): KSR {v['measured_ksr']:.1%} measured vs "
              f"{v['expected_ksr']:.1%} expected; "
              f"WPM {v['measured_wpm']:.2f} measured vs {v['expected_wpm']:.2f} expected")
    print(f"time: {total_s:.0f}s for {len(run['phrases'])} phrases x {len(stored)} runs; "
          f"estimated {est_500_s / 60:.0f} min for the 500 phrases x {len(configs)} configurations")
    if not args.no_plots:
        cfgs = {c: stored[c]["bench"] for c in configs if c in stored}
        for path in report.plots(rows, cfgs, Path(args.plots), by_name.get("letters")):
            print(f"plot: {path}")
    print(f"results: {out_dir}")


def load_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[PhraseResult]]]:
    """A stored run (config.json + results.json), to score again with other cost parameters."""
    config = json.loads((path / "config.json").read_text())
    results = json.loads((path / "results.json").read_text())
    stored = config.pop("configs")
    config.pop("cost_params", None)
    by_label = {label: [PhraseResult.from_json(p) for p in c["phrases"]] for label, c in results["per_config"].items()}
    for label, st in stored.items():
        st.setdefault("run_s", results["per_config"][label]["summary"].get("run_s", 0.0))
        if "injected" not in st:
            st["injected"] = label.split("+", 1)[1].removesuffix("-errors") if st.get("injected_error") else ""
    if "phrases" not in config or "configurations" not in config:
        first = next(iter(by_label.values()))
        config["phrases"] = [r.phrase for r in first]
        config["configurations"] = [label for label, st in stored.items() if not st.get("injected")]
    return config, stored, by_label


async def main_async(args: argparse.Namespace) -> int:
    try:
        params = with_overrides(CostParams(), args.cost)
    except ValueError as exc:
        raise SystemExit(f"simulated_user: {exc}") from None
    if args.rescore:
        run, stored, by_label = load_run(Path(args.rescore))
        run["rescored"] = {"at": time.strftime("%Y%m%d-%H%M%S"), "from": str(args.rescore)}
        finish(Path(args.rescore), run, stored, by_label, params, args)
        return 0
    run, stored, by_label = await measure(args, params)
    finish(Path(args.results) / run["run"], run, stored, by_label, params, args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phrases", default=str(PHRASES), help="phrase file, one per line (default: the cleaned "
                   "MacKenzie & Soukoreff set)")
    p.add_argument("--limit", type=int, default=None, help="write only this many phrases (a sample)")
    p.add_argument("--offset", type=int, default=0, help="start at this phrase")
    p.add_argument("--set", default="full", help="configuration set: quick | full (default) | extra | single")
    p.add_argument("--configs", default="", help="comma-separated configuration names instead of --set")
    p.add_argument("--context", type=int, default=3,
                   help="the prompt of phrase i is the N phrases before it in the file, one per line")
    p.add_argument("--think-ms", type=float, default=1000.0,
                   help="a selection takes at least this long: the person waits up to this for pre-generation")
    p.add_argument("--inject", action="store_true",
                   help="also run the headline configuration with real gaze and P300 choice errors")
    p.add_argument("--seed", type=int, default=0, help="seed of the injected errors")
    p.add_argument("--threads", type=int, default=0, help="model threads (0: all cores)")
    p.add_argument("--results", default=str(HERE / "results" / "simulated_user"), help="results directory")
    p.add_argument("--plots", default=str(ROOT / "docs" / "img"), help="where the plots go")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--cost", action="append", default=[], metavar="NAME=VALUE",
                   help="change a cost parameter: search_a, search_b, read_word_s, or MODALITY.FIELD "
                        "(e.g. p300.error=0.16, gaze.choose_s=0.4); repeatable")
    p.add_argument("--rescore", metavar="RUN_DIR", default="",
                   help="score a stored run again with the current cost parameters (no model, no daemon)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per phrase")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.model = {"n_threads": args.threads, "seed": 0}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
