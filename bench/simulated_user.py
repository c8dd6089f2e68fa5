#!/usr/bin/env python3
"""The simulated-user benchmark: how much effort the system saves a person (docs/simulated_user.md).

A simulated person writes the MacKenzie & Soukoreff phrases through the REAL daemon over the bus
(one in-process daemon per configuration, all on ONE loaded model), and every configuration is
compared over the same phrases in the same run with two baselines: letter-by-letter typing and
classic word prediction with the same model.

    python bench/simulated_user.py --limit 30                 # the full matrix on 30 phrases
    python bench/simulated_user.py --set quick --limit 10     # headline vs baseline only
    python bench/simulated_user.py --configs auto-k8,wordpred-k8 --inject
    python bench/simulated_user.py --dialogue PAIRS.tsv --limit 30 --spread   # replies, with and without
                                                                              # the partner's turn

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
    ksr,
    ksr_gain_ci,
    summarize,
    summarize_letters,
    with_overrides,
)
from simuser.dialogue import DialogueFileError, Pair, read_pairs  # noqa: E402
from simuser.driver import Person, prompt_for  # noqa: E402
from simuser.matrix import BASELINE, HEADLINE, SINGLE_BASELINES, BenchConfig, known, matrix  # noqa: E402
from simuser.screen import p300_letters_steps, switch_letters_steps  # noqa: E402

PHRASES = ROOT.parent / "shared" / "data" / "phrases" / "mackenzie-soukoreff-500-cleaned.txt"
#: The suffix of a dialogue run's label whose person sends the partner's turn first (the other sends nothing).
PARTNER = "+partner"
#: The gain in KSR points the issue asks of the partner's turn (issue 17).
TARGET_GAIN_POINTS = 3.0
log = logging.getLogger("simuser")

#: One thing to write: (index in the file, the phrase, the prompt, the partner's turn or "").
Job = tuple[int, str, str, str]


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


def phrase_jobs(phrases_all: list[str], chosen: list[str], offset: int, context: int) -> list[Job]:
    """The phrase mode's jobs: each phrase after the ``context`` phrases before it, no partner."""
    return [(offset + j, phrase, prompt_for(phrases_all, offset + j, context), "") for j, phrase in enumerate(chosen)]


def pick_pairs(pairs: list[Pair], offset: int, limit: int | None, spread: bool) -> list[Pair]:
    """The pairs to write: ``limit`` from ``offset`` on, consecutive, or with ``spread`` evenly spaced over
    the rest of the file (one a stretch: consecutive pairs come from the same conversation)."""
    rest = pairs[offset:]
    if not limit or limit >= len(rest):
        return rest
    if not spread:
        return rest[:limit]
    return [rest[(i * len(rest)) // limit] for i in range(limit)]


def dialogue_jobs(pairs: list[Pair], partner: bool) -> list[Job]:
    """The dialogue mode's jobs: each reply in a new, empty document, after the partner's turn or not."""
    return [(p.line, p.phrase, "", p.turn if partner else "") for p in pairs]


async def run_config(cfg: BenchConfig, engine: Any, jobs: list[Job], args: argparse.Namespace, *,
                     error: float = 0.0, seed: int = 0, label: str = "",
                     loose: bool = False) -> tuple[list[PhraseResult], Any]:
    """Start a daemon with ``cfg`` on the shared engine, write every job's phrase, stop it. ``loose``: the
    person leaves punctuation to the model (policy.py; the dialogue mode's replies)."""
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
        options = cfg.person(think_s=args.think_ms / 1000, error=error, seed=seed)
        options.policy = replace(options.policy, loose=loose)
        person = Person(client, options)
        for i, phrase, prompt, partner in jobs:
            res = await person.write(phrase, prompt, partner)
            results.append(res)
            if not res.done:
                log.warning("%s: phrase %d not produced exactly: %r", label or cfg.name, i, phrase)
            if args.verbose:
                print(f"  [{label or cfg.name}] {i:3d} {res.actions:3d} actions / {res.chars:3d} chars  "
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
            results, config = await run_config(cfg, engine, phrase_jobs(phrases_all, chosen, args.offset, args.context),
                                               args, error=error, seed=args.seed, label=label)
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


async def measure_dialogue(args: argparse.Namespace, params: CostParams) -> tuple[dict[str, Any], dict[str, Any],
                                                                                  dict[str, list[PhraseResult]]]:
    """The dialogue mode: every configuration writes the chosen replies twice, in the same run, each in a
    new empty document: without context (label ``NAME``) and after the partner's turn (``NAME+partner``)."""
    from razvilka.config import to_toml_dict
    from razvilka.daemon.config import ModelConfig
    from razvilka.daemon.engine import Engine

    try:
        pairs = read_pairs(Path(args.dialogue))
    except DialogueFileError as exc:
        raise SystemExit(f"simulated_user: {exc}") from None
    chosen = pick_pairs(pairs, args.offset, args.limit, args.spread)
    if not chosen:
        raise SystemExit(f"simulated_user: --offset {args.offset} is past the {len(pairs)} pairs of {args.dialogue}")
    names = known()
    wanted = args.configs.split(",") if args.configs else [HEADLINE]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise SystemExit(f"simulated_user: unknown configuration(s) {missing}; known: {sorted(names)}")
    configs = [names[w] for w in wanted]
    print(f"simulated user, dialogue: {len(chosen)} of the {len(pairs)} pairs of {args.dialogue} "
          f"(offset {args.offset}{', spread' if args.spread else ''}), {len(configs)} configuration(s), "
          f"each without and with the partner's turn", flush=True)
    t_load = time.perf_counter()
    engine = Engine(ModelConfig(**args.model))
    print(f"model loaded in {time.perf_counter() - t_load:.1f}s: {getattr(engine, 'model_name', '')}", flush=True)
    stored: dict[str, Any] = {}
    by_label: dict[str, list[PhraseResult]] = {}
    try:
        for cfg in configs:
            for partner in (False, True):
                label = cfg.name + (PARTNER if partner else "")
                started = time.perf_counter()
                results, config = await run_config(cfg, engine, dialogue_jobs(chosen, partner), args,
                                                   label=label, loose=True)
                by_label[label] = results
                stored[label] = {"bench": cfg.to_json(), "partner": partner, "injected": "", "injected_error": 0.0,
                                 "run_s": time.perf_counter() - started, "daemon_config": to_toml_dict(config)}
                sm = summarize(results, params)
                print(f"{label}: KSR {sm['ksr']:.1%}, {sm['actions_per_word']:.2f} actions/word, "
                      f"{sm['done']}/{sm['phrases']} exact, {stored[label]['run_s']:.0f}s", flush=True)
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()
    run = {
        "run": time.strftime("%Y%m%d-%H%M%S"), "mode": "dialogue",
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "git": git_rev(),
        "python": platform.python_version(), "dialogue_file": str(args.dialogue), "pairs_in_file": len(pairs),
        "offset": args.offset, "limit": args.limit, "spread": args.spread,
        "pairs": [{"line": p.line, "turn": p.turn, "reply": p.reply, "written": p.phrase} for p in chosen],
        "phrases": [p.phrase for p in chosen], "think_ms": args.think_ms, "seed": args.seed, "model": args.model,
        "person": "writes the reply's words; punctuation is the model's (accepted, never written: policy.py loose)",
        "decoding": "greedy (the daemon's look-ahead and words are argmax/ranked; no sampling)",
        "configurations": [c.name for c in configs],
    }
    return run, stored, by_label


def dialogue_gains(by_label: dict[str, list[PhraseResult]], configs: list[str]) -> dict[str, Any]:
    """Per configuration: KSR without and with the partner's turn, and the gain in points with its 95 %
    paired bootstrap interval over the replies (costs.ksr_gain_ci), against the issue's target."""
    out: dict[str, Any] = {}
    for name in configs:
        base, other = by_label.get(name), by_label.get(name + PARTNER)
        if not base or not other:
            continue
        gain, low, high = ksr_gain_ci([(r.chars, r.actions) for r in base], [(r.chars, r.actions) for r in other])
        chars = sum(r.chars for r in base)
        out[name] = {"ksr_without": ksr(sum(r.actions for r in base), chars),
                     "ksr_with": ksr(sum(r.actions for r in other), chars),
                     "gain_points": gain, "ci95": [low, high], "target_points": TARGET_GAIN_POINTS,
                     "met": gain >= TARGET_GAIN_POINTS, "interval_above_target": low >= TARGET_GAIN_POINTS,
                     "done_without": sum(r.done for r in base), "done_with": sum(r.done for r in other),
                     "replies": len(base)}
    return out


def finish_dialogue(out_dir: Path, run: dict[str, Any], stored: dict[str, Any],
                    by_label: dict[str, list[PhraseResult]], params: CostParams) -> None:
    """The dialogue mode's table (letters, then each configuration without and with the partner's turn),
    the gains, config.json / results.json / table.md."""
    rows: list[dict[str, Any]] = [{"name": "letters", **summarize_letters(run["phrases"], params)}]
    for label, results in by_label.items():
        rows.append({**score(label, results, params), "run_s": stored[label].get("run_s", 0.0)})
    by_name = {r["name"]: r for r in rows}
    gains = dialogue_gains(by_label, run["configurations"])
    total_s = sum(st.get("run_s", 0.0) for st in stored.values())
    timing = {"measured_s": total_s, "phrases": len(run["phrases"]), "cores": os.cpu_count()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps({**run, "cost_params": asdict(params), "configs": stored},
                                                    indent=2, default=str))
    per_config = {label: {"summary": by_name[label], "phrases": [r.to_json() for r in results]}
                  for label, results in by_label.items()}
    (out_dir / "results.json").write_text(json.dumps({"headline": {"dialogue": gains}, "timing": timing,
                                                       "rows": rows, "per_config": per_config}, indent=2, default=str))
    lines = [gain_line(name, g) for name, g in gains.items()]
    (out_dir / "table.md").write_text(report.table(rows, markdown=True) + "\n\n" + "\n".join(f"* {ln}" for ln in lines)
                                      + "\n")
    print()
    print(report.table(rows))
    print()
    for ln in lines:
        print(ln)
    print(f"time: {total_s:.0f}s for {len(run['phrases'])} replies x {len(stored)} runs")
    print(f"results: {out_dir}")


def gain_line(name: str, g: dict[str, Any]) -> str:
    """One printed line: the partner's turn's KSR gain against the target."""
    low, high = g["ci95"]
    return (f"{name}: KSR {g['ksr_without']:.1%} without the partner's turn, {g['ksr_with']:.1%} with it: "
            f"{g['gain_points']:+.1f} points (95 % paired bootstrap interval {low:+.1f} to {high:+.1f}; "
            f"target >= +{g['target_points']:g}: {'met' if g['met'] else 'NOT met'}"
            f"{', the whole interval above it' if g['interval_above_target'] else ''}); "
            f"{g['done_without']}/{g['replies']} and {g['done_with']}/{g['replies']} replies exact")


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
        if run.get("mode") == "dialogue":
            finish_dialogue(Path(args.rescore), run, stored, by_label, params)
        else:
            finish(Path(args.rescore), run, stored, by_label, params, args)
        return 0
    if args.dialogue:
        run, stored, by_label = await measure_dialogue(args, params)
        finish_dialogue(Path(args.results) / run["run"], run, stored, by_label, params)
        return 0
    run, stored, by_label = await measure(args, params)
    finish(Path(args.results) / run["run"], run, stored, by_label, params, args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phrases", default=str(PHRASES), help="phrase file, one per line (default: the cleaned "
                   "MacKenzie & Soukoreff set)")
    p.add_argument("--dialogue", metavar="FILE", default="",
                   help="dialogue mode: write the replies of FILE's (partner's turn, reply) pairs (TSV: turn TAB "
                        "reply; or JSONL: {\"turn\", \"reply\"}), each without and with the partner's turn, and "
                        "report the KSR the turn gains (configurations: --configs, default auto-k8)")
    p.add_argument("--spread", action="store_true",
                   help="dialogue mode: the --limit pairs evenly spaced over the file, not consecutive")
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
