"""The browser view's protocol 1.4 targets in real headless Chromium: the command row, the on-screen
keyboard, every target in ``render.layout`` with its scan row/col, dwell progress and scan highlights on
any target, and the rest overlay with its Resume target.

The rig of tests/test_web.py plays the daemon (real bus, real bridge); tests/test_gaze_targets.py runs
the whole loop with the real daemon, model and LSL gaze adapter.
"""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
import test_web
from bus_helpers import body_of, message_of
from playwright.async_api import Browser, Page, expect
from test_web import LOOKS, PROMPT, ROOT, TEXT, WORDS, OpenPage, Rig, changed_pixels, next_msg

from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import (
    Candidate,
    Command,
    DaemonStatus,
    Focus,
    ForkLookahead,
    ForkOpen,
    Layout,
    Letter,
    Lookahead,
    Select,
)
from razvilka.protocol.targets import ALL_COMMANDS, ALPHABETS, parse_target
from razvilka.renderers.screen import COMMANDS as SCREEN_COMMANDS
from razvilka.renderers.screen import LIKELY_LETTERS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
browser, rig, open_page = test_web.browser, test_web.rig, test_web.open_page  # the fixtures of test_web.py

SCREENSHOT = ROOT / "docs" / "img" / "web-keyboard.png"
LETTERS = [("e", 0.31), ("a", 0.22), ("o", 0.12), ("r", 0.08), ("h", 0.05), ("i", 0.04), ("u", 0.03),
           ("l", 0.02), ("y", 0.01), (" ", 0.02)]


def open_fork(rig: Rig, fork_id: str, *, prefix: str = "", script: str = "latin",
              letters: list[tuple[str, float]] = LETTERS, words: list[tuple[str, float]] = WORDS) -> None:
    cands = [Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(words)]
    rig.daemon.publish(ForkOpen(candidates=cands, context=PROMPT, prefix=prefix, script=script,
                                letters=[Letter(ch=c, prob=p) for c, p in letters]), fork_id=fork_id)
    entries = [Lookahead(index=i, phrases=ph) for i, ph in LOOKS.items() if i < len(words)]
    rig.daemon.publish(ForkLookahead(entries=entries, done=True), fork_id=fork_id)


def focus(client: Any, source: str, kind: str, **body: Any) -> None:
    """Publish another source's input.focus on fork f1 (gaze with dwell progress, a scanning switch)."""
    client.publish(Focus(index=None, source=source, kind=kind, **body), fork_id="f1", subtopic=(source,))


async def layout_where(rig: Rig, pred: Any, timeout: float = 10.0) -> Layout:
    msg = await next_msg(rig.observer, "render.layout", lambda m: pred(m.body), timeout=timeout)
    assert isinstance(msg.body, Layout)
    return msg.body


async def element_rects(page: Page) -> dict[str, list[dict[str, float]]]:
    """Every target element's CSS-pixel rectangles, by target id (candidates as cand:<i>; a letter in the
    likeliest row is in the alphabet too)."""
    rects: dict[str, list[dict[str, float]]] = {}
    for target, rect in await page.evaluate(
        """() => [...document.querySelectorAll('[data-target], #cloud .cand')]
             .filter(e => e.getClientRects().length)
             .map(e => { const r = e.getBoundingClientRect();
                         return [e.dataset.target || `cand:${e.dataset.index}`,
                                 {left: r.left, top: r.top, width: r.width, height: r.height}]; })"""):
        rects.setdefault(target, []).append(rect)
    return rects


# ---------------------------------------------------------------------- the grammar
async def test_the_page_parses_target_ids_as_protocol_targets_does(rig: Rig, open_page: OpenPage) -> None:
    """app.js mirrors protocol/targets.py: both agree on every id of protocol/vectors/targets.json."""
    vectors = json.loads((ROOT / "protocol" / "vectors" / "targets.json").read_text())
    page = await open_page(await rig.start_bridge())
    got = await page.evaluate(
        """(ids) => ids.map(id => { try { const t = razvilka.parseTarget(id);
                                          return {ok: true, kind: t.kind, value: t.value, index: t.index,
                                                  words: t.words}; }
                                    catch (e) { return {ok: false, message: e.message}; } })""",
        [v["id"] for v in vectors["valid"]] + [v["id"] for v in vectors["invalid"]])
    valid, invalid = got[:len(vectors["valid"])], got[len(vectors["valid"]):]
    for want, have in zip(vectors["valid"], valid):
        assert have == {"ok": True, "kind": want["kind"], "value": want["value"], "index": want["index"],
                        "words": want["words"]}, want["id"]
        assert parse_target(want["id"]).id == want["id"]
    for want, have in zip(vectors["invalid"], invalid):
        assert not have["ok"] and json.dumps(want["id"], ensure_ascii=False) in have["message"], (want["id"], have)
        with pytest.raises(ProtocolError):
            parse_target(want["id"])
    # the command row names only commands the grammar knows, and covers them all (1.5 included)
    commands = await page.evaluate("() => razvilka.COMMANDS.map(c => c.name)")
    assert set(commands) | {"resume"} == set(ALL_COMMANDS)


# ---------------------------------------------------------------------- layout: every target, scan order
async def test_layout_has_every_target_on_screen_in_scan_order(rig: Rig, browser: Browser, open_page: OpenPage) -> None:
    page = await open_page(await rig.start_bridge())
    rig.daemon.publish(DaemonStatus(state="waiting", model="gemma-3-270m", mode="entropy", k=5))
    rig.text(TEXT)
    open_fork(rig, "f1")
    body = await layout_where(rig, lambda b: any(t.target == "key:a" for t in b.targets))
    rects = await element_rects(page)
    sx, sy = await page.evaluate("() => [screenX, screenY]")
    # each box and target is its element's screen rectangle (dpr 1, no window chrome headless)
    def screen(r: dict[str, float]) -> tuple[float, float, float, float]:
        return sx + r["left"], sy + r["top"], r["width"], r["height"]

    for box in body.boxes:
        assert (box.x, box.y, box.w, box.h) == pytest.approx(screen(rects[f"cand:{box.index}"][0]), abs=0.5)
    placed = sorted((t.target, (round(t.x), round(t.y), round(t.w), round(t.h))) for t in body.targets)
    drawn = sorted((k, tuple(round(v) for v in screen(r))) for k, rs in rects.items() if not k.startswith("cand:")
                   for r in rs if k not in ("key:delete", "key:space", "key:accept", "cmd:resume"))
    assert placed == drawn  # every target drawn is in the layout, where it is drawn, and nothing else
    ids = [t.target for t in body.targets]
    doubled = {k for k in ids if ids.count(k) > 1}
    assert doubled == {f"key:{c}" for c, _ in LETTERS[:LIKELY_LETTERS]}  # a likeliest letter is in the alphabet as well
    # candidates: the first row, likeliest first
    assert {b.row for b in body.boxes} == {0}
    assert [b.index for b in sorted(body.boxes, key=lambda b: b.col)] == list(range(len(WORDS)))  # WORDS is by prob
    # the likeliest letters (nothing typed: no space), then the commands, then the alphabet (renderers/screen.py)
    row = {t.target: t.row for t in body.targets}
    likely = sorted((t for t in body.targets if t.row == 1), key=lambda t: t.col)
    assert [t.target for t in likely] == [f"key:{c}" for c, _ in LETTERS if c != " "][:LIKELY_LETTERS]
    alphabet = [f"key:{c}" for c in ALPHABETS["latin"] + "'-"]
    assert all(row[k] >= 2 for k in alphabet if k not in (t.target for t in likely))
    assert [t.target for t in sorted((t for t in body.targets if t.row >= 2 and t.target.startswith("key:")),
                                     key=lambda t: (t.row, t.col))] == alphabet
    commands = sorted((t for t in body.targets if t.target.startswith("cmd:")), key=lambda t: t.col)
    assert [t.target for t in commands] == [f"cmd:{c}" for c in SCREEN_COMMANDS]
    assert {t.row for t in commands} == {2} and [t.label for t in commands][0].endswith("Back")
    # nothing typed yet: delete, space and accept are off, and not targets
    assert not {"key:delete", "key:space", "key:accept"} & set(ids)
    # likelier letters are bigger, and the likeliest row sits between the candidates and the alphabet
    sizes = [t.w * t.h for t in likely]
    assert sizes[0] > sizes[-1]
    cand_bottom = max(b.y + b.h for b in body.boxes)
    assert cand_bottom < min(t.y for t in likely) and max(t.y + t.h for t in likely) <= min(
        t.y for t in body.targets if t.row == 2)

    # A typed prefix: shown; the word's end is the space key among the likeliest, and the edit keys
    # become targets in the row after them.
    open_fork(rig, "f2", prefix="ca", letters=[("t", 0.5), ("r", 0.3), (" ", 0.2)])
    await expect(page.locator("#typed-prefix")).to_have_text("ca")
    body = await layout_where(rig, lambda b: any(t.target == "key:accept" for t in b.targets))
    def in_row(n: int) -> list[str]:
        return [t.target for t in sorted((t for t in body.targets if t.row == n), key=lambda t: t.col)]
    assert in_row(1) == ["key:t", "key:r", "key:space"]
    assert in_row(2) == ["key:space", "key:delete", "key:accept"]
    await page.evaluate("() => window.scrollTo(0, 0)")
    await save_screenshot(page, browser)

    # A Cyrillic text: the Cyrillic alphabet in its fixed order.
    open_fork(rig, "f3", script="cyrillic", letters=[("о", 0.4), ("а", 0.3)], words=[("мы", 0.6), ("он", 0.4)])
    body = await layout_where(rig, lambda b: any(t.target == "key:я" for t in b.targets))
    keys = [t.target for t in sorted((t for t in body.targets if t.row >= 2 and t.target.startswith("key:")),
                                     key=lambda t: (t.row, t.col))]
    assert keys == [f"key:{c}" for c in ALPHABETS["cyrillic"] + "'-"]
    assert "key:a" not in {t.target for t in body.targets}


# ---------------------------------------------------------------------- pointer: keys select, commands command
async def test_clicking_keys_selects_them_and_commands_are_commands(rig: Rig, open_page: OpenPage) -> None:
    page = await open_page(await rig.start_bridge())
    open_fork(rig, "f1")
    await expect(page.locator("#likely .key")).to_have_count(LIKELY_LETTERS)
    await expect(page.locator("#edit .key")).to_have_count(3)
    await page.locator('#likely [data-target="key:e"]').click()
    sel = message_of(await next_msg(rig.daemon, "input.select"), Select)
    assert (sel.body.target, sel.body.index, sel.body.kind, sel.header.fork_id) == ("key:e", None, "pointer", "f1")
    await page.locator('#alpha [data-target="key:z"]').click()
    assert body_of(await next_msg(rig.daemon, "input.select"), Select).target == "key:z"
    await expect(page.locator('#edit [data-target="key:delete"]')).to_be_disabled()  # nothing typed
    open_fork(rig, "f2", prefix="z")
    await page.locator('#edit [data-target="key:delete"]').click()
    sel = message_of(await next_msg(rig.daemon, "input.select"), Select)
    assert (sel.body.target, sel.header.fork_id) == ("key:delete", "f2")
    for name in ("more", "pause", "new"):
        await page.locator(f"#{name}").click()
        cmd = body_of(await next_msg(rig.daemon, "input.command"), Command)
        assert cmd.command == name and cmd.source == "web"
    # a page's event naming a bad target, or a candidate outside the fork, is refused by the bridge
    def select_event(**body: Any) -> dict[str, Any]:
        return {"type": "input.select", "fork_id": "f2", "body": body}

    bad_layout = {"type": "render.layout", "fork_id": "f2", "body": {
        "boxes": [], "screen_w": 9, "screen_h": 9, "targets": [{"target": "cmd:fly", "x": 0, "y": 0, "w": 1, "h": 1}]}}
    for event, name, says in ((select_event(target="key:Q"), "BAD_VALUE", "key:Q"),
                              (select_event(target="word:7:1"), "OUT_OF_RANGE", "word:7:1"),
                              (select_event(target="cmd:back", index=0), "BAD_VALUE", "both"),
                              (bad_layout, "BAD_VALUE", "cmd:fly")):
        reply = await page.evaluate("(ev) => razvilka.request(ev)", event)
        assert reply["type"] == "error" and reply["name"] == name and says in reply["message"], (event, reply)
    # the keyboard: Enter on a focused key is a select of kind "key"
    await page.locator('#alpha [data-target="key:q"]').focus()
    await page.keyboard.press("Enter")
    key = body_of(await next_msg(rig.daemon, "input.select"), Select)
    assert (key.target, key.kind) == ("key:q", "key")


# ---------------------------------------------------------------------- dwell progress, scan highlights
async def test_dwell_progress_on_any_target_and_scan_highlights(rig: Rig, open_page: OpenPage) -> None:
    page = await open_page(await rig.start_bridge())
    open_fork(rig, "f1")
    await layout_where(rig, lambda b: bool(b.targets))
    gaze = await rig.clients("gaze", role="input")
    ring = page.locator("#ring")
    for target in ("cmd:more", "key:e", "key:k"):
        focus(gaze, "gaze", "gaze", target=target, dwell=0.25)
        el = page.locator(f'[data-target="{target}"]').first
        await expect(el).to_have_class(re.compile(r"\bfocused\b"))
        await expect(ring).to_be_visible()
        r, e = await ring.bounding_box(), await el.bounding_box()
        assert r and e and r["x"] < e["x"] and r["x"] + r["width"] > e["x"] + e["width"], (target, r, e)
        assert float(await page.locator("#ring-bar").evaluate("e => e.style.strokeDashoffset")) == pytest.approx(75)
    # a focus on a look-ahead word: its candidate's look-ahead opens, the words a confirm takes light up,
    # and the look-ahead's words join the layout (row 1, after the candidates)
    focus(gaze, "gaze", "gaze", target="word:0:2", dwell=0.5)
    await expect(page.locator("#peek")).to_be_visible()
    await expect(page.locator("#peek-short .la-word.lit")).to_have_text(LOOKS[0][0].split()[:2])
    body = await layout_where(rig, lambda b: any(t.target.startswith("word:") for t in b.targets))
    words = sorted((t for t in body.targets if t.target.startswith("word:")), key=lambda t: t.col)
    assert [t.target for t in words] == [f"word:0:{n}" for n in range(1, len(LOOKS[0][0].split()) + 1)]
    assert {t.row for t in words} == {1} and min(t.row for t in body.targets if t.target.startswith("key:")) == 2
    # a scanning switch highlights a row (group), then an item (target)
    switch = await rig.clients("footswitch", role="input")
    row = ["key:a", "key:b", "key:c"]
    focus(switch, "footswitch", "switch", group=row)
    await expect(page.locator(".scan-row")).to_have_count(3)
    await expect(ring).to_be_hidden()  # no dwell: no ring
    focus(switch, "footswitch", "switch", target="key:b")
    await expect(page.locator(".scan-row")).to_have_count(0)
    await expect(page.locator("#alpha .focused")).to_have_text("b")
    focus(switch, "footswitch", "switch", group=["cand:0", "cand:1"])
    await expect(page.locator("#cloud .cand.scan-row")).to_have_count(2)


# ---------------------------------------------------------------------- rest
async def test_paused_shows_rest_overlay_whose_resume_is_the_only_target(rig: Rig, open_page: OpenPage) -> None:
    page = await open_page(await rig.start_bridge())
    open_fork(rig, "f1")
    await layout_where(rig, lambda b: len(b.targets) > 10)
    rig.daemon.publish(DaemonStatus(state="paused", detail="rest"))
    rest = page.locator("#rest")
    await expect(rest).to_be_visible()
    await expect(page.locator("#rest-why")).to_contain_text("looked away")
    body = await layout_where(rig, lambda b: [t.target for t in b.targets] == ["cmd:resume"])
    assert body.boxes == []
    resume = body.targets[0]
    vw, vh = await page.evaluate("() => [innerWidth, innerHeight]")
    assert resume.w * resume.h > 0.08 * vw * vh  # large: easy to hit with the eyes
    gaze = await rig.clients("gaze", role="input")
    focus(gaze, "gaze", "gaze", target="cmd:resume", dwell=0.6)
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator("#pause")).to_have_text("▶ Resume")
    await page.locator("#resume").click()
    assert body_of(await next_msg(rig.daemon, "input.command"), Command).command == "resume"
    rig.daemon.publish(DaemonStatus(state="waiting"))
    await expect(rest).to_be_hidden()
    await expect(page.locator("#pause")).to_have_text("❚❚ Pause")
    body = await layout_where(rig, lambda b: len(b.boxes) == len(WORDS) and len(b.targets) > 10)
    assert "cmd:resume" not in {t.target for t in body.targets}


# ---------------------------------------------------------------------- the screenshot kept in docs/img
async def save_screenshot(page: Page, browser: Browser) -> None:
    """Write docs/img/web-keyboard.png when the picture changed meaningfully (see test_web.save_screenshot)."""
    clock = page.locator("#clock")
    await clock.evaluate("e => { e.style.visibility = 'hidden'; }")
    png = await page.screenshot(animations="disabled")
    await clock.evaluate("e => { e.style.visibility = ''; }")
    if SCREENSHOT.exists() and await changed_pixels(browser, SCREENSHOT.read_bytes(), png) < 4:
        return
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
