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
from conftest import ClientFactory
from key_helpers import XServer, display, xserver  # noqa: F401 - fixtures
from tui_screen import screen_cells, screen_text, styles_at

from razvilka.inputs.scan import ScanConfig
from razvilka.inputs.scanswitch import ScanAdapter
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
    Select,
    TargetBox,
    TextState,
)
from razvilka.protocol.targets import ALPHABETS
from razvilka.renderers.config import TuiConfig
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


def rows_of(layout: Layout) -> list[list[str]]:
    """The layout's targets (candidate boxes included) in scan order: rows by ``row``, items by ``col``."""
    items = [(b.row, b.col, f"cand:{b.index}") for b in layout.boxes]
    items += [(t.row, t.col, t.target) for t in layout.targets]
    rows: dict[int, list[tuple[int, str]]] = {}
    for row, col, target in items:
        rows.setdefault(row, []).append((col, target))
    return [[t for _, t in sorted(rows[r])] for r in sorted(rows)]


async def test_layout_has_commands_and_keys_in_scan_order(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        daemon.publish(fork(), fork_id="f-1")
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-1" and layout.renderer == "tui"
        assert (layout.screen_w, layout.screen_h) == SIZE  # cells: the terminal's size
        rows = rows_of(layout)
        # candidates first, likeliest first; then the likeliest letters (space where " " ranks, upper
        # case folded, what no key types left out); the edit keys; the alphabet in order; the commands
        assert rows[0] == ["cand:1", "cand:0", "cand:2", "cand:3"]
        assert rows[1] == ["key:e", "key:a", "key:o", "key:t", "key:space", "key:i"]
        assert rows[2] == ["key:space", "key:delete", "key:accept"]
        assert [t[4:] for row in rows[3:-1] for t in row] == list(ALPHABETS["latin"])
        assert [len(r) for r in rows[3:-1]] == [9, 9, 8]
        assert rows[-1] == ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]

        # every box is where its label is drawn on screen
        cells = screen_cells(app)
        labels = {t.target: t.label for t in layout.targets}
        assert labels["cmd:back"] == "Back" and labels["key:e"] == "e"
        for t in layout.targets:
            drawn = cells[int(t.y)][int(t.x):int(t.x + t.w)]
            assert t.label in drawn, (t, drawn)
        for b in layout.boxes:
            assert WORDS[b.index][0] in cells[int(b.y)][int(b.x):int(b.x + b.w)], b
        assert "typed" in screen_text(app) and "likeliest" in screen_text(app)

        # a Cyrillic fork shows the Cyrillic alphabet; the next fork republishes the layout
        daemon.publish(fork(words=[("привет", 0.5), ("мир", 0.3)], letters=[("е", 0.4)], script="cyrillic"),
                       fork_id="f-2")
        fork_id, layout = await next_layout(observer)
        assert fork_id == "f-2"
        rows = rows_of(layout)
        assert rows[1] == ["key:е"]
        assert "".join(t[4:] for row in rows[3:-1] for t in row) == ALPHABETS["cyrillic"]
        cells = screen_cells(app)
        assert all(t.label in cells[int(t.y)][int(t.x):int(t.x + t.w)] for t in layout.targets)

        # a resize moves the targets: the layout follows, in the new size
        await pilot.resize_terminal(100, 44)
        fork_id, layout = await next_layout(observer)
        assert (layout.screen_w, layout.screen_h) == (100, 44) and fork_id == "f-2"
        cells = screen_cells(app)
        assert all(t.label in cells[int(t.y)][int(t.x):int(t.x + t.w)] for t in layout.targets)


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
        row = ["key:e", "key:a", "key:o", "key:t", "key:space", "key:i"]
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


async def test_paused_and_resting_show_resume_first(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout.", "input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        daemon.publish(fork(), fork_id="f-5")
        rows = rows_of((await next_layout(observer))[1])
        assert rows[-1] == ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]
        assert "Pause" in screen_text(app) and "Resume" not in screen_text(app)

        daemon.publish(DaemonStatus(state="paused", model="m", mode="keys", k=4, detail="rest"))
        layout = (await next_layout(observer))[1]
        rows = rows_of(layout)
        # paused, the daemon takes nothing but Resume: the command row is scanned first
        assert rows[0] == ["cmd:back", "cmd:more", "cmd:resume", "cmd:new"]
        assert rows[1][0].startswith("cand:")
        text = screen_text(app)
        assert "Resume" in text and "resting (looked away): Resume continues" in text

        # a click on Resume selects it
        resume = next(t for t in layout.targets if t.target == "cmd:resume")
        await pilot.click(offset=(int(resume.x + 1), int(resume.y)))
        msg = await next_of(observer, "input.select")
        assert isinstance(msg.body, Select) and msg.body.target == "cmd:resume" and msg.body.index is None
        assert msg.header.fork_id == "f-5" and msg.body.kind == "pointer"

        daemon.publish(DaemonStatus(state="waiting", model="m", mode="keys", k=4))
        rows = rows_of((await next_layout(observer))[1])
        assert rows[-1] == ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]


async def test_clicks_select_keys_commands_and_words(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["render.layout.", "input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(fork(), fork_id="f-6")
        layout = (await next_layout(observer))[1]
        for target in ("key:e", "key:z", "key:accept", "key:delete", "cmd:back", "cmd:new"):
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
        # no fork open: a command still goes (as the command itself), a key cannot
        daemon.publish(ForkDecided(index=3, words=["gift"], sources=["tui"]), fork_id="f-6")
        await until(pilot, lambda: app.state.fork is None and "waiting for the next fork" in screen_text(app),
                    what="the fork decided")
        await pilot.pause()
        # no layout goes out without a fork (render.layout names its fork), but the view knows its targets
        now = app.layout_now
        assert now is not None and now != layout
        key_e = next(t for t in now.targets if t.target == "key:e")
        assert "e" in screen_cells(app)[int(key_e.y)][int(key_e.x):int(key_e.x + key_e.w)]
        await pilot.click(offset=(int(key_e.x + 1), int(key_e.y)))
        pause = next(t for t in now.targets if t.target == "cmd:pause")
        await pilot.click(offset=(int(pause.x + 1), int(pause.y)))
        msg = await next_of(observer, "input.command")
        assert isinstance(msg.body, Command) and msg.body.command == "pause"
        assert app.published == 8


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
    from test_scan_switch import Person, scanning, until_fork

    watch = await daemon.client("watch", subscribe=["fork.", "input.", "text.state"])
    kb = BusClient("keyboard", daemon.endpoints, role="input", subscribe=list(ScanAdapter.subscribe),
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
            return app.published_layout is not None and app.published_layout[0].fork_id == first.fork_id
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


# ---------------------------------------------------------------- the targets, without a terminal
def test_rows_order_and_packing_without_a_terminal() -> None:
    """The alphabet's rows, the scan order (commands first while paused), and lines that wrap inside a row."""
    from rich.text import Text

    from razvilka.protocol.codec import Codec
    from razvilka.renderers.tui import board
    from razvilka.renderers.tui.state import ViewState

    assert [len(r.keys) for r in board.alphabet_rows("latin")] == [9, 9, 8]
    assert [len(r.keys) for r in board.alphabet_rows("cyrillic")] == [11, 11, 11]
    codec = Codec("daemon")
    state = ViewState()
    state.apply(codec.decode(codec.encode(fork(script="runic"), fork_id="a")))  # a later minor's script: Latin
    assert board.script_of(state) == "latin"
    order = board.scan_order(state)
    assert order == ["candidates", "letters", "edit", "abc-1", "abc-2", "abc-3", "commands"]
    state.apply(codec.decode(codec.encode(DaemonStatus(state="paused"))))
    assert board.scan_order(state)[:2] == ["commands", "candidates"]
    assert [k.label for k in board.command_row(state).keys] == ["Back", "More", "Resume", "New"]

    keys = [board.Key(f"key:{ch}", ch) for ch in "abcdef"]
    chunks = [board.Chunk(Text("caption ")), *(board.Chunk(Text(f"[{k.label}]"), k, i) for i, k in enumerate(keys))]
    text, spots = board.pack([("row", chunks)], width=20, gap=1, indent=8)
    lines = text.plain.split("\n")
    assert lines == ["caption  [a] [b] [c]", "        [d] [e] [f]"]
    for s in spots:
        assert lines[s.y][s.x:s.x + s.w] == f"[{s.target[4:]}]" and s.row == "row"
    placed = board.layout({(2, 5): spots}, ["row"], (80, 24), "tui")
    assert [t.col for t in placed.targets] == list(range(6))
    d = next(t for t in placed.targets if t.target == "key:d")
    assert (d.x, d.y, d.w, d.h) == (10.0, 6.0, 3.0, 1.0)
    assert board.hit(placed, 11, 6) == "key:d" and board.hit(placed, 9, 6) is None
