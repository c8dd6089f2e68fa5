"""The OpenAI-compatible backend (daemon/backends/openai_compat.py, for vLLM) against a REAL server on
127.0.0.1: llama.cpp's server (``razvilka serve``, xllamacpp) serving the embedded GGUF, through its
OpenAI endpoint ``/v1/completions`` (token-id prompts, ``logprobs``), one server process for the file.

What it shows: the rows and words are those of the llama-server backend on the same server (the same
model through the other API); ``/tokenize`` is the server's; closing the connection aborts the request;
a server that goes away gives a clear MODEL_ERROR and the same backend works again once it is back; the
simulated person writes through it. vLLM itself was not run (no GPU was lent: docs/deployment.md, "vLLM");
its answer format is read by ``choice_row``, checked here on the shape vLLM's protocol documents.
"""
from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from daemon_fixtures import daemon_config
from test_llama_server import PROMPTS, ServerProcess, _agree, _free_port

from razvilka.daemon.backend import Aborted, TopRow
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode

ROOT = Path(__file__).resolve().parent.parent
TOP_N = 256


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``razvilka serve`` (4 slots, an API key) for this file."""
    from razvilka.private import write_private

    key_file = tmp_path_factory.mktemp("oai") / "api.key"
    write_private(key_file, "k-" + os.urandom(16).hex() + "\n")
    srv = ServerProcess(_free_port(), key_file)
    srv.start()
    yield srv
    srv.kill()


def _cfg(server: ServerProcess, **kw: Any) -> ModelConfig:
    base: dict[str, Any] = {"backend": "openai", "url": server.url, "api_key_file": str(server.key_file),
                            "top_n": TOP_N, "timeout_s": 60.0}
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def backends(server: ServerProcess) -> Iterator[tuple[Any, Any]]:
    """(the OpenAI backend, the llama-server backend) on the same server."""
    from razvilka.daemon.backends.llama_server import LlamaServerBackend
    from razvilka.daemon.backends.openai_compat import OpenAIBackend

    oai = OpenAIBackend(_cfg(server))
    ls = LlamaServerBackend(ModelConfig(**server.model(top_n=TOP_N, timeout_s=60.0)))
    yield oai, ls
    oai.close()
    ls.close()


# ---------------------------------------------------------------------------------------------- no server
def test_config_names_it_and_bad_urls_are_refused() -> None:
    from razvilka.config import from_dict
    from razvilka.daemon.backends.openai_compat import OpenAIBackend
    from razvilka.daemon.backends.remote import ServerUnavailable

    for name in ("openai", "vllm"):
        assert from_dict({"model": {"backend": name, "url": "https://gpu:8000", "name": "m"}}).model.backend == name
    with pytest.raises(DaemonRefusal) as err:  # refused before any connection is tried
        OpenAIBackend(ModelConfig(backend="openai", url="http://192.0.2.7:8000"))
    assert err.value.code == ErrorCode.BAD_CONFIG and "https://" in err.value.detail
    with pytest.raises(DaemonRefusal, match="OpenAI-compatible server"):
        OpenAIBackend(ModelConfig(backend="openai", url="ftp://127.0.0.1/"))
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ServerUnavailable) as down:
        OpenAIBackend(ModelConfig(backend="openai", url=url, timeout_s=5))
    assert down.value.code == ErrorCode.MODEL_ERROR
    assert url in down.value.detail and "connection refused" in down.value.detail


def test_vllm_answers_are_read_by_token_id() -> None:
    """vLLM's completions ``logprobs`` (its protocol: ``top_logprobs`` is one dict per generated token; with
    ``return_tokens_as_token_ids`` its keys are ``token_id:ID``; the sampled token may be an N+1th entry):
    the row is the N likeliest, likeliest first, with the rest's mass. Names by text are refused, saying
    which flag fixes it."""
    from razvilka.daemon.backends.openai_compat import choice_row

    lp = {"tokens": ["token_id:506"], "token_logprobs": [-0.6], "text_offset": [0],
          "top_logprobs": [{"token_id:914": -2.3, "token_id:506": -0.6, "token_id:625": -2.8}]}
    row = choice_row(lp, 2, "http://gpu")
    assert isinstance(row, TopRow)
    assert row.ids.tolist() == [506, 914]
    assert np.allclose(row.logprobs, [-0.6, -2.3])
    assert math.isclose(row.rest, 1.0 - math.exp(-0.6) - math.exp(-2.3), rel_tol=1e-5)
    assert choice_row(None, 2, "http://gpu") is None
    with pytest.raises(DaemonRefusal, match="--return-tokens-as-token-ids") as err:
        choice_row({"top_logprobs": [{" the": -0.6}]}, 2, "http://gpu")
    assert err.value.code == ErrorCode.BAD_CONFIG


# ---------------------------------------------------------------------------------------------- the server
@pytest.mark.model
def test_what_the_server_says_and_its_key(server: ServerProcess, backends: tuple[Any, Any], tmp_path: Path) -> None:
    from razvilka.daemon.backends.openai_compat import OpenAIBackend
    from razvilka.private import write_private

    oai, ls = backends
    assert oai.flavor == "llama.cpp" and oai.n_vocab == ls.n_vocab == 262144
    assert oai.n_ctx == ls.n_ctx  # one slot's context, from /props
    text = "My favourite thing about the weekend is"
    assert oai.tokenize(text) == ls.tokenize(text) and oai.tokenize("") == []
    wrong = tmp_path / "wrong.key"
    write_private(wrong, "not-the-key")
    with pytest.raises(DaemonRefusal) as err:
        OpenAIBackend(_cfg(server, api_key_file=str(wrong)))
    assert err.value.code == ErrorCode.BAD_CONFIG and "refused the key" in err.value.detail
    with pytest.raises(DaemonRefusal) as named:
        OpenAIBackend(_cfg(server, name="no-such-model"))
    assert named.value.code == ErrorCode.BAD_CONFIG and "does not serve it" in named.value.detail
    with pytest.raises(DaemonRefusal) as lora:  # llama.cpp's /v1 does not pick adapters by model name
        OpenAIBackend(_cfg(server, lora_path="/tmp/adapter.gguf"))
    assert lora.value.code == ErrorCode.BAD_CONFIG and "llama-server" in lora.value.detail


@pytest.mark.model
def test_rows_are_the_llama_server_backends(backends: tuple[Any, Any]) -> None:
    """The same paths through /v1/completions (logprobs) and /completion (n_probs), one batch each: the
    same likeliest token, 18 of the top 20 shared, log-probabilities within 0.5 nats: the server reuses
    cached prefixes and batches the paths differently each time, and the quantized CPU kernels then round
    differently (measured: 0 for most rows, up to 0.35 in a row's top 20; docs/deployment.md, "Same
    model, another build", has the same 0.5 for the tail)."""
    oai, ls = backends
    doc = [oai.bos] + oai.tokenize(PROMPTS[0])
    paths = [doc, doc + oai.tokenize(" little"), doc[:5], doc + oai.tokenize(" cat who")]
    mine, theirs = oai.rows(paths), ls.rows(paths)
    assert len(mine) == len(theirs) == len(paths)
    for a, b in zip(mine, theirs):
        assert isinstance(a, TopRow) and isinstance(b, TopRow)
        assert len(a.ids) == TOP_N and 0.0 < a.rest < 1.0
        assert a.ids[0] == b.ids[0]
        common = set(a.ids[:20].tolist()) & set(b.ids.tolist())
        assert len(common) >= 18
        la = dict(zip(a.ids.tolist(), a.logprobs.tolist()))
        lb = dict(zip(b.ids.tolist(), b.logprobs.tolist()))
        assert max(abs(la[t] - lb[t]) for t in common) <= 0.5


@pytest.mark.model
@pytest.mark.parametrize("prompt", PROMPTS)
def test_words_are_the_llama_server_backends(backends: tuple[Any, Any], prompt: str) -> None:
    """The engine's 8 words over the OpenAI backend are the llama-server backend's on the same server
    (same set up to a near-tie at the 8th, probabilities within test_llama_server's tolerance)."""
    from razvilka.daemon.engine import Engine

    oai, ls = backends
    got = []
    for backend in (oai, ls):
        eng = Engine(backend.cfg, backend=backend)
        eng.reset(prompt)
        got.append(eng.words(8))
    mine, theirs = ({c.word: c.prob for c in w.candidates} for w in got)
    assert len(mine) == len(theirs) == 8
    _agree(mine, theirs, "openai vs llama-server")
    assert got[0].unseen > 0.0  # top-N rows: the mass they did not show is stated


@pytest.mark.model
def test_closing_the_connection_aborts(server: ServerProcess, backends: tuple[Any, Any]) -> None:
    """64 fresh 120-token paths (16 rounds of 4 slots) are abandoned: the backend raises Aborted at once,
    and the server drops the rest (idle again after the round in flight)."""
    oai, _ = backends
    base = oai.tokenize(" ".join(f"word{i}" for i in range(60)))[:120]
    t0 = time.monotonic()
    oai.rows([[oai.bos, 310 + i] + base for i in range(4)])
    round_s = time.monotonic() - t0
    paths = [[oai.bos, 410 + i] + base for i in range(64)]
    abort, done = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["rows"] = oai.rows(paths, abort=abort)
        except BaseException as exc:  # handed to the test thread
            result["exc"] = exc
        done.set()

    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 30
    while not any(s["is_processing"] for s in server.slots()):
        assert time.monotonic() < deadline, "the server never started the batch"
        time.sleep(0.05)
    abort.set()
    t0 = time.monotonic()
    assert done.wait(5.0), "the backend did not give up when aborted"
    assert isinstance(result.get("exc"), Aborted), result
    while any(s["is_processing"] for s in server.slots()):
        assert time.monotonic() - t0 < 3 * round_s + 5, \
            f"the server still works {time.monotonic() - t0:.1f} s after the close (a round takes {round_s:.1f} s)"
        time.sleep(0.1)
    t.join(5)
    assert len(oai.rows([paths[0][:10]])) == 1  # usable right after, on a new connection


@pytest.mark.model
def test_a_server_that_goes_away_and_comes_back(server: ServerProcess, backends: tuple[Any, Any]) -> None:
    """Killed: a clear MODEL_ERROR naming the server (the daemon retries on it); started again: the same
    backend answers, on a new connection."""
    from razvilka.daemon.backends.remote import ServerUnavailable

    oai, _ = backends
    path = [oai.bos] + oai.tokenize(PROMPTS[1])
    before = oai.rows([path])[0]
    server.kill()
    try:
        with pytest.raises(ServerUnavailable) as err:
            oai.rows([path])
        assert err.value.code == ErrorCode.MODEL_ERROR
        assert server.url in err.value.detail and "unavailable" in err.value.detail
    finally:
        server.start()
    after = oai.rows([path])[0]
    assert isinstance(before, TopRow) and isinstance(after, TopRow) and after.ids[0] == before.ids[0]


@pytest.mark.model
async def test_simulated_person_writes_through_it(server: ServerProcess, runtime_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from simuser.driver import Person, PersonOptions, prompt_for
    from simuser.policy import PolicyOptions

    from razvilka.daemon.backends.openai_compat import OpenAIBackend
    from razvilka.daemon.cli import build_daemon
    from razvilka.protocol.client import BusClient

    model = {"backend": "openai", "url": server.url, "api_key_file": str(server.key_file), "timeout_s": 60.0}
    config = daemon_config(runtime_dir, model=model,
                           gating={"mode": "auto", "k": 8, "lookahead_tokens": 3, "long_lookahead_tokens": 1},
                           daemon={"prompt": "", "pregenerate": True, "profile": False})
    d = build_daemon(config, resume=False)  # opens its own backend from model.backend, as `razvilka daemon` does
    await d.start()
    engine = d.engine
    assert d.bus is not None and engine is not None and isinstance(engine.backend, OpenAIBackend)
    client = BusClient("simuser", d.bus.endpoints, subscribe=["fork.", "text.", "daemon.error."],
                       heartbeat_ms=config.bus.heartbeat_ms)
    try:
        await client.start()
        assert await client.wait_connected(5.0)
        person = Person(client, PersonOptions(timeout_s=180, policy=PolicyOptions(phrases=True), think_s=0.2))
        phrases = ["prevailing wind from the east", "my watch fell in the water"]
        prompt = prompt_for(phrases, 1, 1)  # after a line of context, as the simulated-user benchmark writes
        res = await person.write(phrases[1], prompt)
        assert res.done, res.log
        text, _ = d._spans()
        assert text.startswith(prompt) and text[len(prompt):].strip() == phrases[1]
        assert res.actions < res.chars, res.log
        assert engine.stats["requests"] > 0  # it went through the server
    finally:
        await asyncio.wait_for(client.close(), timeout=5)
        await asyncio.wait_for(d.close(), timeout=60)
        if d.engine is not None:  # the daemon loaded it, and leaves it open
            d.engine.close()
