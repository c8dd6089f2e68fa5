"""The conversation partner (protocol 1.5 ``partner``) on the real daemon and model: the partner's turn is
what the model reads before the person's reply (the dialogue), the person's view gets it in
``text.state.partner``, the store keeps it, and a restarted daemon reads the same dialogue again."""
from __future__ import annotations

import sqlite3

import pytest
from daemon_fixtures import RunningDaemon, StartDaemon, next_of

from razvilka.daemon.prose import dialogue
from razvilka.daemon.store import Turn
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import Command, DaemonError, ForkDecided, ForkOpen, Select, TextState

pytestmark = pytest.mark.model

TURN = "Would you like some tea or coffee?"


def model_reads(d: RunningDaemon) -> str:
    """Everything the model has read before the end of the document (framing included)."""
    engine = d.daemon.engine
    assert engine is not None
    return engine.detokenize(engine.tokens)


async def test_the_partners_turn_is_the_context_of_the_reply_and_survives_a_restart(start_daemon: StartDaemon) -> None:
    d = await start_daemon(daemon={"prompt": "", "profile": False})
    bus = await d.client("t", ["fork.", "text.", "daemon.error."])
    await next_of(bus, ForkOpen, 60)
    assert TURN not in model_reads(d)
    bus.publish(Command(command="partner", source="partner-page", text=f"  {TURN}\n"))
    state = await next_of(bus, TextState, 30, where=lambda m: m.body.partner == TURN)
    assert state.body.text == ""  # the turn is not the person's text
    fork = await next_of(bus, ForkOpen, 60)
    assert fork.body.reason == "partner" and fork.body.context == ""
    assert model_reads(d).endswith(dialogue([Turn("partner", TURN)]))
    words = [c.word for c in fork.body.candidates]
    assert {"Yes", "No", "Tea", "Coffee", "Sure", "I"} & set(words), words  # a reply, not a new text
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided, 30)
    reply = (await next_of(bus, TextState, 30, where=lambda m: bool(m.body.text))).body.text
    doc = d.daemon.doc
    assert doc is not None
    with sqlite3.connect(d.config.store.path) as db:
        assert db.execute("SELECT who, text FROM turns WHERE document_id=?", (doc.id,)).fetchall() == [
            ("partner", TURN)]
    await d.daemon.close()

    again = await start_daemon(daemon={"prompt": "", "profile": False}, build={"resume": True})
    assert again.daemon.doc is not None and again.daemon.doc.id == doc.id
    assert again.daemon.turns == [Turn("partner", TURN)]
    assert model_reads(again).endswith(dialogue([Turn("partner", TURN)]) + reply)
    bus = await again.client("t2", ["text."])
    snap = next(m.body for m in await bus.snapshot() if m.type == TextState.TYPE)
    assert isinstance(snap, TextState) and snap.partner == TURN and snap.text == reply


async def test_a_turn_after_the_persons_text_starts_the_reply_as_a_new_document(start_daemon: StartDaemon) -> None:
    d = await start_daemon(daemon={"prompt": "", "profile": False})
    bus = await d.client("t", ["fork.", "text.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Command(command="type", source="t", text="Hello there. "))
    await next_of(bus, TextState, 30, where=lambda m: m.body.text == "Hello there.")
    first = d.daemon.doc
    bus.publish(Command(command="partner", source="partner-page", text="Как дела?"))
    state = await next_of(bus, TextState, 30, where=lambda m: m.body.partner == "Как дела?")
    assert state.body.text == "" and first is not None and state.body.document != first.id
    await next_of(bus, ForkOpen, 60, where=lambda m: m.body.reason == "partner")
    turns = [Turn("person", "Hello there."), Turn("partner", "Как дела?")]
    assert d.daemon.turns == turns
    assert model_reads(d).endswith("Я: Hello there.\nСобеседник: Как дела?\nЯ:")
    # an empty turn is refused, naming what is missing; the daemon serves on
    bus.publish(Command(command="partner", source="partner-page", text="   "))
    err = (await next_of(bus, DaemonError, 20)).body
    assert err.code == ErrorCode.BAD_COMMAND and "partner's turn" in err.message
    assert d.daemon.turns == turns
    del fork
