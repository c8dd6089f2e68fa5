"""``razvilka learn``: the person's profile, preference-data export, and LoRA adapters (docs/learning.md).

    razvilka learn profile show|rebuild|reset|export FILE|import FILE|read FILE   [--user U]
    razvilka learn export [-o DIR] [--user U]
    razvilka learn lora [-o ADAPTER.gguf] [--steps N] [--minutes M] [--user U]

Nothing heavy is imported at module level (the parser imports every area to build --help).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from razvilka.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn", help="learn from the person's choices: profile, export, LoRA")
    ls = p.add_subparsers(dest="learn_command", metavar="ACTION")
    ls.required = True

    pr = ls.add_parser("profile", help="show, rebuild, reset, export or import the user's profile, or read their text")
    pr.add_argument("action", choices=["show", "rebuild", "reset", "export", "import", "read"])
    pr.add_argument("file", nargs="?", help="export: file to write; import: profile to read; "
                                            "read: UTF-8 text the person wrote elsewhere")
    pr.add_argument("--user", help="whose profile (default: daemon.user)")
    pr.add_argument("--profile", help="the profile file (default: profiles/<user>.json next to the store)")
    pr.set_defaults(handler=run_profile)

    ex = ls.add_parser("export", help="DPO pairs, SFT text and token-level labels from the store, as JSON lines")
    ex.add_argument("-o", "--output", help="directory (default: $XDG_DATA_HOME/razvilka/learn/<user>/)")
    ex.add_argument("--user", help="whose decisions (default: daemon.user; 'all' for everyone)")
    ex.set_defaults(handler=run_export)

    lo = ls.add_parser("lora", help="train a LoRA adapter on the user's choices (needs razvilka[learn])")
    lo.add_argument("-o", "--output",
                    help="adapter file (default: $XDG_DATA_HOME/razvilka/adapters/<user>-<time>.gguf)")
    lo.add_argument("--user", help="whose decisions (default: daemon.user)")
    lo.add_argument("--steps", type=int, default=80, help="optimizer steps in all, SFT then DPO (default 80)")
    lo.add_argument("--minutes", type=float, default=0.0, help="time budget for training (default: none)")
    lo.add_argument("--rank", type=int, default=8)
    lo.add_argument("--alpha", type=float, default=16.0)
    lo.add_argument("--lr", type=float, default=1e-3, help="SFT learning rate")
    lo.add_argument("--holdout", type=float, default=0.15, metavar="SHARE",
                    help="share of the newest documents held out to choose the step whose adapter is kept "
                         "(default 0.15; 0: train on everything and keep the last step)")
    lo.add_argument("--no-check", action="store_true", help="skip loading the adapter into llama.cpp afterwards")
    lo.set_defaults(handler=run_lora)


def _data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "razvilka"


def _user(config: Config, args: argparse.Namespace) -> str:
    return args.user or config.daemon.user


def _fail(what: str, exc: Exception) -> int:
    print(f"razvilka learn {what}: {exc}", file=sys.stderr)
    return 2


def run_profile(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.learn.live import replay_store
    from razvilka.daemon.learn.memory import Memory
    from razvilka.daemon.learn.persist import default_profile_path, import_profile, load_profile, save_profile
    from razvilka.daemon.learn.profile import Profile
    from razvilka.protocol.errors import RazvilkaError

    user = _user(config, args)
    path = Path(args.profile) if args.profile else default_profile_path(user, config.store.path)
    text = ""
    try:
        if args.action == "import":
            if not args.file:
                return _fail("profile import", ValueError("name the file to import"))
            prof = import_profile(args.file, path, user)
            kept = _keep_aside(path, "before-import")
            save_profile(prof)
            print(f"imported {args.file} as the profile of {user!r} ({path})"
                  + (f"; the old one is {kept}" if kept else ""))
            return 0
        if args.action == "read":
            if not args.file:
                return _fail("profile read", ValueError("name the text file to read"))
            try:  # read it all before the profile changes: a bad file changes nothing
                text = Path(args.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return _fail("profile read", exc)
        prof = load_profile(path, user)
        if prof.notice_:
            print(f"razvilka learn profile: {prof.notice_}", file=sys.stderr)
        if args.action == "show":
            print(json.dumps(prof.summary(), indent=2, ensure_ascii=False))
        elif args.action == "export":
            if not args.file:
                return _fail("profile export", ValueError("name the file to write"))
            save_profile(prof, args.file)
            print(f"exported the profile of {user!r} to {args.file}")
        elif args.action == "reset":
            kept = _keep_aside(path, "reset")
            prof.reset()
            save_profile(prof)
            print(f"reset the profile of {user!r}" + (f"; the old one is kept as {kept}" if kept else ""))
        elif args.action == "read":
            prof.set_params(memory__max_chars=config.daemon.profile_memory_chars)
            n = prof.read_text(text, f"read:{Path(args.file).name}")
            save_profile(prof)
            print(f"the profile of {user!r} learned {n} words from {args.file}; its memory holds "
                  f"{prof.summary()['memory_chars']} characters ({path})")
        elif args.action == "rebuild":
            fresh = Profile(path, user, memory=Memory(max_chars=config.daemon.profile_memory_chars))
            n = replay_store(fresh, config.store.path, user)
            kept = _keep_aside(path, "before-rebuild")
            save_profile(fresh)
            print(f"rebuilt the profile of {user!r} from {n} decisions in the store ({path})"
                  + (f"; the old one is kept as {kept}" if kept else ""))
            print(json.dumps(fresh.summary(), indent=2, ensure_ascii=False))
    except RazvilkaError as exc:
        return _fail("profile", exc)
    return 0


def _keep_aside(path: Path, why: str) -> Path | None:
    """Rename an existing profile instead of overwriting it (reset and import never lose one)."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.stem}.{why}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    os.replace(path, aside)
    return aside


def run_export(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.learn.export import export
    from razvilka.protocol.errors import RazvilkaError

    user = _user(config, args)
    out = Path(args.output) if args.output else _data_dir() / "learn" / user
    try:
        counts = export(config.store.path, out, None if user == "all" else user)
    except RazvilkaError as exc:
        return _fail("export", exc)
    print(f"wrote {counts['pairs']} DPO pairs, {counts['sft']} SFT documents and {counts['labels']} fork labels "
          f"to {out}/ (pairs.jsonl, sft.jsonl, labels.jsonl)")
    return 0


def run_lora(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.learn.hf import require_learn_extra
    from razvilka.protocol.errors import RazvilkaError

    if not 0.0 <= args.holdout < 1.0:
        print(f"razvilka learn lora: --holdout must be a share in [0, 1), not {args.holdout}", file=sys.stderr)
        return 2
    try:
        require_learn_extra()
    except RazvilkaError as exc:
        print(f"razvilka learn lora: {exc.detail}", file=sys.stderr)
        return 2
    try:
        return _train_lora(config, args)
    except RazvilkaError as exc:
        return _fail("lora", exc)


def _train_lora(config: Config, args: argparse.Namespace) -> int:
    from razvilka.daemon.learn import hf, lora
    from razvilka.daemon.learn.adapter_gguf import check_adapter
    from razvilka.daemon.learn.export import export, read_jsonl

    user = _user(config, args)
    work = _data_dir() / "learn" / user
    counts = export(config.store.path, work, user)
    print(f"exported {counts['sft']} documents and {counts['pairs']} DPO pairs of {user!r} to {work}/", flush=True)
    sft_items = read_jsonl(work / "sft.jsonl")
    pair_items = read_jsonl(work / "pairs.jsonl")
    gguf_path = hf.resolve_model_path(config.model.path)

    def say(line: str) -> None:
        print(line, flush=True)

    model, tok, _ = hf.load_model(gguf_path, say=say)
    checks = [(it["prompt"], it["completion"][:60]) for it in sft_items[-3:]]
    before = [lora.torch_logprob(model, tok, c, x) for c, x in checks]
    opt = lora.LoraOptions(rank=args.rank, alpha=args.alpha, steps=args.steps, minutes=args.minutes, lr=args.lr,
                           holdout_share=args.holdout)
    peft_model, rep = lora.train(model, tok, sft_items, pair_items, opt, say=say)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.output) if args.output else _data_dir() / "adapters" / f"{user}-{stamp}.gguf"
    lora.export_gguf(peft_model, gguf_path, out, extra={"user": user})
    rep.adapter = str(out)
    meta = check_adapter(out, gguf_path)
    result: dict[str, object] = {"counts": counts}
    print(f"adapter written: {out} ({out.stat().st_size / 1024:.0f} KiB, {rep.sft_steps} SFT + {rep.dpo_steps} DPO "
          f"steps in {rep.seconds:.0f} s)")
    print(rep.holdout_summary())
    if checks and not args.no_check:
        after = [lora.torch_logprob(peft_model, tok, c, x) for c, x in checks]
        from razvilka.daemon.config import ModelConfig
        from razvilka.daemon.engine import Engine

        engine = Engine(ModelConfig(path=config.model.path, n_ctx=1024, side_sequences=2))
        try:
            base = [lora.llama_logprob(engine, c, x) for c, x in checks]
            engine.load_lora(str(out))
            adapted = [lora.llama_logprob(engine, c, x) for c, x in checks]
        finally:
            engine.close()
        rows = [{"torch_delta": round(a - b, 3), "llama_delta": round(c - d, 3)}
                for a, b, c, d in zip(after, before, adapted, base)]
        result["check"] = rows
        print("change in log p(the person's own text), PyTorch vs llama.cpp with the adapter:")
        for r in rows:
            print(f"  torch {r['torch_delta']:+.3f}   llama.cpp {r['llama_delta']:+.3f}")
    if meta.get("warning"):
        print(f"note: {meta['warning']}")
    lora.save_report(out.with_suffix(".json"), rep, opt, result)
    print(f"use it: razvilka daemon --set model.lora_path={out}   (or hot-swap: Engine.load_lora)")
    return 0
