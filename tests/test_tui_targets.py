"""The terminal view's targets (protocol 1.4): command row and on-screen keyboard, drawn, laid out
(``render.layout`` in cells), highlighted by other sources' focus and scanned rows, and clicked.

Textual's pilot drives the app headless against a real bus; a test client plays the daemon by
publishing real protocol messages, and an observer decodes what the view publishes. The screen
is read through Textual's public API (each widget's rendered lines at its region), so a layout
box is checked against the text really drawn at its cells.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from bus_helpers import drained
from conftest import ClientFactory
from key_helpers import XServer, display, xserver  # noqa: F401 - fixtures
from tui_screen import screen_cells, screen_segments, screen_text, styles_at

from razvilka.inputs.scan import ScanConfig
from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import (
    Candidate,
    Command,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkOpen,
    Layout,
    Letter,
    Message,
    Phrase,
    PhrasesState,
    Select,
    TargetBox,
    TextState,
)
from razvilka.protocol.targets import ALPHABETS
from razvilka.renderers.config import TuiConfig
from razvilka.renderers.screen import ScreenRow, fork_rows, target_rows
from razvilka.renderers.tui.view import SUBSCRIBE, TuiApp

SIZE = (120, 40)
WORDS = [("flowers", 0.18), ("letter", 0.46), ("dinner", 0.12), ("gift", 0.04)]  # not sent likeliest first
LETTERS = [(" ", 0.05), ("e", 0.30), ("a", 0.20), ("o", 0.12), ("T", 0.08), ("3", 0.06), ("i", 0.04)]


async def until(pilot: Any, cond: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.03)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {what or cond}")


def fork(words: list[tuple[str, float]] = WORDS, letters: list[tuple[str, float]] = LETTERS, **kw: Any) -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(words)],
                    context="Dear Anna, thank you for the lovely",
                    letters=[Letter(ch=c, prob=p) for c, p in letters], **kw)


async def next_of(client: BusClient, kind: str, sender: str = "tui", timeout: float = 5.0) -> Message:
    """The next ``kind`` message from ``sender``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await client.recv(timeout=max(0.01, deadline - time.monotonic()))
        if msg is not None and msg.type == kind and msg.header.sender == sender:
            return msg
    raise AssertionError(f"no {kind} from {sender}")


async def make_app(ipc_clients: ClientFactory, **cfg: Any) -> TuiApp:
    client = await ipc_clients("tui", role="renderer", subscribe=list(SUBSCRIBE))
    return TuiApp(client, TuiConfig(refresh_ms=100, **cfg))


async def next_layout(client: BusClient) -> tuple[str | None, Layout]:
    """The view's next ``render.layout``: its fork and its body."""
    msg = await next_of(client, "render.layout")
    assert isinstance(msg.body, Layout)
    return msg.header.fork_id, msg.body


async def newest_layout(client: BusClient, last: Layout) -> Layout:
    """The view's newest ``render.layout`` so far (``last`` when none came since): the view publishes a new one
    whenever its targets move (a loaded machine's missed heartbeats change the sources panel, and with it
    where the rest of the screen is drawn)."""
    for msg in await drained(client, 0.1):
        if isinstance(msg.body, Layout):
            last = msg.body
    return last


def rows_of(layout: Layout) -> list[list[str]]:
    """The layout's targets (candidate boxes included) in scan order: rows by ``row``, items by ``col``."""
    items = [(b.row, b.col, f"cand:{b.index}") for b in layout.boxes]
    items += [(t.row, t.col, t.target) for t in layout.targets]
    rows: dict[int, list[tuple[int, str]]] = {}
    for row, col, target in items:
        rows.setdefault(row, []).append((col, target))
    return [[t for _, t in sorted(rows[r])] for r in sorted(rows)]


def rule(body: ForkOpen, *, paused: bool = False, phrases: tuple[str, ...] = ()) -> list[list[str]]:
    """renderers/screen.py's rows for ``body``, less Settings (the terminal view's settings are its file)."""
    rows = [[t for t in row if t != "cmd:settings"] for row in target_rows(fork_rows(body, paused=paused,
                                                                                     phrases=phrases))]
    return [row for row in rows if row]


def drawn_where_published(app: TuiApp, layout: Layout) -> None:
    """Every box of ``layout`` is where its label (a candidate: its word) is drawn on screen."""
    cells = screen_cells(app)
    for t in layout.targets:
        drawn = cells[int(t.y)][int(t.x):int(t.x + t.w)]
        assert t.label and t.label in drawn, (t, drawn)
    fork = app.state.fork
    assert fork is not None or not layout.boxes
    for b in layout.boxes:
        word = next(c.word.strip() for c in fork.candidates if c.index == b.index)  # type: ignore[union-attr]
        assert word in cells[int(b.y)][int(b.x):int(b.x + b.w)], b


PHRASES = PhrasesState(phrases=[Phrase(id="yes", text="Yes, please."), Phrase(id="thirsty", text="I am thirsty."),
                                Phrase(id="f-1a", text="Could you open the window a little, please?", kind="frequent")])


async def test_the_layout_is_the_screen_rule_in_scan_order(ipc_clients: ClientFactory) -> None:
    """The published rows are renderers/screen.py's for the same fork (the browser's and the benchmark's):
    Latin, Cyrillic, a typed prefix, the quick phrases, and paused."""
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        latin = fork()
        daemon.publish(latin, fork_id="f-1")
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-1" and layout.renderer == "tui"
        assert (layout.screen_w, layout.screen_h) == SIZE  # cells: the terminal's size
        rows = rows_of(layout)
        assert rows == rule(latin)
        # as the rule says: candidates likeliest first; the likeliest letters (upper case folded, what no
        # key types left out, no space before a letter is typed); the commands; the alphabet in rows of 7
        assert rows[0] == ["cand:1", "cand:0", "cand:2", "cand:3"]
        assert rows[1] == ["key:e", "key:a", "key:o", "key:t", "key:i"]
        assert rows[2][:4] == ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"] and "cmd:speak_all" in rows[2]
        assert [t[4:] for row in rows[3:] for t in row] == [*ALPHABETS["latin"], "'", "-"]
        labels = {t.target: t.label for t in layout.targets}
        assert labels["cmd:back"] == "Back" and labels["cmd:speak_all"] == "Speak all" and labels["key:e"] == "e"
        drawn_where_published(app, layout)
        assert "likeliest" in screen_text(app) and "typed" not in screen_text(app)

        # the quick phrases (retained phrases.state) come last, in rows of 4
        daemon.publish(PHRASES)
        fork_id, layout = await next_layout(observer)
        phrases = tuple(p.id for p in PHRASES.phrases)
        assert fork_id == "f-1" and rows_of(layout) == rule(latin, phrases=phrases)
        assert rows_of(layout)[-1] == ["phrase:yes", "phrase:thirsty", "phrase:f-1a"]
        labels = {t.target: t.label for t in layout.targets}
        assert labels["phrase:yes"] == "Yes, please." and labels["phrase:f-1a"].endswith("…")
        drawn_where_published(app, layout)

        # a typed prefix: space (where " " ranks), delete and accept join
        typed = fork(words=[("flowers", 0.5), ("flour", 0.2)], letters=[("o", 0.5), (" ", 0.3), ("a", 0.1)],
                     prefix="fl")
        daemon.publish(typed, fork_id="f-2")
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-2" and rows_of(layout) == rule(typed, phrases=phrases)
        assert rows_of(layout)[1:3] == [["key:o", "key:space", "key:a"], ["key:space", "key:delete", "key:accept"]]
        drawn_where_published(app, layout)
        assert "typed" in screen_text(app)

        # a Cyrillic fork shows the Cyrillic alphabet (5 rows of 7)
        cyrillic = fork(words=[("привет", 0.5), ("мир", 0.3)], letters=[("е", 0.4)], script="cyrillic")
        daemon.publish(cyrillic, fork_id="f-3")
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-3" and rows_of(layout) == rule(cyrillic, phrases=phrases)
        assert "".join(t[4:] for row in rows_of(layout)[3:8] for t in row) == ALPHABETS["cyrillic"] + "'-"
        drawn_where_published(app, layout)

        # paused: Resume alone, under the open fork
        daemon.publish(DaemonStatus(state="paused", model="m", mode="keys", k=4))
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-3" and rows_of(layout) == rule(cyrillic, paused=True) == [["cmd:resume"]]
        drawn_where_published(app, layout)

        # a resize moves the targets: the layout follows, in the new size
        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        fork_id, layout = await next_layout(observer)
        assert rows_of(layout) == rule(cyrillic, phrases=phrases)
        await pilot.resize_terminal(100, 44)
        fork_id, layout = await next_layout(observer)
        assert (layout.screen_w, layout.screen_h) == (100, 44) and fork_id == "f-3"
        assert rows_of(layout) == rule(cyrillic, phrases=phrases)
        drawn_where_published(app, layout)


async def test_focus_on_a_target_and_a_scanned_row_are_drawn(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    scan = await ipc_clients("keyboard", role="input")
    observer = await ipc_clients("observer", subscribe=["render.layout."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(fork(), fork_id="f-3")
        layout = (await next_layout(observer))[1]
        where: dict[str, TargetBox] = {}  # a target's first box (the likeliest letters' row for those)
        copies: dict[str, TargetBox] = {}  # a letter's box in the alphabet, when it is drawn twice
        for t in layout.targets:
            (copies if t.target in where else where)[t.target] = t

        def looks(target: str, boxes: dict[str, TargetBox] = where) -> tuple[bool, bool]:
            """(reversed, underlined) at the middle of a target's box."""
            t = boxes[target]
            style = styles_at(app, int(t.x + t.w // 2), int(t.y))
            return bool(style.reverse), bool(style.underline)

        assert looks("key:e") == (False, False)
        row = ["key:e", "key:a", "key:o", "key:t", "key:i"]
        scan.publish(Focus(index=None, group=row, source="keyboard", kind="switch"), fork_id="f-3")
        await until(pilot, lambda: looks("key:o") == (False, True), what="the scanned row lit")
        assert all(looks(t)[1] for t in row) and not looks("key:b")[1] and not looks("cmd:back")[1]
        # the row scanned is lit, not the alphabet's copies of its letters
        assert set(copies) == set(row) and not any(looks(t, copies)[1] for t in row)
        # one target focused is lit wherever it is drawn: either box selects it
        scan.publish(Focus(index=None, target="key:e", source="keyboard", kind="switch"), fork_id="f-3")
        await until(pilot, lambda: looks("key:e")[0] and looks("key:e", copies)[0], what="both boxes of e")

        scan.publish(Focus(index=None, target="cmd:more", source="keyboard", kind="switch"), fork_id="f-3")
        await until(pilot, lambda: looks("cmd:more")[0], what="the focused command")
        assert not looks("key:o")[1] and not looks("cmd:back")[0]
        assert "cmd more  (focus from keyboard)" in screen_text(app)

        # a candidate by target is drawn as the number keys' focus is
        scan.publish(Focus(index=None, target="cand:2", source="keyboard", kind="switch"), fork_id="f-3")
        await until(pilot, lambda: "3▸" in screen_text(app), what="the focused candidate")
        assert not looks("cmd:more")[0]

        # dwell progress fills the focused key from the left
        scan.publish(Focus(index=None, target="key:q", source="gaze", kind="gaze", dwell=0.5), fork_id="f-3")
        await until(pilot, lambda: looks("key:q")[0] is False and app.state.target == "key:q", what="dwell")
        q = where["key:q"]
        left = styles_at(app, int(q.x), int(q.y))
        right = styles_at(app, int(q.x + q.w - 1), int(q.y))
        assert left.bgcolor != right.bgcolor and right.reverse and not left.reverse

        # the next fork clears every highlight
        daemon.publish(fork(), fork_id="f-4")
        await until(pilot, lambda: app.state.fork is not None and app.state.fork.fork_id == "f-4")
        await until(pilot, lambda: not any(looks(t)[0] or looks(t)[1] for t in where), what="no highlight")
        assert not any(looks(t, copies)[0] or looks(t, copies)[1] for t in copies)


async def test_paused_shows_resume_alone_also_between_forks(ipc_clients: ClientFactory) -> None:
    """Paused, the daemon takes nothing but Resume: the layout is Resume alone, under the open fork; paused with
    no fork open (between forks) under the last fork seen, so a scanner or a gaze adapter still reaches it."""
    daemon = await ipc_clients("daemon", role="daemon")
    scan = await ipc_clients("keyboard", role="input")
    observer = await ipc_clients("observer", subscribe=["render.layout.", "input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        daemon.publish(fork(), fork_id="f-5")
        rows = rows_of((await next_layout(observer))[1])
        assert "cmd:pause" in rows[2] and "cmd:resume" not in rows[2]
        assert "Pause" in screen_text(app) and "Resume" not in screen_text(app)

        daemon.publish(DaemonStatus(state="paused", model="m", mode="keys", k=4, detail="rest"))
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-5" and rows_of(layout) == [["cmd:resume"]] and not layout.boxes
        text = screen_text(app)
        assert "Resume" in text and "resting (looked away): Resume continues" in text and "Pause" not in text

        # a click on Resume selects it
        resume = next(t for t in layout.targets if t.target == "cmd:resume")
        await pilot.click(offset=(int(resume.x + 1), int(resume.y)))
        msg = await next_of(observer, "input.select")
        assert isinstance(msg.body, Select) and msg.body.target == "cmd:resume" and msg.body.index is None
        assert msg.header.fork_id == "f-5" and msg.body.kind == "pointer"

        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        rows = rows_of((await next_layout(observer))[1])
        assert "cmd:pause" in rows[2] and rows[0][0].startswith("cand:")

        # paused between forks: the fork was decided, none is open; the Resume layout names the decided one
        daemon.publish(ForkDecided(index=1, words=["letter"], sources=["keyboard"]), fork_id="f-5")
        await until(pilot, lambda: app.state.fork is None, what="the fork decided")
        daemon.publish(DaemonStatus(state="paused", model="m", mode="keys", k=4))
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-5" and rows_of(layout) == [["cmd:resume"]]
        assert "paused: Resume continues" in screen_text(app)
        # a scanner's focus on it (naming that fork) is drawn
        scan.publish(Focus(index=None, target="cmd:resume", source="keyboard", kind="switch"), fork_id="f-5")
        # where Resume is drawn now (newest_layout says why it may have moved)
        await until(pilot, lambda: any("Resume" in d.text and d.style.reverse for d in screen_segments(app)),
                    what="Resume focused")
        # a click with no fork open sends the command itself
        resume = next(t for t in (await newest_layout(observer, layout)).targets if t.target == "cmd:resume")
        await pilot.click(offset=(int(resume.x + 1), int(resume.y)))
        msg = await next_of(observer, "input.command")
        assert isinstance(msg.body, Command) and msg.body.command == "resume"
        # resumed with no fork open: nothing names a fork to publish under
        daemon.publish(DaemonStatus(state="generating", model="m", mode="keys", k=4))
        await until(pilot, lambda: "Pause" in screen_text(app), what="resumed")
        try:
            extra = await next_of(observer, "render.layout", timeout=0.5)
        except AssertionError:
            pass
        else:
            raise AssertionError(f"a layout went out with no fork open and not paused: {extra}")


async def test_clicks_select_keys_commands_and_words(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout.", "input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(PHRASES)
        daemon.publish(fork(), fork_id="f-6")
        layout = (await next_layout(observer))[1]
        while not any(t.target.startswith("phrase:") for t in layout.targets):  # phrases.state may come second
            layout = (await next_layout(observer))[1]
        for target in ("key:e", "key:z", "key:-", "cmd:back", "cmd:new", "cmd:speak_all", "phrase:thirsty"):
            box = next(t for t in layout.targets if t.target == target)
            await pilot.click(offset=(int(box.x + box.w // 2), int(box.y)))
            msg = await next_of(observer, "input.select")
            assert isinstance(msg.body, Select) and msg.body.target == target, target
            assert msg.body.index is None and msg.header.fork_id == "f-6"
        gift = next(b for b in layout.boxes if b.index == 3)
        await pilot.click(offset=(int(gift.x + 2), int(gift.y)))
        msg = await next_of(observer, "input.select")
        assert isinstance(msg.body, Select) and msg.body.index == 3 and msg.body.target is None  # as key 4 does
        await pilot.click(offset=(0, 0))  # the status line: no target, nothing sent
        # no fork open: a command or a phrase still goes (as the input.command that does it), a key cannot
        daemon.publish(ForkDecided(index=3, words=["gift"], sources=["tui"]), fork_id="f-6")
        await until(pilot, lambda: app.state.fork is None and "waiting for the next fork" in screen_text(app),
                    what="the fork decided")
        await pilot.pause()
        # no layout goes out without a fork (render.layout names its fork), but the view knows its targets
        now = app.layout_now
        assert now is not None and now != layout and not now.boxes
        key_e = next(t for t in now.targets if t.target == "key:e")
        assert "e" in screen_cells(app)[int(key_e.y)][int(key_e.x):int(key_e.x + key_e.w)]
        await pilot.click(offset=(int(key_e.x + 1), int(key_e.y)))
        for target, command, text in (("cmd:pause", "pause", ""), ("cmd:speak_all", "speak", "all"),
                                      ("phrase:yes", "phrase", "yes")):
            box = next(t for t in now.targets if t.target == target)
            await pilot.click(offset=(int(box.x + 1), int(box.y)))
            msg = await next_of(observer, "input.command")
            assert isinstance(msg.body, Command) and (msg.body.command, msg.body.text) == (command, text), target
        assert app.published == 11


async def test_view_only_draws_targets_but_clicks_send_nothing(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout.", "input."])
    app = await make_app(ipc_clients, keys=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(fork(), fork_id="f-7")
        layout = (await next_layout(observer))[1]  # a scanner may still use this view
        box = next(t for t in layout.targets if t.target == "key:e")
        await pilot.click(offset=(int(box.x + 1), int(box.y)))
        try:
            await next_of(observer, "input.select", timeout=0.5)
        except AssertionError:
            pass
        else:
            raise AssertionError("a view-only terminal published a select")


# ---------------------------------------------------------------- end to end: one key, the terminal view, the model
@pytest.mark.model
@pytest.mark.x11
@pytest.mark.timeout(600)
async def test_one_key_scans_the_terminal_view_and_writes_a_phrase(display: XServer, daemon: Any) -> None:  # noqa: F811
    """Under Xvfb, xdotool presses one key (space) as the only switch; the keyboard adapter scans the
    terminal view's own layout automatically; the person takes the model's second likeliest word,
    spells "kiwi" on the view's keyboard and ends it with the space key. The daemon (real model)
    writes both words, and the view shows them as the person's."""
    from daemon_fixtures import DEFAULT_PROMPT
    from daemon_fixtures import next_of as next_on
    from test_scan_switch import SCANNING, Person, scanning, until_fork

    watch = await daemon.client("watch", subscribe=["fork.", "input.", "text.state"])
    kb = BusClient("keyboard", daemon.endpoints, role="input", subscribe=SCANNING,
                   heartbeat_ms=daemon.config.bus.heartbeat_ms)
    await kb.start()
    daemon.clients.append(kb)
    client = await daemon.client("tui", subscribe=list(SUBSCRIBE), role="renderer")
    app = TuiApp(client, TuiConfig(refresh_ms=100))
    auto = ScanConfig(mode="auto", interval_ms=700, loops=3)
    async with app.run_test(size=SIZE) as pilot, scanning(kb, auto) as adapter:
        await until_fork(adapter)
        first = adapter.interp.forks.fork
        assert first is not None
        def drawn() -> bool:
            return app.published_layout is not None and app.published_layout[0] == first.fork_id
        await until(pilot, drawn, timeout=30, what="the view's layout of the first fork")
        person = Person(watch, display)
        person.fork_id = first.fork_id
        second = sorted(first.candidates, key=lambda c: -c.prob)[1]  # scanned second in the candidates' row
        chosen = await person.choose(f"cand:{second.index}", timeout=120)
        assert chosen.source == "keyboard" and chosen.kind == "key"
        decided = await next_on(watch, "fork.decided", 120, where=lambda m: m.header.fork_id == first.fork_id)
        assert isinstance(decided.body, ForkDecided)
        assert decided.body.index == second.index and "keyboard" in decided.body.sources
        word = decided.body.words[0].strip()
        for ch in "kiwi":
            await person.choose(f"key:{ch}", timeout=180)
        await person.choose("key:space", timeout=180)
        typed = await next_on(watch, "fork.decided", 180, where=lambda m: getattr(m.body, "target", "") == "key:space")
        assert isinstance(typed.body, ForkDecided) and typed.body.words == ["kiwi"] and typed.body.typed
        text = await next_on(watch, "text.state", 60,
                             where=lambda m: getattr(m.body, "text", "").rstrip().endswith("kiwi"))
        assert isinstance(text.body, TextState)
        tail = text.body.text[len(DEFAULT_PROMPT):]
        assert tail.split()[-1] == "kiwi" and word in tail, tail
        def spelled_is_theirs() -> bool:
            return any(origin == "human" and "kiwi" in piece for piece, origin in app.state.segments())
        await until(pilot, spelled_is_theirs, timeout=30, what="the spelled word drawn as the person's")
        assert "kiwi" in screen_text(app)
        assert person.presses >= 6  # a switch press (at least) for each of the six selections, nothing else


@pytest.mark.model
@pytest.mark.x11
@pytest.mark.timeout(300)
async def test_one_key_resumes_the_terminal_view_paused_between_forks(display: XServer,  # noqa: F811
                                                                      start_daemon: Any) -> None:
    """Paused right after a choice (pre-generation off: the next fork waits for the resume), no fork is open.
    The terminal view publishes Resume alone under the decided fork; the keyboard adapter, one key scanning
    automatically, scans it there; xdotool presses the key when Resume is lit, and the daemon (real model)
    resumes and opens the next fork."""
    from daemon_fixtures import next_of as next_on
    from test_scan_switch import SCANNING, Person, scanning, until_fork

    d = await start_daemon(daemon={"pregenerate": False})
    watch = await d.client("watch", subscribe=["fork.", "input.", "daemon.status", "render.layout."])
    helper = await d.client("helper", role="input")
    kb = BusClient("keyboard", d.endpoints, role="input", subscribe=SCANNING, heartbeat_ms=d.config.bus.heartbeat_ms)
    await kb.start()
    d.clients.append(kb)
    app = TuiApp(await d.client("tui", subscribe=list(SUBSCRIBE), role="renderer"), TuiConfig(refresh_ms=100))
    async with app.run_test(size=SIZE) as pilot, \
            scanning(kb, ScanConfig(mode="auto", interval_ms=400, loops=3)) as adapter:
        await until_fork(adapter)
        first = adapter.interp.forks.fork
        assert first is not None
        await until(pilot, lambda: app.published_layout is not None and app.published_layout[0] == first.fork_id,
                    timeout=30, what="the view's layout of the first fork")
        # one sender's order is kept: the pause is read right after the choice, before any next fork opens
        helper.publish(Select(index=0, source="helper", kind="key"), fork_id=first.fork_id)
        helper.publish(Command(command="pause", source="helper"))
        # the daemon pauses at once and decides the fork from its queue: the view may first show Resume on the
        # open fork; once the fork is decided (none open), it shows Resume under the decided one
        await next_on(watch, "fork.decided", 30, where=lambda m: m.header.fork_id == first.fork_id)
        rest = await next_on(watch, Layout, 30, where=lambda m: m.header.fork_id == first.fork_id
                             and [t.target for t in m.body.targets] == ["cmd:resume"])
        assert not rest.body.boxes and app.state.fork is None and app.state.paused
        person = Person(watch, display)
        person.fork_id = first.fork_id  # the screen shows Resume, named by the decided fork
        chosen = await person.choose("cmd:resume", timeout=60)
        assert chosen.source == "keyboard" and chosen.index is None
        resumed = await next_on(watch, DaemonStatus, 30, where=lambda m: m.body.state != "paused")
        nxt = await next_on(watch, "fork.open", 60)
        assert nxt.header.fork_id != first.fork_id and resumed.header.ts_ns < nxt.header.ts_ns
        assert person.presses == 1  # Resume alone: one row of one target, one press
        await until(pilot, lambda: "Pause" in screen_text(app), what="the view resumed")


def test_the_scan_interpreter_scans_resume_paused_between_forks() -> None:
    """The switch adapters' side, message by message: paused with no fork open, a Resume layout naming the fork
    that closed is scanned and its select goes out under that fork; another fork's layout is not; resumed,
    the scan ends."""
    from test_scan_switch import RENDERER, bodies, key, msg

    from razvilka.inputs.config import KeyboardConfig
    from razvilka.inputs.keyboard import build_keymap, make_interpreter
    from razvilka.inputs.scanswitch import ScanInterpreter, with_scanning

    cfg = KeyboardConfig()
    interp, _ = with_scanning(ScanConfig(), "auto", make_interpreter(cfg, build_keymap(cfg, "x11")),
                              "inputs.keyboard.keys")
    assert isinstance(interp, ScanInterpreter)
    ms = 1_000_000
    rest = Layout(boxes=[], targets=[TargetBox(target="cmd:resume", x=1, y=1, w=8, h=1)], screen_w=80, screen_h=24,
                  renderer="tui")
    interp.follow(msg(fork(), "f1"), 0)
    interp.follow(msg(ForkDecided(index=1, words=["letter"], sources=["k"]), "f1"), 10 * ms)
    # not paused: a layout for a closed fork is stale, nothing to scan
    assert bodies(interp.follow(msg(rest, "f1", RENDERER), 20 * ms)) == []
    interp.follow(msg(DaemonStatus(state="paused"), None), 30 * ms)
    # a fork this adapter never saw open is not scanned either
    assert bodies(interp.follow(msg(rest, "f9", RENDERER), 40 * ms)) == []
    (lit,) = bodies(interp.follow(msg(rest, "f1", RENDERER), 50 * ms))
    assert isinstance(lit, Focus) and lit.target == "cmd:resume"
    (chosen,) = [b for b in key(interp, "space", 100) if isinstance(b, Select)]
    assert chosen.target == "cmd:resume"
    # resumed with no fork open: the scan ends until the next fork's layout
    interp.follow(msg(DaemonStatus(state="generating"), None), 200 * ms)
    assert interp.deadline_ns is None and bodies(interp.tick(5000 * ms)) == [] and key(interp, "space", 5100) == []


# ---------------------------------------------------------------- the targets, without a terminal
def test_rows_order_and_packing_without_a_terminal() -> None:
    """The rows are the screen rule's (Resume alone while paused; with no fork open the last fork's alphabet),
    lines wrap inside a row, and a spot gets its row/col from the rule."""
    from rich.text import Text

    from razvilka.protocol.codec import Codec
    from razvilka.renderers.tui import board
    from razvilka.renderers.tui.state import ViewState

    codec = Codec("daemon")
    state = ViewState()
    runic = fork(script="runic")  # a later minor's script: Latin
    state.apply(codec.decode(codec.encode(runic, fork_id="a")))
    assert board.script_of(state) == "latin"
    assert [list(r.targets) for r in board.scan_rows(state)] == rule(runic)
    assert [r.name for r in board.scan_rows(state)] == ["candidates", "letters", "commands", *(f"abc-{n}" for n in
                                                                                                range(1, 5))]
    state.apply(codec.decode(codec.encode(DaemonStatus(state="paused"))))
    assert [(r.name, r.targets) for r in board.scan_rows(state)] == [("rest", ("cmd:resume",))]
    assert [(r.name, [k.label for k in r.keys]) for r in board.keyboard_rows(state)] == [("rest", ["Resume"])]
    # decided while paused: no fork open, Resume names the last one
    state.apply(codec.decode(codec.encode(ForkDecided(index=1, words=["letter"], sources=["k"]), fork_id="a")))
    assert state.fork is None and state.last_fork_id == "a"
    assert [r.targets for r in board.scan_rows(state)] == [("cmd:resume",)]
    state.apply(codec.decode(codec.encode(DaemonStatus(state="generating"))))
    cyr = ViewState()
    cyr.apply(codec.decode(codec.encode(fork(script="cyrillic"), fork_id="b")))
    cyr.apply(codec.decode(codec.encode(ForkDecided(index=1, words=["letter"], sources=["k"]), fork_id="b")))
    # between forks: the commands and the last fork's alphabet (no candidates, no letters to rank)
    assert [r.name for r in board.scan_rows(cyr)] == ["commands", *(f"abc-{n}" for n in range(1, 6))]
    assert [r.name for r in board.scan_rows(state)] == ["commands", *(f"abc-{n}" for n in range(1, 5))]

    keys = [board.Key(f"key:{ch}", ch) for ch in "abcdef"]
    chunks = [board.Chunk(Text("caption ")), *(board.Chunk(Text(f"[{k.label}]"), k) for k in keys)]
    text, spots = board.pack([("row", chunks)], width=20, gap=1, indent=8)
    lines = text.plain.split("\n")
    assert lines == ["caption  [a] [b] [c]", "        [d] [e] [f]"]
    for s in spots:
        assert lines[s.y][s.x:s.x + s.w] == f"[{s.target[4:]}]" and s.row == "row"
    rows = (ScreenRow("other", ("key:z",)), ScreenRow("row", ("key:f", "key:e", "key:d", "key:c", "key:b")))
    placed = board.layout({(2, 5): spots}, rows, (80, 24), "tui")
    # row/col from the rule; key:a, which the rows lack, is no target
    assert [(t.target, t.row, t.col) for t in placed.targets] == [("key:f", 1, 0), ("key:e", 1, 1), ("key:d", 1, 2),
                                                                  ("key:c", 1, 3), ("key:b", 1, 4)]
    d = next(t for t in placed.targets if t.target == "key:d")
    assert (d.x, d.y, d.w, d.h) == (10.0, 6.0, 3.0, 1.0)
    assert board.hit(placed, 11, 6) == "key:d" and board.hit(placed, 9, 6) is None
