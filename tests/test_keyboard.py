"""The keyboard adapter: real key events (xdotool on Xvfb) through the real pynput listener,
seen as protocol messages on a real bus; plus the pure key logic and the error messages."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import body_of, wait_retained
from key_helpers import XServer, cli_command, cli_env, fork_open, next_input, no_input, until

from razvilka.inputs.config import KeyboardConfig
from razvilka.inputs.evdevkeys import DeviceSpec, EvdevSource, RecordedFinder, Recording
from razvilka.inputs.keyadapter import SUBSCRIBE, KeyAdapter
from razvilka.inputs.keyboard import build_keymap, make_interpreter
from razvilka.inputs.keymap import (
    DEFAULT_KEYBOARD_KEYS,
    X11_NAMES,
    Debouncer,
    KeyEvent,
    KeyInterpreter,
    KeyMap,
)
from razvilka.inputs.x11keys import X11KeySource
from razvilka.protocol.client import BusClient, TrackedFork
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Command,
    Confirm,
    Focus,
    ForkDecided,
    Header,
    Message,
    Select,
    SourceStatus,
    TextUndo,
)

pytestmark = pytest.mark.timeout(60)

WORDS = ["the", "hello", "a", "help", "her"]


class Keyboard:
    def __init__(self, adapter: KeyAdapter, task: asyncio.Task[int], stop: asyncio.Event, source: X11KeySource):
        self.adapter, self.task, self.stop, self.source = adapter, task, stop, source

    async def has_fork(self, fork_id: str) -> None:
        await until(lambda: self.adapter.interp.fork is not None and self.adapter.interp.fork.fork_id == fork_id)


async def start_keyboard(client: BusClient, **cfg: Any) -> Keyboard:
    """The real adapter coroutine with the real pynput listener on $DISPLAY, on ``client``'s bus."""
    conf = KeyboardConfig(**cfg)
    keymap = build_keymap(conf, "x11")
    source = X11KeySource()
    await source.open()
    adapter = KeyAdapter(client, source, make_interpreter(conf, keymap), name=conf.name)
    stop = asyncio.Event()
    kb = Keyboard(adapter, asyncio.create_task(adapter.run(stop)), stop, source)
    await asyncio.wait_for(adapter.ready.wait(), 5)
    await until(lambda: adapter.state == "ok")
    return kb


async def stop_keyboard(kb: Keyboard) -> None:
    kb.stop.set()
    try:
        assert await asyncio.wait_for(kb.task, 5) == 0
    finally:
        kb.source.close()


@pytest.fixture
async def keyboard(display: XServer, ipc_clients: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[Keyboard] = []

    async def start(**cfg: Any) -> Keyboard:
        client = await ipc_clients(cfg.get("name", "keyboard"), role="input", subscribe=list(SUBSCRIBE))
        started.append(await start_keyboard(client, **cfg))
        return started[-1]

    yield start
    for kb in started:
        await stop_keyboard(kb)


async def bus_pair(ipc_clients: Any) -> tuple[BusClient, BusClient]:
    daemon = await ipc_clients("fake-daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input.", "source.status."])
    return daemon, observer


# ---------------------------------------------------------------- real keys under Xvfb
@pytest.mark.x11
async def test_numbers_arrows_enter_backspace_more_pause(keyboard: Any, display: XServer, ipc_clients: Any) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    kb = await keyboard()
    daemon.publish(fork_open(WORDS), fork_id="f1")
    await kb.has_fork("f1")

    await display.key("3")
    msg = await next_input(observer)
    assert isinstance(msg.body, Select) and msg.body.index == 2 and msg.body.source == "keyboard"
    assert msg.header.fork_id == "f1" and msg.topic == "input.select.keyboard."

    await display.key("Right", "Right", "Left", "Up")
    got = [body_of(await next_input(observer), Focus) for _ in range(4)]
    assert [b.index for b in got] == [0, 1, 0, 4]  # wraps

    await display.key("Return")
    msg = await next_input(observer)
    assert isinstance(msg.body, Confirm) and msg.body.index == 4 and msg.header.fork_id == "f1"
    await display.key("End")  # the focused candidate with its look-ahead phrase
    msg = await next_input(observer)
    assert isinstance(msg.body, Select) and msg.body.index == 4 and msg.body.phrase and msg.header.fork_id == "f1"

    await display.key("BackSpace", "Tab", "plus", "Escape", "F12")
    cmds = [(await next_input(observer)).body for _ in range(5)]
    assert [c.command for c in cmds if isinstance(c, Command)] == ["back", "more", "more", "toggle_pause",
                                                                    "toggle_pause"]

    # 9 on a 5-candidate fork sends nothing; ctrl+h is a shortcut for someone else, not a letter.
    await display.key("9", "ctrl+h", "1")
    msg = await next_input(observer)
    assert isinstance(msg.body, Select) and msg.body.index == 0


@pytest.mark.x11
async def test_focus_follows_other_sources_and_forks(keyboard: Any, display: XServer, ipc_clients: Any) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    gaze = await ipc_clients("gaze", role="input")
    kb = await keyboard()
    daemon.publish(fork_open(WORDS), fork_id="f1")
    await kb.has_fork("f1")
    gaze.publish(Focus(index=3, source="gaze"), fork_id="f1")
    await until(lambda: kb.adapter.interp.focus == 3)
    await display.key("Right")
    msg = await next_input(observer)
    assert isinstance(msg.body, Focus) and msg.body.index == 4 and msg.body.source == "keyboard"

    gaze.publish(Focus(index=1, source="gaze"), fork_id="f1")
    await until(lambda: kb.adapter.interp.focus == 1)
    await display.key("Return")
    msg = await next_input(observer)
    # Another source's focus: the confirm names no index, the daemon fuses it with its own view.
    assert isinstance(msg.body, Confirm) and msg.body.index is None

    daemon.publish(ForkDecided(index=1, words=["hello"], sources=["gaze", "keyboard"]), fork_id="f1")
    await until(lambda: kb.adapter.interp.fork is None)
    await display.key("2")  # no fork: nothing is sent
    await no_input(observer, 0.4)


@pytest.mark.x11
async def test_letters_type_a_prefix_and_enter_commits(keyboard: Any, display: XServer, ipc_clients: Any) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    kb = await keyboard()
    daemon.publish(fork_open(["the", "a", "an"]), fork_id="f1")
    await kb.has_fork("f1")

    await display.key("h", "e", "l", "BackSpace")
    texts = [body_of(await next_input(observer), Command) for _ in range(4)]
    assert all(b.command == "type" for b in texts)
    assert [b.text for b in texts] == ["h", "he", "hel", "he"]  # Backspace deletes a letter while typing

    # The daemon narrows: a new fork with the prefix; typing goes on from it.
    daemon.publish(fork_open(["hello", "help", "her"], prefix="he"), fork_id="f2")
    await kb.has_fork("f2")
    assert kb.adapter.interp.typed == "he"
    await display.key("l", "l", "o", "Return")
    msgs = [await next_input(observer) for _ in range(4)]
    assert [body_of(m, Command).text for m in msgs[:3]] == ["hel", "hell", "hello"]
    assert body_of(msgs[3], Select).index == 0  # the typed word is a candidate: select it

    daemon.publish(ForkDecided(index=0, words=["hello"], sources=["keyboard"]), fork_id="f2")
    daemon.publish(fork_open(["world", "there"]), fork_id="f3")
    await kb.has_fork("f3")
    await display.key("Z", "q", "space")
    typed = [body_of(await next_input(observer), Command) for _ in range(3)]
    assert [b.text for b in typed] == ["Z", "Zq", "Zq "]  # not a candidate: a trailing space commits it
    assert all(b.command == "type" for b in typed)


@pytest.mark.x11
async def test_debounce_double_reports_and_key_repeat(keyboard: Any, display: XServer, ipc_clients: Any) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    kb = await keyboard(debounce_ms=60)
    daemon.publish(fork_open(WORDS), fork_id="f1")
    await kb.has_fork("f1")

    await display.key("2", "2", delay_ms=5)      # one press reported twice, 5 ms apart
    await display.hold("5", 1.0)                # held past the X autorepeat delay; released when this returns
    await display.key("2", "1", delay_ms=150)   # a real second press of 2, then a sentinel (X keeps the order)
    seen: list[int] = []
    while True:
        msg = await next_input(observer)
        assert isinstance(msg.body, Select)
        assert msg.body.index is not None, msg.body
        seen.append(msg.body.index)
        if msg.body.index == 0:
            break
    assert seen == [1, 4, 1, 0]


@pytest.mark.x11
async def test_late_joiner_learns_the_fork_from_the_snapshot(keyboard: Any, display: XServer,
                                                            ipc_clients: Any) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    daemon.publish(fork_open(WORDS), fork_id="early")
    await wait_retained(daemon, lambda snap: any(m.header.fork_id == "early" for m in snap))
    kb = await keyboard()
    assert kb.adapter.interp.fork is not None and kb.adapter.interp.fork.fork_id == "early"
    await display.key("4")
    msg = await next_input(observer)
    assert isinstance(msg.body, Select) and msg.body.index == 3 and msg.header.fork_id == "early"


@pytest.mark.x11
async def test_cli_runs_the_adapter_and_stops_on_sigterm(display: XServer, ipc_bus: Any, ipc_clients: Any,
                                                         tmp_path: Path) -> None:
    daemon, observer = await bus_pair(ipc_clients)
    daemon.publish(fork_open(WORDS), fork_id="f1")
    await wait_retained(daemon, lambda snap: any(m.header.fork_id == "f1" for m in snap))
    runtime = ipc_bus.config.runtime_dir
    # the CLI under test runs beside the event loop: Popen returns once the process has started
    proc = subprocess.Popen(cli_command("--set", f"bus.runtime_dir={runtime}", "input", "keyboard"),  # noqa: ASYNC220
                            env=cli_env(tmp_path, DISPLAY=display.display),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            msg = await next_input(observer, timeout=20, kinds=("source.status",))
        except AssertionError:  # say why: the adapter's own output
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the adapter said nothing on the bus; rc={proc.returncode}; "
                                 f"stdout={out.decode()[-1500:]!r} stderr={err.decode()[-1500:]!r}") from None
        # "ok" goes out only once the adapter has applied the bus snapshot (KeyAdapter._follow_keys waits for
        # it), and the snapshot held fork f1: the adapter has the fork now
        assert isinstance(msg.body, SourceStatus) and msg.body.state == "ok" and msg.header.sender == "keyboard"
        await display.key("2")
        msg = await next_input(observer)
        assert isinstance(msg.body, Select) and msg.body.index == 1 and msg.header.fork_id == "f1"
        proc.send_signal(signal.SIGTERM)
        msg = await next_input(observer, kinds=("source.status",))
        assert isinstance(msg.body, SourceStatus) and msg.body.state == "stopped"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- end to end with the real daemon
@pytest.mark.model
@pytest.mark.x11
@pytest.mark.timeout(300)  # the first test to use the model loads it
async def test_keys_only_end_to_end_with_the_daemon(display: XServer, daemon: Any) -> None:
    """xdotool -> X -> pynput -> adapter -> bus -> daemon (real model) -> fork.decided."""
    from daemon_fixtures import next_of

    watch = await daemon.client("watch", subscribe=["fork.", "text."])
    client = BusClient("keyboard", daemon.endpoints, role="input", subscribe=list(SUBSCRIBE),
                       heartbeat_ms=daemon.config.bus.heartbeat_ms)
    await client.start()
    daemon.clients.append(client)
    kb = await start_keyboard(client)
    try:
        async def current_fork() -> TrackedFork:
            await until(lambda: kb.adapter.interp.fork is not None, timeout=120)
            fork = kb.adapter.interp.fork
            assert fork is not None
            return fork

        fork = await current_fork()
        await display.key("2")  # direct select
        decided = await next_of(watch, ForkDecided, 60, where=lambda m: m.header.fork_id == fork.fork_id)
        assert decided.body.index == fork.indices[1] and decided.body.words == [fork.words[1]]
        assert "keyboard" in decided.body.sources

        await until(lambda: kb.adapter.interp.fork is not None and kb.adapter.interp.fork.fork_id != fork.fork_id,
                    timeout=120)
        fork = await current_fork()
        await display.key("Right", "Right", "Return")  # focus the second candidate, confirm it
        decided = await next_of(watch, ForkDecided, 60, where=lambda m: m.header.fork_id == fork.fork_id)
        assert decided.body.index == fork.indices[1] and "keyboard" in decided.body.sources

        await until(lambda: kb.adapter.interp.fork is not None and kb.adapter.interp.fork.fork_id != fork.fork_id,
                    timeout=120)
        await display.key("BackSpace")  # back: the last decision is undone
        undo = await next_of(watch, TextUndo, 60)
        assert undo.body.decisions_undone >= 1
    finally:
        await stop_keyboard(kb)


# ---------------------------------------------------------------- errors a user sees
def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = cli_env(tmp_path, **env)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        if name not in env:
            e.pop(name, None)
    return subprocess.run(cli_command(*args), env=e, capture_output=True, text=True, timeout=30)


def test_no_display_says_what_to_do(tmp_path: Path) -> None:
    res = run_cli(tmp_path, "input", "keyboard")
    assert res.returncode == 2, res.stderr
    assert "DISPLAY is not set" in res.stderr
    assert "desktop session" in res.stderr and "--backend evdev" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.x11
def test_unreachable_display_says_what_to_do(tmp_path: Path) -> None:
    res = run_cli(tmp_path, "input", "keyboard", DISPLAY=":398")
    assert res.returncode == 2, res.stderr
    assert "cannot use X display ':398'" in res.stderr and "--backend evdev" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_key_name_in_config_lists_valid_names(tmp_path: Path) -> None:
    res = run_cli(tmp_path, "--set", "inputs.keyboard.keys.entr=confirm", "input", "keyboard")
    assert res.returncode == 2
    assert "unknown key name 'entr'" in res.stderr and "did you mean 'enter'" in res.stderr
    assert "Valid key names for the x11 backend" in res.stderr and "page_up" in res.stderr
    assert "Traceback" not in res.stderr


def test_keymap_validation_reports_every_problem() -> None:
    with pytest.raises(ProtocolError) as err:
        KeyMap.build({"F13": "confirm", "enterr": "confirm", "tab": "mor", "2": "select:0", "3": "phrase:65"},
                     X11_NAMES, where="k")
    assert err.value.code == ErrorCode.BAD_CONFIG
    text = err.value.detail
    assert "'enterr'" in text and "unknown action 'mor'" in text and "did you mean 'more'" in text
    assert "'select:0'" in text and "select:N" in text and "'phrase:65'" in text and "phrase:N" in text
    assert "'F13'" not in text  # f13 is a real key name (Xvfb just has none mapped)
    km = KeyMap.build({"Escape": "none", "return": "more", "PLUS": "back"}, X11_NAMES, where="k",
                      defaults=DEFAULT_KEYBOARD_KEYS)
    assert "esc" not in km.actions and km.actions["enter"] == "more" and km.actions["+"] == "back"


# ---------------------------------------------------------------- the pure logic
def ev(name: str, down: bool, ms: float, char: str | None = None) -> KeyEvent:
    return KeyEvent(name, down, int(ms * 1e6), char)


def press(interp: KeyInterpreter, name: str, ms: float, char: str | None = None) -> list[Any]:
    out = [e.body for e in interp.feed(ev(name, True, ms, char)).emits]
    return out + [e.body for e in interp.feed(ev(name, False, ms + 20, char)).emits]


def with_fork(interp: KeyInterpreter, words: list[str], fork_id: str = "f1", prefix: str = "") -> None:
    header = Header(version="1.0", type="fork.open", id="x", sender="d", session="s", seq=0, ts_ns=0,
                    fork_id=fork_id)
    interp.observe(Message("fork.open.", header, fork_open(words, prefix)))


def test_debouncer_drops_repeats_doubles_and_bounce() -> None:
    d = Debouncer(60)
    assert d.accept(ev("a", True, 0))
    assert not d.accept(ev("a", True, 1))      # double report: down while down
    assert not d.accept(ev("a", True, 500))    # autorepeat: still down
    assert d.accept(ev("a", False, 510))
    assert not d.accept(ev("a", False, 511))   # double release
    assert d.accept(ev("a", True, 600))        # a new press after the window
    assert d.accept(ev("a", False, 605))
    assert not d.accept(ev("a", True, 620))    # bounce: 20 ms after the last press
    assert not d.accept(ev("a", False, 625))   # ...and its release
    assert d.accept(ev("b", True, 621))        # other keys are independent


def test_interpreter_rules() -> None:
    km = KeyMap.build({}, X11_NAMES, where="k", defaults=DEFAULT_KEYBOARD_KEYS)
    it = KeyInterpreter(km, source="keyboard", typing=True)
    assert press(it, "1", 0) == [] and it.feed(ev("2", True, 100)).note.endswith("no open fork")
    assert [b.command for b in press(it, "backspace", 200)] == ["back"]  # back needs no fork
    with_fork(it, ["x", "y", "z"])
    assert press(it, "4", 300) == []                                     # only 3 candidates
    (sel,) = press(it, "3", 400)
    assert isinstance(sel, Select) and sel.index == 2
    assert press(it, "h", 500, "h")[0].text == "h"
    (f,) = press(it, "down", 600)
    assert isinstance(f, Focus) and f.index == 0
    (c,) = press(it, "enter", 700)
    assert isinstance(c, Confirm) and c.index == 0                        # focus set: confirm, not commit
    # A fork from elsewhere with a prefix we never sent: continue from it.
    with_fork(it, ["wide", "wild"], "f2", prefix="wi")
    assert it.typed == "wi" and press(it, "l", 800, "l")[0].text == "wil"
    # Letters while ctrl is held are shortcuts.
    it.feed(ev("ctrl", True, 900))
    assert it.feed(ev("x", True, 910, "x")).emits == []
    it.feed(ev("ctrl", False, 920))
    it.feed(ev("x", False, 930))
    (commit,) = press(it, "space", 1000)
    assert isinstance(commit, Command) and commit.text == "wil " and it.typed == ""
    # phrase:N takes the focused candidate with the first N words of its look-ahead (a pedal per N).
    ph = KeyInterpreter(KeyMap.build({"f2": "phrase:2", "end": "phrase"}, X11_NAMES, where="k",
                                     defaults=DEFAULT_KEYBOARD_KEYS), source="keyboard")
    with_fork(ph, ["x", "y", "z"])
    assert press(ph, "f2", 0) == []                                      # nothing focused yet
    press(ph, "down", 100)
    press(ph, "down", 200)
    (two,) = press(ph, "f2", 300)
    assert isinstance(two, Select) and two.index == 1 and two.phrase_words == 2 and not two.phrase
    (whole,) = press(ph, "end", 400)
    assert isinstance(whole, Select) and whole.phrase and whole.phrase_words == 0
    # A modifier named in the map is a key (some pedals are programmed to send Super).
    pedal = KeyInterpreter(KeyMap.build({"cmd": "more"}, X11_NAMES, where="p"), source="footswitch")
    assert [b.command for b in press(pedal, "cmd", 0)] == ["more"]


def test_long_press_decides_on_release() -> None:
    km = KeyMap.build({"btn_1": "confirm"}, _evdev_names(), where="p",
                      long={"btn_1": "back"}, long_press_ms=600)
    it = KeyInterpreter(km, source="footswitch")
    with_fork(it, ["a", "b"])
    assert it.feed(ev("btn_1", True, 0)).emits == []
    short = it.feed(ev("btn_1", False, 250))
    assert isinstance(short.emits[0].body, Confirm) and "short press 250 ms" in short.note
    it.feed(ev("btn_1", True, 1000))
    long = it.feed(ev("btn_1", False, 1700))
    assert isinstance(long.emits[0].body, Command) and long.emits[0].body.command == "back"


def _evdev_names() -> Any:
    from razvilka.inputs.evdevkeys import evdev_names

    return evdev_names()


async def test_evdev_backend_shares_the_key_map(ipc_clients: Any, tmp_path: Path) -> None:
    """`--backend evdev`: the same key map over kernel key codes (here a recorded keyboard)."""
    rows = []
    t = 1700000000
    # KEY_3, KEY_ENTER, KEY_H, KEY_E, KEY_BACKSPACE with their HID usages (MSC_SCAN 0x7xxxx)
    for i, (code, usage) in enumerate(((4, 0x20), (28, 0x28), (35, 0x0B), (18, 0x08), (14, 0x2A))):
        rows += [[t + i, 0, 4, 4, 0x70000 + usage], [t + i, 0, 1, code, 1], [t + i, 0, 0, 0, 0],
                 [t + i, 100000, 1, code, 2], [t + i, 200000, 1, code, 0], [t + i, 200000, 0, 0, 0]]
    path = tmp_path / "kbd.json"
    path.write_text(json.dumps({"format": "razvilka-evdev-recording/1", "events": rows,
                                "device": {"name": "AT Translated Set 2 keyboard", "vendor": "0001",
                                           "product": "0001", "keys": ["KEY_3", "KEY_ENTER", "KEY_H", "KEY_E",
                                                                       "KEY_BACKSPACE", "KEY_A"]}}))
    conf = KeyboardConfig()
    keymap = build_keymap(conf, "evdev")
    source = EvdevSource(DeviceSpec(), keymap.keys(), finder=RecordedFinder(Recording.load(path)), typing=True,
                         require_names=("a", "enter"))
    daemon = await ipc_clients("fake-daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input."])
    daemon.publish(fork_open(WORDS), fork_id="f1")
    await wait_retained(daemon, lambda snap: any(m.header.fork_id == "f1" for m in snap))
    client = await ipc_clients(conf.name, role="input", subscribe=list(SUBSCRIBE))
    assert await KeyAdapter(client, source, make_interpreter(conf, keymap), name=conf.name).run() == 0
    msgs = [await next_input(observer) for _ in range(5)]
    assert body_of(msgs[0], Select).index == 2
    assert isinstance(msgs[1].body, Confirm)
    assert [body_of(m, Command).text for m in msgs[2:]] == ["h", "he", "h"]  # kernel repeats (value 2) were dropped
