#!/usr/bin/env python3
"""The "returning user": does learning from a person's choices make their next text cheaper?

Built on the simulated-user benchmark (bench/simuser: the same person, policy, driver and cost
model, driving the REAL daemon over the bus). In one run, on one loaded model:

1. the person writes a **first part** (phrases 0..N) with the plain daemon; the session store fills;
2. their profile is rebuilt from that store (``replay_store``: the daemon's own ``observe`` calls),
   and optionally a LoRA is trained on the store's export (SFT, then DPO) and written as GGUF;
3. they write a **later part** (no phrase shared with the first) five ways: plain, with the
   profile (which goes on learning live), with the profile but not its memory (the model does not
   read the person's earlier writing first: the cache and accept/reject statistics alone), with the
   LoRA loaded in llama.cpp, with the profile and the LoRA.

Texts: ``--text austen`` (default) cuts *Pride and Prejudice* (../shared/data/text/) into clauses
at punctuation — the person writes whole clauses without punctuation, like the phrase sets — and
takes the first part from the first chapters, the later part from chapter 40 on.
``--text mackenzie`` uses the MacKenzie & Soukoreff phrases (weak habits, for contrast).

    python bench/returning_user.py --learn 80 --test 40 --lora-steps 60 -v
    python bench/returning_user.py --text mackenzie --learn 100 --test 40 --no-lora
    python bench/returning_user.py --learn 100,200 --test 60 --runs 6 --later-chapter 41 -v
    python bench/returning_user.py --learn 100 --test 120 --runs 12 --skip 10 --later-chapter 41 --no-lora --no-ablation
    python bench/returning_user.py --pool bench/results/returning_user/RUN1 bench/results/returning_user/RUN2

``--learn`` with several sizes writes the first part once, in order, and after each size rebuilds
the profile from the store so far and writes the later part with it: how the gain grows with the
person's history, in one run. The plain row is written once; the LoRA and the row without the
memory are made at the largest size. ``--runs R`` takes the later part as R runs of consecutive
clauses spread over the later chapters (less dependent on one chapter's words); ``--skip K``
starts each run K clauses into its chapter (a sample no earlier run wrote).

Each gain comes with a 95 % paired bootstrap interval over the phrases (``ksr_gain_ci``): a few
points over some dozens of clauses are not exact. ``--pool`` runs nothing: it pools the later
parts of finished runs and prints each row's gain on all their phrases together.

Prints KSR and actions per word on the later part for each way, with the profile's rerank cost per
fork, and writes bench/results/returning_user/<run>/ (config.json, results.json, table.md).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from simuser.costs import CostParams, PhraseResult, ksr_gain_ci, summarize  # noqa: E402
from simuser.driver import Person, prompt_for  # noqa: E402
from simuser.matrix import HEADLINE, matrix  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
AUSTEN = SHARED / "text" / "austen-pride-and-prejudice.txt"
MACKENZIE = SHARED / "phrases" / "mackenzie-soukoreff-500-cleaned.txt"
log = logging.getLogger("returning_user")


# ------------------------------------------------------------------------------------------ texts
def austen_clauses(path: Path = AUSTEN) -> list[tuple[int, str]]:
    """(chapter, clause) in reading order: text between punctuation marks, 4-12 words, case kept."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"returning_user: {path} does not exist (see ../shared/data/text/PROVENANCE.md)") from None
    out: list[tuple[int, str]] = []
    chapter = 1
    for para in re.split(r"\n\s*\n", raw):
        head = re.match(r"\s*Chapter (\d+)\s*$", para)
        if head:
            chapter = int(head.group(1))
            continue
        text = para.replace("_", "").replace("’", "'").replace("‘", "'").replace("\n", " ")
        text = re.sub(r"\b(Mrs|Mr|Dr|St)\.", r"\1", text)  # a title's full stop ends no clause
        for piece in re.split(r"[^\w\s']+|--|'(?!\w)|(?<!\w)'", text):
            words = re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", piece)
            if 4 <= len(words) <= 12:
                out.append((chapter, " ".join(words)))
    return out


def parts(args: argparse.Namespace) -> tuple[list[str], list[str], list[str] | None]:
    """(first part, later part, the later part's prompts or None), no phrase of the later part in the first.

    With ``--runs R`` > 1 (austen) the later part is R runs of consecutive clauses, the runs
    starting at chapters spread evenly from ``--later-chapter`` to the book's end (after ``--skip``
    clauses there), and each clause's prompt is the ``--context`` clauses before it in the book."""
    later_prompts: list[str] | None = None
    if args.text == "austen":
        clauses = austen_clauses(Path(args.file) if args.file else AUSTEN)
        first = [c for ch, c in clauses if ch < args.later_chapter][: max(args.learn)]
        known = set(first)
        if args.runs <= 1:
            unseen = [c for ch, c in clauses if ch >= args.later_chapter and c not in known]
            later = unseen[args.skip: args.skip + args.test]
        else:
            last = clauses[-1][0]
            later, later_prompts = [], []
            for r in range(args.runs):
                start = args.later_chapter + r * (last - args.later_chapter + 1) // args.runs
                per = args.test // args.runs + (r < args.test % args.runs)  # --test clauses in all
                fresh = [i for i, (ch, c) in enumerate(clauses) if ch >= start and c not in known]
                at = fresh[args.skip:args.skip + per]
                later += [clauses[i][1] for i in at]
                later_prompts += ["".join(clauses[j][1] + "\n" for j in range(max(0, i - args.context), i))
                                  for i in at]
    else:
        path = Path(args.file) if args.file else MACKENZIE
        phrases = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        first = phrases[: max(args.learn)]
        known = set(first)
        later = [p for p in phrases[max(args.learn):] if p not in known][: args.test]
        if args.runs > 1:
            raise SystemExit("returning_user: --runs is for --text austen")
    if len(first) < max(args.learn) or len(later) < args.test:
        raise SystemExit(f"returning_user: only {len(first)} + {len(later)} phrases available")
    return first, later, later_prompts


# ------------------------------------------------------------------------------------------ runs
def daemon_config(runtime_dir: Path, store: Path, threads: int, memory_chars: int | None = None) -> Any:
    from razvilka.config import from_dict

    cfg = next(c for c in matrix("full") if c.name == HEADLINE)
    return from_dict({
        "bus": {"transport": "ipc", "runtime_dir": str(runtime_dir), "heartbeat_ms": 1000},
        "store": {"path": str(store)},
        "model": {"n_threads": threads, "seed": 0},
        "gating": cfg.gating(),
        "daemon": {"prompt": "", "user": "reader", **cfg.daemon(),
                   **({} if memory_chars is None else {"profile_memory_chars": memory_chars})},
    }), cfg


async def write_part(label: str, engine: Any, phrases: list[str], store: Path, args: argparse.Namespace, *,
                     profile: Any = None, memory_chars: int | None = None,
                     indices: range | None = None,
                     prompts: list[str] | None = None) -> tuple[list[PhraseResult], dict[str, Any]]:
    """One daemon (plain, or with ``profile``) on the shared engine; the person writes every phrase
    (or those in ``indices``), each after ``prompts[i]`` or else the phrases before it in ``phrases``."""
    from razvilka.daemon.learn.live import ProfileLearner
    from razvilka.daemon.service import Daemon
    from razvilka.protocol.client import BusClient

    runtime_dir = Path(tempfile.mkdtemp(prefix="rz-ru-", dir="/tmp"))
    config, bench_cfg = daemon_config(runtime_dir, store, args.threads, memory_chars)
    learner = None
    if profile is not None:  # as daemon/cli.py builds the shipped daemon, with this profile
        learner = ProfileLearner(profile, widen=config.daemon.profile_widen,
                                 memory_chars=config.daemon.profile_memory_chars)
    daemon = Daemon(config, engine=engine, learner=learner, resume=False)
    await daemon.start()
    assert daemon.bus is not None
    client = BusClient("simuser", daemon.bus.endpoints, subscribe=["fork.", "text.", "daemon.error."],
                       heartbeat_ms=1000)
    await client.start()
    results: list[PhraseResult] = []
    started = time.perf_counter()
    try:
        assert await client.wait_connected(10.0), "could not join the daemon's bus"
        person = Person(client, bench_cfg.person(think_s=args.think_ms / 1000))
        for i in indices if indices is not None else range(len(phrases)):
            phrase = phrases[i]
            prompt = prompts[i] if prompts is not None else prompt_for(phrases, i, args.context)
            res = await person.write(phrase, prompt)
            results.append(res)
            if args.verbose:
                print(f"  [{label}] {i:3d} {res.actions:3d} actions / {res.chars:3d} chars  {res.wall_s:5.1f}s  "
                      f"{phrase}", flush=True)
    finally:
        await client.close()
        await daemon.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
    extra: dict[str, Any] = {"run_s": time.perf_counter() - started}
    if learner is not None:
        ms = sorted(learner.rerank_cpu_ms)
        wall = sorted(learner.rerank_ms)
        extra.update({
            "rerank_ms_mean": sum(ms) / len(ms) if ms else None,
            "rerank_ms_p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
            "rerank_ms_max": ms[-1] if ms else None, "reranks": len(ms),
            "rerank_wall_ms_median": wall[len(wall) // 2] if wall else None,
            "rerank_wall_ms_p99": wall[min(len(wall) - 1, int(0.99 * len(wall)))] if wall else None,
            "save_ms_mean": sum(learner.save_ms) / len(learner.save_ms) if learner.save_ms else None,
            "profile_after": profile.summary(),
        })
    return results, extra


def train_lora(store: Path, out_dir: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Export the first part's store and train the LoRA on it (the CLI's path, in-process)."""
    from razvilka.daemon.engine import embedded_model_path
    from razvilka.daemon.learn import hf, lora
    from razvilka.daemon.learn.export import export, read_jsonl

    hf.require_learn_extra()
    counts = export(store, out_dir / "export", "reader")
    model, tok, _ = hf.load_model(say=lambda s: print(f"  {s}", flush=True))
    opt = lora.LoraOptions(steps=args.lora_steps, minutes=args.lora_minutes, lr=args.lora_lr)
    say = (lambda s: print(f"  {s}", flush=True)) if args.verbose else (lambda s: None)
    peft_model, rep = lora.train(model, tok, read_jsonl(out_dir / "export" / "sft.jsonl"),
                                 read_jsonl(out_dir / "export" / "pairs.jsonl"), opt, say=say)
    print(f"  {rep.holdout_summary()}", flush=True)
    path = lora.export_gguf(peft_model, embedded_model_path(), out_dir / "reader.gguf")
    del model, peft_model
    return path, {"export": counts, "train": rep.to_json(), "options": lora.asdict(opt)}


PHRASE_LOGS: dict[str, list[dict[str, Any]]] = {}


def row(label: str, results: list[PhraseResult], params: CostParams, extra: dict[str, Any]) -> dict[str, Any]:
    s = summarize(results, params)
    PHRASE_LOGS[label] = [r.to_json() for r in results]
    return {"name": label, **{k: s[k] for k in ("phrases", "done", "chars", "words", "actions", "ksr",
                                                "actions_per_word", "fork_rate", "auto_error_rate",
                                                "fork_compute_ms_mean", "wpm_key", "wpm_gaze")}, **extra}


def phrase_costs(logs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(characters, actions) of each phrase of a row, from its saved per-phrase logs."""
    return [(r.chars, r.actions) for r in map(PhraseResult.from_json, logs)]


def pool(dirs: list[str]) -> int:
    """Pool finished runs (their later parts are different phrases): each later row's gain over the
    plain one on all their phrases together, with a paired bootstrap interval."""
    runs: list[dict[str, list[tuple[int, int]]]] = []
    for d in dirs:
        try:
            logs = json.loads((Path(d) / "results.json").read_text())["phrases"]
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"returning_user --pool: cannot read the phrases of {d}/results.json: {e}") from None
        if "later: plain" not in logs:
            raise SystemExit(f"returning_user --pool: {d} has no 'later: plain' row")
        runs.append({name: phrase_costs(rows) for name, rows in logs.items() if name.startswith("later: ")})
    plain = [c for run in runs for c in run["later: plain"]]
    print(f"{len(runs)} runs, {len(plain)} later phrases, {sum(c for c, _ in plain)} characters")
    for name in runs[0]:
        if name == "later: plain":
            continue
        if not all(name in run for run in runs):
            print(f"{name}: not in every run, left out")
            continue
        g, lo, hi = ksr_gain_ci(plain, [c for run in runs for c in run[name]])
        print(f"{name}: {g:+.2f} KSR points (95% interval {lo:+.2f} .. {hi:+.2f})")
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | KSR | actions/word | fork rate | auto-write errors | exact | fork compute ms "
            "| rerank CPU ms mean / p99 |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rr = (f"{r['rerank_ms_mean']:.3f} / {r['rerank_ms_p99']:.3f}" if r.get("rerank_ms_mean") is not None else "–")
        err = f"{r['auto_error_rate']:.1%}" if r.get("auto_error_rate") is not None else "–"
        fc = f"{r['fork_compute_ms_mean']:.0f}" if r.get("fork_compute_ms_mean") is not None else "–"
        lines.append(f"| {r['name']} | {r['ksr']:.1%} | {r['actions_per_word']:.3f} | {r['fork_rate']:.1%} | {err} "
                     f"| {r['done']}/{r['phrases']} | {fc} | {rr} |")
    return "\n".join(lines)


def save(out_dir: Path, rows: list[dict[str, Any]], info: dict[str, Any], complete: bool = False) -> dict[str, Any]:
    """Write table.md and results.json for the rows so far (after every row: a stopped run keeps its
    rows); returns each later row's gain over the plain one, once that is measured."""
    rows.sort(key=lambda r: (not r["name"].startswith("first part"), r["name"] != "later: plain"))  # stable
    base = next((r for r in rows if r["name"] == "later: plain"), None)
    gains = {r["name"]: {"ksr_points": 100 * (r["ksr"] - base["ksr"]),
                         "ksr_points_ci95": list(ksr_gain_ci(phrase_costs(PHRASE_LOGS[base["name"]]),
                                                             phrase_costs(PHRASE_LOGS[r["name"]]))[1:]),
                         "actions_per_word_change": r["actions_per_word"] - base["actions_per_word"]}
             for r in rows if base is not None and r["name"].startswith("later: ") and r is not base}
    (out_dir / "table.md").write_text(table(rows) + "\n")
    (out_dir / "results.json").write_text(json.dumps({"complete": complete, "rows": rows, "gains": gains,
                                                       "info": info, "phrases": PHRASE_LOGS}, indent=2, default=str))
    return gains


async def main_async(args: argparse.Namespace) -> int:
    from razvilka.daemon.config import ModelConfig
    from razvilka.daemon.engine import Engine
    from razvilka.daemon.learn.live import replay_store
    from razvilka.daemon.learn.persist import load_profile, save_profile
    from razvilka.daemon.learn.profile import Profile

    first, later, later_prompts = parts(args)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.results) / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rz-ru-work-", dir="/tmp"))
    params = CostParams()
    (out_dir / "config.json").write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "configuration": HEADLINE,
        "first": first, "later": later, "later_prompts": later_prompts}, indent=2))
    print(f"returning user ({args.text}): first part {len(first)} phrases, later part {len(later)} phrases; "
          f"configuration {HEADLINE}", flush=True)
    engine = Engine(ModelConfig(n_threads=args.threads, seed=0))
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    sizes = sorted(set(args.learn))
    curve = len(sizes) > 1

    async def later_row(label: str, use_profile: bool | None, use_lora: bool, memory_chars: int | None,
                        profile_file: Path | None = None) -> None:
        engine.load_lora(str(adapter) if use_lora else "")
        engine.clear_cache()
        prof = None
        if use_profile:
            prof = load_profile(profile_file or work / "profile.json", "reader")
            prof.set_params(path=work / f"profile-{len(rows)}.json")
        elif use_profile is None:
            prof = Profile(work / f"profile-{len(rows)}.json", "reader")
        res, extra = await write_part(label.split(": ")[1], engine, later, work / f"later-{len(rows)}.sqlite3",
                                      args, profile=prof, memory_chars=memory_chars, prompts=later_prompts)
        rows.append(row(label, res, params, extra))
        save(out_dir, rows, info)
        r = rows[-1]
        print(f"{label}: KSR {r['ksr']:.1%}, {r['actions_per_word']:.3f} actions/word, {r['done']}/{r['phrases']} "
              f"exact, {extra['run_s']:.0f} s" + (f", rerank {r['rerank_ms_mean']:.3f} ms mean / "
                                                 f"{r['rerank_ms_p99']:.3f} ms p99" if prof else ""), flush=True)

    def learn_profile(size: int) -> Path:
        """The profile rebuilt from the store of the first ``size`` phrases (the daemon's own observe calls)."""
        t0 = time.perf_counter()
        path = work / ("profile.json" if size == sizes[-1] else f"profile-learned-{size}.json")
        learned = Profile(path, "reader")
        n = replay_store(learned, store1, "reader")
        save_profile(learned)
        summary = learned.summary()
        info["profile" if size == sizes[-1] else f"profile_{size}"] = {
            "phrases_learned": size, "decisions_replayed": n, "seconds": time.perf_counter() - t0, **summary}
        print(f"profile after {size} phrases: {n} decisions, lambda {summary['lambda']}, beta {summary['beta']}, "
              f"held-out bits/word LLM {learned.log_likelihood().get('llm_bits', 0):.2f} -> mixture "
              f"{learned.log_likelihood().get('mixture_bits', 0):.2f}", flush=True)
        return path

    adapter: Path | None = None
    first_results: list[PhraseResult] = []
    first_s = 0.0
    try:
        store1 = work / "first.sqlite3"
        done = 0
        for size in sizes:
            res, extra = await write_part("first", engine, first, store1, args, indices=range(done, size))
            first_results += res
            first_s += extra["run_s"]
            done = size
            print(f"first part, phrases {done - len(res)}..{done - 1}: KSR {summarize(res, params)['ksr']:.1%} "
                  f"in {extra['run_s']:.0f} s", flush=True)
            path = learn_profile(size)
            if size != sizes[-1]:
                await later_row(f"later: profile, {size} phrases learned", True, False, None, path)
        rows.insert(0, row("first part (plain; builds the store)", first_results, params, {"run_s": first_s}))

        if not args.no_lora:
            t0 = time.perf_counter()
            adapter, info["lora"] = train_lora(store1, work, args)
            info["lora"]["seconds"] = time.perf_counter() - t0
            print(f"LoRA: {info['lora']['train']['sft_steps']} SFT + {info['lora']['train']['dpo_steps']} DPO steps "
                  f"in {info['lora']['train']['seconds']:.0f} s -> {adapter}", flush=True)

        # (label, profile: True = learned, None = empty, False = none; LoRA; profile memory chars, None = default)
        at = f", {sizes[-1]} phrases learned" if curve else ""
        runs: list[tuple[str, bool | None, bool, int | None]] = [
            ("later: plain", False, False, None), (f"later: profile{at}", True, False, None),
            *([] if args.no_ablation else [(f"later: profile without its memory{at}", True, False, 0)])]
        if args.fresh:
            runs.append(("later: empty profile (live only)", None, False, None))
        if adapter is not None:
            runs += [(f"later: LoRA{at}", False, True, None), (f"later: profile + LoRA{at}", True, True, None)]
        for label, use_profile, use_lora, memory_chars in runs:
            await later_row(label, use_profile, use_lora, memory_chars)
        engine.load_lora("")
    finally:
        engine.close()

    gains = save(out_dir, rows, info, complete=True)
    md = table(rows)
    print()
    print(md)
    print()
    for name, g in gains.items():
        lo, hi = g["ksr_points_ci95"]
        print(f"{name}: {g['ksr_points']:+.1f} KSR points (95% interval {lo:+.1f} .. {hi:+.1f}), "
              f"{g['actions_per_word_change']:+.3f} actions/word vs plain")
    print(f"results: {out_dir}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work files kept: {work}")
    return 0


def sizes_arg(text: str) -> list[int]:
    """``--learn``: one size or a comma-separated list of sizes, each a positive number of phrases."""
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a comma-separated list of numbers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", choices=["austen", "mackenzie"], default="austen")
    p.add_argument("--file", help="another text (austen mode: a novel; mackenzie mode: one phrase per line)")
    p.add_argument("--learn", type=sizes_arg, default=[80],
                   help="phrases in the first part; several sizes (100,200,300) give a learning curve")
    p.add_argument("--test", type=int, default=40, help="phrases in the later part")
    p.add_argument("--later-chapter", type=int, default=40, help="austen: the later part starts at this chapter")
    p.add_argument("--runs", type=int, default=1,
                   help="austen: the later part as this many runs of consecutive clauses, spread over the chapters "
                        "from --later-chapter to the end (each clause prompted by the book's clauses before it)")
    p.add_argument("--skip", type=int, default=0,
                   help="austen: start the later part (each run, with --runs) this many clauses in (a fresh sample)")
    p.add_argument("--context", type=int, default=3, help="prompt = the N phrases before, one per line")
    p.add_argument("--think-ms", type=float, default=300.0, help="the person's minimum time per selection")
    p.add_argument("--no-lora", action="store_true", help="profile only")
    p.add_argument("--no-ablation", action="store_true", help="leave out the row of the profile without its memory")
    p.add_argument("--fresh", action="store_true", help="also run the later part with an empty profile (live only)")
    p.add_argument("--lora-steps", type=int, default=60)
    p.add_argument("--lora-minutes", type=float, default=0.0)
    p.add_argument("--lora-lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--results", default=str(HERE / "results" / "returning_user"))
    p.add_argument("--keep", action="store_true", help="keep the stores, profile and adapter")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--pool", nargs="+", metavar="RUN_DIR",
                   help="run nothing: pool the later parts of finished runs, each row's gain with a 95%% interval")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pool:
        return pool(args.pool)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
