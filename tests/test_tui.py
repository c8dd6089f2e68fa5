"""The terminal renderer, driven headless with Textual's pilot against a real bus.

A test client plays the daemon's part by publishing real protocol messages; the app's
key presses are read back off the bus by an observer and decoded by the Python codec.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import body_of
from conftest import ROOT, ClientFactory
from key_helpers import until as key_until
from textual.widgets import Static
from tui_screen import brightness, screen_segments, screen_text

from razvilka.config import Config
from razvilka.inputs.config import KeyboardConfig
from razvilka.inputs.keyadapter import SUBSCRIBE as KEY_SUBSCRIBE
from razvilka.inputs.keyadapter import KeyAdapter
from razvilka.inputs.keyboard import build_keymap, make_interpreter
from razvilka.inputs.keymap import KeyEvent
from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient
from razvilka.protocol.config import BusConfig
from razvilka.protocol.messages import (
    Candidate,
    Command,
    Confirm,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Letter,
    Lookahead,
    Message,
    Select,
    SourceStatus,
    Span,
    TextAuto,
    TextState,
    TextUndo,
    to_builtins,
)
from razvilka.renderers.config import RenderersConfig, TuiConfig
from razvilka.renderers.tui import app as tui_cli
from razvilka.renderers.tui.state import ViewState
from razvilka.renderers.tui.view import SUBSCRIBE, TuiApp

SIZE = (120, 36)
PROMPT = "Dear Anna, "
MODEL = "thank you for the"
HUMAN = " lovely"
WORDS = [("flowers", 0.46), ("letter", 0.27), ("dinner", 0.12), ("gift", 0.04)]
PHRASES = ["you sent me", "from last week", "at your place", "for my birthday"]


async def until(pilot: Any, cond: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.03)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {what or cond}")


def fork_body(words: list[tuple[str, float]] = WORDS, **kw: Any) -> ForkOpen:
    return ForkOpen(
        candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(words)],
        context=PROMPT + MODEL + HUMAN, **kw,
    )


def publish_scene(daemon: BusClient, fork_id: str = "f-1") -> None:
    """A daemon mid-session: status, text with all three origins, an open fork and its look-aheads."""
    daemon.publish(DaemonStatus(state="waiting", model="gemma-3-270m-q4", mode="keys", k=4, last_fork_ms=87.0))
    text = PROMPT + MODEL + HUMAN
    a, b = len(PROMPT), len(PROMPT) + len(MODEL)
    daemon.publish(TextState(text=text, spans=[
        Span(start=0, end=a, origin="prompt"), Span(start=a, end=b, origin="model"),
        Span(start=b, end=len(text), origin="human"),
    ]))
    daemon.publish(fork_body(compute_ms=123.0), fork_id=fork_id)
    daemon.publish(ForkLookahead(entries=[Lookahead(index=i, phrases=[p]) for i, p in enumerate(PHRASES)]),
                   fork_id=fork_id)
    daemon.publish(ForkLookahead(entries=[Lookahead(index=0, long=True, phrases=[
        "you sent me on Sunday morning", "you picked in the garden"])], done=True), fork_id=fork_id)


async def make_app(ipc_clients: ClientFactory, **cfg: Any) -> TuiApp:
    client = await ipc_clients("tui", role="renderer", subscribe=list(SUBSCRIBE))
    return TuiApp(client, TuiConfig(refresh_ms=100, **cfg))


async def next_input(observer: BusClient, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await observer.recv(timeout=max(0.0, deadline - time.monotonic()))
        if msg is not None and msg.header.sender == "tui" and msg.type.startswith("input."):
            return msg
    raise AssertionError("the TUI published nothing")


async def test_draws_text_fork_lookahead_and_status(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        publish_scene(daemon)
        await until(pilot, lambda: "from last week" in screen_text(app) and "Sunday" in screen_text(app),
                    what="the fork and its look-aheads")
        screen = screen_text(app)
        # the cloud: every candidate, numbered, with its probability
        for word, prob in WORDS:
            assert word in screen
            assert f"{prob * 100:.0f}%" in screen
        # nothing is focused until a source focuses a word (as the daemon sees it); the detail shows the first
        assert "▸" not in screen and "flowers  46.0%  (none focused)" in screen
        # the look-ahead of each candidate, and the longer one for the first candidate
        for phrase in PHRASES:
            assert phrase in screen
        assert "you sent me on Sunday morning" in screen and "you picked in the garden" in screen
        # the daemon's status: model, mode, fork latency
        assert "gemma-3-270m-q4" in screen and "mode keys" in screen and "123 ms" in screen
        assert "fork f-1" in screen
        # the text: the human's word is drawn unlike the model's words and the prompt
        assert (PROMPT + MODEL + HUMAN).strip() in screen
        segs = screen_segments(app)
        human = next(s for s in segs if "lovely" in s.text)
        model = next(s for s in segs if "thank you" in s.text)
        prompt = next(s for s in segs if "Dear Anna" in s.text)
        assert human.style.bold and human.style.underline
        assert not model.style.bold and not model.style.underline
        assert prompt.style.italic and not model.style.italic
        # probability bands: the likeliest word is drawn heavier than the least likely one
        top = next(s for s in segs if "flowers" in s.text and s.style and s.style.bgcolor)
        low = next(s for s in segs if s.text.strip() == "gift")
        assert top.style.bold and not low.style.bold and low.style.bgcolor != top.style.bgcolor
        assert brightness(low.style) < brightness(top.style)


async def test_keys_publish_input_messages(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon, fork_id="f-7")
        await until(pilot, lambda: app.state.fork is not None, what="fork")

        await pilot.press("2")
        msg = await next_input(observer)
        assert isinstance(msg.body, Select) and msg.body.index == 1 and msg.body.source == "tui"
        assert msg.header.fork_id == "f-7" and msg.topic == "input.select."

        await pilot.press("right", "right")  # nothing focused: the first arrow focuses the first candidate
        msg = await next_input(observer)
        assert isinstance(msg.body, Focus) and msg.body.index == 0 and msg.header.fork_id == "f-7"
        msg = await next_input(observer)
        assert isinstance(msg.body, Focus) and msg.body.index == 1 and msg.header.fork_id == "f-7"
        await until(pilot, lambda: "2▸" in screen_text(app), what="focus drawn")
        assert "from last week" in str(app.query_one("#detail", Static).content)
        await pilot.press("left")
        msg = await next_input(observer)
        assert isinstance(msg.body, Focus) and msg.body.index == 0
        await pilot.press("left")  # wraps to the last candidate
        msg = await next_input(observer)
        assert isinstance(msg.body, Focus) and msg.body.index == 3

        await pilot.press("enter")  # the focus is the view's own (its arrows): the confirm names it
        msg = await next_input(observer)
        assert isinstance(msg.body, Confirm) and msg.body.index == 3 and msg.header.fork_id == "f-7"
        await pilot.press("end")  # the focused candidate with its look-ahead phrase
        msg = await next_input(observer)
        assert isinstance(msg.body, Select) and msg.body.index == 3 and msg.body.phrase and msg.header.fork_id == "f-7"
        # shift+arrows mark words of the focused look-ahead ("for my birthday"); End takes those
        for key in ("shift+right", "shift+right", "shift+right", "shift+right", "shift+left"):
            await pilot.press(key)  # four is past its three words: it stops at three
        await until(pilot, lambda: app.state.phrase_mark() == 2, what="two words marked")
        def marked() -> list[str]:  # reversed on screen: the focused word in the cloud, and the marked words
            return [seg.text.strip() for seg in screen_segments(app) if seg.style and seg.style.reverse]
        await until(pilot, lambda: "for my" in marked(), what="the marked words drawn")
        assert not any("birthday" in t for t in marked())
        await pilot.press("end")
        msg = await next_input(observer)
        assert isinstance(msg.body, Select) and msg.body.index == 3
        assert msg.body.phrase_words == 2 and not msg.body.phrase
        await pilot.press("left")  # the mark belongs to its candidate: another one starts with none
        await next_input(observer)
        assert app.state.phrase_mark() == 0
        await pilot.press("right")
        await next_input(observer)
        assert app.state.phrase_mark() == 2  # back on it: still marked

        await pilot.press("backspace")
        msg = await next_input(observer)
        assert isinstance(msg.body, Command) and msg.body.command == "back"

        for key in ("plus", "tab"):
            await pilot.press(key)
            msg = await next_input(observer)
            assert isinstance(msg.body, Command) and msg.body.command == "more", key

        await pilot.press("f", "l")
        first, second = await next_input(observer), await next_input(observer)
        assert (first.body.command, first.body.text) == ("type", "f")
        assert (second.body.command, second.body.text) == ("type", "fl")
        await until(pilot, lambda: "typing 'fl'" in screen_text(app), what="typed prefix drawn")
        await pilot.press("backspace")  # while typing, Backspace drops a letter
        msg = await next_input(observer)
        assert (msg.body.command, msg.body.text) == ("type", "f")

        await pilot.press("space")  # the typed word as it is: no candidate is "f", so it is typed
        msg = await next_input(observer)
        assert (msg.body.command, msg.body.text) == ("type", "f ")

        await pilot.press("escape")
        msg = await next_input(observer)
        assert isinstance(msg.body, Command) and msg.body.command == "toggle_pause"

        # the daemon decides, then opens the next fork: typing starts afresh
        daemon.publish(ForkDecided(index=None, words=["f"], sources=["tui"], typed=True), fork_id="f-7")
        daemon.publish(fork_body(), fork_id="f-8")
        await until(pilot, lambda: app.state.fork is not None and app.state.fork.fork_id == "f-8"
                    and not app.state.typed)
        await pilot.press("g", "i", "f", "t")
        for prefix in ("g", "gi", "gif", "gift"):
            msg = await next_input(observer)
            assert (msg.body.command, msg.body.text, msg.header.fork_id) == ("type", prefix, "f-8")
        await pilot.press("enter")  # a typed word that is a candidate selects it
        msg = await next_input(observer)
        assert isinstance(msg.body, Select) and msg.body.index == 3 and msg.header.fork_id == "f-8"
        assert app.published == 23


async def test_view_only_publishes_nothing(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input.", "source."])
    app = await make_app(ipc_clients, keys=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon)
        await until(pilot, lambda: app.state.fork is not None)
        await pilot.press("1", "enter", "backspace", "a")
        with pytest.raises(AssertionError, match="published nothing"):
            await next_input(observer, timeout=0.5)
        assert "view only" in screen_text(app)


async def test_late_join_draws_the_open_fork_from_the_snapshot(ipc_bus: BusHost, ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    publish_scene(daemon, fork_id="f-early")
    # wait until the bus has retained the scene, so the app cannot have seen it live
    probe = await ipc_clients("probe", subscribe=["fork."])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if sum(m.type.startswith("fork.") for m in await probe.snapshot()) >= 3:
            break
        await asyncio.sleep(0.05)
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        assert app.snapshot_ok is True
        await until(pilot, lambda: "flowers" in screen_text(app), what="the fork from the snapshot")
        screen = screen_text(app)
        assert "fork f-early" in screen and "for my birthday" in screen and "gemma-3-270m-q4" in screen
        assert "lovely" in screen
        assert app.state.fork is not None and app.state.fork.lookahead_done
        # and it keeps following the live stream afterwards
        daemon.publish(ForkDecided(index=0, words=["flowers"], sources=["keyboard"], latency_ms=640.0),
                       fork_id="f-early")
        await until(pilot, lambda: "decided flowers" in screen_text(app), what="the decision")
        assert "by keyboard in 640 ms" in screen_text(app)


async def test_text_follows_auto_decided_and_undo(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        daemon.publish(TextState(text="Hello", spans=[Span(start=0, end=5, origin="prompt")]))
        daemon.publish(TextAuto(text=" there, it is", words=["there,", "it", "is"]))
        await until(pilot, lambda: "Hello there, it is" in screen_text(app), what="auto text")
        daemon.publish(fork_body(), fork_id="f-2")
        await until(pilot, lambda: app.state.fork is not None)
        daemon.publish(ForkDecided(index=1, words=["letter"], sources=["gaze", "keyboard"], latency_ms=910.0),
                       fork_id="f-2")
        await until(pilot, lambda: app.state.fork is None, what="fork closed")
        assert "decided letter" in screen_text(app) and "by gaze, keyboard in 910 ms" in screen_text(app)
        assert "last decision 910 ms" in screen_text(app)
        daemon.publish(TextUndo(removed=" it is"))
        await until(pilot, lambda: "Hello there," in screen_text(app) and "it is" not in screen_text(app),
                    what="undo")


async def test_shows_which_sources_are_alive(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    keyboard = await ipc_clients("keyboard", role="input")
    gaze = await ipc_clients("gaze", role="input")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: all(f"{name} alive" in screen_text(app)
                                       for name in ("keyboard", "gaze", "tui", "daemon")),
                    what="every peer alive")  # the daemon is listed apart from the inputs
        gaze.publish(SourceStatus(source="gaze", state="lost", detail="tracker unplugged"))
        await until(pilot, lambda: "gaze lost" in screen_text(app), what="gaze lost")
        await keyboard.close(goodbye=False)  # a crash: no goodbye, the beats just stop
        await until(pilot, lambda: "keyboard silent" in screen_text(app), timeout=6, what="keyboard silent")
        daemon.publish(Focus(index=2, source="gaze"), fork_id="none")  # focus for no open fork: ignored
        await pilot.pause(0.2)
        assert app.state.focus is None


async def test_focus_from_another_source_moves_the_detail(ipc_clients: ClientFactory) -> None:
    daemon = await ipc_clients("daemon", role="daemon")
    gaze = await ipc_clients("gaze", role="input")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon, fork_id="f-3")
        await until(pilot, lambda: "Sunday" in screen_text(app))
        gaze.publish(Focus(index=2, source="gaze", dwell=0.4), fork_id="f-3")
        await until(pilot, lambda: "3▸" in screen_text(app), what="gaze focus")
        detail = screen_text(app)
        assert "focus from gaze" in detail and "at your place" in detail


async def test_screenshot(ipc_clients: ClientFactory, tmp_path: Path) -> None:
    """An SVG of the full view; RAZVILKA_SAVE_SCREENSHOTS=1 refreshes docs/img/tui.svg."""
    daemon = await ipc_clients("daemon", role="daemon")
    scan = await ipc_clients("keyboard", role="input")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon, fork_id="f-12")
        await until(pilot, lambda: "Sunday" in screen_text(app) and "keyboard alive" in screen_text(app))
        await pilot.press("o")
        await until(pilot, lambda: "typing 'o'" in screen_text(app))
        await pilot.press("backspace")
        await until(pilot, lambda: "typing" not in screen_text(app))
        # the model's letters, and a switch scanning them: the likeliest-letters row is lit
        daemon.publish(fork_body(letters=[Letter(ch=c, prob=p) for c, p in
                                          (("f", 0.31), ("l", 0.22), ("d", 0.14), ("g", 0.08), ("b", 0.05))]),
                       fork_id="f-12")
        daemon.publish(ForkLookahead(entries=[Lookahead(index=i, phrases=[p]) for i, p in enumerate(PHRASES)]),
                       fork_id="f-12")
        await until(pilot, lambda: "likeliest   f 31%" in screen_text(app) and "from last week" in screen_text(app),
                    what="the likeliest letters")
        scan.publish(Focus(index=None, group=["key:f", "key:l", "key:d", "key:g", "key:b"], source="keyboard",
                           kind="key"), fork_id="f-12")
        await until(pilot, lambda: bool(app.state.group), what="the scanned row")
        path = Path(app.save_screenshot("tui.svg", str(tmp_path)))
        svg = await asyncio.to_thread(path.read_text)
        assert svg.startswith("<svg") and "flowers" in svg
        if os.environ.get("RAZVILKA_SAVE_SCREENSHOTS"):
            (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
            (ROOT / "docs" / "img" / "tui.svg").write_text(svg)


# ---------------------------------------------------------------- pieces without a terminal
def test_state_ignores_look_aheads_of_another_fork() -> None:
    from razvilka.protocol.codec import Codec

    codec = Codec("daemon")
    state = ViewState()
    state.apply(codec.decode(codec.encode(fork_body(), fork_id="a")))
    stale = codec.decode(codec.encode(ForkLookahead(entries=[Lookahead(index=0, phrases=["old"])]), fork_id="b"))
    assert state.apply(stale) is False and state.fork is not None and state.fork.phrases(0) == []
    gaze = Codec("gaze")
    assert state.apply(gaze.decode(gaze.encode(Focus(index=2, source="gaze"), fork_id="a")))
    assert (state.focus, state.focus_source) == (2, "gaze")
    # the fork opening again (a new page: other words under the same indices) drops the focus, as the decider does
    state.apply(codec.decode(codec.encode(fork_body(page=1), fork_id="a")))
    assert state.focus is None and state.fork is not None and state.fork.body.page == 1


def test_cli_without_a_bus_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(bus=BusConfig(runtime_dir=str(tmp_path)), renderers=RenderersConfig())
    code = tui_cli.run(config, argparse.Namespace(name=None, view_only=False, no_probabilities=False))
    err = capsys.readouterr().err
    assert code == 2
    assert "no bus discovery file" in err and "razvilka daemon" in err


def test_cli_module_does_not_import_textual() -> None:
    import subprocess
    import sys

    code = "import sys, razvilka.renderers.tui.app; sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0




# ---------------------------------------------------------------- with the real daemon and model
@pytest.mark.model
async def test_tui_with_the_real_daemon(daemon: Any) -> None:
    """Join while the daemon's first fork is open, draw it from the snapshot, pick with a number key."""
    from daemon_fixtures import next_of
    from renderer_helpers import open_fork

    observer = await daemon.client("observer", subscribe=["fork.", "text.state."])
    first = await open_fork(observer)
    client = await daemon.client("tui", subscribe=list(SUBSCRIBE), role="renderer")
    app = TuiApp(client, TuiConfig(refresh_ms=100))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.fork is not None, timeout=30, what="the open fork")
        fork = app.state.fork
        assert fork is not None and fork.fork_id == first.header.fork_id  # drawn from the snapshot
        screen = screen_text(app)
        for cand in fork.candidates:
            assert cand.word.strip() in screen
        status = app.state.status
        assert status is not None and status.model and status.model[:20] in screen
        await until(pilot, lambda: bool(fork.short), timeout=60, what="look-aheads")

        chosen = fork.candidates[1]
        await pilot.press("2")
        decided = await next_of(observer, "fork.decided", timeout=60,
                                where=lambda m: m.header.fork_id == fork.fork_id)
        assert isinstance(decided.body, ForkDecided)
        assert decided.body.index == chosen.index and decided.body.sources == ["tui"]
        # the chosen word joins the text as the person's, and the next fork opens
        await until(pilot, lambda: any(origin == "human" and chosen.word.strip() in piece
                                       for piece, origin in app.state.segments()), timeout=60, what="human word")
        await until(pilot, lambda: app.state.fork is not None and app.state.fork.fork_id != fork.fork_id,
                    timeout=120, what="the next fork")
        human = [s for s in screen_segments(app) if chosen.word.strip() in s.text and s.style and s.style.underline]
        assert human, "the chosen word is not drawn as the person's"
        assert "last decision" in screen_text(app)


def test_lookahead_with_line_breaks_stays_on_one_line() -> None:
    from razvilka.renderers.tui.render import one_line

    assert one_line(" the mountains.\n\nThe") == "the mountains. ⏎ ⏎ The"


async def test_a_piece_that_joins_the_word_before_is_drawn_with_it(ipc_clients: ClientFactory) -> None:
    """Protocol 1.2 ``joins``: "es" after "Miss" is drawn "Misses" (the stem dimmed), not a bare "es"."""
    daemon = await ipc_clients("daemon", role="daemon")
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None, what="snapshot")
        daemon.publish(ForkOpen(candidates=[Candidate(index=0, word="Bennet", prob=0.6),
                                            Candidate(index=1, word="es", prob=0.4, joins=True)],
                                context="and the elder Miss"), fork_id="j-1")
        daemon.publish(ForkLookahead(entries=[Lookahead(index=1, phrases=[" Bennet were"])]), fork_id="j-1")
        await until(pilot, lambda: "Bennet were" in screen_text(app), what="the fork and its look-ahead")
        await pilot.press("right", "right")  # focus the joining piece: the detail shows the word it makes
        await until(pilot, lambda: "→ Misses Bennet were" in screen_text(app), what="the focused detail")
        assert "Misses" in screen_text(app)
        segs = screen_segments(app)
        pairs = [(a, b) for a, b in zip(segs, segs[1:]) if a.text == "Miss" and b.text.startswith("es")]
        assert len(pairs) == 3, pairs  # in the cloud, beside its look-ahead and in the focused detail
        for stem, piece in pairs:  # the stem is there, but quieter (Textual draws dim as a darker colour)
            assert brightness(stem.style) < brightness(piece.style)


# ---------------------------------------------------------------- one set of key rules
class ScriptedKeys:
    """A key source fed by the test: real KeyEvents into the real KeyAdapter, as a device would give them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[KeyEvent] = asyncio.Queue()
        self.t_ns = 0

    def press(self, name: str, char: str | None = None, shift: bool = False) -> None:
        """Down and up, 100 ms after the last event (well past the debounce window)."""
        keys = (["shift"] if shift else []) + [name]
        for key in keys:
            self._event(key, True, char if key == name else None)
        for key in reversed(keys):
            self._event(key, False, None)

    def _event(self, name: str, down: bool, char: str | None) -> None:
        self.t_ns += 100_000_000
        self.queue.put_nowait(KeyEvent(name, down, self.t_ns, char))

    async def events(self) -> AsyncGenerator[KeyEvent, None]:
        while True:
            yield await self.queue.get()


def without_source(msg: Message) -> tuple[str, dict[str, object]]:
    body = to_builtins(msg.body)
    assert isinstance(body, dict)
    return msg.type, {k: v for k, v in body.items() if k != "source"}


async def test_tui_and_keyboard_adapter_send_the_same_messages_for_the_same_keys(ipc_clients: ClientFactory,
                                                                                  tmp_path: Path) -> None:
    """The terminal view and the keyboard adapter share one key rule module: same keys, same messages.

    Each runs on a bus of its own (each would otherwise follow the other's focus), with the same
    daemon stand-in's fork and the same gaze focus half-way."""
    from conftest import make_bus_config

    # (Textual key, the keyboard's canonical name, the character it types, shift held)
    before_gaze = [("2", "2", "2", False), ("right", "right", None, False), ("right", "right", None, False),
                   ("shift+right", "right", None, True), ("end", "end", None, False),
                   ("enter", "enter", None, False), ("0", "0", "0", False)]
    after_gaze = [("enter", "enter", None, False), ("end", "end", None, False), ("right", "right", None, False),
                  ("backspace", "backspace", None, False), ("tab", "tab", None, False), ("plus", "+", "+", False),
                  ("escape", "esc", None, False), ("f12", "f12", None, False), ("g", "g", "g", False),
                  ("i", "i", "i", False), ("backspace", "backspace", None, False), ("space", "space", None, False)]

    async def heard(observer: BusClient, sender: str, n: int) -> list[tuple[str, dict[str, object]]]:
        out: list[tuple[str, dict[str, object]]] = []
        deadline = time.monotonic() + 5
        while len(out) < n:
            msg = await observer.recv(timeout=max(0.01, deadline - time.monotonic()))
            assert msg is not None, f"{sender}: only {out} by now"
            if msg.header.sender == sender and msg.type.startswith("input."):
                out.append(without_source(msg))
        return out

    async def scene(clients: ClientFactory) -> tuple[BusClient, BusClient]:
        daemon = await clients("daemon", role="daemon")
        gaze = await clients("gaze", role="input")
        return daemon, gaze

    # the terminal view, keys pressed through Textual's pilot
    daemon, gaze = await scene(ipc_clients)
    observer = await ipc_clients("observer", subscribe=["input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon, fork_id="f-9")
        await until(pilot, lambda: app.state.fork is not None and bool(app.state.fork.short), what="the fork")
        for tui_key, *_ in before_gaze:
            await pilot.press(tui_key)
        tui = await heard(observer, "tui", 5)
        gaze.publish(Focus(index=2, source="gaze"), fork_id="f-9")
        await until(pilot, lambda: app.state.focus == 2, what="gaze focus")
        for tui_key, *_ in after_gaze:
            await pilot.press(tui_key)
        tui += await heard(observer, "tui", 12)

    # the keyboard adapter, the same keys as device events, on a bus of its own
    host = BusHost(make_bus_config(tmp_path))
    host.start()
    clients = ClientFactory(host)
    try:
        daemon, gaze = await scene(clients)
        observer = await clients("observer", subscribe=["input."])
        conf = KeyboardConfig()
        keys = ScriptedKeys()
        kb_client = await clients(conf.name, role="input", subscribe=list(KEY_SUBSCRIBE))
        adapter = KeyAdapter(kb_client, keys, make_interpreter(conf, build_keymap(conf, "x11")), name=conf.name)
        stop = asyncio.Event()
        kb_task = asyncio.create_task(adapter.run(stop))
        try:
            await asyncio.wait_for(adapter.ready.wait(), 5)
            publish_scene(daemon, fork_id="f-9")
            await key_until(lambda: adapter.interp.fork is not None and bool(adapter.interp.fork.short))
            for _, name, char, shift in before_gaze:
                keys.press(name, char, shift)
            keyboard = await heard(observer, "keyboard", 5)
            gaze.publish(Focus(index=2, source="gaze"), fork_id="f-9")
            await key_until(lambda: adapter.interp.focus == 2)
            for _, name, char, shift in after_gaze:
                keys.press(name, char, shift)
            keyboard += await heard(observer, "keyboard", 12)
        finally:
            stop.set()
            await asyncio.wait_for(kb_task, 5)
    finally:
        await clients.close()
        host.stop()

    assert tui == keyboard
    types = [t for t, _ in tui]
    bodies = [b for _, b in tui]
    assert types[:5] == ["input.select", "input.focus", "input.focus", "input.select", "input.confirm"]
    assert bodies[3]["index"] == 1 and bodies[3]["phrase_words"] == 1  # shift+right marked one look-ahead word
    assert bodies[4]["index"] == 1  # the focus was its own: the confirm names it
    assert types[5] == "input.confirm" and bodies[5]["index"] is None  # gaze's focus: the decider fuses
    assert bodies[6]["index"] == 2 and bodies[6]["phrase"]  # End takes the focused candidate, from any source
    assert [b.get("command") for b in bodies[8:13]] == ["back", "more", "more", "toggle_pause", "toggle_pause"]
    assert [b.get("text") for b in bodies[13:]] == ["g", "gi", "g", "g "]
    assert all(b.get("kind") == "key" for t, b in tui if t != "input.command")


async def test_tui_confirm_decides_the_gaze_focus_when_the_view_has_none_of_its_own(ipc_clients: ClientFactory) -> None:
    """Enter in the view, while gaze rests on candidate j: the real decider decides j, not the view's first word."""
    from razvilka.daemon.decider import Decider

    daemon = await ipc_clients("daemon", role="daemon")
    gaze = await ipc_clients("gaze", role="input")
    observer = await ipc_clients("observer", subscribe=["fork.open.", "input."])
    app = await make_app(ipc_clients)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot_ok is not None)
        publish_scene(daemon, fork_id="f-5")
        await until(pilot, lambda: app.state.fork is not None, what="fork")
        gaze.publish(Focus(index=2, source="gaze", confidence=0.8), fork_id="f-5")
        await until(pilot, lambda: app.state.focus == 2, what="gaze focus drawn")
        await pilot.press("enter")
        heard: dict[str, Message] = {}
        deadline = time.monotonic() + 5
        while "input.confirm" not in heard:
            msg = await observer.recv(timeout=max(0.01, deadline - time.monotonic()))
            assert msg is not None, f"heard only {list(heard)}"
            heard.setdefault(msg.type, msg)
    confirm = heard["input.confirm"]
    assert isinstance(confirm.body, Confirm) and confirm.body.index is None and confirm.header.sender == "tui"
    decider = Decider(stale_focus_ms=1500)
    decider.open("f-5", len(WORDS), heard["fork.open"].header.ts_ns)
    decider.on_focus(body_of(heard["input.focus"], Focus), heard["input.focus"].header.ts_ns)
    decision = decider.on_confirm(confirm.body, confirm.header.ts_ns)
    assert (decision.index, decision.sources, decision.rule) == (2, ["gaze", "tui"], "focus+confirm")


@pytest.mark.model
async def test_tui_confirm_takes_the_gaze_focus_with_the_real_daemon(daemon: Any) -> None:
    """Gaze rests on a word, Enter in the view (no focus of its own): the daemon decides the gaze's word."""
    from daemon_fixtures import next_of
    from renderer_helpers import open_fork

    observer = await daemon.client("observer", subscribe=["fork."])
    first = await open_fork(observer)
    gaze = await daemon.client("gaze", role="input")
    client = await daemon.client("tui", subscribe=list(SUBSCRIBE), role="renderer")
    app = TuiApp(client, TuiConfig(refresh_ms=100))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.fork is not None, timeout=30, what="the open fork")
        fork = app.state.fork
        assert fork is not None and fork.fork_id == first.header.fork_id and fork.k >= 3
        j = fork.indices[2]
        gaze.publish(Focus(index=j, source="gaze", confidence=0.9), fork_id=fork.fork_id)
        await until(pilot, lambda: app.state.focus == j, what="the gaze focus drawn")
        await pilot.press("enter")
        decided = await next_of(observer, "fork.decided", timeout=60, where=lambda m: m.header.fork_id == fork.fork_id)
    assert isinstance(decided.body, ForkDecided) and decided.body.index == j
    assert decided.body.sources == ["gaze", "tui"] and decided.body.rule == "focus+confirm"
