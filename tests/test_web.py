"""The browser renderer in real headless Chromium, against a real bus and the bridge in-process.

A test client plays the daemon by publishing real protocol messages (fork.open, fork.lookahead,
text.state, fork.decided); the end-to-end test at the bottom runs the real daemon and model.
"""
from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import aiohttp
import pytest
from bus_helpers import MessageOf, drained, wait_retained
from playwright.async_api import Browser, Page, async_playwright, expect

from razvilka.protocol.client import BusClient
from razvilka.protocol.clock import now_ns
from razvilka.protocol.messages import (
    Body,
    Candidate,
    Command,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Layout,
    Lookahead,
    Message,
    Origin,
    Select,
    Span,
    Stimulus,
    TextState,
)
from razvilka.renderers.config import WebConfig
from razvilka.renderers.web.bridge import SUBSCRIBE, WebBridge

B = TypeVar("B", bound=Body)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "img" / "web.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

PROMPT = "Dear Anna,"
TEXT = [(PROMPT, "prompt"), (" thank", "human"), (" you for the", "model"), (" tulips", "human"), (". ", "model")]
WORDS = [("They", 0.46), ("The", 0.27), ("I", 0.14), ("Your", 0.08), ("It", 0.05)]
LOOKS = {
    0: ["made my whole week", "are on the kitchen table"],
    1: ["tulips are still fresh", "colours are lovely"],
    2: ["put them by the window", "was so surprised"],
    3: ["card made me smile", "timing was perfect"],
    4: ["was such a kind thought", "really cheered me up"],
}
LONG = {0: ["made my whole week, and the kitchen smells like spring"]}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Rig:
    """A bus with a stand-in daemon, an observer of everything, and a way to start the bridge."""

    def __init__(self, clients: Any) -> None:
        self.clients = clients
        self.bridge: WebBridge | None = None
        self.web: BusClient | None = None
        self.daemon: BusClient
        self.observer: BusClient

    async def setup(self) -> Rig:
        self.daemon = await self.clients("daemon", role="daemon", subscribe=["input.", "render."])
        self.observer = await self.clients("observer", subscribe=[""])
        return self

    async def start_bridge(self, **config: Any) -> str:
        if self.web is None:
            self.web = await self.clients("web", role="renderer", subscribe=list(SUBSCRIBE))
        config.setdefault("port", 0)
        self.bridge = WebBridge(WebConfig(**config), self.web)
        return await self.bridge.start()

    def open_fork(self, fork_id: str, words: list[tuple[str, float]] = WORDS,
                  looks: dict[int, list[str]] = LOOKS) -> None:
        cands = [Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(words)]
        self.daemon.publish(ForkOpen(candidates=cands, context=PROMPT, reason="uncertain"), fork_id=fork_id)
        entries = [Lookahead(index=i, phrases=ph) for i, ph in looks.items() if i < len(words)]
        self.daemon.publish(ForkLookahead(entries=entries, done=True), fork_id=fork_id)

    def text(self, parts: list[tuple[str, str]]) -> None:
        text, spans, at = "", [], 0
        for chunk, origin in parts:
            spans.append(Span(start=at, end=at + len(chunk), origin=cast(Origin, origin)))
            text += chunk
            at += len(chunk)
        self.daemon.publish(TextState(text=text, spans=spans, position=at))

    async def close(self) -> None:
        if self.bridge is not None:
            await self.bridge.close()


@pytest.fixture
async def rig(ipc_clients: Any) -> AsyncIterator[Rig]:
    r = await Rig(ipc_clients).setup()
    yield r
    await r.close()


@overload
async def next_msg(client: BusClient, type_: type[B], where: Callable[[MessageOf[B]], bool] | None = None,
                   timeout: float = 10.0) -> MessageOf[B]: ...
@overload
async def next_msg(client: BusClient, type_: str, where: Callable[[Message], bool] | None = None,
                   timeout: float = 10.0) -> Message: ...
async def next_msg(client: BusClient, type_: str | type[Body], where: Callable[[Any], bool] | None = None,
                   timeout: float = 10.0) -> Any:
    """The next message of a type (a body class types the result; "" takes any) for which ``where`` holds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(left)
        if msg is None:
            continue
        kind = (not type_ or msg.header.type == type_) if isinstance(type_, str) else isinstance(msg.body, type_)
        if kind and (where is None or where(msg)):
            return msg
    raise AssertionError(f"no {type_ if isinstance(type_, str) else type_.TYPE} within {timeout}s")


async def until(holds: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll in-process state until ``holds()`` (the bridge's mirror has no event to await); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


async def drain(client: BusClient, quiet: float = 0.05) -> None:
    """Drop what arrives until ``quiet`` s pass with nothing but heartbeats."""
    await drained(client, quiet)


OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """``await open_page(url, viewport=..., **context)``: a connected page; any JS error fails the test."""
    errors: list[str] = []

    async def open_(url: str, **context: Any) -> Page:
        ctx = await browser.new_context(viewport=context.pop("viewport", {"width": 1280, "height": 800}), **context)
        page = await ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(url)
        await expect(page.locator("#conn")).to_have_text("connected")
        return page

    yield open_
    assert errors == [], f"the page logged errors: {errors}"


async def page_rects(page: Page) -> dict[int, dict[str, float]]:
    return {
        int(k): v
        for k, v in (await page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#cloud .cand')].map(b => {
                 const r = b.getBoundingClientRect();
                 return [b.dataset.index, {left: r.left, top: r.top, width: r.width, height: r.height}];
               }))"""
        )).items()
    }


# ---------------------------------------------------------------------- the cloud, hover, click, decide
async def test_page_draws_fork_hover_shows_lookahead_click_selects(rig: Rig, browser: Browser,
                                                                   open_page: OpenPage) -> None:
    # The fork is open before the bridge starts: the bridge seeds itself from the bus snapshot.
    rig.daemon.publish(DaemonStatus(state="waiting", model="gemma-3-270m", mode="entropy", k=5, last_fork_ms=84.0))
    rig.text(TEXT)
    rig.open_fork("f1")
    probe = await rig.clients("probe")
    await wait_retained(probe, lambda snap: {(m.type, m.header.fork_id) for m in snap} >= {
        ("daemon.status", None), ("text.state", None), ("fork.open", "f1"), ("fork.lookahead", "f1")})
    url = await rig.start_bridge()
    assert url.startswith("http://127.0.0.1:")
    page = await open_page(url)

    cands = page.locator("#cloud .cand")
    await expect(cands).to_have_count(len(WORDS))
    await expect(page.locator("#daemon")).to_contain_text("gemma-3-270m")
    await expect(page.locator("#text .origin-prompt")).to_have_text(PROMPT)
    await expect(page.locator("#text .origin-human")).to_have_text(["thank", "tulips"])
    await expect(page.locator("#text .origin-model")).to_have_text(["you for the", "."])
    sizes = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#cloud .cand')]"
        ".map(b => [b.dataset.index, parseFloat(b.style.fontSize)]))"
    )
    by_prob = [sizes[str(i)] for i in range(len(WORDS))]  # WORDS is sorted by probability
    assert by_prob == sorted(by_prob, reverse=True) and by_prob[0] > by_prob[-1], by_prob

    # Hover: focus on the bus, look-ahead beside the word.
    await drain(rig.observer)
    word = page.locator('#cloud .cand[data-index="2"]')
    await word.hover()
    focus = await next_msg(rig.observer, "input.focus", lambda m: m.header.sender == "web")
    assert isinstance(focus.body, Focus) and focus.body.index == 2 and focus.body.source == "web"
    assert focus.header.fork_id == "f1"
    peek = page.locator("#peek")
    await expect(peek).to_be_visible()
    await expect(page.locator("#peek-short li")).to_have_text([f"I {p}" for p in LOOKS[2]])
    # Beside its word (under it), covering no candidate: gaze users must still see them all.
    w, p = await word.bounding_box(), await peek.bounding_box()
    assert w and p and p["y"] >= w["y"] + w["height"] and p["x"] < w["x"] + w["width"] and w["x"] < p["x"] + p["width"]
    for r in (await page_rects(page)).values():
        assert r["top"] + r["height"] <= p["y"] or p["x"] + p["width"] <= r["left"] or r["left"] + r["width"] <= p["x"]

    # The daemon's longer look-ahead for the focused word appears when it arrives.
    await page.locator('#cloud .cand[data-index="0"]').hover()
    rig.daemon.publish(ForkLookahead(entries=[Lookahead(index=0, phrases=LONG[0], long=True)]), fork_id="f1")
    await expect(page.locator("#peek-long")).to_have_text(f"They {LONG[0][0]}")
    await save_screenshot(page, browser)

    # Click: a select on the bus; the daemon decides; the page draws the decision, the text and the next fork.
    await page.locator('#cloud .cand[data-index="0"]').click()
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 0 and sel.body.source == "web" and sel.header.fork_id == "f1"
    assert sel.header.sender == "web" and sel.topic == "input.select.web."
    rig.daemon.publish(ForkDecided(index=0, words=["They"], sources=["web"], rule="select"), fork_id="f1")
    await expect(page.locator("#cloud .cand.decided")).to_have_text("1They")
    rig.text(TEXT + [("They", "human"), (" are lovely, and", "model")])
    rig.open_fork("f2", [("the", 0.5), ("so", 0.3), ("very", 0.2)], {0: ["whole flat smells of them"]})
    await expect(cands).to_have_count(3)
    await expect(page.locator("#cloud .cand .word")).to_have_text(["so", "the", "very"])
    await expect(page.locator("#text .origin-human").last).to_have_text("They")
    await expect(page.locator("#text .origin-model").last).to_have_text("are lovely, and")

    # A click on a word of the look-ahead: the candidate and the phrase up to that word, one action.
    await page.locator('#cloud .cand[data-index="0"]').hover()
    la = page.locator("#peek-short .la-word")
    await expect(la).to_have_text(["whole", "flat", "smells", "of", "them"])
    await la.nth(2).hover()  # on the way into the look-ahead, the peek stays
    marked = await page.evaluate("() => [...document.querySelectorAll('#peek-short .la-word')]"
                                 ".map(e => getComputedStyle(e).backgroundColor)")
    assert marked[0] == marked[1] == marked[2] != marked[3] == marked[4], marked  # what a click would take
    await la.nth(2).click()
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 0 and sel.body.phrase_words == 3 and not sel.body.phrase
    # The same by keyboard: Down from the word into its look-ahead, Right to the next word, Enter.
    await page.locator('#cloud .cand[data-index="0"]').focus()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowRight")
    await expect(la.nth(1)).to_be_focused()
    long = Lookahead(index=0, phrases=["whole flat smells of them today"], long=True)
    # a redraw while the person is in it keeps their place
    rig.daemon.publish(ForkLookahead(entries=[long]), fork_id="f2")
    await expect(page.locator("#peek-long")).to_contain_text("today")
    await expect(la.nth(1)).to_be_focused()
    await page.keyboard.press("Enter")
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 0 and sel.body.phrase_words == 2

    # Shift+click: the word with its look-ahead phrase, one action.
    await page.locator('#cloud .cand[data-index="0"]').click(modifiers=["Shift"])
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 0 and sel.body.phrase and sel.header.fork_id == "f2"

    # Back and More are commands on the bus, tied to the open fork.
    await page.locator("#more").click()
    more = await next_msg(rig.daemon, Command)
    assert more.body.command == "more" and more.header.fork_id == "f2"
    await page.locator("#back").click()
    back = await next_msg(rig.daemon, Command)
    assert back.body.command == "back" and back.body.source == "web"


# ---------------------------------------------------------------------- layout boxes
async def test_layout_boxes_are_the_elements_screen_positions(rig: Rig, open_page: OpenPage) -> None:
    url = await rig.start_bridge()
    page = await open_page(url, viewport={"width": 1000, "height": 700}, device_scale_factor=2)
    rig.open_fork("f1")

    async def check(where: Callable[[MessageOf[Layout]], bool] = lambda m: True) -> MessageOf[Layout]:
        msg = await next_msg(rig.observer, Layout, where)
        env = await page.evaluate(
            "() => ({sx: screenX, sy: screenY, ow: outerWidth, iw: innerWidth, oh: outerHeight, ih: innerHeight,"
            " dpr: devicePixelRatio, sw: screen.width, sh: screen.height})"
        )
        rects = await page_rects(page)
        # Headless Chromium has no window chrome: the documented offset reduces to screenX/screenY.
        assert env["ow"] == env["iw"] and env["oh"] == env["ih"]
        assert env["dpr"] == 2
        body = msg.body
        assert msg.header.fork_id == "f1" and body.renderer == "web"
        assert (body.screen_w, body.screen_h) == (env["sw"] * 2, env["sh"] * 2)
        assert sorted(b.index for b in body.boxes) == list(range(len(WORDS)))
        for box in body.boxes:
            r = rects[box.index]
            assert box.x == pytest.approx((env["sx"] + r["left"]) * 2, abs=0.5)
            assert box.y == pytest.approx((env["sy"] + r["top"]) * 2, abs=0.5)
            assert box.w == pytest.approx(r["width"] * 2, abs=0.5)
            assert box.h == pytest.approx(r["height"] * 2, abs=0.5)
        return msg

    first = await check()
    # Resize: the cloud re-centres and a new layout follows.
    await page.set_viewport_size({"width": 700, "height": 600})
    await check(lambda m: m.body.boxes != first.body.boxes)
    # Scroll: a short window scrolls; the boxes move up by the scrolled distance (device pixels).
    await page.set_viewport_size({"width": 700, "height": 300})
    before = await page_rects(page)
    sy = await page.evaluate("() => screenY")
    # the page has reported the resized, unscrolled boxes (any earlier layouts are passed over)
    settled = await next_msg(rig.observer, Layout, lambda m: all(
        b.y == pytest.approx((sy + before[b.index]["top"]) * 2, abs=0.5) for b in m.body.boxes))
    scrolled_by = await page.evaluate("() => { window.scrollTo(0, 120); return window.scrollY; }")
    assert scrolled_by > 0
    moved = await check(lambda m: m.body.boxes != settled.body.boxes)
    for box in moved.body.boxes:
        assert box.y == pytest.approx((sy + before[box.index]["top"] - scrolled_by) * 2, abs=1)


# ---------------------------------------------------------------------- P300 flashes
def p300_groups(targets: tuple[str, ...] | list[str]) -> set[frozenset[str]]:
    """The flash groups of one P300 round over the targets a level flashes (renderers/screen.py flash_groups:
    the rows, then the columns, of a grid ceil(sqrt(n)) wide laid over them)."""
    from razvilka.renderers.screen import flash_groups

    return {frozenset(g) for g in flash_groups(list(targets))}


async def next_round(rig: Rig, groups: set[frozenset[str]], every: set[str], first: int) -> list[MessageOf[Stimulus]]:
    """The next round of flashes: each of ``groups`` once, numbered from ``first``, every target twice."""
    got = [await next_msg(rig.observer, Stimulus, timeout=10) for _ in groups]
    lit = [frozenset([f"cand:{i}" for i in m.body.indices] + list(m.body.targets)) for m in got]
    assert set(lit) == groups and len(set(lit)) == len(groups), sorted(map(sorted, lit))
    assert [m.body.flash for m in got] == list(range(first, first + len(groups)))
    times = {t: sum(t in g for g in lit) for t in every}
    assert set(times.values()) == {2}, {t: n for t, n in times.items() if n != 2}  # row + column
    return got


async def test_p300_flashes_a_level_at_a_time_in_grid_groups_with_sane_timing_on_the_bus_clock(
        rig: Rig, open_page: OpenPage) -> None:
    """A P300 page flashes one level of the screen at a time (renderers/screen.py p300_targets; protocol 1.4:
    candidates, commands, keys): the words level first (the candidates, Back, More, ui:spell for the keyboard,
    ui:menu for the other commands), a row or a column of flash_groups' grid at a time, each group once a round
    in a fresh order: every target lights twice a round. The onsets are on the bus clock, the spacing is flash
    + isi. Another source's select of ui:spell (the EEG adapter's) opens the keys level: the likeliest letters
    and ui:abc flash, numbered from 0 again; ui:abc the whole alphabet; ui:words goes back."""
    from razvilka.protocol.messages import Letter
    from razvilka.renderers.screen import P300Level, fork_rows, p300_targets

    rounds, on_ms, off_ms = 3, 100.0, 75.0
    url = await rig.start_bridge()
    page = await open_page(url + f"?p300=1&rounds={rounds}&flash={on_ms:g}&isi={off_ms:g}")
    body = ForkOpen(candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(WORDS)],
                    context=PROMPT, reason="uncertain",
                    letters=[Letter(ch=c, prob=p) for c, p in [("a", 0.3), ("o", 0.2), ("h", 0.1), ("w", 0.05)]])
    rig.daemon.publish(body, fork_id="f1")
    rows = fork_rows(body)
    words = p300_targets(rows, "words")
    # 5 candidates, Back, More, Spell, Commands: a grid 3 wide, 3 rows + 3 columns
    assert words == (*(f"cand:{i}" for i in range(5)), "cmd:back", "cmd:more", "ui:spell", "ui:menu")
    groups = p300_groups(words)
    every = set(words)
    g = len(groups)
    assert g == 6
    stimuli: list[tuple[MessageOf[Stimulus], int]] = []
    while len(stimuli) < rounds * g:
        msg = await next_msg(rig.observer, Stimulus, timeout=10)
        stimuli.append((msg, now_ns()))
    extra = await next_msg_or_none(rig.observer, "render.stimulus", timeout=4 * (on_ms + off_ms) / 1000)
    assert extra is None, "flashing went on past the configured rounds"
    assert await page.evaluate("() => razvilka.p300.order.length") == g  # the page's round: the groups

    bodies = [m.body for m, _ in stimuli]
    assert [b.flash for b in bodies] == list(range(rounds * g))
    lit = [frozenset([f"cand:{i}" for i in b.indices] + list(b.targets)) for b in bodies]
    for r in range(rounds):
        one = lit[r * g:(r + 1) * g]
        assert set(one) == groups and len(set(one)) == g, f"round {r}: not each row and column once"
        times = {t: sum(t in grp for grp in one) for t in every}
        assert set(times.values()) == {2}, {t: n for t, n in times.items() if n != 2}  # row + column
        if r:
            assert one[0] != lit[r * g - 1], "a round began with the group that ended the one before"
    orders = {tuple(lit[r * g:(r + 1) * g]) for r in range(rounds)}
    for m, received in stimuli:
        assert m.header.fork_id == "f1" and m.body.renderer == "web" and m.body.duration_ms == on_ms
        # Another clock domain would be off by minutes or days; a loaded machine only by a little: the page's
        # estimate of the bus clock may err by half a sync round trip, which is tens of ms under heavy load.
        lag_ms = (received - m.body.onset_ns) / 1e6
        assert -50 < lag_ms < 2000, f"onset {lag_ms:.1f} ms from arrival: not on the bus clock"
    onsets = [b.onset_ns for b in bodies]
    gaps_ms = [(b - a) / 1e6 for a, b in zip(onsets, onsets[1:])]
    assert min(gaps_ms) > on_ms * 0.8, gaps_ms
    assert statistics.median(gaps_ms) == pytest.approx(on_ms + off_ms, abs=40), gaps_ms
    assert statistics.mean(gaps_ms) == pytest.approx(on_ms + off_ms, abs=35), gaps_ms  # a stalled frame: one long gap
    clock = await page.evaluate("() => ({offset: razvilka.clock.offsetMs, rtt: razvilka.clock.rttMs})")
    assert clock["rtt"] < 50, clock
    # The page's idea of "now" on the bus clock falls between two bus-clock readings around it.
    before = now_ns()
    page_now = await page.evaluate("() => razvilka.busNs(performance.now())")
    after = now_ns()
    slack = (clock["rtt"] / 2 + 1) * 1e6  # the offset is known to within half the best round trip
    assert before - slack <= page_now <= after + slack, ((page_now - before) / 1e6, (after - before) / 1e6, clock)
    print(f"\nP300: {len(gaps_ms) + 1} flashes, inter-onset median {statistics.median(gaps_ms):.1f} ms, "
          f"mean {statistics.mean(gaps_ms):.1f} ms "
          f"(min {min(gaps_ms):.1f}, max {max(gaps_ms):.1f}), clock RTT {clock['rtt']:.2f} ms, orders {len(orders)}")

    # the letters and the other commands rested (dimmed, unflashed); the level targets are drawn
    assert await page.locator('#alpha [data-target="key:z"]').evaluate("(el) => el.classList.contains('p300-rest')")
    await expect(page.locator('#p300-level [data-target="ui:spell"]')).to_be_visible()
    # the EEG adapter selects ui:spell: the keys level, its flashes numbered afresh
    eeg = await rig.clients("eeg", role="input")
    Step = tuple[str, P300Level, tuple[str, ...] | None]
    levels: tuple[Step, ...] = (("ui:spell", "keys", ("key:a", "key:o", "key:h", "key:w", "ui:abc", "ui:words")),
                                ("ui:abc", "abc", None), ("ui:words", "words", words))
    for target, level, expected in levels:
        await drain(rig.observer)
        eeg.publish(Select(target=target, source="eeg", kind="eeg"), fork_id="f1", subtopic=("eeg",))
        shown = p300_targets(rows, level)
        if expected is not None:
            assert shown == expected
        await next_round(rig, p300_groups(shown), set(shown), 0)
        assert await page.evaluate("() => razvilka.p300.level") == level
        assert await page.evaluate("() => razvilka.p300Now()") == list(shown)   # the page's own rule agrees
    assert len(p300_groups(p300_targets(rows, "abc"))) == 11     # 28 keys + Words: 6 wide, 5 rows + 6 columns
    await expect(page.locator('#p300-level [data-target="ui:spell"]')).to_be_visible()


async def next_msg_or_none(client: BusClient, type_: str, timeout: float) -> Message | None:
    try:
        return await next_msg(client, type_, timeout=timeout)
    except AssertionError:
        return None


# ---------------------------------------------------------------------- bad input from the page
async def test_forged_and_malformed_events_get_errors_and_publish_nothing(rig: Rig, open_page: OpenPage) -> None:
    url = await rig.start_bridge()
    page = await open_page(url)
    rig.open_fork("f1")
    await expect(page.locator("#cloud .cand")).to_have_count(len(WORDS))
    await next_msg(rig.observer, Layout)
    await drain(rig.observer)

    async def ask(event: dict[str, Any]) -> dict[str, Any]:
        return await page.evaluate("(ev) => razvilka.request(ev)", event)

    forged = await ask({"type": "input.select", "fork_id": "no-such-fork", "body": {"index": 0}})
    assert forged["type"] == "error" and forged["name"] == "UNKNOWN_FORK" and "no-such-fork" in forged["message"]
    cases = {
        "OUT_OF_RANGE": {"type": "input.select", "fork_id": "f1", "body": {"index": 9}},
        "WRONG_TYPE": {"type": "input.select", "fork_id": "f1", "body": {"index": "first"}},
        "MISSING_FIELD": {"type": "input.select", "body": {"index": 0}},
        "BAD_VALUE": {"type": "input.command", "body": {"command": "self-destruct"}},
        "BAD_LAYOUT": {"type": "render.layout", "fork_id": "f1", "body": {
            "boxes": [{"index": 0, "x": 0, "y": 0, "w": 9, "h": 9}] * 2, "screen_w": 100, "screen_h": 100}},
        "UNKNOWN_TYPE": {"type": "fork.decided", "fork_id": "f1",
                         "body": {"index": 0, "words": ["They"], "sources": []}},
    }
    for name, event in cases.items():
        reply = await ask(event)
        assert reply["type"] == "error" and reply["name"] == name, (name, reply)
    raw = await page.evaluate(
        """() => new Promise(resolve => {
             const ws = new WebSocket(`ws://${location.host}/ws`);
             ws.onmessage = (e) => {
               const m = JSON.parse(e.data); if (m.type === 'error') { resolve(m); ws.close(); } };
             ws.onopen = () => ws.send('{"type": "input.select", "fork_id": "f1" body: {}}');
           })"""
    )
    assert raw["name"] == "MALFORMED"
    assert rig.bridge is not None and rig.bridge.rejected == len(cases) + 2

    # Nothing reached the bus: the first input event anyone sees is the valid one sent after them.
    # A page also cannot pose as another source: the bridge stamps its own name.
    ok = await ask({"type": "input.focus", "fork_id": "f1", "body": {"index": 1, "source": "gaze"}})
    assert ok["type"] == "ack"
    first = await next_msg(rig.observer, Focus)
    assert first.header.id == ok["id"] and first.body.source == "web" and first.body.index == 1
    # The page stays connected and working after the refusals.
    await page.locator('#cloud .cand[data-index="3"]').click()
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 3


async def test_late_page_draws_open_fork_and_decided_fork_is_stale(rig: Rig, open_page: OpenPage) -> None:
    url = await rig.start_bridge()
    rig.open_fork("f1")
    await next_msg(rig.observer, "fork.lookahead")
    bridge = rig.bridge
    assert bridge is not None
    await until(lambda: any(m.header.type == "fork.lookahead" for m in bridge.mirror.messages()),
                "the bridge retains the fork's look-ahead")
    page = await open_page(url)  # opened mid-fork: drawn from the bridge's retained state
    await expect(page.locator("#cloud .cand")).to_have_count(len(WORDS))
    await page.locator('#cloud .cand[data-index="4"]').hover()
    await expect(page.locator("#peek-short li")).to_have_text([f"It {p}" for p in LOOKS[4]])
    rig.daemon.publish(ForkDecided(index=1, words=["The"], sources=["keyboard"]), fork_id="f1")
    await expect(page.locator("#cloud .cand.decided")).to_have_count(1)
    reply = await page.evaluate("() => razvilka.request({type: 'input.select', fork_id: 'f1', body: {index: 0}})")
    assert reply["name"] == "STALE_FORK"


async def test_page_reconnects_after_a_bridge_restart_and_draws_the_current_fork(rig: Rig, open_page: OpenPage) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = await rig.start_bridge(port=port)
    page = await open_page(url)
    rig.open_fork("f1")
    await expect(page.locator("#cloud .cand")).to_have_count(len(WORDS))
    assert rig.bridge is not None
    await rig.bridge.close()
    await expect(page.locator("#conn")).to_have_text("reconnecting…")
    rig.daemon.publish(ForkDecided(index=2, words=["I"], sources=["keyboard"]), fork_id="f1")
    rig.open_fork("f2", [("am", 0.6), ("was", 0.4)], {})
    await rig.start_bridge(port=port)
    await expect(page.locator("#conn")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#cloud .cand .word")).to_have_text(["was", "am"])
    await page.locator('#cloud .cand[data-index="1"]').click()
    sel = await next_msg(rig.daemon, Select)
    assert sel.header.fork_id == "f2" and sel.body.index == 1


async def test_touch_long_press_peeks_and_tap_selects_once(rig: Rig, open_page: OpenPage) -> None:
    url = await rig.start_bridge()
    page = await open_page(url, has_touch=True)
    rig.open_fork("f1")
    word = page.locator('#cloud .cand[data-index="1"]')
    await expect(word).to_be_visible()
    box = await word.bounding_box()
    assert box
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]})
    await expect(page.locator("#peek-short li")).to_have_text([f"The {p}" for p in LOOKS[1]])
    await asyncio.sleep(0.7)  # what is tested: held past touch_peek_ms (450 ms), a peek, not a choice
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await page.locator('#cloud .cand[data-index="3"]').tap()
    await page.locator("#back").tap()
    got: list[tuple[str, Any]] = []
    while len(got) < 2:
        msg = await next_msg(rig.daemon, "", lambda m: m.header.type in ("input.select", "input.command"))
        body = msg.body
        got.append((msg.header.type, body.index if isinstance(body, Select) else getattr(body, "command", None)))
    assert got == [("input.select", 3), ("input.command", "back")]


# ---------------------------------------------------------------------- gaze feedback
async def test_gaze_focus_draws_dwell_ring_and_cursor(rig: Rig, open_page: OpenPage) -> None:
    url = await rig.start_bridge()
    page = await open_page(url + "?cursor=1")
    rig.open_fork("f1")
    layout = await next_msg(rig.observer, Layout)
    box = next(b for b in layout.body.boxes if b.index == 3)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    gaze = await rig.clients("gaze", role="input")
    gaze.publish(Focus(index=3, source="gaze", dwell=0.5, x=cx, y=cy), fork_id="f1", subtopic=("gaze",))
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator('#cloud .cand[data-index="3"]')).to_have_class("cand focused")
    await expect(page.locator("#peek-short li")).to_have_text([f"Your {p}" for p in LOOKS[3]])
    assert float(await page.locator("#ring-bar").evaluate("e => e.style.strokeDashoffset")) == pytest.approx(50)
    cursor = await page.locator("#cursor").bounding_box()
    word = await page.locator('#cloud .cand[data-index="3"]').bounding_box()
    assert cursor and word
    assert cursor["x"] + cursor["width"] / 2 == pytest.approx(word["x"] + word["width"] / 2, abs=1.5)
    assert cursor["y"] + cursor["height"] / 2 == pytest.approx(word["y"] + word["height"] / 2, abs=1.5)
    gaze.publish(Focus(index=None, source="gaze"), fork_id="f1", subtopic=("gaze",))
    await expect(page.locator("#ring")).to_be_hidden()
    await expect(page.locator("#peek")).to_be_hidden()


# ---------------------------------------------------------------------- the HTTP guard
async def test_foreign_host_and_cross_origin_websocket_are_refused(rig: Rig) -> None:
    url = await rig.start_bridge()
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as ok:
            assert ok.status == 200 and "razvilka" in await ok.text()
            assert "default-src 'self'" in ok.headers["Content-Security-Policy"]
        async with http.get(url, headers={"Host": "attacker.example:8765"}) as rebound:
            assert rebound.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "ws", headers={"Origin": "http://attacker.example"})
        assert refused.value.status == 403
        async with http.ws_connect(url + "ws", headers={"Origin": url.rstrip("/")}) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["config"]["name"] == "web"


# ---------------------------------------------------------------------- the command line
async def test_cli_serves_the_page_and_stops_on_sigterm(ipc_bus: Any, runtime_dir: Path) -> None:
    env = dict(os.environ, RAZVILKA_BUS__RUNTIME_DIR=str(runtime_dir), RAZVILKA_CONFIG=str(runtime_dir / "none.toml"))
    (runtime_dir / "none.toml").write_text("")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "razvilka.cli", "render", "web", "--port", "0",
        env=env, stderr=asyncio.subprocess.PIPE,
    )
    try:
        url, said = "", []
        while not url:
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            said.append(line)
            assert line, "razvilka render web exited before serving:\n" + "".join(said[-15:])
            if "open http" in line:
                url = line.split("open ", 1)[1].strip()
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
    assert rc == 0


# ---------------------------------------------------------------------- end to end with the real daemon
@pytest.mark.model
async def test_end_to_end_with_the_real_daemon(daemon: Any, open_page: OpenPage) -> None:
    from daemon_fixtures import next_of

    watcher = await daemon.client("watcher", subscribe=["fork.", "input."])
    web = await daemon.client("web", subscribe=list(SUBSCRIBE), role="renderer")
    bridge = WebBridge(WebConfig(port=0), web)
    url = await bridge.start()
    try:
        page = await open_page(url)
        cands = page.locator("#cloud .cand")
        await expect(cands.first).to_be_visible(timeout=60_000)
        fork_id = await page.evaluate("() => razvilka.state.fork.id")
        count = await cands.count()
        assert count >= 2
        await cands.nth(0).hover()
        await expect(page.locator("#peek")).to_be_visible()
        await expect(page.locator("#peek-short li").first).not_to_have_class("thinking", timeout=60_000)
        index = int(await cands.nth(0).get_attribute("data-index") or "-1")
        await cands.nth(0).click()
        decided = await next_of(watcher, ForkDecided, 60, lambda m: m.header.fork_id == fork_id)
        assert decided.body.index == index and "web" in decided.body.sources
        await expect(page.locator("#text .origin-human")).to_have_count(1, timeout=60_000)
        await page.wait_for_function("(old) => razvilka.state.fork && razvilka.state.fork.id !== old",
                                     arg=fork_id, timeout=60_000)
        await expect(cands.first).to_be_visible()
    finally:
        await bridge.close()


# ---------------------------------------------------------------------- the screenshot kept in docs/img
async def save_screenshot(page: Page, browser: Browser) -> None:
    """Write docs/img/web.png when the picture changed meaningfully (pixels of a downscaled copy differ).

    The clock line is hidden: its jitter figure changes on every run.
    """
    clock = page.locator("#clock")
    await clock.evaluate("e => { e.style.visibility = 'hidden'; }")  # (the page's CSP refuses injected <style>)
    png = await page.screenshot(animations="disabled")
    await clock.evaluate("e => { e.style.visibility = ''; }")
    if SCREENSHOT.exists():
        changed = await changed_pixels(browser, SCREENSHOT.read_bytes(), png)
        if changed < 4:
            return
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)


async def changed_pixels(browser: Browser, old: bytes, new: bytes) -> int:
    """How many pixels differ (by more than 16 of 255 in a channel) once both pictures are shrunk to 160x100."""
    page = await browser.new_page()
    try:
        return await page.evaluate(
            """async ([a, b]) => {
                 const load = (src) => new Promise((ok, bad) => {
                   const i = new Image(); i.onload = () => ok(i); i.onerror = bad; i.src = src; });
                 const [ia, ib] = await Promise.all([load(a), load(b)]);
                 if (ia.naturalWidth !== ib.naturalWidth || ia.naturalHeight !== ib.naturalHeight) return 160 * 100;
                 const px = (img) => { const c = document.createElement('canvas'); c.width = 160; c.height = 100;
                   const g = c.getContext('2d'); g.drawImage(img, 0, 0, 160, 100);
                   return g.getImageData(0, 0, 160, 100).data; };
                 const da = px(ia), db = px(ib);
                 let n = 0;
                 for (let i = 0; i < da.length; i += 4) {
                   const d = Math.max(Math.abs(da[i] - db[i]), Math.abs(da[i+1] - db[i+1]),
                                      Math.abs(da[i+2] - db[i+2]));
                   if (d > 16) n++;
                 }
                 return n;
               }""",
            [
                "data:image/png;base64," + base64.b64encode(old).decode(),
                "data:image/png;base64," + base64.b64encode(new).decode(),
            ],
        )
    finally:
        await page.close()


async def test_a_piece_that_joins_the_word_before_is_drawn_with_it(rig: Rig, open_page: OpenPage) -> None:
    """Protocol 1.2 ``joins``: the model's piece "es" after "Miss" writes "Misses"; the page shows the
    word it makes (the stem dimmed), not a bare "es" the person cannot place."""
    url = await rig.start_bridge()
    page = await open_page(url)
    cands = [Candidate(index=0, word="Bennet", prob=0.5), Candidate(index=1, word="es", prob=0.3, joins=True),
             Candidate(index=2, word="Lucas", prob=0.2)]
    rig.daemon.publish(ForkOpen(candidates=cands, context="and the elder Miss", reason="uncertain"), fork_id="j1")
    rig.daemon.publish(ForkLookahead(entries=[Lookahead(index=1, phrases=[" Bennet were"])], done=True), fork_id="j1")
    joined = page.locator('#cloud .cand[data-index="1"]')
    await expect(joined.locator(".word")).to_have_text("Misses")
    await expect(joined.locator(".stem")).to_have_text("Miss")
    assert "Misses (joins Miss" in (await joined.get_attribute("aria-label") or "")
    await expect(page.locator("#cloud .cand .stem")).to_have_count(1)  # the spaced words have none
    await expect(page.locator('#cloud .cand[data-index="0"] .word')).to_have_text("Bennet")
    stem_color, word_color = await joined.evaluate(
        "b => [getComputedStyle(b.querySelector('.stem')).color, getComputedStyle(b.querySelector('.word')).color]")
    assert stem_color != word_color  # the stem is there but quieter
    await joined.hover()
    await expect(page.locator("#peek-short li")).to_have_text(["Misses Bennet were"])
    await joined.click()
    sel = await next_msg(rig.daemon, Select)
    assert sel.body.index == 1 and sel.header.fork_id == "j1"


# ---------------------------------------------------------------------- paused between forks
async def test_paused_between_forks_the_rest_layout_names_the_last_fork(rig: Rig, open_page: OpenPage) -> None:
    """No dead end: paused after a decision (no fork open), the page still publishes its Resume, naming
    the last fork it saw (a layout needs a fork; the daemon takes cmd:resume for any fork it opened),
    and draws a gaze dwell on it."""
    page = await open_page(await rig.start_bridge())
    rig.open_fork("f1")
    await next_msg(rig.observer, Layout, lambda m: m.header.fork_id == "f1")
    rig.daemon.publish(ForkDecided(index=0, words=["They"], sources=["keyboard"], rule="select"), fork_id="f1")
    await expect(page.locator("#cloud.done")).to_be_attached()
    await drain(rig.observer)
    rig.daemon.publish(DaemonStatus(state="paused"))
    await expect(page.locator("#rest")).to_be_visible()
    msg = await next_msg(rig.observer, Layout)
    assert msg.header.fork_id == "f1" and not msg.body.boxes
    assert [t.target for t in msg.body.targets] == ["cmd:resume"]
    gaze = await rig.clients("gaze", role="input")
    gaze.publish(Focus(index=None, target="cmd:resume", source="gaze", kind="gaze", dwell=0.5), fork_id="f1")
    await expect(page.locator("#ring")).to_be_visible()
    # a stale fork's layout with anything but Resume is still refused
    errors = await page.evaluate("""async () => (await window.razvilka.request({type: "render.layout", fork_id: "f1",
        body: {boxes: [], targets: [{target: "cmd:back", x: 0, y: 0, w: 10, h: 10}],
               screen_w: 100, screen_h: 100}})).name""")
    assert errors == "STALE_FORK"


# ---------------------------------------------------------------------- one scan order (renderers/screen.py)
def layout_rows(body: Any) -> tuple[tuple[str, ...], ...]:
    """A render.layout's targets (candidates as cand:i) as rows in scan order, by its row/col."""
    placed = [(b.row, b.col, f"cand:{b.index}") for b in body.boxes] + [(t.row, t.col, t.target) for t in body.targets]
    rows: dict[int, list[tuple[int, str]]] = {}
    for row, col, target in placed:
        rows.setdefault(row, []).append((col, target))
    assert sorted(rows) == list(range(len(rows))), f"rows are not 0..n: {sorted(rows)}"
    return tuple(tuple(t for _, t in sorted(r)) for _, r in sorted(rows.items()))


async def test_the_pages_scan_rows_are_renderers_screen_rows(rig: Rig, open_page: OpenPage) -> None:
    """The browser mirrors renderers/screen.py: the rows it publishes (and scans, and flashes) are the
    Python module's for the same fork: fresh, with a typed prefix, with a look-ahead shown, Cyrillic, paused."""
    from razvilka.protocol.messages import Letter
    from razvilka.renderers.screen import fork_rows, target_rows

    page = await open_page(await rig.start_bridge())
    # ties, upper case folding onto its key (probabilities added), a character no key has, " " (space)
    letters = [("e", 0.2), ("E", 0.15), ("a", 0.3), ("r", 0.1), ("7", 0.09), (" ", 0.05), ("o", 0.05), ("i", 0.05),
               ("u", 0.01), ("l", 0.01), ("y", 0.01)]
    words = [("cat", 0.2), ("car", 0.4), ("can", 0.2), ("cab", 0.1)]  # not in index order, with a tie
    cases = [("f1", "", "latin"), ("f2", "ca", "latin"), ("f3", "", "cyrillic"), ("f4", "x", "klingon")]
    for fork_id, prefix, script in cases:
        body = ForkOpen(candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(words)],
                        context=PROMPT, prefix=prefix, script=script,
                        letters=[Letter(ch=c, prob=p) for c, p in letters])
        rig.daemon.publish(body, fork_id=fork_id)
        want = target_rows(fork_rows(body))
        def of_fork(m: MessageOf[Layout], f: str = fork_id) -> bool:
            return m.header.fork_id == f
        msg = await next_msg(rig.observer, Layout, of_fork)
        assert layout_rows(msg.body) == want, (fork_id, layout_rows(msg.body), want)
        # the page's own mirror, called directly, agrees too
        js = await page.evaluate("(b) => window.razvilka.screenRows(b).map(r => [r.name, r.targets])",
                                 {"candidates": [{"index": c.index, "prob": c.prob} for c in body.candidates],
                                  "letters": [{"ch": x.ch, "prob": x.prob} for x in body.letters],
                                  "prefix": prefix, "script": script})
        assert [(n, tuple(t)) for n, t in js] == [(r.name, r.targets) for r in fork_rows(body)]
    # a look-ahead shown (another source focuses candidate 1): its words are the second row
    rig.daemon.publish(ForkLookahead(entries=[Lookahead(index=1, phrases=["is parked outside", "was red"])], done=True),
                       fork_id="f4")
    gaze = await rig.clients("gaze", role="input")
    gaze.publish(Focus(index=1, source="gaze", kind="gaze"), fork_id="f4")
    msg = await next_msg(rig.observer, Layout,
                         lambda m: any(t.target.startswith("word:") for t in m.body.targets))
    assert layout_rows(msg.body) == target_rows(fork_rows(body, lookahead=(1, 3)))
    # paused: Resume alone
    rig.daemon.publish(DaemonStatus(state="paused"))
    msg = await next_msg(rig.observer, Layout, lambda m: not m.body.boxes)
    assert layout_rows(msg.body) == target_rows(fork_rows(body, paused=True)) == (("cmd:resume",),)
