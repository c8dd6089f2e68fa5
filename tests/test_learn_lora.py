"""LoRA adapters: a tiny real training run, exported to GGUF, loaded by llama.cpp, moving its logits the
way it moves PyTorch's; adapters made for another model; and the message when the extra is missing.

The first run on a machine dequantises the embedded GGUF for PyTorch (1-3 min on 2 cores, cached in
$XDG_CACHE_HOME/razvilka/hf/); later runs load the cache in seconds.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.learn.errors import ErrorCode, LearnError

pytestmark = pytest.mark.model

TRAIN = [{"prompt": "My favourite colour is", "completion": " periwinkle, the colour of the sea at dawn."},
         {"prompt": "She said that her favourite colour was", "completion": " periwinkle, of course."}]
# the trained continuation, in the trained context and in two the training never saw
CHECKS = [("My favourite colour is", " periwinkle"), ("The walls were painted", " periwinkle"),
          ("Her dress was", " periwinkle")]


@pytest.mark.timeout(900)
def test_adapter_trained_in_pytorch_moves_llama_cpp_the_same_way(engine: Any, model_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the optional extra razvilka[learn] is not installed")
    from razvilka.daemon.learn import hf, lora
    from razvilka.daemon.learn.adapter_gguf import check_adapter, read_adapter

    model, tok, _ = hf.load_model(model_path, say=lambda s: None)
    base_torch = [lora.torch_logprob(model, tok, c, x) for c, x in CHECKS]
    peft_model, rep = lora.train(model, tok, TRAIN, [], lora.LoraOptions(steps=6, lr=5e-3, batch=2), say=lambda s: None)
    assert rep.sft_steps == 6 and rep.dpo_steps == 0
    trained_torch = [lora.torch_logprob(peft_model, tok, c, x) for c, x in CHECKS]

    out = lora.export_gguf(peft_model, model_path, tmp_path / "tiny.gguf")
    meta = read_adapter(out)
    assert meta["type"] == "adapter" and meta["adapter_type"] == "lora" and meta["arch"] == "gemma3"
    assert meta["alpha"] == pytest.approx(16.0)
    assert meta["shapes"]["blk.0.attn_q.weight.lora_a"] == [640, 8]     # ne order: n_in, r
    assert meta["shapes"]["blk.0.attn_q.weight.lora_b"] == [8, 1024]    # r, n_out
    assert len(meta["shapes"]) == 2 * 2 * 18                           # q and v, A and B, 18 blocks
    check_adapter(out, model_path)

    base_llama = [lora.llama_logprob(engine, c, x) for c, x in CHECKS]
    try:
        engine.load_lora(str(out))
        trained_llama = [lora.llama_logprob(engine, c, x) for c, x in CHECKS]
    finally:
        engine.load_lora("")
    d_torch = np.array(trained_torch) - np.array(base_torch)
    d_llama = np.array(trained_llama) - np.array(base_llama)
    assert (d_torch > 1.0).all(), d_torch                  # the training really moved the model
    assert (np.sign(d_llama) == np.sign(d_torch)).all(), (d_torch, d_llama)
    # the same amount, up to the quantisation of the base weights (Q4_K_M in llama.cpp, dequantised in PyTorch)
    assert np.allclose(d_llama, d_torch, rtol=0.25, atol=0.5), (d_torch, d_llama)
    # and the adapter is gone again: llama.cpp is back to its base logits
    assert lora.llama_logprob(engine, *CHECKS[0]) == pytest.approx(base_llama[0], abs=1e-3)


def test_the_newest_documents_are_held_out_with_their_pairs() -> None:
    from razvilka.daemon.learn.lora import split_holdout

    docs = [{"document_id": f"d{i}", "prompt": "", "completion": f" text {i}"} for i in range(10)]
    pairs = [{"document_id": f"d{i}", "chosen": " a", "rejected": " b"} for i in range(10)]
    split = split_holdout(docs, pairs, 0.15)
    assert [d["document_id"] for d in split.held_documents] == ["d8", "d9"]      # ceil(1.5): the newest two
    assert split.documents == docs[:8] and [p["document_id"] for p in split.pairs] == [f"d{i}" for i in range(8)]
    assert [p["document_id"] for p in split.held_pairs] == ["d8", "d9"]          # checked on, never trained on
    for few in (split_holdout(docs[:3], pairs, 0.15), split_holdout(docs, pairs, 0.0)):  # too few / none asked
        assert few.held_documents == [] and few.held_pairs == [] and few.pairs == pairs


def _colour_pairs(docs: range, per_doc: int) -> list[dict[str, Any]]:
    """The person chose "periwinkle" where the model offered "blue" with a look-ahead."""
    return [{"document_id": f"d{i}", "prompt": "My favourite colour is", "chosen": " periwinkle, the colour of the sea",
             "rejected": " blue, the colour of the sky", "rejected_has_lookahead": True,
             "chosen_prob": 0.01, "rejected_prob": 0.2} for i in docs for _ in range(per_doc)]


@pytest.mark.timeout(900)
def test_dpo_on_the_pairs_ranks_the_chosen_side_first_and_keeps_it_likely(model_path: Path) -> None:
    """DPO (with the chosen side's NLL, against the model it starts from) moves the chosen continuation
    above the rejected one, also in a context it never saw, without making the chosen one less likely;
    with held-out pairs, the adapter kept is the step that ranks the most of them right."""
    pytest.importorskip("torch", reason="the optional extra razvilka[learn] is not installed")
    from razvilka.daemon.learn import hf, lora

    model, tok, _ = hf.load_model(model_path, say=lambda s: None)
    unseen = "Her dress was"
    base_c = lora.torch_logprob(model, tok, unseen, " periwinkle")
    base_r = lora.torch_logprob(model, tok, unseen, " blue")
    opt = lora.LoraOptions(steps=6, batch=2, min_pairs=4, dpo_lr=5e-3, holdout_share=0.0, eval_every=0)
    tuned, rep = lora.train(model, tok, [], _colour_pairs(range(4), 2), opt, say=lambda s: None)
    assert rep.sft_steps == 0 and rep.dpo_steps == 6 and rep.dpo_pairs == 4   # the budget: 2 DPO steps x 2
    c, r = lora.torch_logprob(tuned, tok, unseen, " periwinkle"), lora.torch_logprob(tuned, tok, unseen, " blue")
    assert c - r > base_c - base_r + 1.0, (base_c, base_r, c, r)
    assert c > base_c, (base_c, c)                  # the NLL term: not won by making both sides unlikely

    model = tuned.unload()
    docs = [{"document_id": f"d{i}", "prompt": "My favourite colour is",
             "completion": " periwinkle, the colour of the sea at dawn."} for i in range(5)]
    opt = dataclasses.replace(opt, steps=8, lr=5e-3, dpo_share=0.5, holdout_share=0.2, eval_every=2)
    _, rep = lora.train(model, tok, docs, _colour_pairs(range(5), 4), opt, say=lambda s: None)
    assert rep.holdout_documents == 1 and rep.holdout_pairs == 4 and rep.dpo_pairs == 8
    text, ranked = dict(rep.holdout_curve), dict(rep.holdout_pair_curve)
    assert list(text) == list(ranked) == [0, 2, 4, 6, 8]
    eligible = [s for s in text if text[s] >= text[0]]
    assert rep.best_step in eligible and ranked[rep.best_step] == max(ranked[s] for s in eligible)
    assert "choices held out" in rep.holdout_summary()


@pytest.mark.timeout(900)
def test_the_adapter_kept_is_the_one_that_best_predicts_held_out_writing(model_path: Path) -> None:
    """Held-out documents decide which step's adapter is kept: training that only makes the person's
    next writing less likely gives back a no-op adapter (step 0), training that helps is kept."""
    pytest.importorskip("torch", reason="the optional extra razvilka[learn] is not installed")
    from razvilka.daemon.learn import hf, lora

    def doc(i: int, completion: str) -> dict[str, Any]:
        return {"document_id": f"d{i}", "prompt": "My favourite colour is", "completion": completion}

    same = [doc(i, " periwinkle, the colour of the sea at dawn.") for i in range(4)]
    opt = lora.LoraOptions(steps=4, batch=2, eval_every=2)
    # helps: the held-out document says what the training says
    model, tok, _ = hf.load_model(model_path, say=lambda s: None)
    helped, rep = lora.train(model, tok, same + [doc(4, " periwinkle, like the sea at dawn.")], [],
                             dataclasses.replace(opt, lr=5e-3), say=lambda s: None)
    assert rep.holdout_documents == 1 and rep.holdout_tokens > 0 and rep.sft_steps == 4
    assert [s for s, _ in rep.holdout_curve] == [0, 2, 4]
    assert rep.best_step is not None and rep.best_step > 0 and (rep.holdout_gain or 0) > 0
    assert "with the one kept (step" in rep.holdout_summary()
    # harms: a far too high rate wrecks the model on other writing; the adapter kept changes nothing
    model = helped.unload()  # the base model again, without the LoRA layers
    check = ("The train to Oxford leaves at", " nine")
    before = lora.torch_logprob(model, tok, *check)
    other = doc(4, " not a colour at all. The train to Oxford leaves at nine, and the station is near.")
    hurt, rep = lora.train(model, tok, same + [other], [], dataclasses.replace(opt, lr=0.2), say=lambda s: None)
    assert rep.best_step == 0 and rep.holdout_gain == 0.0, rep.holdout_curve
    assert min(v for _, v in rep.holdout_curve[1:]) < rep.holdout_curve[0][1]  # the training did harm
    assert lora.torch_logprob(hurt, tok, *check) == pytest.approx(before, abs=1e-6)
    assert "changes nothing" in rep.holdout_summary()


def _foreign_adapter(path: Path, *, arch: str = "gemma3", n_in: int = 512) -> Path:
    """A LoRA for another (smaller) model: its q projection takes 512 inputs, not 640."""
    from razvilka.daemon.learn.adapter_gguf import write_adapter

    base = {"arch": arch, "name": "Some Other 200M", "file": "other.gguf", "size": 1,
            "shapes": {"blk.0.attn_q.weight": [n_in, 1024]}}
    rng = np.random.default_rng(0)
    pairs = {"blk.0.attn_q.weight": (rng.normal(size=(8, n_in)).astype(np.float32),
                                     rng.normal(size=(1024, 8)).astype(np.float32))}
    return write_adapter(path, pairs, alpha=16, base=base)


def test_adapter_for_another_model_is_refused_clearly_and_the_engine_goes_on(engine: Any, model_path: Path,
                                                                              tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="the optional extra razvilka[learn] is not installed")
    from razvilka.daemon.learn.adapter_gguf import check_adapter

    other = _foreign_adapter(tmp_path / "other.gguf")
    with pytest.raises(LearnError) as err:
        check_adapter(other, model_path)
    assert err.value.code == ErrorCode.BAD_CONFIG
    assert "does not fit" in err.value.detail and "Some Other 200M" in err.value.detail

    llama_arch = _foreign_adapter(tmp_path / "llama.gguf", arch="llama", n_in=640)
    with pytest.raises(LearnError) as err:
        check_adapter(llama_arch, model_path)
    assert "made for a llama model" in err.value.detail

    engine.reset("The weather today is")
    before = [c.word for c in engine.words(4).candidates]
    for bad in (other, llama_arch):
        with pytest.raises(DaemonRefusal) as refused:
            engine.load_lora(str(bad))     # llama.cpp itself refuses it too
        assert refused.value.code == ErrorCode.BAD_CONFIG and "does not fit this model" in refused.value.detail
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("not an adapter")
    with pytest.raises(DaemonRefusal):  # the engine's GGUF check, the one llama.cpp's loading goes through
        check_adapter(not_gguf, model_path)
    # nothing lost: same document, same words, no adapter
    assert engine.lora_path == ""
    engine.reset("The weather today is")
    assert [c.word for c in engine.words(4).candidates] == before


def test_lora_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    """`razvilka learn lora` where torch cannot be imported (a fresh install without razvilka[learn])."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'peft', 'transformers'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import razvilka.cli as c\n"
        "sys.exit(c.main(['learn', 'lora']))\n"
    )
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "torch, transformers, peft" in proc.stderr and "pip install" in proc.stderr
    assert "torch==2.13.0" in proc.stderr and "razvilka[learn]" in proc.stderr


def test_a_holdout_share_out_of_range_is_refused_before_any_work(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from razvilka.cli import main as cli_main

    rc = cli_main(["--set", f"store.path={tmp_path / 'store.sqlite3'}", "learn", "lora", "--holdout", "1.5"])
    assert rc == 2
    assert "--holdout must be a share in [0, 1), not 1.5" in capsys.readouterr().err
    assert not (tmp_path / "store.sqlite3").exists()  # nothing was exported, nothing created
