"""Switch scanning in the browser view, end to end: the real daemon and model, the web bridge with the
page in headless Chromium, and ``razvilka input keyboard --scan step|auto`` as its own process under
Xvfb, scanning the layout the page publishes (``scan.renderer = "web"``). xdotool presses the switches
(issue 16: "It writes a phrase with automatic scanning in the terminal view, and with step scanning in
the browser view"; tests/test_tui_targets.py has the terminal view's).

The person follows the highlight on the bus (tests/test_scan_switch.py ``Person``) and, before every
press, the page must draw that highlight: the scanned row's elements carry ``scan-row``, the scanned
item ``focused``.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import test_web
from daemon_fixtures import DEFAULT_PROMPT, RunningDaemon, StartDaemon, next_of
from key_helpers import XServer, cli_command, cli_env
from playwright.async_api import Page, expect
from test_scan_switch import Person

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import Focus, ForkDecided, ForkOpen, Message, SourceStatus, TextState

pytestmark = [pytest.mark.model, pytest.mark.browser, pytest.mark.x11, pytest.mark.timeout(600)]
browser, open_page = test_web.browser, test_web.open_page  # the fixtures of test_web.py

#: The word the person spells letter by letter (no candidate offers it at the first fork).
SPELLED = "kiwi"

#: The page's highlight for a focus: (target id or "", group ids) -> whether the DOM shows it. Candidates are
#: ``#cloud .cand`` (data-index), every other target ``[data-target]``; a letter may be drawn twice (likeliest
#: row and alphabet): the row scanned is one of them, the item any one of them.
SHOWS = """([target, group]) => {
  const id = (el) => el.dataset.target || `cand:${el.dataset.index}`;
  const all = [...document.querySelectorAll('#cloud .cand, [data-target]')].filter((el) => el.getClientRects().length);
  const rowIds = all.filter((el) => el.classList.contains('scan-row')).map(id);
  if (group.length) return rowIds.length === group.length && group.every((t) => rowIds.includes(t));
  return rowIds.length === 0 && all.some((el) => id(el) === target && el.classList.contains('focused'));
}"""


class PageWatcher(Person):
    """A :class:`Person` who looks at the page: with ``look``, before each press the page must draw the
    highlight the adapter published last (the row as ``scan-row``, the item as ``focused``). Step mode
    only: there the highlight waits for the press, so what the page draws at that moment is certain.

    ``pending``: messages seen before the person started watching, read first (in step mode the first
    highlight came while the adapter started, and nothing moves until a press)."""

    def __init__(self, watch: BusClient, x: XServer, page: Page, *, look: bool, **kw: Any) -> None:
        super().__init__(watch, x, **kw)
        self.page, self.look = page, look
        self.pending: list[Message] = []
        self.shown: Focus | None = None  # the adapter's last focus on the open fork
        self.checked = 0                 # highlights the page was seen to draw

    async def next(self, deadline: float, what: str) -> Message | None:
        if self.pending:
            m: Message | None = self.pending.pop(0)
            if m is not None and isinstance(m.body, ForkOpen):
                self.fork_id = m.header.fork_id
        else:
            m = await super().next(deadline, what)
        if m is not None and isinstance(m.body, Focus) and m.header.sender == self.sender:
            self.shown = m.body if m.header.fork_id == self.fork_id else None
        return m

    async def press(self, key: str) -> None:
        f = self.shown
        if self.look and f is not None and (f.target or f.group):
            try:
                await self.page.wait_for_function(SHOWS, arg=[f.target or "", list(f.group)], timeout=5000)
            except Exception as exc:  # playwright's TimeoutError: say what the page shows instead
                drawn = await self.page.evaluate(
                    """() => [...document.querySelectorAll('.scan-row, .focused')]
                         .map((el) => `${el.dataset.target || 'cand:' + el.dataset.index}.${el.className}`)""")
                raise AssertionError(f"the page does not draw the scan highlight {f.target or f.group}: "
                                     f"it draws {drawn}") from exc
            self.checked += 1
        await super().press(key)


@dataclass
class WebScan:
    """The running rig: the daemon, the page, a watcher on the bus and the adapter process."""

    daemon: RunningDaemon
    page: Page
    watch: BusClient
    proc: asyncio.subprocess.Process
    log: Path
    early: list[Message]  # what the watcher saw while the adapter started

    async def first_fork(self, timeout: float = 120.0) -> str:
        """The open fork's id: from the bus snapshot, or the next fork.open."""
        for m in await self.watch.snapshot(timeout=5.0):
            if isinstance(m.body, ForkOpen):
                assert m.header.fork_id is not None
                return m.header.fork_id
        opened = await next_of(self.watch, "fork.open", timeout)
        assert opened.header.fork_id is not None
        return opened.header.fork_id

    def adapter_log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def web_scan(start_daemon: StartDaemon, open_page: Any, display: XServer, tmp_path: Path,
                   mode: str, *settings: str) -> AsyncIterator[WebScan]:
    """The daemon, the bridge and its page, and ``razvilka input keyboard --scan <mode>`` following the
    page's layout; ``settings``: more ``--set`` values for the adapter."""
    from razvilka.renderers.config import WebConfig
    from razvilka.renderers.web.bridge import SUBSCRIBE as WEB_SUBSCRIBE
    from razvilka.renderers.web.bridge import WebBridge

    daemon = await start_daemon()
    watch = await daemon.client("watch", subscribe=["fork.", "input.", "text.state", "source.status."])
    web = await daemon.client("web", subscribe=list(WEB_SUBSCRIBE), role="renderer")
    bridge = WebBridge(WebConfig(port=0), web)
    page = await open_page(await bridge.start())
    log = tmp_path / "adapter.log"
    sets = [a for s in ("scan.renderer=web", *settings) for a in ("--set", s)]
    with log.open("wb") as err:  # a file, not a pipe: nobody reads the log while it runs
        proc = await asyncio.create_subprocess_exec(
            *cli_command("--set", f"bus.runtime_dir={daemon.config.bus.runtime_dir}", *sets,
                         "input", "keyboard", "--scan", mode),
            env=cli_env(tmp_path, DISPLAY=display.display), stdout=asyncio.subprocess.DEVNULL, stderr=err)
    rig = WebScan(daemon, page, watch, proc, log, [])
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:  # until the adapter listens to the X display: keys pressed from then on count
            m = await watch.recv(max(0.0, deadline - loop.time()))
            if m is None:
                raise AssertionError(f"the keyboard adapter did not start: {rig.adapter_log()}")
            rig.early.append(m)
            if isinstance(m.body, SourceStatus) and m.body.source == "keyboard" and m.body.state == "ok":
                break
        yield rig
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0, rig.adapter_log()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await bridge.close()


async def write_a_phrase(rig: WebScan, person: PageWatcher, *, advance: str | None, timeout: float) -> None:
    """The person takes the second likeliest word, spells SPELLED and ends it with the space key; the
    daemon (real model) writes both words, and the page shows the spelled one as the person's."""
    first = await rig.first_fork()
    person.fork_id = first
    if advance is not None:  # step: the first highlight is waiting; auto: the next one comes anyway
        person.pending = [m for m in rig.early if m.header.fork_id == first]
    opened = next((m.body for m in [*await rig.watch.snapshot(timeout=5.0), *rig.early]
                   if isinstance(m.body, ForkOpen) and m.header.fork_id == first), None)
    assert opened is not None, f"fork {first} opened, but the bus keeps no fork.open for it"
    second = sorted(opened.candidates, key=lambda c: (-c.prob, c.index))[1]  # scanned second among them
    try:
        chosen = await person.choose(f"cand:{second.index}", timeout=timeout, advance=advance)
        assert chosen.source == "keyboard" and chosen.kind == "key"
        decided = await next_of(rig.watch, ForkDecided, timeout, where=lambda d: d.header.fork_id == first)
        assert decided.body.index == second.index and "keyboard" in decided.body.sources
        word = decided.body.words[0].strip()
        for ch in SPELLED:
            await person.choose(f"key:{ch}", timeout=timeout, advance=advance)
        await person.choose("key:space", timeout=timeout, advance=advance)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; adapter log: {rig.adapter_log()}") from None
    typed = await next_of(rig.watch, ForkDecided, timeout, where=lambda d: d.body.target == "key:space")
    assert typed.body.words == [SPELLED] and typed.body.typed
    text = await next_of(rig.watch, TextState, 60, where=lambda t: t.body.text.rstrip().endswith(SPELLED))
    tail = text.body.text[len(DEFAULT_PROMPT):]
    assert tail.split()[-1] == SPELLED and word in tail, tail
    await expect(rig.page.locator("#text .origin-human").last).to_contain_text(SPELLED)


async def test_two_keys_step_scan_the_browser_view_and_write_a_phrase(
        start_daemon: StartDaemon, open_page: Any, display: XServer, tmp_path: Path) -> None:
    """Step scanning (Right advances, Enter selects) over the layout the page publishes; before every
    press the page draws the highlight the adapter published."""
    async with web_scan(start_daemon, open_page, display, tmp_path, "step") as rig:
        person = PageWatcher(rig.watch, display, rig.page, look=True, switch="Return")
        await write_a_phrase(rig, person, advance="Right", timeout=180)
        assert person.checked == person.presses >= 6  # at least one press for each of the six selections


async def test_one_key_scans_the_browser_view_automatically_and_writes_a_phrase(
        start_daemon: StartDaemon, open_page: Any, display: XServer, tmp_path: Path) -> None:
    """Automatic scanning with one key (space) as the only switch, over the same page."""
    async with web_scan(start_daemon, open_page, display, tmp_path, "auto",
                        "scan.interval_ms=900", "scan.loops=4") as rig:
        person = PageWatcher(rig.watch, display, rig.page, look=False)
        await write_a_phrase(rig, person, advance=None, timeout=240)
        assert person.presses >= 6
