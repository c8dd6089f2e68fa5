"""Protocol 1.4 targets at a real daemon (real model, real bus): keys spell a word the model never
offered, commands and pause/resume by target, and each fork's letters and keyboard script."""
from __future__ import annotations

from typing import TypeVar

import pytest
from daemon_fixtures import RunningDaemon, StartDaemon, next_of
from daemon_fixtures import current_fork as open_fork_now

from razvilka.protocol.client import BusClient
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import (
    Body,
    Confirm,
    DaemonError,
    DaemonStatus,
    ForkDecided,
    ForkOpen,
    Message,
    Select,
    TextState,
    TextUndo,
)
from razvilka.protocol.targets import char_script

pytestmark = pytest.mark.model
B = TypeVar("B", bound=Body)


def typed(msg: Message, cls: type[B]) -> B:
    """A message's body as the type it must be."""
    assert isinstance(msg.body, cls), msg
    return msg.body


async def open_fork(bus: BusClient, timeout: float = 60.0) -> tuple[str, ForkOpen]:
    """The next fork: its id and body."""
    msg = await next_of(bus, "fork.open", timeout)
    assert msg.header.fork_id
    return msg.header.fork_id, typed(msg, ForkOpen)


async def current_fork(bus: BusClient) -> tuple[str, ForkOpen]:
    """The open fork (daemon_fixtures.current_fork): its id and body."""
    msg = await open_fork_now(bus)
    assert msg.header.fork_id
    return msg.header.fork_id, msg.body


async def decided(bus: BusClient) -> tuple[str | None, ForkDecided]:
    msg = await next_of(bus, "fork.decided")
    return msg.header.fork_id, typed(msg, ForkDecided)


async def status(bus: BusClient, paused: bool) -> DaemonStatus:
    """The next daemon.status that is (or is not) paused."""
    msg = await next_of(bus, "daemon.status", where=lambda m: (typed(m, DaemonStatus).state == "paused") == paused)
    return typed(msg, DaemonStatus)


async def text_with(bus: BusClient, word: str) -> TextState:
    return typed(await next_of(bus, "text.state", where=lambda m: word in typed(m, TextState).text), TextState)


async def error_of(bus: BusClient, code: ErrorCode) -> DaemonError:
    msg = await next_of(bus, "daemon.error", 20, where=lambda m: typed(m, DaemonError).code == int(code))
    return typed(msg, DaemonError)


def select(target: str) -> Select:
    return Select(target=target, source="pedal", kind="switch")


def check_letters(body: ForkOpen) -> None:
    """Letters are key characters (or " "), likeliest first, summing to at most 1."""
    probs = [letter.prob for letter in body.letters]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    assert all(letter.ch == " " or char_script(letter.ch) or letter.ch in "'-" for letter in body.letters)


async def test_keys_spell_a_word_the_fork_did_not_offer(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text.", "daemon.error."])
    fid, fork = await current_fork(bus)
    assert fork.script == "latin" and fork.letters, "a fork with no prefix ranks first letters"
    check_letters(fork)
    word = "zebras"
    assert word not in [c.word for c in fork.candidates]
    # a space or delete with nothing typed is refused, and the fork stays open
    bus.publish(select("key:space"), fork_id=fid)
    assert "no letters typed" in (await error_of(bus, ErrorCode.BAD_COMMAND)).message
    for i, ch in enumerate("zebrx"):
        bus.publish(select(f"key:{ch}"), fork_id=fid)
        fid, fork = await open_fork(bus)
        assert fork.prefix == word[:i] + ch and fork.reason == "prefix"
        check_letters(fork)
    bus.publish(select("key:delete"), fork_id=fid)
    fid, fork = await open_fork(bus)
    assert fork.prefix == "zebr"
    assert all(c.word.startswith("zebr") for c in fork.candidates)
    for ch in "as":
        bus.publish(select(f"key:{ch}"), fork_id=fid)
        fid, fork = await open_fork(bus)
    assert fork.prefix == word
    bus.publish(select("key:space"), fork_id=fid)
    decided_fid, done = await decided(bus)
    assert decided_fid == fid
    assert (done.words, done.typed, done.index, done.target) == ([word], True, None, "key:space")
    assert (done.sources, done.rule) == (["pedal"], "select")
    state = await text_with(bus, word)
    assert state.text == daemon.config.daemon.prompt + " " + word
    assert state.spans[-1].origin == "human"
    _, nxt = await open_fork(bus)
    assert nxt.context.endswith(word) and nxt.prefix == ""


async def test_accept_takes_the_likeliest_word_that_completes_the_typed_letters(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text."])
    fid, fork = await current_fork(bus)
    for ch in "th":
        bus.publish(select(f"key:{ch}"), fork_id=fid)
        fid, fork = await open_fork(bus)
    assert fork.letters and fork.letters[0].ch in "eaiorouy "
    want = next(c for c in fork.candidates if c.word.startswith("th"))
    bus.publish(Confirm(target="key:accept", source="gaze", kind="gaze"), fork_id=fid)
    _, done = await decided(bus)
    assert (done.index, done.words, done.target, done.rule) == (want.index, [want.word], "key:accept", "dwell")
    await text_with(bus, " " + want.word)


async def test_back_and_more_by_target(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text."])
    fid, fork = await current_fork(bus)
    first = [c.word for c in fork.candidates]
    bus.publish(select("cand:0"), fork_id=fid)
    _, done = await decided(bus)
    assert (done.index, done.target) == (0, "cand:0")
    after_fid, _ = await open_fork(bus)
    bus.publish(select("cmd:back"), fork_id=after_fid)
    undo = typed(await next_of(bus, "text.undo"), TextUndo)
    assert undo.removed.strip() == first[0]
    again_fid, again = await open_fork(bus)
    assert again.reason == "back" and [c.word for c in again.candidates] == first
    bus.publish(select("cmd:more"), fork_id=again_fid)
    _, more = await open_fork(bus)
    assert (more.reason, more.page) == ("more", 1)
    assert not {c.word for c in more.candidates} & set(first)


async def test_paused_only_resume_gets_through_and_a_gaze_pause_is_rest(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "daemon."])
    fid, _ = await current_fork(bus)
    bus.publish(Select(target="cmd:pause", source="gaze", kind="gaze"), fork_id=fid)
    assert (await status(bus, paused=True)).detail == "rest"
    for refused in (Select(index=0, source="keyboard", kind="key"), select("key:a"), select("cmd:more"),
                    Confirm(target="cand:1", source="gaze", kind="gaze")):
        bus.publish(refused, fork_id=fid)
        assert "paused" in (await error_of(bus, ErrorCode.NOT_READY)).message
    # the rest stays said while paused (the periodic status keeps it)
    assert (await status(bus, paused=True)).detail == "rest"
    bus.publish(Confirm(target="cmd:resume", source="gaze", kind="gaze"), fork_id=fid)
    assert (await status(bus, paused=False)).detail != "rest"
    bus.publish(select("cand:1"), fork_id=fid)
    decided_fid, done = await decided(bus)
    assert decided_fid == fid and done.index == 1
    # paused between forks: a resume naming a fork this daemon opened (decided since) still resumes
    nxt_fid, _ = await open_fork(bus)
    bus.publish(select("cmd:pause"), fork_id=nxt_fid)
    assert (await status(bus, paused=True)).detail == ""  # a switch's pause is no rest
    bus.publish(select("cmd:resume"), fork_id=fid)
    await status(bus, paused=False)


async def test_a_cyrillic_text_gets_the_cyrillic_keyboard(start_daemon: StartDaemon) -> None:
    running = await start_daemon(daemon={"prompt": "Вчера вечером мы пошли в"})
    bus = await running.client("t", ["fork."])
    _, fork = await current_fork(bus)
    assert fork.script == "cyrillic"
    check_letters(fork)
    top = [letter.ch for letter in fork.letters[:3] if letter.ch != " "]
    assert top and all(char_script(ch) == "cyrillic" for ch in top), fork.letters
