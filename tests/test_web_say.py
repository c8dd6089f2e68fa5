"""Say it and send it in the browser (protocol 1.5): quick phrases, the speak/copy/type-out commands, the
partner's last turn, the partner page, and the settings overlay reached by the person's own input.

The first tests use the rig of tests/test_web.py (real bus, real bridge, real Chromium; a bus client plays
the daemon). The last ones run everything for real: the real daemon and model, the page behind the real
bridge, the real gaze adapter on a real LSL outlet replayed in real time (so that the bus times of its
focus and confirm messages measure the dwell), and espeak-ng speaking to a real PulseAudio null sink.
"""
from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import test_web
from bus_helpers import body_of, drained
from playwright.async_api import expect
from test_daemon_output import _spoken
from test_gaze import push, until
from test_gaze_targets import SCREEN, Loop, gaze_loop
from test_partner import model_reads
from test_speech import audio_server, wait_for_stream  # noqa: F401 - the module's audio server
from test_web import PROMPT, Rig, next_msg
from test_web_targets import LETTERS, layout_where, open_fork

from razvilka.daemon.prose import dialogue
from razvilka.daemon.store import Turn
from razvilka.protocol.messages import (
    Candidate,
    Command,
    ConfigState,
    ConfigUpdate,
    Confirm,
    Focus,
    ForkOpen,
    Layout,
    Letter,
    Phrase,
    PhrasesState,
    TextAuto,
    TextState,
)
from razvilka.renderers.screen import fork_rows, target_rows
from razvilka.renderers.web.bridge import PARTNER_MAX_CHARS

pytestmark = [pytest.mark.browser]
browser, rig, open_page = test_web.browser, test_web.rig, test_web.open_page  # the fixtures of test_web.py

PHRASES = [Phrase(id="yes", text="Yes."), Phrase(id="tea", text="Tea, please."),
           Phrase(id="f-5e1d0c", text="See you soon.", kind="frequent")]
VALUES: dict[str, str | int | float | bool] = {
    "gating.k": 5, "inputs.gaze.dwell_ms": 600, "inputs.gaze.rest_ms": 3000.0, "scan.interval_ms": 1000,
    "renderers.web.theme": "contrast", "speech.rate": 175, "speech.variant": "", "speech.voices.en": ""}


def layout_rows(body: Layout) -> tuple[tuple[str, ...], ...]:
    return test_web.layout_rows(body)


# ====================================================================== the page, with a stand-in daemon
@pytest.mark.timeout(120)
async def test_phrases_commands_and_the_partners_turn_on_the_page(rig: Rig, open_page: Any) -> None:
    page = await open_page(await rig.start_bridge(), viewport={"width": 1280, "height": 1400})
    rig.daemon.publish(PhrasesState(phrases=PHRASES))
    rig.daemon.publish(TextState(text=PROMPT, partner="How was the trip?"))
    await expect(page.locator("#partner-text")).to_have_text("How was the trip?")
    open_fork(rig, "f1")
    # the phrases are targets, in renderers/screen.py's rows (after the alphabet), quick and frequent alike
    await expect(page.locator("#phrases .phrase")).to_have_text([p.text for p in PHRASES])
    body = ForkOpen(candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(test_web.WORDS)],
                    context=PROMPT, letters=[Letter(ch=c, prob=p) for c, p in LETTERS])
    want = target_rows(fork_rows(body, phrases=[p.id for p in PHRASES]))
    layout = await layout_where(rig, lambda b: any(t.target.startswith("phrase:") for t in b.targets))
    assert layout_rows(layout) == want
    assert want[-1] == ("phrase:yes", "phrase:tea", "phrase:f-5e1d0c") and "cmd:speak" in want[2]
    # a click on a phrase is the phrase command; the command row speaks, repeats, stops, copies, types out
    await page.locator('[data-target="phrase:tea"]').click()
    cmd = body_of(await next_msg(rig.daemon, "input.command"), Command)
    assert (cmd.command, cmd.text, cmd.source) == ("phrase", "tea", "web")
    for name in ("speak", "repeat", "stop_speaking", "copy", "typeout"):
        await page.locator(f'#controls [data-target="cmd:{name}"]').click()
        assert body_of(await next_msg(rig.daemon, "input.command"), Command).command == name, name
    await page.locator('#controls [data-target="cmd:speak_all"]').click()  # no command of its own: speak "all"
    cmd = body_of(await next_msg(rig.daemon, "input.command"), Command)
    assert (cmd.command, cmd.text) == ("speak", "all")
    # no partner turn: the line goes
    rig.daemon.publish(TextState(text=PROMPT))
    await expect(page.locator("#partner")).to_be_hidden()


@pytest.mark.timeout(120)
async def test_settings_open_by_gaze_change_by_gaze_and_mouse_and_show_the_daemons_answer(
        rig: Rig, open_page: Any) -> None:
    page = await open_page(await rig.start_bridge(), viewport={"width": 1280, "height": 1400})
    rig.daemon.publish(ConfigState(values=VALUES))
    open_fork(rig, "f1")
    await layout_where(rig, lambda b: any(t.target == "cmd:settings" for t in b.targets))
    gaze = await rig.clients("gaze", role="input")
    # another source's confirm of cmd:settings (a dwell) opens the overlay: its targets alone are laid out
    gaze.publish(Confirm(target="cmd:settings", source="gaze", kind="gaze"), fork_id="f1", subtopic=("gaze",))
    await expect(page.locator("#settings-page")).to_be_visible()
    await expect(page.locator('.setting-value[data-key="inputs.gaze.dwell_ms"]')).to_have_text("600 ms")
    layout = await layout_where(rig, lambda b: not b.boxes and all(t.target.startswith("ui:") for t in b.targets))
    rows = layout_rows(layout)
    assert rows[0] == ("ui:close",) and ("ui:dwell-down", "ui:dwell-400", "ui:dwell-600", "ui:dwell-1000",
                                         "ui:dwell-1500", "ui:dwell-up") in rows
    assert ("ui:theme-contrast", "ui:theme-light") in rows and len(rows) == 9
    # its targets are big: at least as big as a command button
    assert min(t.w * t.h for t in layout.targets) >= 120 * 64 * 0.99
    # a dwell on a preset is a config.update; the daemon's answer is shown
    gaze.publish(Focus(index=None, target="ui:dwell-1000", source="gaze", kind="gaze", dwell=0.5), fork_id="f1",
                 subtopic=("gaze",))
    await expect(page.locator('[data-target="ui:dwell-1000"]')).to_have_class(re.compile(r"\bfocused\b"))
    await expect(page.locator("#ring")).to_be_visible()
    gaze.publish(Confirm(target="ui:dwell-1000", source="gaze", kind="gaze"), fork_id="f1", subtopic=("gaze",))
    upd = body_of(await next_msg(rig.observer, "config.update"), ConfigUpdate)
    assert (upd.section, upd.key, upd.value, upd.source) == ("inputs.gaze", "dwell_ms", 1000, "web")
    rig.daemon.publish(ConfigState(values=VALUES | {"inputs.gaze.dwell_ms": 1000}, changed="inputs.gaze.dwell_ms"))
    await expect(page.locator('.setting-value[data-key="inputs.gaze.dwell_ms"]')).to_have_text("1000 ms")
    await expect(page.locator('[data-target="ui:dwell-1000"]')).to_have_class(re.compile(r"\bcurrent\b"))
    # a caregiver's mouse: + steps from the value now; a refusal is shown, naming the key
    await page.locator('[data-target="ui:rate-up"]').click()
    upd = body_of(await next_msg(rig.observer, "config.update"), ConfigUpdate)
    assert (upd.section, upd.key, upd.value) == ("speech", "rate", 200)
    await page.locator('[data-target="ui:english-en-gb"]').click()
    upd = body_of(await next_msg(rig.observer, "config.update"), ConfigUpdate)
    assert (upd.section, upd.key, upd.value) == ("speech.voices", "en", "en-gb")
    why = "speech.rate = 500 is refused: Expected `int` <= 450 - at `$.speech.rate`"
    rig.daemon.publish(ConfigState(values=VALUES | {"inputs.gaze.dwell_ms": 1000}, error=why))
    await expect(page.locator("#settings-error")).to_have_text(why)
    # the theme: the page changes at once, and the bridge greets later pages with it
    await page.locator('[data-target="ui:theme-light"]').click()
    upd = body_of(await next_msg(rig.observer, "config.update"), ConfigUpdate)
    assert (upd.section, upd.key, upd.value) == ("renderers.web", "theme", "light")
    rig.daemon.publish(ConfigState(values=VALUES | {"renderers.web.theme": "light"}, changed="renderers.web.theme"))
    await expect(page.locator("body")).to_have_class("theme-light")
    await until(lambda: rig.bridge is not None and rig.bridge.config.theme == "light", "the bridge's theme")
    # Close (by gaze): the fork's own targets again
    gaze.publish(Confirm(target="ui:close", source="gaze", kind="gaze"), fork_id="f1", subtopic=("gaze",))
    await expect(page.locator("#settings-page")).to_be_hidden()
    await layout_where(rig, lambda b: len(b.boxes) == len(test_web.WORDS) and any(t.target == "cmd:settings"
                                                                                 for t in b.targets))
    # the page's own click on Settings opens it too, and Escape closes it; nothing is sent for either
    await page.locator('#controls [data-target="cmd:settings"]').click()
    await expect(page.locator("#settings-page")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#settings-page")).to_be_hidden()
    assert rig.bridge is not None and not [m for m in await drained(rig.daemon) if m.type == "input.command"]


@pytest.mark.timeout(120)
async def test_the_partner_page_sends_turns_and_shows_the_reply_growing(rig: Rig, open_page: Any) -> None:
    url = await rig.start_bridge()
    rig.daemon.publish(TextState(text="Hello"))
    partner = await open_page(url + "partner")
    await expect(partner.locator("#reply")).to_have_text("Hello")
    await partner.locator("#turn").fill("  How was your day?  ")
    await partner.locator("#send").click()
    cmd = await next_msg(rig.daemon, "input.command")
    assert isinstance(cmd.body, Command)
    assert (cmd.body.command, cmd.body.text, cmd.body.source, cmd.header.sender) == (
        "partner", "How was your day?", "partner", "web")
    await expect(partner.locator("#sent")).to_have_text("sent")
    await expect(partner.locator("#partner-said")).to_have_text("How was your day?")
    # the reply grows: the whole text, then what the model adds
    rig.daemon.publish(TextState(text="It was", partner="How was your day?"))
    rig.daemon.publish(TextAuto(text=" lovely", words=["lovely"]))
    await expect(partner.locator("#reply")).to_have_text("It was lovely")
    # the partner's socket takes turns only: no selecting, no commands, no empty or overlong turns
    async def ask(event: dict[str, Any]) -> dict[str, Any]:
        return await partner.evaluate("""(ev) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/partner/ws`);
            ws.onmessage = (m) => {
                const d = JSON.parse(m.data);
                if (d.type === "ack" || d.type === "error") { ws.close(); resolve(d); } };
            ws.onopen = () => ws.send(JSON.stringify(ev)); })""", event)
    for event, name in (({"type": "input.select", "fork_id": "f1", "body": {"index": 0}, "ref": 1}, "UNKNOWN_TYPE"),
                        ({"type": "input.command", "body": {"command": "new"}, "ref": 2}, "UNKNOWN_TYPE"),
                        ({"type": "partner", "body": {"text": "   "}, "ref": 3}, "BAD_VALUE"),
                        ({"type": "partner", "body": {"text": "x" * (PARTNER_MAX_CHARS + 1)}, "ref": 4}, "BAD_VALUE")):
        reply = await ask(event)
        assert reply["type"] == "error" and reply["name"] == name and reply["ref"] == event["ref"], (event, reply)
    assert not [m for m in await drained(rig.daemon) if m.type.startswith("input.")]
    # it is sent no fork, no layout, nothing but the text
    got = await partner.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/partner/ws`), seen = [];
        ws.onmessage = (m) => { const d = JSON.parse(m.data); seen.push(d.topic === undefined ? d.type : d.header.type);
                                if (seen.length === 2) { ws.close(); resolve(seen); } }; })""")
    assert got == ["hello", "text.state"]
    open_fork(rig, "f2")
    rig.daemon.publish(TextState(text="It was lovely, thanks"))
    await expect(partner.locator("#reply")).to_have_text("It was lovely, thanks")
    held = await partner.evaluate("() => JSON.stringify(razvilkaPartner.state.text)")
    assert held == json.dumps("It was lovely, thanks")


# ====================================================================== the adapters apply config.state
def test_switch_scanning_takes_a_changed_interval_at_once() -> None:
    from test_scan_switch import DAEMON, RENDERER, bodies, fork, keyboard_layout, msg

    from razvilka.inputs.config import KeyboardConfig
    from razvilka.inputs.keyboard import build_keymap, make_interpreter
    from razvilka.inputs.scan import ScanConfig
    from razvilka.inputs.scanswitch import ScanInterpreter, with_scanning

    cfg = KeyboardConfig()
    interp, _ = with_scanning(ScanConfig(interval_ms=1000), "auto", make_interpreter(cfg, build_keymap(cfg, "x11")),
                              "inputs.keyboard.keys")
    assert isinstance(interp, ScanInterpreter)
    ms = 1e6
    f1 = fork(["the", "a", "an"])
    interp.follow(msg(f1, "f1"), 0)
    assert bodies(interp.follow(msg(keyboard_layout(f1), "f1", RENDERER), int(10 * ms)))
    assert interp.deadline_ns == int(1010 * ms)
    # another setting, or a state that changed none (a late joiner's retained one), leaves the interval
    for state in (ConfigState(values=VALUES | {"scan.interval_ms": 400}, changed="gating.k"),
                  ConfigState(values=VALUES | {"scan.interval_ms": 400})):
        interp.follow(msg(state, None, DAEMON), int(20 * ms))
        assert interp.scan.interval_ms == 1000
    # the person changed it: the next highlight moves after the new interval
    note = interp.follow(msg(ConfigState(values=VALUES | {"scan.interval_ms": 400}, changed="scan.interval_ms"),
                             None, DAEMON), int(30 * ms)).note
    assert note == "scan.interval_ms=400" and interp.scan.interval_ms == 400
    assert bodies(interp.tick(int(1010 * ms)))
    assert interp.deadline_ns == int(1410 * ms)


# ====================================================================== everything real
class LiveGaze(Loop):
    """The real loop of tests/test_gaze_targets.py, with the gaze replayed in real time: the bus times of the
    adapter's focus and confirm messages are then the times the person looked."""

    async def look_live(self, segments: list[tuple[float, tuple[float, float] | None]],
                        screen: tuple[float, float]) -> None:
        scale = (SCREEN[0] / screen[0], SCREEN[1] / screen[1])
        self.gaze.t = pylsl.local_clock()
        t, xy = self.gaze.samples([(s, None if p is None else (p[0] * scale[0], p[1] * scale[1])) for s, p in segments])
        data = np.column_stack([xy[:, 0], xy[:, 1], np.full(len(t), 3.0), xy[:, 0], xy[:, 1], np.full(len(t), 3.0)])
        block = 3  # 50 ms at 60 Hz: each block goes out when the tracker would have sent it
        for s in range(0, len(t), block):
            ahead = t[s] - pylsl.local_clock()
            if ahead > 0:
                await asyncio.sleep(ahead)  # a tracker's pace, not a wait for an event
            push(self.outlet, t[s:s + block], data[s:s + block].astype(np.float32))

    async def dwell_live(self, fork_id: str, key: int | str, seconds: float, since: int = 0) -> float:
        """Look away, then at ``key`` for ``seconds`` in real time; the dwell (s) from the adapter's first focus
        on it to its confirm."""
        x, y, body = await self.layout_with(fork_id, key, since)
        mark = await self.mark()
        await self.look_live([(0.3, (5.0, 5.0)), (seconds, (x, y)), (0.3, (5.0, 5.0))], (body.screen_w, body.screen_h))
        target = None if isinstance(key, int) else key
        index = key if isinstance(key, int) else None
        confirm = await self.wait(lambda m: isinstance(m.body, Confirm) and m.header.fork_id == fork_id
                                  and m.body.target == target, f"a gaze confirm of {key}", mark)
        first = next(m for m in self.log[mark:] if isinstance(m.body, Focus) and m.body.source == "gaze"
                     and m.body.target == target and m.body.index == index)
        return (confirm.header.ts_ns - first.header.ts_ns) / 1e9


@pytest.fixture
async def live(start_daemon: Any, open_page: Any, runtime_dir: Path,
               audio_server: dict[str, str]) -> AsyncIterator[LiveGaze]:  # noqa: F811
    (runtime_dir / "phrases.toml").write_text('[phrases]\nyes = "Yes."\ntea = "Tea, please."\n', encoding="utf-8")
    config_file = runtime_dir / "config.toml"
    daemon = await start_daemon(daemon={"prompt": "My favourite animal at the zoo is the"},
                                speech={"engine": "espeak-ng", "rate": 300},
                                build={"output_env": audio_server, "config_file": config_file})
    async with gaze_loop(daemon, open_page, ["fork.", "text.", "daemon.", "input.", "render.layout.", "source.status.",
                                             "config.state.", "phrases.state."], LiveGaze,
                         page={"viewport": {"width": 1280, "height": 1500}}, dwell_ms=600, rest_ms=0.0) as loop:
        yield loop


@pytest.mark.model
@pytest.mark.timeout(300)
async def test_a_quick_phrase_chosen_by_a_dwell_is_spoken(live: LiveGaze, audio_server: dict[str, str]) -> None:  # noqa: F811
    fork_id, _ = await live.fork(0, what="the first fork")
    await expect(live.page.locator("#phrases .phrase")).to_have_text(["Yes.", "Tea, please."])
    before = live.daemon.daemon.output._speaker
    await live.dwell_live(fork_id, "phrase:tea", 1.0)
    said = await _spoken(live.daemon, before.process if before is not None else None)
    assert isinstance(said.args, list) and said.args[-1] == "Tea, please."
    await asyncio.to_thread(wait_for_stream, audio_server)  # really playing on the audio server


@pytest.mark.model
@pytest.mark.timeout(300)
async def test_the_partner_pages_turn_is_the_next_forks_context(live: LiveGaze, open_page: Any) -> None:
    await live.fork(0, what="the first fork")
    partner = await open_page(live.page.url + "partner")
    mark = await live.mark()
    await partner.locator("#turn").fill("Do you want to come to the zoo tomorrow?")
    await partner.locator("#send").click()
    await expect(partner.locator("#sent")).to_have_text("sent")
    state = body_of(await live.wait(lambda m: isinstance(m.body, TextState) and m.body.partner != "",
                                    "text.state with the turn", mark), TextState)
    assert state.partner == "Do you want to come to the zoo tomorrow?"
    _, fork = await live.fork(mark, what="the fork after the turn")
    # the next fork replies to the turn: the model reads the dialogue (docs/daemon.md), then the person's text
    assert fork.reason == "partner", fork.reason
    reads, framed = model_reads(live.daemon), dialogue([Turn("partner", "Do you want to come to the zoo tomorrow?")])
    assert framed in reads, reads
    assert reads[reads.rindex(framed) + len(framed):].strip() == state.text.strip(), reads
    # the person's view shows the turn above the text; the partner's page shows the reply as it grows
    await expect(live.page.locator("#partner-text")).to_have_text("Do you want to come to the zoo tomorrow?")
    await expect(partner.locator("#reply")).to_have_text(state.text)


@pytest.mark.model
@pytest.mark.timeout(400)
async def test_a_dwell_setting_changed_by_dwell_changes_the_next_dwell(live: LiveGaze, runtime_dir: Path) -> None:
    fork_id, _ = await live.fork(0, what="the first fork")
    before = await live.dwell_live(fork_id, "cmd:settings", 1.2)
    await expect(live.page.locator("#settings-page")).to_be_visible()
    mark = await live.mark()
    chosen = await live.dwell_live(fork_id, "ui:dwell-1500", 1.2)
    state = await live.wait(lambda m: isinstance(m.body, ConfigState) and m.body.changed == "inputs.gaze.dwell_ms",
                            "config.state with the new dwell", mark)
    assert isinstance(state.body, ConfigState)
    assert state.body.values["inputs.gaze.dwell_ms"] == 1500 and state.body.error == ""
    await until(lambda: live.adapter.cfg.dwell_ms == 1500, "the adapter applies the new dwell")
    await expect(live.page.locator('.setting-value[data-key="inputs.gaze.dwell_ms"]')).to_have_text("1500 ms")
    saved = tomllib.loads((runtime_dir / "config.toml").read_text(encoding="utf-8"))
    assert saved["inputs"]["gaze"]["dwell_ms"] == 1500
    # the next selection (Close) takes the new dwell; a look shorter than it chooses nothing
    mark = await live.mark()
    x, y, body = await live.layout_with(fork_id, "ui:close")  # the overlay's layout: the newest with Close
    await live.look_live([(0.3, (5.0, 5.0)), (1.0, (x, y)), (0.3, (5.0, 5.0))], (body.screen_w, body.screen_h))
    after = await live.dwell_live(fork_id, "ui:close", 2.0)
    confirms = [m.body.target for m in live.log[mark:] if isinstance(m.body, Confirm)]
    assert confirms == ["ui:close"], confirms  # the 1 s look chose nothing
    await expect(live.page.locator("#settings-page")).to_be_hidden()
    print(f"\ndwell before {before:.3f} s, at the change {chosen:.3f} s, after {after:.3f} s")
    # focus comes once a fixation has lasted min_fixation_ms (50), so a dwell shows as about dwell_ms - 0.05 s;
    # the adapter drains every poll_ms, a replayed block is 50 ms: a margin for both, and for a busy machine
    assert 0.4 <= before <= 0.9 and 0.4 <= chosen <= 0.9, (before, chosen)  # 600 ms
    assert 1.3 <= after <= 1.9, after                                       # 1500 ms
    assert 0.7 <= after - before <= 1.2, (before, after)                    # 900 ms longer
