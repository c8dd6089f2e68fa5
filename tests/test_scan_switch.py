"""Switch scanning on the bus: the keyboard adapter with ``--scan auto|step`` (real pynput under Xvfb,
real key events from xdotool, a real bus; the end-to-end test drives the real daemon and model)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from key_helpers import XServer, cli_command, cli_env, display, xserver  # noqa: F401 - fixtures

from razvilka.inputs.config import FootswitchConfig, KeyboardConfig
from razvilka.inputs.footswitch import build_keymap as pedal_keymap
from razvilka.inputs.footswitch import make_interpreter as pedal_interpreter
from razvilka.inputs.keyadapter import SUBSCRIBE, KeyAdapter
from razvilka.inputs.keyboard import build_keymap, make_interpreter
from razvilka.inputs.keymap import KeyEvent
from razvilka.inputs.scan import ScanConfig
from razvilka.inputs.scanswitch import REST_DETAIL, WAKE_DETAIL, ScanCompanion, ScanInterpreter, with_scanning
from razvilka.inputs.x11keys import X11KeySource
from razvilka.protocol.client import BusClient
from razvilka.protocol.codec import Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Body,
    Box,
    Candidate,
    Focus,
    ForkDecided,
    ForkOpen,
    Layout,
    Letter,
    Message,
    Select,
    SourceStatus,
    TargetBox,
    TextState,
)
from razvilka.protocol.targets import ALPHABETS

pytestmark = pytest.mark.timeout(90)

#: What a scanning key adapter subscribes to (its client's, as ``serve_source`` makes it).
SCANNING = [*SUBSCRIBE, *ScanCompanion.subscribe]


# ---------------------------------------------------------------- a renderer's layout, 1.4
def keyboard_layout(fork: ForkOpen, renderer: str = "test", likely: int = 6) -> Layout:
    """What the browser view draws, as a layout: candidates (row 0), commands (row 1), the likeliest
    letters (row 2), the alphabet nine to a row, then space / delete / accept."""
    boxes = [Box(index=c.index, x=10 + 110 * n, y=10, w=100, h=40, row=0, col=n)
             for n, c in enumerate(sorted(fork.candidates, key=lambda c: c.index))]
    rows: list[list[str]] = [["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]]
    rows.append([f"key:{lt.ch}" for lt in fork.letters if lt.ch != " "][:likely])
    alphabet = ALPHABETS["cyrillic" if fork.script == "cyrillic" else "latin"]
    rows += [[f"key:{ch}" for ch in alphabet[i:i + 9]] for i in range(0, len(alphabet), 9)]
    rows.append(["key:space", "key:delete", "key:accept"])
    targets = [TargetBox(target=t, x=10 + 60 * c, y=60 + 50 * r, w=50, h=40, row=r + 1, col=c)
               for r, row in enumerate(r for r in rows if r) for c, t in enumerate(row)]
    return Layout(boxes=boxes, targets=targets, screen_w=1024, screen_h=768, renderer=renderer)


def fork(words: list[str], letters: str = "etaoin", prefix: str = "") -> ForkOpen:
    """A fork whose candidates and letters are likeliest first."""
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=round(0.9 / (i + 2), 3)) for i, w in enumerate(words)],
                    prefix=prefix,
                    letters=[Letter(ch=ch, prob=round(0.5 / (i + 1), 3)) for i, ch in enumerate(letters)])


def row_of(layout: Layout, target: str) -> list[str]:
    """The targets scanned with ``target`` in its first row."""
    cands = [f"cand:{b.index}" for b in layout.boxes]
    if target in cands:
        return cands
    first = next(t.row for t in layout.targets if t.target == target)
    return [t.target for t in layout.targets if t.row == first]


# ---------------------------------------------------------------- the interpreter, on real messages
DAEMON, RENDERER = Codec("daemon"), Codec("test")


def msg(body: Body, fork_id: str | None, codec: Codec = DAEMON) -> Message:
    return codec.decode(codec.encode(body, fork_id=fork_id))


def key(interp: ScanInterpreter, name: str, ms: float) -> list[Body]:
    down = interp.feed(KeyEvent(name, True, int(ms * 1e6), None))
    up = interp.feed(KeyEvent(name, False, int((ms + 30) * 1e6), None))
    return [e.body for e in down.emits + up.emits]


def bodies(reaction: Any) -> list[Body]:
    return [e.body for e in reaction.emits]


def test_the_interpreter_scans_the_open_forks_layout_and_selects_targets() -> None:
    cfg = KeyboardConfig()
    keymap = build_keymap(cfg, "x11")
    interp, scanner = with_scanning(ScanConfig(), "auto", make_interpreter(cfg, keymap), "inputs.keyboard.keys")
    assert isinstance(interp, ScanInterpreter) and isinstance(scanner, ScanCompanion) and scanner.interp is interp
    f1 = fork(["the", "a", "an"])
    layout = keyboard_layout(f1)
    ms = 1e6
    assert bodies(interp.follow(msg(f1, "f1"), int(0 * ms))) == []  # no layout yet: nothing to scan
    (first,) = bodies(interp.follow(msg(layout, "f1", RENDERER), int(10 * ms)))
    assert isinstance(first, Focus) and first.group == ["cand:0", "cand:1", "cand:2"] and first.index is None
    assert first.target is None and first.source == "keyboard" and first.kind == "key"
    assert interp.deadline_ns == int(1010 * ms)
    assert bodies(interp.tick(int(1000 * ms))) == []
    (cmds,) = bodies(interp.tick(int(1010 * ms)))
    assert isinstance(cmds, Focus) and cmds.group == ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]
    (likely,) = bodies(interp.tick(int(2010 * ms)))
    assert isinstance(likely, Focus) and likely.group == ["key:e", "key:t", "key:a", "key:o", "key:i", "key:n"]
    (entered,) = key(interp, "space", 2500)  # the switch: space is mapped to confirm
    assert isinstance(entered, Focus) and entered.target == "key:e"
    interp.tick(int(3500 * ms))
    (chosen,) = [b for b in key(interp, "enter", 3700) if isinstance(b, Select)]  # enter is a confirm key too
    assert chosen.target == "key:t" and chosen.index is None and chosen.kind == "key"
    # other keys keep their actions: a helper can still press a number
    (direct,) = key(interp, "2", 3800)
    assert isinstance(direct, Select) and direct.index == 1
    # the daemon narrows (a new fork): scanning waits for its layout, which may even come first
    f2 = fork(["to", "than"], letters="oh", prefix="t")
    assert interp.follow(msg(keyboard_layout(f2), "f2", RENDERER), int(3900 * ms)).note.startswith("layout for fork f2")
    (again,) = bodies(interp.follow(msg(f2, "f2"), int(4000 * ms)))
    assert isinstance(again, Focus) and again.group == ["cand:0", "cand:1"]
    # decided: nothing to scan, nothing moves
    assert bodies(interp.follow(msg(ForkDecided(index=0, words=["to"], sources=["keyboard"]), "f2"),
                                int(4100 * ms))) == []
    assert interp.deadline_ns is None and bodies(interp.tick(int(9000 * ms))) == []
    assert key(interp, "space", 9100) == []


def test_only_the_chosen_renderers_layout_and_unknown_targets_are_named() -> None:
    cfg = KeyboardConfig()
    interp = ScanInterpreter(build_keymap(cfg, "x11"), ScanConfig(mode="step", renderer="web"), source="keyboard")
    f1 = fork(["x", "y"])
    interp.follow(msg(f1, "f1"), 0)
    assert bodies(interp.follow(msg(keyboard_layout(f1, renderer="tui"), "f1", RENDERER), 1)) == []
    newer = Layout(boxes=[Box(index=0, x=0, y=0, w=9, h=9), Box(index=1, x=20, y=0, w=9, h=9)],
                   targets=[TargetBox(target="cmd:juggle", x=0, y=20, w=9, h=9, row=1)],
                   screen_w=100, screen_h=100, renderer="web")
    reaction = interp.follow(msg(newer, "f1", RENDERER), 2)
    assert "cmd:juggle" in reaction.note and "renderer web" in reaction.note
    (focus,) = bodies(reaction)  # one row of candidates: their items at once
    assert isinstance(focus, Focus) and focus.target == "cand:0"
    # step mode: down/right (focus_next) advance, space/enter (confirm) select; no clock
    assert interp.deadline_ns is None
    (nxt,) = key(interp, "right", 100)
    assert isinstance(nxt, Focus) and nxt.target == "cand:1"
    (sel,) = [b for b in key(interp, "space", 200) if isinstance(b, Select)]
    assert sel.target == "cand:1"


def test_step_scanning_needs_an_advance_switch_and_says_where_to_map_it(tmp_path: Path) -> None:
    cfg = FootswitchConfig()
    km = pedal_keymap(cfg, "evdev")
    with pytest.raises(ProtocolError) as err:
        with_scanning(ScanConfig(), "step", pedal_interpreter(cfg, km), "inputs.footswitch.pedals")
    assert err.value.code == ErrorCode.BAD_CONFIG
    assert err.value.detail == ("scan.mode = step needs an advance switch (a key mapped to focus_next); map one in "
                                "inputs.footswitch.pedals, e.g. --set inputs.footswitch.pedals.<key>=focus_next")
    # auto needs only the confirm pedal (btn_1 by default); the pedal's kind is switch
    interp, _ = with_scanning(ScanConfig(), "auto", pedal_interpreter(cfg, km), "inputs.footswitch.pedals")
    assert isinstance(interp, ScanInterpreter) and interp.kind == "switch"
    # off: the plain adapter, no scanner beside it
    plain, scanner = with_scanning(ScanConfig(mode="auto"), "off", pedal_interpreter(cfg, km), "x")
    assert scanner is None and not isinstance(plain, ScanInterpreter)
    # the command line says it before it opens any device
    import subprocess

    res = subprocess.run(cli_command("input", "footswitch", "--scan", "step", "--device", "05f3:00ff"),
                         env=cli_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert res.returncode == 2, res.stderr
    assert "razvilka input footswitch: scan.mode = step needs an advance switch" in res.stderr
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- real keys, a real bus
class Person:
    """Watches the scan on the bus and presses the one switch when it highlights what they want."""

    #: No faster than a hand: a second press within the adapter's debounce window would be dropped.
    GAP_S = 0.15

    def __init__(self, watch: BusClient, x: XServer, *, sender: str = "keyboard", switch: str = "space") -> None:
        self.watch, self.x, self.sender, self.switch = watch, x, sender, switch
        self.fork_id: str | None = None
        self.presses = 0
        self._last = 0.0

    async def press(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last + self.GAP_S - loop.time()))
        self._last = loop.time()
        self.presses += 1
        await self.x.key(key)

    async def next(self, deadline: float, what: str) -> Message | None:
        """The next message; fork.open is remembered (the screen now shows that fork)."""
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"never saw {what}"
        m = await self.watch.recv(left)
        if m is not None and isinstance(m.body, ForkOpen):
            self.fork_id = m.header.fork_id
        return m

    async def status(self, detail: str, timeout: float = 10.0) -> None:
        """Wait for the adapter's source.status with ``detail`` (rest, wake)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            m = await self.next(deadline, f"source.status {detail!r}")
            if m is not None and isinstance(m.body, SourceStatus) and m.body.detail == detail:
                return

    async def choose(self, target: str, timeout: float = 60.0, advance: str | None = None) -> Select:
        """Press when ``target``'s row, then ``target``, is highlighted on the open fork; the Select.

        ``advance``: step mode, press this key to move the highlight instead of waiting."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            m = await self.next(deadline, f"a chance to choose {target}")
            if m is None or m.header.sender != self.sender:
                continue
            body = m.body
            if isinstance(body, Select):
                assert body.target == target, f"selected {body.target}, wanted {target}"
                self.fork_id = None  # chosen: the screen changes with the next fork; act on that one
                return body
            if not isinstance(body, Focus) or m.header.fork_id != self.fork_id:
                continue
            if body.target == target or (body.target is None and target in body.group):
                await self.press(self.switch)
            elif advance is not None and (body.target is not None or body.group):
                await self.press(advance)


async def start_scanning(client: BusClient, scan: ScanConfig, **cfg: Any) -> tuple[KeyAdapter, asyncio.Task[int],
                                                                                  asyncio.Event, X11KeySource]:
    conf = KeyboardConfig(**cfg)
    interp, scanner = with_scanning(scan, None, make_interpreter(conf, build_keymap(conf, "x11")),
                                    "inputs.keyboard.keys")
    assert isinstance(scanner, ScanCompanion)
    source = X11KeySource()
    await source.open()
    adapter = KeyAdapter(client, source, interp, name=conf.name, companion=scanner)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    await asyncio.wait_for(adapter.ready.wait(), 5)
    return adapter, task, stop, source


@contextlib.asynccontextmanager
async def scanning(client: BusClient, scan: ScanConfig, **cfg: Any) -> AsyncIterator[KeyAdapter]:
    adapter, task, stop, source = await start_scanning(client, scan, **cfg)
    try:
        yield adapter
    finally:
        stop.set()
        try:
            assert await asyncio.wait_for(task, 5) == 0
        finally:
            source.close()


@pytest.fixture
async def bus_side(display: XServer, ipc_clients: Any) -> Callable[..., Any]:  # noqa: F811
    async def make() -> tuple[BusClient, BusClient, BusClient, BusClient]:
        daemon = await ipc_clients("fake-daemon", role="daemon")
        renderer = await ipc_clients("test", role="renderer")
        watch = await ipc_clients("watch", subscribe=["input.", "fork.open", "source.status."])
        kb = await ipc_clients("keyboard", role="input", subscribe=SCANNING)
        return daemon, renderer, watch, kb

    return make


@pytest.mark.x11
async def test_one_key_automatic_scanning_on_a_bus(bus_side: Any, display: XServer) -> None:  # noqa: F811
    daemon, renderer, watch, kb = await bus_side()
    async with scanning(kb, ScanConfig(mode="auto", interval_ms=400, loops=1)):
        person = Person(watch, display)
        f1 = fork(["the", "a", "an"])
        daemon.publish(f1, fork_id="f1")
        renderer.publish(keyboard_layout(f1), fork_id="f1")
        sel = await person.choose("key:w")  # alphabet row 3 (s..z... after a-i, j-r), column 4
        assert sel.kind == "key" and sel.index is None and person.presses == 2
        f2 = fork(["was", "we"], letters="ae", prefix="w")
        daemon.publish(f2, fork_id="f2")
        renderer.publish(keyboard_layout(f2), fork_id="f2")
        assert (await person.choose("cand:1")).target == "cand:1"
        # nobody presses: one pass over the rows, then rest; a press wakes it, selecting nothing
        f3 = fork(["x", "y"])
        daemon.publish(f3, fork_id="f3")
        renderer.publish(keyboard_layout(f3), fork_id="f3")
        await person.status(REST_DETAIL)
        await person.press("space")
        await person.status(WAKE_DETAIL)
        assert (await person.choose("cmd:more")).target == "cmd:more"


@pytest.mark.x11
async def test_two_key_step_scanning_on_a_bus(bus_side: Any, display: XServer) -> None:  # noqa: F811
    daemon, renderer, watch, kb = await bus_side()
    async with scanning(kb, ScanConfig(mode="step", loops=2)):
        person = Person(watch, display, switch="Return")
        f1 = fork(["the", "a", "an"])
        daemon.publish(f1, fork_id="f1")
        renderer.publish(keyboard_layout(f1), fork_id="f1")
        sel = await person.choose("key:delete", advance="Right")
        # six advances down to the space / delete / accept row, enter it, one advance, select: 9 presses
        assert sel.target == "key:delete" and person.presses == 9


@pytest.mark.x11
async def test_a_foot_switch_is_the_one_switch(ipc_clients: Any, display: XServer) -> None:  # noqa: F811
    """The foot-switch adapter's interpreter (kind switch) on a pedal that sends F9 (x11 backend)."""
    daemon = await ipc_clients("fake-daemon", role="daemon")
    renderer = await ipc_clients("test", role="renderer")
    watch = await ipc_clients("watch", subscribe=["input.", "fork.open"])
    client = await ipc_clients("footswitch", role="input", subscribe=SCANNING)
    cfg = FootswitchConfig(backend="x11", pedals={"f9": "confirm"})
    interp, scanner = with_scanning(ScanConfig(interval_ms=400), "auto",  # --scan auto over scan.mode off
                                    pedal_interpreter(cfg, pedal_keymap(cfg, "x11")), "inputs.footswitch.pedals")
    source = X11KeySource()
    await source.open()
    adapter = KeyAdapter(client, source, interp, name="footswitch", companion=scanner)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        await asyncio.wait_for(adapter.ready.wait(), 5)
        person = Person(watch, display, sender="footswitch", switch="F9")
        f1 = fork(["one", "two", "three"])
        daemon.publish(f1, fork_id="f1")
        renderer.publish(keyboard_layout(f1), fork_id="f1")
        sel = await person.choose("cand:2")
        assert sel.kind == "switch" and sel.source == "footswitch" and person.presses == 2
    finally:
        stop.set()
        try:
            assert await asyncio.wait_for(task, 5) == 0
        finally:
            source.close()


@pytest.mark.x11
async def test_the_command_line_scans_with_one_key(display: XServer, ipc_bus: Any, ipc_clients: Any,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """`razvilka input keyboard --scan auto` as its own process: the layout from the bus snapshot."""
    import signal

    daemon = await ipc_clients("fake-daemon", role="daemon")
    renderer = await ipc_clients("test", role="renderer")
    watch = await ipc_clients("watch", subscribe=["input.", "fork.open", "source.status."])
    f1 = fork(["one", "two", "three"])
    daemon.publish(f1, fork_id="f1")
    renderer.publish(keyboard_layout(f1), fork_id="f1")  # before the adapter starts: it reads the snapshot
    log = tmp_path / "adapter.log"
    with log.open("wb") as err_file:  # a file, not a pipe: nobody reads the log while it runs
        proc = await asyncio.create_subprocess_exec(
            *cli_command("--set", f"bus.runtime_dir={ipc_bus.config.runtime_dir}", "--set", "scan.interval_ms=500",
                         "input", "keyboard", "--scan", "auto"),
            env=cli_env(tmp_path, DISPLAY=display.display), stdout=asyncio.subprocess.DEVNULL, stderr=err_file)
    try:
        person = Person(watch, display)
        person.fork_id = "f1"
        try:
            sel = await person.choose("cand:2", timeout=30)
        except AssertionError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"no scan select; rc={proc.returncode}; log={log.read_text()[-2000:]!r}") from None
        assert sel.source == "keyboard" and sel.kind == "key"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------- end to end: the real daemon and model
@pytest.mark.model
@pytest.mark.x11
@pytest.mark.timeout(600)
async def test_one_key_writes_a_phrase_with_a_spelled_word(display: XServer, daemon: Any) -> None:  # noqa: F811
    """xdotool presses one key (space) as the only switch; automatic scanning over a 1.4 layout (candidates,
    commands, the model's likeliest letters, the alphabet) picks a candidate, then spells "kiwi" letter by
    letter and ends it with the space key; the daemon (real model) writes both words."""
    from daemon_fixtures import DEFAULT_PROMPT, next_of

    watch = await daemon.client("watch", subscribe=["fork.", "input.", "text.state"])
    kb = BusClient("keyboard", daemon.endpoints, role="input", subscribe=SCANNING,
                   heartbeat_ms=daemon.config.bus.heartbeat_ms)
    await kb.start()
    daemon.clients.append(kb)
    renderer = await daemon.client("test", subscribe=["fork.open"], role="renderer")

    async def draw() -> None:
        """The renderer's part: a layout for every fork (the open one first, from the snapshot)."""
        for m in await renderer.snapshot():
            if isinstance(m.body, ForkOpen):
                renderer.publish(keyboard_layout(m.body), fork_id=m.header.fork_id)
        async for m in renderer:
            if isinstance(m.body, ForkOpen):
                renderer.publish(keyboard_layout(m.body), fork_id=m.header.fork_id)

    async with scanning(kb, ScanConfig(mode="auto", interval_ms=800, loops=3)) as adapter:
        drawer = asyncio.create_task(draw())
        try:
            person = Person(watch, display)
            await until_fork(adapter)
            first = adapter.interp.forks.fork
            assert first is not None
            person.fork_id = first.fork_id
            await person.choose("cand:0", timeout=120)
            decided = (await next_of(watch, "fork.decided", 120,
                                     where=lambda m: m.header.fork_id == first.fork_id)).body
            assert isinstance(decided, ForkDecided)
            assert decided.index == 0 and decided.target == "cand:0" and "keyboard" in decided.sources
            word = decided.words[0]
            for ch in "kiwi":
                await person.choose(f"key:{ch}", timeout=180)
            await person.choose("key:space", timeout=180)
            typed = (await next_of(watch, "fork.decided", 180,
                                   where=lambda m: getattr(m.body, "target", "") == "key:space")).body
            assert isinstance(typed, ForkDecided) and typed.words == ["kiwi"] and typed.typed
            state = (await next_of(watch, "text.state", 60,
                                   where=lambda m: getattr(m.body, "text", "").rstrip().endswith("kiwi"))).body
            assert isinstance(state, TextState)
            tail = state.text[len(DEFAULT_PROMPT):]
            assert tail.split()[-1] == "kiwi" and word.strip() in tail, tail
        finally:
            drawer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drawer


async def until_fork(adapter: KeyAdapter, timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while adapter.interp.forks.fork is None:
        assert asyncio.get_running_loop().time() < deadline, "the daemon opened no fork"
        await asyncio.sleep(0.05)
