"""Gaze alone, over every target (protocol 1.4): commands, keyboard keys and Resume are dwell targets,
looking off the screen rests (pauses), and after a confirm the gaze must leave a target before it is
chosen again.

The first tests run the pure pipeline on synthetic gaze. The last ones run everything for real: the
real daemon and model, the browser view in headless Chromium behind the real bridge, the real gaze
adapter reading a real LSL outlet; the gaze is replayed at the centres of the targets the page itself
published in ``render.layout``.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import numpy as np
import pylsl
import pytest
import test_web
from bus_helpers import body_of, drained
from test_gaze import RATE, close_outlet, push, status_is, stream_cfg, tobii_info, until
from test_gaze import expect as expect_msg

from razvilka.inputs.gaze.adapter import SUBSCRIBE as GAZE_SUBSCRIBE
from razvilka.inputs.gaze.adapter import GazeAdapter
from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.dwell import ConfirmEvent, FocusEvent, GazeEvent, RestEvent
from razvilka.inputs.gaze.hittest import HitMap
from razvilka.inputs.gaze.pipeline import GazeTracker
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Box,
    Command,
    Confirm,
    DaemonStatus,
    ForkDecided,
    ForkOpen,
    Layout,
    Message,
    TargetBox,
    TextState,
)

browser, open_page = test_web.browser, test_web.open_page  # the fixtures of test_web.py
SCREEN = (1920.0, 1080.0)
CANDS = {0: (400.0, 200.0), 1: (700.0, 200.0)}
TARGETS = {"key:e": (400.0, 600.0), "key:x": (700.0, 600.0), "cmd:back": (1000.0, 600.0),
           "cmd:resume": (1300.0, 600.0)}
W, H = 200.0, 80.0


def layout(targets: dict[str, tuple[float, float]] = TARGETS) -> Layout:
    return Layout(boxes=[Box(index=i, x=x, y=y, w=W, h=H) for i, (x, y) in CANDS.items()],
                  targets=[TargetBox(target=t, x=x, y=y, w=W, h=H) for t, (x, y) in targets.items()],
                  screen_w=SCREEN[0], screen_h=SCREEN[1], renderer="synthetic")


def at(key: int | str) -> tuple[float, float]:
    x, y = CANDS[key] if isinstance(key, int) else TARGETS[key]
    return x + W / 2, y + H / 2


NEUTRAL = (1700.0, 950.0)  # on the screen, on no target
PROMPT = "My favourite animal at the zoo is the"
SPELLED = "kettle"  # not among the words offered here (checked): spelled letter by letter ("tt": look away, back)


class Synth:
    """Continuous 60 Hz binocular gaze in normalised units; (seconds, (x, y) px) or (seconds, None) = no valid gaze."""

    def __init__(self, t0: float = 1000.0, seed: int = 3) -> None:
        self.t = t0
        self.rng = np.random.default_rng(seed)

    def samples(self, segments: list[tuple[float, tuple[float, float] | None]]) -> tuple[np.ndarray, np.ndarray]:
        pts = []
        for seconds, where in segments:
            n = int(round(seconds * RATE))
            noise = self.rng.normal(0, 3.0, (n, 2))
            pts.append(np.full((n, 2), np.nan) if where is None else np.asarray(where) + noise)
        xy = np.concatenate(pts) / np.asarray(SCREEN)
        t = self.t + np.arange(len(xy)) / RATE
        self.t = float(t[-1]) + 1 / RATE
        return t, xy

    def raw(self, segments: list[tuple[float, tuple[float, float] | None]]) -> Any:
        from razvilka.inputs.gaze.stream import RawGaze

        t, xy = self.samples(segments)
        return RawGaze(t, xy, xy.copy(), None)


def tracker(**kw: Any) -> GazeTracker:
    tr = GazeTracker(msgspec.structs.replace(GazeConfig(), **kw))
    tr.open_fork("f1", {0: 0.6, 1: 0.4})
    tr.set_layout(HitMap.from_layout(layout(), tr.cfg.fuzzy_radius_px, tr.k))
    return tr


def confirmed(events: list[GazeEvent]) -> list[int | str | None]:
    return [e.key for e in events if isinstance(e, ConfirmEvent)]


# ====================================================================== the pure pipeline
def test_targets_are_hit_tested_with_the_candidates_and_bad_ones_are_bad_layout() -> None:
    hm = HitMap.from_layout(layout(), 40.0, 2)
    assert hm.indices == (0, 1) and hm.hit(*at(0)) == 0
    assert hm.hit(*at("key:e")) == "key:e" and hm.hit(*at("cmd:back")) == "cmd:back"
    assert hm.hit(at("key:e")[0], at("key:e")[1] + H / 2 + 30) == "key:e"  # within the fuzzy radius
    assert hm.hit(*NEUTRAL) is None
    # a letter drawn twice (the likeliest row and the alphabet) hits from either box; cand:<i> is candidate i
    extra = [TargetBox(target="key:e", x=1000, y=900, w=W, h=H), TargetBox(target="cand:1", x=1300, y=900, w=W, h=H)]
    twice = msgspec.structs.replace(layout(), targets=[*layout().targets, *extra])
    hm2 = HitMap.from_layout(twice, 40.0, 2)
    assert hm2.hit(1100, 940) == "key:e" and hm2.hit(1400, 940) == 1
    for bad, why in ((TargetBox(target="word:5:1", x=0, y=0, w=9, h=9), "names no candidate"),
                     (TargetBox(target="cmd:fly", x=0, y=0, w=9, h=9), "unknown command"),
                     (TargetBox(target="key:e", x=0, y=0, w=0, h=9), "no area")):
        with pytest.raises(ProtocolError) as err:
            HitMap.from_layout(msgspec.structs.replace(layout(), targets=[bad]), 40.0, 2)
        assert err.value.code == ErrorCode.BAD_LAYOUT and why in err.value.detail and bad.target in err.value.detail


def test_a_dwell_on_a_command_or_key_confirms_that_target_with_visible_progress() -> None:
    tr = tracker()
    events = tr.feed(Synth().raw([(0.3, NEUTRAL), (1.0, at("cmd:back"))]))
    assert confirmed(events) == ["cmd:back"]
    confirm = next(e for e in events if isinstance(e, ConfirmEvent))
    assert confirm.index is None and confirm.target == "cmd:back"
    progress = [e.dwell for e in events if isinstance(e, FocusEvent) and e.target == "cmd:back"]
    assert any(p is not None and 0 < p < 1 for p in progress) and progress[-1] == 1.0
    assert all(e.index is None for e in events if isinstance(e, FocusEvent) and e.target)


def test_after_a_confirm_the_gaze_must_leave_the_target_even_across_forks() -> None:
    """Typing "ee" by gaze: the key reopens the fork under the gaze; "e" is chosen again only after
    the gaze left it (the look-away rule), however long it stays or how often it refixates."""
    tr, gaze = tracker(), Synth()
    assert confirmed(tr.feed(gaze.raw([(0.3, NEUTRAL), (0.8, at("key:e"))]))) == ["key:e"]
    tr.open_fork("f2", {0: 0.5, 1: 0.5})  # the daemon reopened the fork with the prefix "e"
    tr.set_layout(HitMap.from_layout(layout(), 40.0, 2))
    stay = tr.feed(gaze.raw([(2.0, at("key:e")), (0.1, None), (2.0, at("key:e"))]))  # a blink: a new fixation
    assert confirmed(stay) == []
    assert {e.dwell for e in stay if isinstance(e, FocusEvent) and e.target == "key:e"} <= {0.0, None}
    # away to "x" (chosen: another target), back to "e": chosen again
    assert confirmed(tr.feed(gaze.raw([(0.8, at("key:x")), (0.8, at("key:e"))]))) == ["key:x", "key:e"]
    # away to nothing (a fixation on no target) also counts as leaving
    tr.open_fork("f3", {0: 0.5, 1: 0.5})
    tr.set_layout(HitMap.from_layout(layout(), 40.0, 2))
    assert confirmed(tr.feed(gaze.raw([(0.4, at("key:e")), (0.3, NEUTRAL), (0.8, at("key:e"))]))) == ["key:e"]


def test_looking_off_screen_for_rest_ms_rests_once_per_look_away() -> None:
    tr, gaze = tracker(rest_ms=3000.0), Synth()
    assert not [e for e in tr.feed(gaze.raw([(0.5, at(0)), (2.9, None)])) if isinstance(e, RestEvent)]
    rests = [e for e in tr.feed(gaze.raw([(0.5, None), (3.0, None)])) if isinstance(e, RestEvent)]
    assert len(rests) == 1 and rests[0].away_s == pytest.approx(3.0, abs=0.05)
    # eyes off the display area (not NaN, but beyond the margin) are as good as no gaze; back on the
    # screen ends the stretch, the next one rests again
    again = tr.feed(gaze.raw([(0.5, NEUTRAL), (3.2, (3500.0, 2400.0))]))
    assert len([e for e in again if isinstance(e, RestEvent)]) == 1
    assert confirmed(again) == []
    # rest counts from the fork's opening: a person away while the model wrote gets rest_ms at the fork
    tr.close_fork()
    tr.feed(gaze.raw([(5.0, None)]))
    tr.open_fork("f2", {0: 0.5, 1: 0.5})
    tr.set_layout(HitMap.from_layout(layout(), 40.0, 2))
    late = tr.feed(gaze.raw([(2.5, None), (0.6, None)]))
    rest = [e for e in late if isinstance(e, RestEvent)]
    assert len(rest) == 1 and rest[0].t - (gaze.t - 3.1) == pytest.approx(3.0, abs=0.05)
    assert not [e for e in tracker(rest_ms=0.0).feed(Synth().raw([(10.0, None)])) if isinstance(e, RestEvent)]


def test_once_resumed_the_gaze_resting_on_resume_does_not_dwell_on_what_is_under_it() -> None:
    """The rest overlay's Resume covers the page; once it is gone, the gaze lies on whatever was under it."""
    tr, gaze = tracker(), Synth()
    paused = Layout(boxes=[], targets=[TargetBox(target="cmd:resume", x=300, y=550, w=1300, h=200)],
                    screen_w=SCREEN[0], screen_h=SCREEN[1], renderer="synthetic")
    tr.set_layout(HitMap.from_layout(paused, 40.0, 2))
    assert confirmed(tr.feed(gaze.raw([(0.3, NEUTRAL), (0.8, at("key:x"))]))) == ["cmd:resume"]
    resumed = layout({t: xy for t, xy in TARGETS.items() if t != "cmd:resume"})
    tr.set_layout(HitMap.from_layout(resumed, 40.0, 2))  # resumed: the page is back, "x" under the gaze
    assert confirmed(tr.feed(gaze.raw([(2.0, at("key:x"))]))) == []
    assert confirmed(tr.feed(gaze.raw([(0.3, NEUTRAL), (0.8, at("key:x"))]))) == ["key:x"]


def test_cascading_dwell_gives_likely_letters_shorter_dwells() -> None:
    tr = GazeTracker(msgspec.structs.replace(GazeConfig(), cascade=True, dwell_ms=1000, cascade_min_ms=300))
    tr.open_fork("f1", {0: 0.5, 1: 0.5}, {"e": 0.8, "x": 0.01, " ": 0.1})
    assert tr.dwell.threshold_ms("key:e") == pytest.approx(1000 - 700 * 0.8)
    assert tr.dwell.threshold_ms("key:x") == pytest.approx(1000 - 700 * 0.01)
    assert tr.dwell.threshold_ms("cmd:back") == 1000


# ====================================================================== everything real
@dataclass
class Loop:
    """The real daemon, the browser view, the gaze adapter on a real LSL stream, and a log of what the bus
    said. An action's effects are looked for only after the action (``since`` a mark taken before it)."""

    daemon: Any
    page: Any
    adapter: GazeAdapter
    watcher: Any
    outlet: pylsl.StreamOutlet
    gaze: Synth
    log: list[Message] = field(default_factory=list)

    async def mark(self) -> int:
        """Everything the bus said so far is in the log; its length, to look for what follows."""
        self.log += await drained(self.watcher, 0.05)
        return len(self.log)

    async def wait(self, pred: Callable[[Message], bool], what: str, since: int = 0, timeout: float = 90.0) -> Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        i = since
        while True:
            for msg in self.log[i:]:
                if pred(msg):
                    return msg
            i = len(self.log)
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{what}: not within {timeout}s; last: {[m.type for m in self.log[-15:]]}")
            msg = await self.watcher.recv(min(left, 0.5))
            if msg is not None and msg.type != "heartbeat":
                self.log.append(msg)

    async def fork(self, since: int, where: Callable[[ForkOpen], bool] = lambda b: True,
                   what: str = "a fork") -> tuple[str, ForkOpen]:
        msg = await self.wait(lambda m: isinstance(m.body, ForkOpen) and where(m.body), what, since)
        assert isinstance(msg.body, ForkOpen) and msg.header.fork_id
        return msg.header.fork_id, msg.body

    async def layout_with(self, fork_id: str, key: int | str, since: int = 0) -> tuple[float, float, Layout]:
        """The centre (screen px) of ``key`` in the page's layout of ``fork_id`` (the newest since ``since``; a
        letter drawn twice: its alphabet box), once the adapter hit-tests a layout with it."""
        def has(m: Message) -> bool:
            b = m.body
            return (isinstance(b, Layout) and m.header.fork_id == fork_id and b.renderer == "web"
                    and (any(x.index == key for x in b.boxes) if isinstance(key, int)
                         else any(t.target == key for t in b.targets)))
        await self.wait(has, f"a layout of fork {fork_id} with {key}", since)
        msg = next(m for m in reversed(self.log) if has(m))
        body = msg.body
        assert isinstance(body, Layout)
        if isinstance(key, int):
            box = next(b for b in body.boxes if b.index == key)
            x, y, w, h = box.x, box.y, box.w, box.h
        else:
            t = max((t for t in body.targets if t.target == key), key=lambda t: t.row)
            x, y, w, h = t.x, t.y, t.w, t.h
        await until(lambda: self.adapter.tracker.fork_id == fork_id and self.adapter.tracker.hitmap is not None
                    and key in self.adapter.tracker.hitmap.keys, f"the adapter hit-tests fork {fork_id}'s {key}", 30.0)
        return x + w / 2, y + h / 2, body

    def look(self, segments: list[tuple[float, tuple[float, float] | None]], screen: tuple[float, float]) -> None:
        """Replay gaze through the LSL outlet: (seconds, screen px) or (seconds, None) = no valid gaze."""
        scale = (SCREEN[0] / screen[0], SCREEN[1] / screen[1])  # Synth works in SCREEN px
        t, xy = self.gaze.samples([(s, None if p is None else (p[0] * scale[0], p[1] * scale[1])) for s, p in segments])
        data = np.column_stack([xy[:, 0], xy[:, 1], np.full(len(t), 3.0), xy[:, 0], xy[:, 1], np.full(len(t), 3.0)])
        push(self.outlet, t, data.astype(np.float32))

    async def dwell(self, fork_id: str, key: int | str, since: int = 0) -> int:
        """Look at nothing, then dwell on ``key`` (a candidate index or a target id) until the adapter confirms
        it; returns the mark taken before the gaze moved (the confirm's effects come after it)."""
        x, y, body = await self.layout_with(fork_id, key, since)
        mark = await self.mark()
        neutral = (body.screen_w * 0.5, min(b.y for b in body.boxes) * 0.5) if body.boxes else (5.0, 5.0)
        self.look([(0.3, neutral), (1.0, (x, y))], (body.screen_w, body.screen_h))
        want = (lambda c: c.index is None and c.target is None) if isinstance(key, int) else (lambda c: c.target == key)
        await self.wait(lambda m: isinstance(m.body, Confirm) and m.header.fork_id == fork_id and want(m.body),
                        f"a gaze confirm of {key} in fork {fork_id}", mark)
        return mark


L = TypeVar("L", bound=Loop)


@asynccontextmanager
async def gaze_loop(daemon: Any, open_page: Any, watch: list[str], cls: type[L], *, page: dict[str, Any] | None = None,
                    **gaze: Any) -> AsyncIterator[L]:
    """The real loop around a started daemon: the browser view (web bridge, headless Chromium), an LSL outlet
    shaped like the Tobii connector, and the real gaze adapter against the page's layout (``gaze``: its config),
    with a watcher on the bus subscribed to ``watch``; ``cls`` the loop's helper class."""
    from razvilka.renderers.config import WebConfig
    from razvilka.renderers.web.bridge import SUBSCRIBE as WEB_SUBSCRIBE
    from razvilka.renderers.web.bridge import WebBridge

    watcher = await daemon.client("watcher", subscribe=watch)
    web = await daemon.client("web", subscribe=list(WEB_SUBSCRIBE), role="renderer")
    bridge = WebBridge(WebConfig(port=0), web)
    url = await bridge.start()
    sid = f"tobii-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(tobii_info(sid))
    client = await daemon.client("gaze", subscribe=list(GAZE_SUBSCRIBE), role="input")
    adapter = GazeAdapter(stream_cfg(sid, resolve_timeout_s=5.0, renderer="web", **gaze), client)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        await expect_msg(watcher, status_is("ok", contains="Tobii"), timeout=15)
        shown = await open_page(url, **(page or {}))
        # the first fork may have opened before the watcher joined: the retained state first, then live
        loop = cls(daemon, shown, adapter, watcher, outlet, Synth(pylsl.local_clock()))
        loop.log.extend(m for m in await watcher.snapshot(timeout=5.0) if m.type != "heartbeat")
        yield loop
        assert not task.done(), "the gaze adapter stopped"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await close_outlet([outlet])
        await bridge.close()


@pytest.fixture
async def loop(start_daemon: Any, open_page: Any) -> AsyncIterator[Loop]:
    daemon = await start_daemon(daemon={"prompt": PROMPT})
    async with gaze_loop(daemon, open_page, ["fork.", "text.", "daemon.status.", "input.confirm.", "input.command.",
                                             "render.layout.", "source.status."], Loop) as loop:
        yield loop


@pytest.mark.model
@pytest.mark.browser
@pytest.mark.timeout(600)
async def test_gaze_alone_goes_back_asks_for_more_and_spells_a_word_the_model_did_not_offer(loop: Loop) -> None:
    def decided(fork_id: str) -> Callable[[Message], bool]:
        return lambda m: isinstance(m.body, ForkDecided) and m.header.fork_id == fork_id

    def text_is(pred: Callable[[str], bool]) -> Callable[[Message], bool]:
        return lambda m: isinstance(m.body, TextState) and pred(m.body.text)

    def prefixed(typed: str) -> Callable[[ForkOpen], bool]:
        return lambda b: b.prefix == typed

    # a candidate, by dwell: the text has it
    fork_id, first = await loop.fork(0, what="the first fork")
    mark = await loop.dwell(fork_id, 0)
    dec = await loop.wait(decided(fork_id), "the decision", mark)
    assert body_of(dec, ForkDecided).sources == ["gaze"] and body_of(dec, ForkDecided).rule == "dwell"
    word = first.candidates[0].word.strip()
    await loop.wait(text_is(lambda t: t.rstrip() == f"{PROMPT} {word}"), f"the text with {word!r}", mark)
    # Back, by dwell: the word is undone
    fork_id, _ = await loop.fork(mark, what="the fork after the word")
    mark = await loop.dwell(fork_id, "cmd:back")
    await loop.wait(text_is(lambda t: t.rstrip() == PROMPT), "the text after back", mark)
    # More, by dwell: the next page of words
    fork_id, _ = await loop.fork(mark, what="the fork after back")
    mark = await loop.dwell(fork_id, "cmd:more")
    fork_id, more = await loop.fork(mark, lambda b: b.page == 1, "the second page of words")
    # letters, by dwell, spell a word no fork offered; then its candidate
    assert SPELLED not in {c.word.strip().lower() for c in first.candidates + more.candidates}
    typed, body = "", more
    while True:
        ch = SPELLED[len(typed)]
        mark = await loop.dwell(fork_id, f"key:{ch}")
        typed += ch
        fork_id, body = await loop.fork(mark, prefixed(typed), f"the fork narrowed to {typed!r}")
        offered = [c.index for c in body.candidates if c.word.strip().lower() == SPELLED]
        if offered or typed == SPELLED:
            break
    assert offered, f"{SPELLED!r} was not offered after typing it: {[c.word for c in body.candidates]}"
    print(f"\nspelled {typed!r} by gaze, then chose {SPELLED!r} among {[c.word for c in body.candidates]}")
    mark = await loop.dwell(fork_id, offered[0])
    dec = await loop.wait(decided(fork_id), "the spelled word chosen", mark)
    chosen = body_of(dec, ForkDecided)
    assert chosen.index == offered[0] and chosen.sources == ["gaze"]
    text = await loop.wait(text_is(lambda t: SPELLED in t.lower()), "the text with the spelled word", mark)
    written = body_of(text, TextState).text
    assert written.rstrip().lower() == f"{PROMPT} {SPELLED}".lower(), written


@pytest.mark.model
@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_looking_off_screen_pauses_and_a_dwell_on_resume_resumes(loop: Loop) -> None:
    fork_id, _ = await loop.fork(0, what="the first fork")
    x, y, body = await loop.layout_with(fork_id, 0)
    screen = (body.screen_w, body.screen_h)
    mark = await loop.mark()
    loop.look([(0.5, (x, y)), (2.5, None)], screen)  # off the screen, not yet long enough
    loop.look([(0.8, None)], screen)                 # now 3.3 s: rest
    pause = await loop.wait(lambda m: isinstance(m.body, Command) and m.body.source == "gaze", "the rest command", mark)
    asked = body_of(pause, Command)
    assert asked.command == "pause" and asked.text == "rest"
    status = await loop.wait(lambda m: isinstance(m.body, DaemonStatus) and m.body.state == "paused", "paused", mark)
    assert body_of(status, DaemonStatus).detail == "rest"
    await loop.page.locator("#rest").wait_for(state="visible")
    # still away: no second pause asked for; a dwell on the page's Resume resumes
    loop.look([(4.0, None)], screen)
    paused_at = loop.log.index(status)
    mark = await loop.dwell(fork_id, "cmd:resume", since=paused_at)
    await loop.wait(lambda m: isinstance(m.body, DaemonStatus) and m.body.state == "waiting", "resumed", mark)
    await loop.page.locator("#rest").wait_for(state="hidden")
    assert loop.adapter.rests == 1
    assert not [m for m in loop.log if isinstance(m.body, Command) and m.body.source == "gaze" and m is not pause]
    # and the fork is chosen from again, by gaze
    mark = await loop.dwell(fork_id, 1, since=len(loop.log))
    dec = await loop.wait(lambda m: isinstance(m.body, ForkDecided) and m.header.fork_id == fork_id, "a decision", mark)
    chosen = body_of(dec, ForkDecided)
    assert chosen.index == 1 and chosen.sources == ["gaze"]
