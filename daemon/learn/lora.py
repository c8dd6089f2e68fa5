"""LoRA on the person's choices (``razvilka learn lora``): SFT on what they wrote, then DPO on
what they chose over what they passed by, exported as a llama.cpp GGUF adapter.

Needs the optional extra ``razvilka[learn]`` (torch, transformers, peft, gguf); everything is
imported inside the functions. The model is the daemon's own GGUF, dequantised once (hf.py).

Cost control on two CPU cores: the output layer of this model (262,144 words x 640) costs more
than its 18 blocks, so log-probabilities are computed only at the positions that are scored
(completion tokens), never for the whole sequence; prompts are cut to their last tokens.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from razvilka.daemon.learn.errors import ErrorCode, LearnError
from razvilka.private import private_dir, write_private


@dataclass
class LoraOptions:
    """What to train and for how long. ``steps``/``minutes`` bound the whole run (SFT, then DPO)."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    steps: int = 80               # optimizer steps in all (SFT + DPO)
    minutes: float = 0.0          # wall-clock budget for training; 0 = steps only
    dpo_share: float = 0.4        # share of the budget for DPO, when there are enough pairs
    min_pairs: int = 16           # fewer DPO pairs than this: SFT only
    lr: float = 1e-3              # SFT learning rate (AdamW)
    dpo_lr: float = 1e-4
    dpo_beta: float = 0.1         # DPO temperature
    dpo_nll: float = 1.0          # weight of the chosen side's NLL added to the DPO loss (RPO): keeps its likelihood
    batch: int = 4
    max_tokens: int = 128         # tokens per example (the prompt is cut to its end)
    continuation_tokens: int = 24  # DPO: tokens kept of each side's continuation
    seed: int = 0
    holdout_share: float = 0.15   # the person's last documents, not trained on: is the adapter any good?
    eval_every: int = 10          # steps between checks on them (0: at the end of each phase only); the best is kept


@dataclass
class Example:
    """Token ids with the scored (continuation) part marked: ``ids[start:]`` are scored."""

    ids: list[int]
    start: int


@dataclass
class TrainReport:
    sft_examples: int = 0
    dpo_pairs: int = 0
    sft_steps: int = 0
    dpo_steps: int = 0
    seconds: float = 0.0
    sft_loss: list[float] = field(default_factory=list)
    dpo_loss: list[float] = field(default_factory=list)
    dpo_accuracy: float | None = None
    adapter: str = ""
    holdout_documents: int = 0
    holdout_tokens: int = 0
    holdout_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, mean log p per token)
    holdout_pairs: int = 0
    holdout_pair_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, share of pairs ranked right)
    best_step: int | None = None   # the step whose adapter was kept (0: none helped, the adapter is a no-op)

    @property
    def holdout_gain(self) -> float | None:
        """Change in the held-out text's mean log p per token (nats) from the base model to the kept adapter."""
        if not self.holdout_curve or self.best_step is None:
            return None
        return dict(self.holdout_curve)[self.best_step] - self.holdout_curve[0][1]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "holdout_gain": self.holdout_gain}

    def holdout_summary(self) -> str:
        """One line for the person: did the adapter make their held-out writing more likely?"""
        if not self.holdout_curve or self.best_step is None:
            return (f"nothing held out to check the adapter against (fewer than {MIN_DOCUMENTS_FOR_HOLDOUT} "
                    "documents): it may help or harm")
        gain = self.holdout_gain or 0.0
        line = (f"held out: your last {self.holdout_documents} documents ({self.holdout_tokens} tokens): log p per "
                f"token {self.holdout_curve[0][1]:.4f} without the adapter, {gain + self.holdout_curve[0][1]:.4f} "
                f"with the one kept (step {self.best_step}): {gain:+.4f}")
        if self.holdout_pair_curve:
            ranked = dict(self.holdout_pair_curve)
            line += (f"; of {self.holdout_pairs} choices held out, {ranked[0]:.0%} ranked right without it, "
                     f"{ranked.get(self.best_step, ranked[0]):.0%} with it")
        if self.best_step == 0:
            line += ("\nnote: no step did better on your held-out writing, so the adapter written changes "
                     "nothing; more writing, fewer --steps or a lower --lr may help")
        return line


# ------------------------------------------------------------------------------------------ data
def _encode(tok: Any, text: str, *, bos: bool) -> list[int]:
    """Token ids as the llama.cpp engine makes them: each piece tokenized on its own, BOS at the start."""
    ids = tok(text, add_special_tokens=False)["input_ids"] if text else []
    return ([tok.bos_token_id] if bos else []) + list(ids)


def sft_examples(items: Sequence[dict[str, Any]], tok: Any, max_tokens: int) -> list[Example]:
    """Windows over each document: the completion in chunks, each after the end of what came before it."""
    out: list[Example] = []
    chunk = max(8, max_tokens * 3 // 4)
    for item in items:
        prompt = _encode(tok, item.get("prompt", ""), bos=True)
        comp = _encode(tok, item["completion"], bos=False)
        for lo in range(0, len(comp), chunk):
            part = comp[lo: lo + chunk]
            before = prompt + comp[:lo]
            room = max_tokens - len(part) - 1
            ctx = [tok.bos_token_id] + (before[1:][-room:] if room > 0 else [])
            out.append(Example(ctx + part, len(ctx)))
    return out


def dpo_examples(items: Sequence[dict[str, Any]], tok: Any, opt: LoraOptions) -> list[tuple[Example, Example]]:
    """(chosen, rejected) token examples, sharing the prompt's last tokens."""
    out = []
    for item in items:
        prompt = _encode(tok, item["prompt"], bos=True)
        ch = _encode(tok, item["chosen"], bos=False)[: opt.continuation_tokens]
        rj = _encode(tok, item["rejected"], bos=False)[: opt.continuation_tokens]
        if not ch or not rj or ch == rj:
            continue
        room = opt.max_tokens - max(len(ch), len(rj)) - 1
        ctx = [tok.bos_token_id] + (prompt[1:][-room:] if room > 0 else [])
        out.append((Example(ctx + ch, len(ctx)), Example(ctx + rj, len(ctx))))
    return out


MIN_DOCUMENTS_FOR_HOLDOUT = 4
HELD_PAIRS = 64                   # held-out pairs scored at each check (2 sequences each)


@dataclass
class Split:
    """The person's documents and pairs, with the newest documents (and their pairs) held out."""

    documents: list[dict[str, Any]]
    held_documents: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    held_pairs: list[dict[str, Any]]


def split_holdout(sft_items: Sequence[dict[str, Any]], pair_items: Sequence[dict[str, Any]], share: float) -> Split:
    """Hold out the last ``share`` of the documents and the pairs from them. The newest writing is the
    best stand-in for what the person writes next; with fewer than 4 documents none is held out."""
    n = len(sft_items)
    hold = math.ceil(share * n) if share > 0 and n >= MIN_DOCUMENTS_FOR_HOLDOUT else 0
    held = list(sft_items[n - hold:]) if hold else []
    ids = {it["document_id"] for it in held if it.get("document_id") is not None}
    return Split(list(sft_items[: n - hold]), held, [p for p in pair_items if p.get("document_id") not in ids],
                 [p for p in pair_items if ids and p.get("document_id") in ids])


def pick_pairs(pairs: Sequence[dict[str, Any]], limit: int, seed: int, *, hardest: bool = True) -> list[dict[str, Any]]:
    """Pairs with a look-ahead on the rejected side: those where the model preferred the rejected word
    first (``hardest``, to train on), or a random sample (to check on)."""
    usable = [p for p in pairs if p.get("rejected_has_lookahead")]
    rng = random.Random(seed)
    rng.shuffle(usable)
    if hardest:
        usable.sort(key=lambda p: -((p.get("rejected_prob") or 0.0) - (p.get("chosen_prob") or 0.0)))
    return usable[:limit]


# ------------------------------------------------------------------------------------------ torch parts
def _batch(examples: Sequence[Example], pad: int) -> tuple[Any, Any, Any]:
    import torch

    n = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), n), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    scored = torch.zeros((len(examples), n), dtype=torch.bool)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
        scored[i, e.start: len(e.ids)] = True
    return ids, mask, scored


def sequence_logprobs(model: Any, examples: Sequence[Example], pad: int) -> Any:
    """Sum of log p(token) over each example's scored tokens (the output layer runs only on those rows)."""
    import torch

    ids, mask, scored = _batch(examples, pad)
    causal = _causal_lm(model)
    hidden = causal.model(input_ids=ids, attention_mask=mask).last_hidden_state   # (B, T, H)
    take = scored[:, 1:]                                                             # predict token t from t-1
    rows = hidden[:, :-1][take]
    logits = causal.lm_head(rows).float()
    cap = getattr(causal.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    target = ids[:, 1:][take]
    lp = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    which = torch.arange(len(examples))[:, None].expand_as(take)[take]
    return torch.zeros(len(examples), dtype=lp.dtype).index_add(0, which, lp)


def pair_accuracy(model: Any, pairs: Sequence[tuple[Example, Example]], pad: int, batch: int) -> float:
    """Share of (chosen, rejected) pairs where the chosen continuation is the more likely, without gradients."""
    import torch

    with torch.no_grad():
        scores = _pair_logprobs(model, pairs, pad, batch)
    return sum(c > r for c, r in scores) / len(scores) if scores else 0.0


def mean_logprob(model: Any, examples: Sequence[Example], pad: int, batch: int) -> float:
    """Mean log p per scored token (nats) over ``examples``, without gradients."""
    import torch

    total, tokens = 0.0, 0
    with torch.no_grad():
        for lo in range(0, len(examples), batch):
            chunk = examples[lo: lo + batch]
            total += float(sequence_logprobs(model, chunk, pad).sum())
            tokens += sum(len(e.ids) - e.start for e in chunk)
    return total / tokens if tokens else 0.0


def _causal_lm(model: Any) -> Any:
    """The ``...ForCausalLM`` inside a PEFT wrapper (its LoRA layers are injected in place)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def add_lora(model: Any, opt: LoraOptions) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(opt.seed)
    # PEFT annotates lora_alpha as int but only divides it by r: a fractional --alpha works as given
    cfg = LoraConfig(r=opt.rank, lora_alpha=opt.alpha,  # type: ignore[arg-type]
                     target_modules=list(opt.targets), lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def train(model: Any, tok: Any, sft_items: Sequence[dict[str, Any]], pair_items: Sequence[dict[str, Any]],
          opt: LoraOptions, *, say: Callable[[str], None] = print) -> tuple[Any, TrainReport]:
    """Add a LoRA to ``model`` and train it: SFT on the written text, then DPO on the pairs.

    The person's last documents are held out (``opt.holdout_share``): every ``opt.eval_every`` steps
    the adapter is scored on them (mean log p per token of what the person really wrote, and the share
    of their choices there it ranks right), and the best one seen (``check``) is what is returned —
    step 0, a no-op adapter, when no step did better. A small store overfits quickly; this keeps the
    adapter from doing harm."""
    import torch

    torch.manual_seed(opt.seed)
    rng = random.Random(opt.seed)
    rep = TrainReport()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    split = split_holdout(sft_items, pair_items, opt.holdout_share)
    held_items = split.held_documents
    held = sft_examples(held_items, tok, opt.max_tokens)
    rep.holdout_documents, rep.holdout_tokens = len(held_items), sum(len(e.ids) - e.start for e in held)
    held_pairs = dpo_examples(pick_pairs(split.held_pairs, HELD_PAIRS, opt.seed, hardest=False), tok, opt)
    rep.holdout_pairs = len(held_pairs)
    sft = sft_examples(split.documents, tok, opt.max_tokens)
    budget_pairs = max(opt.min_pairs, int(opt.steps * opt.dpo_share) * opt.batch)
    dpo = dpo_examples(pick_pairs(split.pairs, budget_pairs, opt.seed), tok, opt)
    rep.sft_examples, rep.dpo_pairs = len(sft), len(dpo)
    if not sft and len(dpo) < opt.min_pairs:
        raise LearnError(ErrorCode.BAD_CONFIG, "nothing to learn from: the store holds no written text for this "
                            "user (write with the daemon first, or check --user)")
    use_dpo = len(dpo) >= opt.min_pairs
    dpo_steps = int(round(opt.steps * opt.dpo_share)) if use_dpo else 0
    sft_steps = opt.steps - dpo_steps if sft else 0
    if not sft:
        dpo_steps = opt.steps
    peft_model = add_lora(model, opt)
    peft_model.train()
    started = time.perf_counter()
    deadline = started + opt.minutes * 60 if opt.minutes > 0 else math.inf
    say(f"LoRA r={opt.rank} alpha={opt.alpha:g} on {'+'.join(opt.targets)}: {len(sft)} SFT windows, "
        f"{len(dpo)} DPO pairs{'' if use_dpo else f' (fewer than {opt.min_pairs}: SFT only)'}; "
        f"{sft_steps} SFT + {dpo_steps} DPO steps" + (f", at most {opt.minutes:g} min" if opt.minutes > 0 else "")
        + (f"; {len(held_items)} documents held out to check it" if held_items else ""))
    best: dict[str, Any] = {"key": (-math.inf, -math.inf), "step": None, "state": None}
    by_pairs = len(held_pairs) >= opt.min_pairs

    def check() -> None:
        """Score the adapter on the held-out documents; remember it if it is the best so far.

        Best: among adapters that make the held-out text at least as likely as no adapter does, the one
        that ranks the most held-out pairs right (what the word cloud's order needs), then the likelier
        text; with fewer than ``opt.min_pairs`` held-out pairs, the likelier text alone."""
        step = rep.sft_steps + rep.dpo_steps
        if not held or (rep.holdout_curve and rep.holdout_curve[-1][0] == step):
            return
        peft_model.eval()
        score = mean_logprob(peft_model, held, pad, opt.batch)
        ranked = pair_accuracy(peft_model, held_pairs, pad, opt.batch) if held_pairs else None
        peft_model.train()
        base = best.setdefault("base", score)   # the first check: step 0, no adapter
        rep.holdout_curve.append((step, round(score, 5)))
        if ranked is not None:
            rep.holdout_pair_curve.append((step, round(ranked, 4)))
        key = (ranked if by_pairs and ranked is not None else 0.0, score)
        if score >= base and key > best["key"]:
            best.update(key=key, step=step, state={n: p.detach().clone()
                                                   for n, p in peft_model.named_parameters() if p.requires_grad})
        say(f"held out: {score:.4f} nats/token" + (f", {ranked:.0%} of {len(held_pairs)} pairs ranked right"
                                                     if ranked is not None else "")
            + f" at step {step} (best: step {best['step']})")

    check()

    params = [p for p in peft_model.parameters() if p.requires_grad]
    if sft_steps:
        sft_deadline = started + (deadline - started) * (1 - (opt.dpo_share if use_dpo else 0.0))
        optim = torch.optim.AdamW(params, lr=opt.lr, weight_decay=0.0)
        order: list[Example] = []
        for step in range(sft_steps):
            if time.perf_counter() > sft_deadline:
                say(f"SFT: time budget reached after {step} steps")
                break
            if len(order) < opt.batch:
                more = list(sft)
                rng.shuffle(more)
                order += more
            batch, order = order[: opt.batch], order[opt.batch:]
            lp = sequence_logprobs(peft_model, batch, pad)
            n_tok = sum(len(e.ids) - e.start for e in batch)
            loss = -lp.sum() / max(1, n_tok)
            optim.zero_grad()
            loss.backward()
            optim.step()
            rep.sft_steps += 1
            rep.sft_loss.append(round(loss.item(), 4))
            _progress(say, "SFT", step + 1, sft_steps, rep.sft_loss[-1], started)
            if opt.eval_every > 0 and rep.sft_steps % opt.eval_every == 0:
                check()
        check()
    if use_dpo and dpo_steps:
        peft_model.eval()
        with torch.no_grad():  # the reference: the model as SFT left it (the adapter on)
            ref = _pair_logprobs(peft_model, dpo, pad, opt.batch)
        peft_model.train()
        optim = torch.optim.AdamW(params, lr=opt.dpo_lr, weight_decay=0.0)
        idx: list[int] = []
        wins = 0
        seen = 0
        for step in range(dpo_steps):
            if time.perf_counter() > deadline:
                say(f"DPO: time budget reached after {step} steps")
                break
            if len(idx) < opt.batch:
                pair_order = list(range(len(dpo)))
                rng.shuffle(pair_order)
                idx += pair_order
            take, idx = idx[: opt.batch], idx[opt.batch:]
            exs = [dpo[i][0] for i in take] + [dpo[i][1] for i in take]
            lp = sequence_logprobs(peft_model, exs, pad)
            n = len(take)
            ref_c = torch.tensor([ref[i][0] for i in take])
            ref_r = torch.tensor([ref[i][1] for i in take])
            margin = opt.dpo_beta * ((lp[:n] - ref_c) - (lp[n:] - ref_r))
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            if opt.dpo_nll > 0:
                chosen_tokens = sum(len(dpo[i][0].ids) - dpo[i][0].start for i in take)
                loss = loss - opt.dpo_nll * lp[:n].sum() / max(1, chosen_tokens)
            optim.zero_grad()
            loss.backward()
            optim.step()
            wins += int((margin > 0).sum())
            seen += n
            rep.dpo_steps += 1
            rep.dpo_loss.append(round(loss.item(), 4))
            _progress(say, "DPO", step + 1, dpo_steps, rep.dpo_loss[-1], started)
            if opt.eval_every > 0 and rep.dpo_steps % opt.eval_every == 0:
                check()
        rep.dpo_accuracy = wins / seen if seen else None
        check()
    if best["state"] is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if name in best["state"]:
                    param.copy_(best["state"][name])
        rep.best_step = best["step"]
        say(f"kept the adapter of step {rep.best_step}" + (
            " (no step made the held-out writing more likely: it changes nothing)" if rep.best_step == 0 else ""))
    peft_model.eval()
    rep.seconds = round(time.perf_counter() - started, 1)
    return peft_model, rep


def _pair_logprobs(model: Any, pairs: Sequence[tuple[Example, Example]], pad: int,
                   batch: int) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo in range(0, len(pairs), batch):
        chunk = pairs[lo: lo + batch]
        lp = sequence_logprobs(model, [c for c, _ in chunk] + [r for _, r in chunk], pad)
        n = len(chunk)
        out += [(float(lp[i]), float(lp[n + i])) for i in range(n)]
    return out


def _progress(say: Callable[[str], None], phase: str, step: int, total: int, loss: float, started: float) -> None:
    spent = time.perf_counter() - started
    say(f"{phase} step {step}/{total}  loss {loss:.4f}  ({spent:.0f} s)")


# ------------------------------------------------------------------------------------------ export
def lora_pairs(peft_model: Any) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    """{HF module name: (A, B)} as numpy arrays, and the LoRA settings, from a trained PEFT model."""
    pairs: dict[str, tuple[Any, Any]] = {}
    alpha = rank = None
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            a = mod.lora_A["default"].weight.detach().float().cpu().numpy()
            b = mod.lora_B["default"].weight.detach().float().cpu().numpy()
            clean = name
            for lead in ("base_model.model.", "base_model."):
                if clean.startswith(lead):
                    clean = clean[len(lead):]
                    break
            pairs[clean] = (a, b)
            alpha, rank = mod.lora_alpha["default"], mod.r["default"]
    return pairs, {"alpha": float(alpha or 0), "rank": int(rank or 0)}


def export_gguf(peft_model: Any, model_path: str | Path, out_path: str | Path, *,
                extra: dict[str, str] | None = None) -> Path:
    """Write the trained LoRA as a llama.cpp adapter GGUF for ``model_path`` (tensor names via gguf-py)."""
    from razvilka.daemon.learn.adapter_gguf import hf_to_gguf_name, model_info, write_adapter

    info = model_info(model_path)
    hf_pairs, settings = lora_pairs(peft_model)
    if not hf_pairs:
        raise LearnError(ErrorCode.BAD_CONFIG, "the model carries no LoRA weights to export")
    n_layers = int(_causal_lm(peft_model).config.num_hidden_layers)
    pairs = {hf_to_gguf_name(name, info["arch"], n_layers): ab for name, ab in hf_pairs.items()}
    return write_adapter(out_path, pairs, alpha=settings["alpha"], base=info,
                         extra={"rank": str(settings["rank"]), **(extra or {})})


# ------------------------------------------------------------------------------------------ checking
def torch_logprob(model: Any, tok: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) in PyTorch, tokenized as the engine does (the context, then the rest)."""
    import torch

    ctx = _encode(tok, context, bos=True)
    cont = _encode(tok, continuation, bos=False)
    with torch.no_grad():
        return float(sequence_logprobs(model, [Example(ctx + cont, len(ctx))], tok.pad_token_id or 0)[0])


def llama_logprob(engine: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) from the llama.cpp engine (with whatever LoRA it has loaded)."""
    from razvilka.daemon.engine import WordCandidate

    engine.reset(context)
    total = 0.0
    for t in engine.tokenize(continuation):
        probs = engine.next_token_probs()
        total += math.log(max(float(probs[t]), 1e-30))
        engine.commit(WordCandidate(word="", text="", tokens=[t], prob=1.0))
    return total


def save_report(path: str | Path, report: TrainReport, options: LoraOptions, extra: dict[str, Any]) -> None:
    """The training report beside its adapter, private (it quotes the person's counts and checks)."""
    private_dir(Path(path).parent)
    write_private(path, json.dumps({"options": asdict(options), "report": report.to_json(), **extra}, indent=2))
