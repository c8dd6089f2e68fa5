"""Preference-data export and the live profile on a REAL store made by a real daemon (real model, real bus)."""
from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import MessageOf
from daemon_fixtures import DEFAULT_PROMPT, daemon_config, next_of

import razvilka.cli
from razvilka.daemon.cli import build_daemon
from razvilka.daemon.learn.errors import ErrorCode, LearnError
from razvilka.daemon.learn.export import export, read_jsonl
from razvilka.daemon.learn.history import open_store
from razvilka.daemon.learn.live import ProfileLearner, replay_store
from razvilka.daemon.learn.persist import save_profile
from razvilka.daemon.learn.profile import Profile
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Command, ForkDecided, ForkLookahead, ForkOpen, Select, TextState, TextUndo

pytestmark = pytest.mark.model


def cli_main(argv: list[str]) -> int:
    """``razvilka ...`` in-process."""
    return razvilka.cli.main(argv)


async def _decided(client: BusClient, fork_id: str | None) -> MessageOf[ForkDecided]:
    return await next_of(client, ForkDecided, 60, where=lambda m: m.header.fork_id == fork_id)


async def _state(client: BusClient) -> str:
    return (await next_of(client, TextState, 60)).body.text


async def test_export_formats_on_a_real_store(start_daemon: Any, tmp_path: Path) -> None:
    rd = await start_daemon(gating={"mode": "always", "k": 4, "lookahead_tokens": 3})
    client = await rd.client("person", subscribe=["fork.", "text.", "daemon."])
    forks: list[MessageOf[ForkOpen]] = []

    fork = await next_of(client, ForkOpen, 60)
    forks.append(fork)
    client.publish(Select(index=1, source="keyboard"), fork_id=fork.header.fork_id)
    first = await _decided(client, fork.header.fork_id)

    fork = await next_of(client, ForkOpen, 60)
    forks.append(fork)
    client.publish(Command(command="type", source="keyboard", text="z"), fork_id=fork.header.fork_id)  # a letter
    fork = await next_of(client, ForkOpen, 60, where=lambda m: m.body.prefix == "z")
    forks.append(fork)
    client.publish(Command(command="type", source="keyboard", text="zebra "), fork_id=fork.header.fork_id)
    typed = await _decided(client, fork.header.fork_id)
    assert typed.body.typed and typed.body.words == ["zebra"]

    fork = await next_of(client, ForkOpen, 60)
    client.publish(Select(index=2, source="keyboard"), fork_id=fork.header.fork_id)
    wrong = await _decided(client, fork.header.fork_id)
    client.publish(Command(command="back", source="keyboard"))               # that one was a mistake
    await next_of(client, TextUndo, 60)
    fork = await next_of(client, ForkOpen, 60)
    await next_of(client, ForkLookahead, 60, where=lambda m: m.header.fork_id == fork.header.fork_id and m.body.done)
    client.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
    last = await _decided(client, fork.header.fork_id)
    ending = " ".join(last.body.words)
    text = (await next_of(client, TextState, 60, where=lambda m: m.body.text.endswith(ending))).body.text

    counts = export(rd.config.store.path, tmp_path / "out", "default")
    sft = read_jsonl(tmp_path / "out" / "sft.jsonl")
    pairs = read_jsonl(tmp_path / "out" / "pairs.jsonl")
    labels = read_jsonl(tmp_path / "out" / "labels.jsonl")
    assert counts == {"pairs": len(pairs), "sft": len(sft), "labels": len(labels)}

    # SFT: what the person wrote, exactly, after the prompt
    assert len(sft) == 1
    assert sft[0]["prompt"] == DEFAULT_PROMPT and sft[0]["prompt"] + sft[0]["completion"] == text
    assert "zebra" in sft[0]["completion"] and wrong.body.words[0] not in sft[0]["completion"].split()[2:3]
    assert [s["origin"] for s in sft[0]["segments"]] == ["human"] * 3

    # DPO pairs: the full context as prompt, chosen = the word taken + what followed, rejected = a passed-over
    # candidate + its look-ahead
    c0 = [c.word for c in forks[0].body.candidates]
    p0 = [p for p in pairs if p["fork_id"] == forks[0].header.fork_id]
    assert sorted(p["rejected_word"] for p in p0) == sorted(w for w in c0 if w != c0[1])
    for p in p0:
        assert p["prompt"] == DEFAULT_PROMPT
        assert p["chosen"].startswith(" " + first.body.words[0] + " zebra")
        assert p["rejected"].lstrip().startswith(p["rejected_word"])
        assert p["chosen_word"] == c0[1] and p["kind"] == "chosen"
    typed_pairs = [p for p in pairs if p["chosen_word"] == "zebra"]
    shown_before_typing = {c.word for c in forks[1].body.candidates} | {c.word for c in forks[2].body.candidates}
    assert {p["rejected_word"] for p in typed_pairs} == shown_before_typing - {"zebra"}
    assert all(p["kind"] == "typed" and p["prompt"].endswith(first.body.words[-1]) for p in typed_pairs)
    assert not [p for p in pairs if p["fork_id"] == wrong.header.fork_id], "an undone decision gives no pairs"
    for p in pairs:
        assert set(p) >= {"prompt", "chosen", "rejected", "chosen_word", "rejected_word", "fork_id", "document_id"}

    # token-level labels: every fork, what happened there
    by_fork = {row["fork_id"]: row for row in labels}
    assert by_fork[forks[0].header.fork_id]["outcome"] == "chosen" and by_fork[forks[0].header.fork_id]["label"] == 1
    assert by_fork[forks[0].header.fork_id]["tokens"], "the chosen candidate's token ids"
    assert by_fork[forks[1].header.fork_id]["outcome"] == "passed"
    typed_row = by_fork[forks[2].header.fork_id]
    assert typed_row["outcome"] == "typed" and typed_row["word"] == "zebra" and typed_row["prefix"] == "z"
    assert by_fork[wrong.header.fork_id]["undone"] is True and by_fork[wrong.header.fork_id]["label"] == 2
    for row in labels:
        assert row["context"].startswith(DEFAULT_PROMPT) and row["candidates"]
        assert row["offset"] == len(row["context"]) - len(DEFAULT_PROMPT)

    # the same through the CLI
    out = tmp_path / "cli"
    rc = cli_main(["--set", f"store.path={rd.config.store.path}", "learn", "export", "-o", str(out)])
    assert rc == 0 and (out / "pairs.jsonl").read_text() == (tmp_path / "out" / "pairs.jsonl").read_text()

    # and the profile learned from this store sees the same decisions
    prof = Profile()
    assert replay_store(prof, rd.config.store.path, "default") == 3
    assert prof.cache.unigrams_.get("zebra") == 1, "the typed word is in the person's cache"
    assert "zebra" not in prof.choice.accept_, "it was never on screen: no accept/reject evidence about it"
    assert sum(v[1] for v in prof.choice.accept_.values()) > 0, "the candidates passed over were counted"


def _old_store(path: Path) -> None:
    """A store as an earlier razvilka wrote it: no meta table, no candidates or sources columns."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE documents (id TEXT PRIMARY KEY, user TEXT, prompt TEXT, model TEXT, created_ns INTEGER);
        CREATE TABLE forks (id TEXT PRIMARY KEY, document_id TEXT, position INTEGER, context TEXT, opened_ns INTEGER);
        CREATE TABLE entries (id TEXT PRIMARY KEY, document_id TEXT, ord INTEGER, kind TEXT, text TEXT);
        INSERT INTO documents VALUES ('d1', 'default', 'Once', 'gemma', 1);
        INSERT INTO entries VALUES ('e1', 'd1', 0, 'human', ' upon');
    """)
    db.commit()
    db.close()


def test_store_from_an_older_schema_gets_a_clear_error_and_is_not_changed(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.sqlite3"
    _old_store(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(LearnError) as err:
        export(path, tmp_path / "out")
    assert err.value.code == ErrorCode.STORE_ERROR
    assert "older razvilka" in err.value.detail and "forks.candidates" in err.value.detail
    rc = cli_main(["--set", f"store.path={path}", "learn", "export", "-o", str(tmp_path / "out")])
    assert rc == 2 and "older razvilka" in capsys.readouterr().err
    rc = cli_main(["--set", f"store.path={path}", "--set", f"store.path={path}", "learn", "profile", "rebuild",
                   "--profile", str(tmp_path / "p.json")])
    assert rc == 2 and not (tmp_path / "p.json").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "old.sqlite3-wal").exists()

    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                     " INSERT INTO meta VALUES ('schema_version', '7');")
    db.close()
    with pytest.raises(LearnError) as err:
        open_store(newer)
    assert "newer" in err.value.detail


async def test_profiled_daemon_offers_the_persons_word_and_learns_each_decision(engine: Any, runtime_dir: Path) -> None:
    """The profile inside a real daemon: a word only this person uses is offered at the fork (the LLM does not
    list it), choosing it is observed and saved at once, and fork gating still works."""
    path = runtime_dir / "profiles" / "default.json"
    prof = Profile(path, "default")
    for i in range(6):  # this person ends "... weekend is" with their own word, typed each time
        ctx = f"Note {i}: {DEFAULT_PROMPT}"
        prof.observe(ctx, ["a", "the"], None, " zebra", probs={"a": 0.3, "the": 0.2}, document=f"old{i}")
    save_profile(prof)
    config = daemon_config(runtime_dir, gating={"mode": "always", "k": 4, "lookahead_tokens": 2})
    daemon = build_daemon(config, engine=engine, resume=False)  # as `razvilka daemon` runs: the profile at `path`
    await daemon.start()
    assert daemon.bus is not None and daemon.engine is not None
    learner = daemon.learner
    assert isinstance(learner, ProfileLearner), "`razvilka daemon` runs with the person's profile"
    client = BusClient("person", daemon.bus.endpoints, subscribe=["fork.", "text.", "daemon."], heartbeat_ms=200)
    await client.start()
    try:
        assert await client.wait_connected(5)
        fork = await next_of(client, ForkOpen, 60)
        words = [c.word for c in fork.body.candidates]
        assert "zebra" in words, words
        client.publish(Select(index=words.index("zebra"), source="keyboard"), fork_id=fork.header.fork_id)
        await _decided(client, fork.header.fork_id)
        text = (await next_of(client, TextState, 60, where=lambda m: m.body.text.endswith("zebra"))).body.text
        assert text == DEFAULT_PROMPT + " zebra"
        nxt = await next_of(client, ForkOpen, 60)
        assert nxt.body.candidates and nxt.body.context.endswith("zebra")
        # the model read the person's earlier documents first (the memory), and none of it is in the text
        assert fork.body.context == DEFAULT_PROMPT
        memory = "zebra\n" * 6
        assert daemon.engine.n_tokens >= len(engine.tokenize(memory + DEFAULT_PROMPT + " zebra"))
        # a new text: the one just written joins the memory (and the store and profile have it)
        client.publish(Command(command="new", source="keyboard", text="Another note:"))
        fork3 = await next_of(client, ForkOpen, 60, where=lambda m: m.body.context == "Another note:")
        assert fork3.body.candidates
        assert learner.profile.memory_text() == "zebra\n" * 7
        assert daemon.engine.n_tokens >= len(engine.tokenize("zebra\n" * 7 + "Another note:"))
        # a click on the look-ahead's first word: the profile learns the candidate and that word
        look = await next_of(client, ForkLookahead, 60, where=lambda m: m.header.fork_id == fork3.header.fork_id
                             and m.body.done and not m.body.entries[0].long)
        phrase = look.body.entries[0].phrases[0]
        assert phrase.strip(), look.body
        client.publish(Select(index=0, source="mouse", phrase_words=1), fork_id=fork3.header.fork_id)
        decided = await _decided(client, fork3.header.fork_id)
        assert decided.body.words == [fork3.body.candidates[0].word, phrase.split()[0]]
        assert daemon.doc is not None
        assert learner.profile.memory.texts_[daemon.doc.id].endswith(phrase.split()[0])
        for _ in range(100):  # written off the event loop within about half a second of the decision
            on_disk = json.loads(path.read_text())
            if on_disk["decisions"] == 8:
                break
            await asyncio.sleep(0.1)
        # typed six times (the cache knows it), then chosen once when offered (the accept count)
        assert on_disk["decisions"] == 8 and on_disk["unigrams"]["zebra"] == 7 and on_disk["accept"]["zebra"][0] == 1
        assert learner.rerank_ms, "every fork went through the profile"
    finally:
        await client.close()
        await asyncio.wait_for(daemon.close(), 60)
    # the daemon's store holds the injected word and the phrase like any other decisions
    assert replay_store(Profile(), config.store.path, "default") == 2
