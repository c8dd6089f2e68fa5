"""The engine's seam (daemon/backend.py): the embedded backend, and the word search from top-N rows.

A server's API gives the N likeliest tokens after a path, not the whole vocabulary. These tests run
the same word search on the same model through ``TopNBackend`` (the embedded backend's rows cut to
their top N, with the rest's mass) and show what that costs: the same words, probabilities within
a stated tolerance, and the mass the rows did not show stated on the distribution.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from razvilka.daemon.backend import Aborted, TopRow, top_row
from razvilka.daemon.backends.topn import TopNBackend
from razvilka.daemon.engine import Engine, _softmax_entropy, _top_softmax
from razvilka.daemon.errors import DaemonRefusal, ErrorCode

PROMPTS = [
    "My favourite thing about the weekend is",
    "The old lighthouse keeper climbed the stairs and",
    "When I was a child, my grandmother used to",
    "if at first you",
    "It happened in the year",
]
TOP_N = 40     # rows of 40 tokens: about what llama-server's n_probs or vLLM's --max-logprobs is set to
TOLERANCE = 0.002  # a word's probability from top-N rows is within this of the full rows' (measured: <= 0.0003)


# ------------------------------------------------------------------------------------------- no model
def test_top_row_lists_the_likeliest_tokens_and_the_rest_mass() -> None:
    logits = np.array([0.0, 3.0, 1.0, 3.5, -2.0, 2.0], dtype=np.float32)
    row = top_row(logits, 3)
    p = np.exp(logits.astype(np.float64)) / np.exp(logits.astype(np.float64)).sum()
    assert list(row.ids) == [3, 1, 5]
    assert np.allclose(np.exp(row.logprobs), p[[3, 1, 5]], rtol=1e-5)
    assert row.rest == pytest.approx(p[[0, 2, 4]].sum(), rel=1e-5)
    assert top_row(logits, 99).rest == pytest.approx(0.0, abs=1e-6)  # N past the vocabulary: every token
    with pytest.raises(DaemonRefusal) as err:
        top_row(logits, 0)
    assert err.value.code == ErrorCode.BAD_CONFIG and "N >= 1" in str(err.value)


def test_top_softmax_renormalises_with_the_rest_and_bounds_the_entropy_from_below() -> None:
    """With no rest it is the full softmax. With a rest, the listed tokens keep their share of the whole
    distribution, a ban renormalises over what is left (the rest included), and the entropy is a lower
    bound: exact when the rest is one token, below the truth when it is spread."""
    def h(p: list[float]) -> float:
        return -sum(x * math.log2(x) for x in p)

    logits = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32))
    full, h_full = _softmax_entropy(logits)
    same, rest, bits = _top_softmax(logits, 0.0)
    assert np.allclose(same, full) and rest == 0.0 and bits == pytest.approx(h_full, rel=1e-5)
    listed = np.array([math.log(0.5), math.log(0.3), -np.inf], dtype=np.float32)
    probs, rest, bits = _top_softmax(listed, 0.2)  # the 0.2 unlisted: one token
    assert np.allclose(probs, [0.5, 0.3, 0.0], atol=1e-6) and rest == pytest.approx(0.2)
    assert bits == pytest.approx(h([0.5, 0.3, 0.2]), rel=1e-5)
    assert bits < h([0.5, 0.3, 0.1, 0.1])  # had the 0.2 been two tokens of 0.1, the truth is higher
    banned = listed.copy()
    banned[0] = -np.inf
    probs, rest, _ = _top_softmax(banned, 0.2)
    assert probs[1] == pytest.approx(0.6, rel=1e-5) and rest == pytest.approx(0.4, rel=1e-5)


# ------------------------------------------------------------------------------------------- the real model
@pytest.fixture
def top(engine: Engine) -> Iterator[Engine]:
    """A second engine on the session's backend, seeing it through rows of TOP_N tokens."""
    eng = Engine(engine.cfg, backend=TopNBackend(engine.backend, TOP_N))
    try:
        yield eng
    finally:
        eng.close()
        assert engine.backend.n_vocab  # the shared backend is not closed by the view's engine
        engine.clear_cache()
        engine.reset("")


@pytest.mark.model
def test_capabilities_say_what_rows_the_backend_gives(engine: Engine, top: Engine) -> None:
    full, cut = engine.capabilities, top.capabilities
    assert full.full_rows and full.max_top_n == engine.n_vocab and full.runtime_lora and full.paths >= 4
    assert not cut.full_rows and cut.max_top_n == TOP_N and cut.paths == full.paths
    engine.reset(PROMPTS[0])
    row = engine.backend.rows([engine.tokens])[0]
    assert isinstance(row, np.ndarray) and row.shape == (engine.n_vocab,)
    top.reset(PROMPTS[0])
    cut_row = top.backend.rows([top.tokens])[0]
    assert isinstance(cut_row, TopRow) and len(cut_row.ids) == TOP_N
    assert int(cut_row.ids[0]) == int(np.argmax(row))
    assert cut_row.rest == pytest.approx(1.0 - float(np.exp(cut_row.logprobs.astype(np.float64)).sum()))


@pytest.mark.model
def test_word_search_from_top_n_rows_finds_the_same_words_and_states_the_missing_mass(
        engine: Engine, top: Engine) -> None:
    """At K=8 the top-N search finds the same words as the full-row search, each probability within
    TOLERANCE and within the mass it states as unseen; full rows state none."""
    for prompt in PROMPTS:
        engine.clear_cache()
        engine.reset(prompt)
        full = engine.words(8)
        top.clear_cache()
        top.reset(prompt)
        cut = top.words(8)
        f = {c.word: c.prob for c in full.candidates}
        c = {c.word: c.prob for c in cut.candidates}
        assert set(f) == set(c), (prompt, f, c)
        gap = {w: f[w] - c[w] for w in f}
        assert all(abs(d) <= TOLERANCE for d in gap.values()), (prompt, gap)
        assert all(abs(d) <= cut.unseen + 1e-6 for d in gap.values()), (prompt, gap, cut.unseen)
        assert full.unseen == 0.0 and 0.0 < cut.unseen < 0.5, (prompt, cut.unseen)
        assert full.entropy_bits - 1.5 < cut.entropy_bits <= full.entropy_bits + 1e-3  # a lower bound
        assert {x.word: x.tokens for x in cut.candidates} == {x.word: x.tokens for x in full.candidates}


@pytest.mark.model
def test_greedy_lookahead_from_top_n_rows_is_token_for_token_equal(engine: Engine, top: Engine) -> None:
    prompt, n = "I went to the", 6
    engine.clear_cache()
    engine.reset(prompt)
    full = engine.words(8)
    engine.lookahead(full.candidates, n)
    top.reset(prompt)
    cands = [type(c)(c.word, c.text, list(c.tokens), c.prob) for c in full.candidates]
    top.lookahead(cands, n)
    assert [c.lookahead_tokens for c in cands] == [c.lookahead_tokens for c in full.candidates]
    assert top.greedy(n) == engine.greedy(n)


@pytest.mark.model
def test_a_path_row_is_the_same_from_a_side_sequence_or_the_document(engine: Engine) -> None:
    """The embedded backend keeps its KV tricks inside: a path's row is the same whether it was decoded
    in a batch of paths, alone, or as the document's last token (one batch at any size: docs/engine.md)."""
    engine.clear_cache()
    engine.reset(PROMPTS[1])
    base = engine.tokens
    first = [int(t) for t in np.argsort(-engine.next_token_probs())[:4]]
    batch = engine.backend.rows([base + [t] for t in first])
    engine.backend.forget()
    alone = engine.backend.rows([base + [first[2]]])[0]
    doc = engine.backend.set_document(base + [first[2]])
    assert isinstance(doc, np.ndarray) and isinstance(alone, np.ndarray) and isinstance(batch[2], np.ndarray)
    assert np.array_equal(batch[2], alone) and np.array_equal(alone, doc)
    assert engine.backend.set_document(base, row=False) is None  # back to the checkpoint: nothing evaluated
    again = engine.backend.rows([base + [first[2]]])[0]
    assert isinstance(again, np.ndarray) and again.tobytes() == alone.tobytes()


@pytest.mark.model
def test_abort_before_the_work_raises_and_the_document_stays(engine: Engine) -> None:
    engine.reset(PROMPTS[0])
    before = dict(engine.stats)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Aborted):
        engine.backend.rows([engine.tokens + [7]], abort=ev)
    with pytest.raises(Aborted):
        engine.backend.pick([engine.tokens + [7]], lambda r: 0, keep=[False], abort=ev)
    assert engine.stats["decodes"] == before["decodes"]
    assert engine.text == PROMPTS[0] and engine.words(4).candidates
