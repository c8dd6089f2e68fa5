"""The daemon end to end: a real model, a real bus, real messages in and out."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from bus_helpers import MessageOf, message_of, until
from daemon_fixtures import RunningDaemon, StartDaemon, current_fork, next_of

from razvilka.daemon.gating import thresholds
from razvilka.protocol.client import BusClient
from razvilka.protocol.codec import Codec
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import (
    Command,
    Confirm,
    DaemonError,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Select,
    TextState,
    TextUndo,
)

pytestmark = pytest.mark.model


async def open_fork(client: BusClient, timeout: float = 60.0) -> MessageOf[ForkOpen]:
    return await next_of(client, ForkOpen, timeout)


async def lookahead_done(client: BusClient, fork_id: str | None) -> MessageOf[ForkLookahead]:
    """The finished look-ahead of the fork: from the snapshot if it already went out, else the next one."""
    def done(m: MessageOf[ForkLookahead]) -> bool:
        return m.header.fork_id == fork_id and m.body.done and not m.body.entries[0].long
    snap = [message_of(m, ForkLookahead) for m in await client.snapshot() if m.type == ForkLookahead.TYPE]
    snap = [m for m in snap if done(m)]
    return snap[-1] if snap else await next_of(client, ForkLookahead, 60, where=done)


async def error_of(client: BusClient, code: ErrorCode) -> DaemonError:
    msg = await next_of(client, DaemonError, 20, where=lambda m: m.body.code == int(code))
    return msg.body


async def test_fork_words_first_then_lookaheads_stream(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork."])
    snap = await bus.snapshot()
    forks = [m for m in snap if m.type == "fork.open"]
    fork = message_of(forks[-1], ForkOpen) if forks else await open_fork(bus)
    body = fork.body
    assert 2 <= len(body.candidates) <= 5
    words = [c.word for c in body.candidates]
    assert len(set(words)) == len(words), "same words must merge"
    probs = [c.prob for c in body.candidates]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
    assert body.context.endswith("weekend is")
    done = await lookahead_done(bus, fork.header.fork_id)
    assert {e.index for e in done.body.entries} == set(range(len(words)))
    assert all(e.phrases and e.phrases[0].strip() for e in done.body.entries)


async def test_select_commits_word_and_opens_next_fork(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text.", "daemon.error."])
    fork = await current_fork(bus)
    chosen = fork.body.candidates[1].word
    bus.publish(Select(index=1, source="keyboard"), fork_id=fork.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert decided.header.fork_id == fork.header.fork_id
    assert decided.body.index == 1 and decided.body.words == [chosen]
    assert decided.body.sources == ["keyboard"] and decided.body.rule == "select"
    assert decided.body.latency_ms > 0
    state = await next_of(bus, TextState, where=lambda m: chosen in m.body.text)
    assert state.body.text.endswith(chosen) or state.body.text.rstrip().endswith(chosen)
    human = [s for s in state.body.spans if s.origin == "human"]
    assert human and state.body.text[human[-1].start:human[-1].end].strip() == chosen
    nxt = await open_fork(bus)
    assert nxt.header.fork_id != fork.header.fork_id
    # the decision is in the store before it was acknowledged
    entries = daemon.daemon.store.entries(daemon.daemon.doc.id)
    assert entries[-1].fork_id == fork.header.fork_id and entries[-1].words == [chosen]


async def test_fusion_rules(start_daemon: StartDaemon) -> None:
    d = await start_daemon(daemon={"stale_focus_ms": 400})
    bus = await d.client("t", ["fork.", "daemon.error."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    # confirm with no focus: nothing happens, and it says why
    bus.publish(Confirm(source="footswitch"), fork_id=fid)
    err = await error_of(bus, ErrorCode.NO_FOCUS)
    assert "nothing is focused" in err.message
    # a stale focus does not count
    bus.publish(Focus(index=2, source="keyboard"), fork_id=fid)
    await asyncio.sleep(0.6)
    bus.publish(Confirm(source="footswitch"), fork_id=fid)
    err = await error_of(bus, ErrorCode.NO_FOCUS)
    assert "older than" in err.message
    # gaze focus and a physical key focus at once: the key wins
    bus.publish(Focus(index=0, source="gaze", confidence=0.8), fork_id=fid)
    key = bus.publish(Focus(index=3, source="keyboard"), fork_id=fid)
    focus = d.daemon.decider.focus
    await until(lambda: "keyboard" in focus and focus["keyboard"].index == 3, "the daemon holds the key focus")
    moved = bus.publish(Focus(index=1, source="gaze", confidence=0.8), fork_id=fid)  # gaze moves later; key still wins
    assert moved.ts_ns > key.ts_ns
    bus.publish(Confirm(source="footswitch"), fork_id=fid)
    decided = await next_of(bus, ForkDecided)
    assert decided.body.index == 3
    assert decided.body.sources == ["keyboard", "footswitch"] and decided.body.rule == "focus+confirm"


async def test_gaze_dwell_and_gaze_eeg(start_daemon: StartDaemon) -> None:
    d = await start_daemon()
    bus = await d.client("t", ["fork."])
    fork = await current_fork(bus)
    bus.publish(Focus(index=2, source="gaze", dwell=0.5), fork_id=fork.header.fork_id)
    bus.publish(Confirm(source="gaze"), fork_id=fork.header.fork_id)  # dwell complete
    decided = await next_of(bus, ForkDecided)
    assert (decided.body.index, decided.body.rule, decided.body.sources) == (2, "dwell", ["gaze"])
    fork = await open_fork(bus)
    k = len(fork.body.candidates)
    posterior = [0.05] * k
    posterior[1] = 1 - 0.05 * (k - 1)
    bus.publish(Focus(index=1, source="gaze"), fork_id=fork.header.fork_id)
    bus.publish(Confirm(source="eeg", index=1, confidence=posterior[1], posterior=posterior),
                fork_id=fork.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert (decided.body.index, decided.body.rule) == (1, "gaze+eeg")
    assert decided.body.sources == ["gaze", "eeg"]


async def test_back_more_type_bias_regenerate(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text.", "daemon.error."])
    fork = await current_fork(bus)
    first_words = [c.word for c in fork.body.candidates]
    before = daemon.daemon._spans()[0]
    bus.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided)
    await open_fork(bus)
    # back: the decision is undone and the same fork opens again
    bus.publish(Command(command="back", source="keyboard"))
    undo = await next_of(bus, TextUndo)
    assert undo.body.removed.strip() == first_words[0]
    again = await open_fork(bus)
    assert again.body.reason == "back"
    assert [c.word for c in again.body.candidates] == first_words
    assert daemon.daemon._spans()[0] == before
    # more: the next page of candidates, none of them already shown
    bus.publish(Command(command="more", source="keyboard"))
    more = await open_fork(bus)
    assert more.body.page == 1 and more.body.reason == "more"
    assert not {c.word for c in more.body.candidates} & set(first_words)
    # type a prefix: candidates are constrained to it
    bus.publish(Command(command="type", source="keyboard", text="th"))
    typed = await open_fork(bus)
    assert typed.body.prefix == "th" and typed.body.candidates
    assert all(c.word.lower().startswith("th") for c in typed.body.candidates)
    # a complete typed word (trailing space) is committed as the human's own word
    bus.publish(Command(command="type", source="keyboard", text="thunderstorms "), fork_id=typed.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert decided.body.typed and decided.body.words == ["thunderstorms"] and decided.body.index is None
    after_typed = await open_fork(bus)
    assert "thunderstorms" in after_typed.body.context
    # ban the top word: it is gone from the reopened fork
    top = after_typed.body.candidates[0].word
    bus.publish(Command(command="bias", source="keyboard", text=top, bias=-100.0))
    biased = await open_fork(bus)
    assert biased.body.reason == "bias" and top not in [c.word for c in biased.body.candidates]
    # regenerate: the fork at the same place, computed afresh
    bus.publish(Command(command="regenerate", source="keyboard"))
    regen = await open_fork(bus)
    assert regen.body.reason == "regenerate" and regen.body.position == biased.body.position


async def test_phrase_selection_commits_several_words(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork."])
    fork = await current_fork(bus)
    done = await lookahead_done(bus, fork.header.fork_id)
    phrase = done.body.entries[0].phrases[0]
    bus.publish(Select(index=0, source="web", phrase=True), fork_id=fork.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert decided.body.phrase
    assert decided.body.words == [fork.body.candidates[0].word] + phrase.split()
    assert len(decided.body.words) >= 2
    nxt = await open_fork(bus)
    assert nxt.body.context.endswith(fork.body.candidates[0].word + phrase) or phrase.strip() in nxt.body.context


async def test_a_click_on_a_look_ahead_word_takes_the_phrase_up_to_it(daemon: RunningDaemon) -> None:
    """Protocol 1.1 ``phrase_words``: the candidate and the look-ahead's first N words, no more."""
    bus = await daemon.client("t", ["fork.", "text."])
    fork = await current_fork(bus)
    done = await lookahead_done(bus, fork.header.fork_id)
    entry = max(done.body.entries, key=lambda e: len(e.phrases[0].split()))
    words = entry.phrases[0].split()
    assert len(words) >= 2, f"every look-ahead is under two words: {done.body.entries}"
    word = fork.body.candidates[entry.index].word
    bus.publish(Select(index=entry.index, source="web", phrase_words=1), fork_id=fork.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert decided.body.words == [word, words[0]] and decided.body.phrase_words == 1 and decided.body.phrase
    state = await next_of(bus, TextState)  # the first after the decision: the commit alone
    head = re.match(r"\s*\S+", entry.phrases[0])
    assert head is not None and state.body.text.endswith(word + head.group(0)), state.body.text
    await open_fork(bus)
    assert daemon.daemon.engine.text == daemon.daemon._spans()[0]  # the model reads what the person sees


async def test_a_phrase_after_the_long_look_ahead_commits_what_was_shown(daemon: RunningDaemon) -> None:
    """Focus computes the longer look-ahead on the same candidate; the phrase selected is still the
    short one shown, and the model's text is the document's text, token for token."""
    bus = await daemon.client("t", ["fork."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    done = await lookahead_done(bus, fid)
    short = done.body.entries[0].phrases[0]
    bus.publish(Focus(index=0, source="mouse"), fork_id=fid)
    long = await next_of(bus, ForkLookahead, 60, where=lambda m: m.header.fork_id == fid and m.body.entries[0].long)
    assert len(long.body.entries[0].phrases[0]) > len(short)
    bus.publish(Select(index=0, source="web", phrase=True), fork_id=fid)
    decided = await next_of(bus, ForkDecided)
    assert decided.body.words == [fork.body.candidates[0].word] + short.split()
    await open_fork(bus)
    d = daemon.daemon
    assert d.engine.text == d._spans()[0]


async def test_pause_and_resume(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "daemon."])
    fork = await current_fork(bus)
    bus.publish(Command(command="pause", source="keyboard"))
    await next_of(bus, DaemonStatus, where=lambda m: m.body.state == "paused")
    bus.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
    err = await error_of(bus, ErrorCode.NOT_READY)
    assert "paused" in err.message
    bus.publish(Command(command="resume", source="keyboard"))
    await next_of(bus, DaemonStatus, where=lambda m: m.body.state != "paused")
    bus.publish(Select(index=0, source="keyboard"), fork_id=fork.header.fork_id)
    decided = await next_of(bus, ForkDecided)
    assert decided.header.fork_id == fork.header.fork_id


async def test_new_text_from_prompt(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "text."])
    await current_fork(bus)
    bus.publish(Command(command="new", source="keyboard", text="Dear Anna, thank you for"))
    state = await next_of(bus, TextState, where=lambda m: m.body.text == "Dear Anna, thank you for")
    assert [s.origin for s in state.body.spans] == ["prompt"]
    fork = await open_fork(bus)
    assert fork.body.context.endswith("thank you for")


async def test_bad_requests_get_errors_and_daemon_keeps_serving(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "daemon.error."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    k = len(fork.body.candidates)
    bus.publish(Select(index=0, source="keyboard"), fork_id="no-such-fork")
    assert (await error_of(bus, ErrorCode.UNKNOWN_FORK)).ref_id
    bus.publish(Select(index=k + 2, source="keyboard"), fork_id=fid)
    assert "outside this fork" in (await error_of(bus, ErrorCode.OUT_OF_RANGE)).message
    # a malformed message on the bus: the daemon says so
    codec = Codec("vandal")
    frames = codec.encode(Select(index=0, source="keyboard"), fork_id=fid)
    bus.send_raw([frames[0], frames[1], b"\xc1not msgpack"])
    await error_of(bus, ErrorCode.MALFORMED)
    bus.send_raw([b"input.command.", frames[1]])
    await error_of(bus, ErrorCode.FRAME_COUNT)
    bus.publish(Command(command="bias", source="keyboard"))
    await error_of(bus, ErrorCode.BAD_COMMAND)
    # and the fork is still open and decidable
    bus.publish(Select(index=0, source="keyboard"), fork_id=fid)
    await next_of(bus, ForkDecided, where=lambda m: m.header.fork_id == fid)
    # now it is stale
    bus.publish(Select(index=0, source="keyboard"), fork_id=fid)
    await error_of(bus, ErrorCode.STALE_FORK)


async def test_pregeneration_hit_and_cancel(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    await lookahead_done(bus, fid)
    # focus 1, then move to 3 at once: work for 1 is cancelled, 3 is prepared
    bus.publish(Focus(index=1, source="keyboard"), fork_id=fid)
    bus.publish(Focus(index=3, source="keyboard"), fork_id=fid)
    long = await next_of(bus, ForkLookahead, where=lambda m: m.body.entries[0].long)
    assert long.body.entries[0].index == 3
    shown = fork.body.candidates[3].lookahead
    assert len(long.body.entries[0].phrases[0]) >= len(shown[0] if shown else "")
    open_fork_state = daemon.daemon.fork
    assert 3 in open_fork_state.after
    bus.publish(Select(index=3, source="keyboard"), fork_id=fid)
    nxt = await open_fork(bus)
    assert nxt.body.pregenerated
    assert daemon.daemon.pregen_hits >= 1


async def test_auto_mode_writes_while_sure_and_forks_when_unsure(start_daemon: StartDaemon) -> None:
    d = await start_daemon(gating={"mode": "auto", "max_auto_words": 6},
                           daemon={"prompt": "One, two, three, four, five, six, seven,"})
    bus = await d.client("t", ["fork.", "text."])
    fork = await current_fork(bus)
    state = d.daemon._spans()
    written = state[0][len("One, two, three, four, five, six, seven,"):]
    assert "eight" in written.split()[0], written  # the model is sure of the count, so it wrote on alone
    assert [s.origin for s in state[1]][-1] == "model"
    entries = d.daemon.store.entries(d.daemon.doc.id)
    assert entries and all(e.kind == "model" for e in entries)
    # and it stopped because the model became unsure after "eight, nine," (3.3 bits), before the cap of 6 words
    h_max, _ = thresholds(d.config.gating, "key")
    assert len(entries) < 6 and fork.body.entropy > h_max
    assert fork.body.reason == f"uncertain: entropy {fork.body.entropy:.2f} > {h_max:.2f} bits (key x1)"


async def test_back_after_an_auto_run_is_not_written_again(start_daemon: StartDaemon) -> None:
    """The model writes its top word, so an auto run taken back with ``back`` would come back word for
    word after the person re-selects its first word. The daemon remembers the words taken back and
    forks at each of them instead: the person can correct the run where it went wrong."""
    prompt = "One, two, three, four, five, six, seven,"
    d = await start_daemon(gating={"mode": "auto", "max_entropy_bits": 100.0, "min_margin": 0.0,
                                   "max_auto_words": 3}, daemon={"prompt": prompt})
    bus = await d.client("t", ["fork.", "text."])
    fork = await current_fork(bus)
    entries = d.daemon.store.entries(d.daemon.doc.id)
    run = [e.words[0] for e in entries]
    assert len(run) == 3 and fork.body.reason.startswith("max_auto_words"), (run, fork.body.reason)
    bus.publish(Command(command="back", source="keyboard"))
    undo = await next_of(bus, TextUndo)
    assert undo.body.removed == "".join(e.text for e in entries)
    again = await open_fork(bus)
    assert again.body.reason == "back" and again.body.context.endswith(prompt[-20:])
    # the person keeps the first two words of the run: each time the daemon asks instead of rewriting
    for i in range(2):
        words = [c.word for c in again.body.candidates]
        assert words[0] == run[i], (words, run)
        bus.publish(Select(index=0, source="keyboard"), fork_id=again.header.fork_id)
        await next_of(bus, ForkDecided)
        again = await open_fork(bus)
        assert again.body.reason == "declined", again.body.reason
        assert [c.word for c in again.body.candidates][0] == run[i + 1]
    # and picks another third word: from there the model writes on by itself again
    other = again.body.candidates[1].word
    bus.publish(Select(index=1, source="keyboard"), fork_id=again.header.fork_id)
    await next_of(bus, ForkDecided)
    after = await open_fork(bus)
    assert after.body.reason.startswith("max_auto_words"), after.body.reason
    live = d.daemon.store.entries(d.daemon.doc.id)
    assert [(e.kind, e.words[0]) for e in live[:3]] == [("human", run[0]), ("human", run[1]), ("human", other)]
    assert [e.kind for e in live[3:]] == ["model"] * 3


async def test_a_piece_that_continues_the_last_word_is_marked_joins(start_daemon: StartDaemon) -> None:
    """A prompt that stops inside a word: the model's pieces continue it (protocol 1.2 ``joins``),
    and taking one writes the longer word, with no space."""
    d = await start_daemon(daemon={"prompt": "The quick brown fox jumps over the lazy d"})
    bus = await d.client("t", ["fork.", "text."])
    fork = await current_fork(bus)
    joined = [c for c in fork.body.candidates if c.joins]
    assert joined, [(c.word, c.joins) for c in fork.body.candidates]
    assert all(c.word[:1].isalnum() for c in joined)
    assert not any(c.joins for c in fork.body.candidates if not c.word[:1].isalnum())
    pick = joined[0]
    bus.publish(Select(index=pick.index, source="keyboard"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided)
    state = await next_of(bus, TextState, 20, where=lambda m: m.body.text != fork.body.context)
    assert state.body.text.startswith("The quick brown fox jumps over the lazy d" + pick.word)


async def test_a_stale_focus_is_counted_quietly_a_stale_select_or_confirm_is_refused(daemon: RunningDaemon) -> None:
    """A gaze stream races every decision: focus samples for the fork just decided lose no action, so
    they are counted (``daemon.status`` detail) and not answered; a stale select or confirm is the
    person's action lost, and gets a STALE_FORK error naming it."""
    bus = await daemon.client("t", ["fork.", "daemon."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    bus.publish(Select(index=0, source="keyboard"), fork_id=fid)
    await next_of(bus, ForkDecided, where=lambda m: m.header.fork_id == fid)
    for i in range(60):  # 100 ms of a 600 Hz gaze stream, all after the decision
        bus.publish(Focus(index=i % 3, source="gaze", confidence=0.9), fork_id=fid)
    select = bus.publish(Select(index=1, source="keyboard"), fork_id=fid)
    confirm = bus.publish(Confirm(source="footswitch"), fork_id=fid)
    errors: list[DaemonError] = []
    while len(errors) < 2:  # the bus keeps one sender's order: any focus error would come before these
        msg = await next_of(bus, DaemonError, 20)
        errors.append(msg.body)
    assert [(e.code, e.ref_id) for e in errors] == [(int(ErrorCode.STALE_FORK), select.id),
                                                   (int(ErrorCode.STALE_FORK), confirm.id)], errors
    assert daemon.daemon.stale_focus == 60
    status = await next_of(bus, DaemonStatus, 10, where=lambda m: "stale focus dropped: 60" in m.body.detail)
    assert status.body.state in ("waiting", "generating")


async def test_a_store_that_cannot_write_is_a_store_error_and_the_fork_opens_again(daemon: RunningDaemon) -> None:
    """SQLite refuses the decision's write (the real store, switched read-only with ``PRAGMA query_only``:
    the tests run as root, whom file permissions do not stop). The person hears STORE_ERROR, nothing
    is acknowledged, written or learned, and once the store can write the same fork opens again."""
    from razvilka.daemon.learn.live import ProfileLearner

    d = daemon.daemon
    learner = d.learner
    assert isinstance(learner, ProfileLearner), "the tests run the daemon as it ships: with the profile"
    bus = await daemon.client("t", ["fork.", "daemon.error.", "text."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    assert d.doc is not None
    await lookahead_done(bus, fid)  # its look-aheads are stored: the decision is the only write left
    d.store.db.execute("PRAGMA query_only = ON")
    try:
        bus.publish(Select(index=1, source="keyboard"), fork_id=fid)
        err = await error_of(bus, ErrorCode.STORE_ERROR)
        assert str(d.store.path) in err.message and "decision" in err.message and "readonly" in err.message, err.message
        assert d.store.entries(d.doc.id) == [] and learner.profile.decisions_ == 0
        assert d.decisions == 0
    finally:
        d.store.db.execute("PRAGMA query_only = OFF")
    again = await next_of(bus, ForkOpen, 30, where=lambda m: m.body.reason == "error")
    assert again.body.context == fork.body.context and again.header.fork_id != fid
    assert [c.word for c in again.body.candidates] == [c.word for c in fork.body.candidates]
    word = again.body.candidates[1].word
    bus.publish(Select(index=1, source="keyboard"), fork_id=again.header.fork_id)
    decided = await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == again.header.fork_id)
    assert decided.body.words == [word]
    assert [e.words for e in d.store.entries(d.doc.id)] == [[word]]
    assert learner.profile.decisions_ == 1 and learner.profile.cache.unigrams_.get(word) == 1


async def test_a_profile_that_had_to_be_reset_is_said_in_the_daemon_status(start_daemon: StartDaemon,
                                                                            runtime_dir: Path) -> None:
    """An unreadable profile file is kept aside and a fresh profile starts; the person is told in
    ``daemon.status`` (retained, so a renderer that joins later still sees it)."""
    profiles = runtime_dir / "profiles"
    profiles.mkdir()
    (profiles / "default.json").write_text('{"format": "razvilka-profile", "version": 1, "unigr')
    d = await start_daemon()
    bus = await d.client("t", ["daemon.status."])
    retained = [message_of(m, DaemonStatus) for m in await bus.snapshot() if m.type == DaemonStatus.TYPE]
    status = retained[-1] if retained else None
    if status is None or "profile reset" not in status.body.detail:
        status = await next_of(bus, DaemonStatus, 10, where=lambda m: "profile reset" in m.body.detail)
    assert "could not be read" in status.body.detail and "kept as" in status.body.detail
    assert list(profiles.glob("default.corrupt-*.json")), "the unreadable file is kept, not deleted"
