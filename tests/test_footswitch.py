"""The foot switch adapter: pedal events through the evdev source into protocol messages on a real bus.

With a writable /dev/uinput a virtual pedal (evdev.UInput) drives the real kernel path;
otherwise (this sandbox) recorded evdev event sequences (tests/data/footswitch/) drive the
same source, interpreter and adapter. HID-keyboard pedals are also driven through the X
path (xdotool on Xvfb), as the keyboard's listener sees them.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import body_of, wait_retained
from key_helpers import XServer, cli_command, cli_env, fork_open, next_input, until

from razvilka.inputs.config import FootswitchConfig
from razvilka.inputs.evdevkeys import (
    DeviceInfo,
    DeviceSpec,
    EvdevFinder,
    EvdevSource,
    RecordedFinder,
    Recording,
    choose_device,
    key_codes,
    list_devices_text,
    record,
)
from razvilka.inputs.footswitch import build_keymap, make_interpreter, make_source
from razvilka.inputs.keyadapter import SUBSCRIBE, KeyAdapter
from razvilka.inputs.keymap import StatusEvent
from razvilka.protocol.client import BusClient
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Command, Confirm, Message, SourceStatus

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).resolve().parent / "data" / "footswitch"
THREE = DATA / "vec-infinity-evtest.json"
ONE = DATA / "vec-one-pedal-session.json"
PCSENSOR = DATA / "pcsensor-footswitch-b.json"
ONE_PEDAL: dict[str, Any] = {"pedals": {"btn_1": "confirm"}, "long_press": {"btn_1": "back"}, "long_press_ms": 600}


def describe(msg: Message) -> str:
    b = msg.body
    if isinstance(b, SourceStatus):
        return f"status:{b.state}"
    if isinstance(b, Command):
        return f"command:{b.command}"
    return msg.type.split(".")[-1]


async def messages(observer: BusClient, stop_at: str = "status:stopped", timeout: float = 10.0,
                   count: int = 0) -> list[str]:
    """Everything the footswitch said, in order, up to ``stop_at`` (or, given, its first ``count`` messages)."""
    out: list[str] = []
    while not (out and out[-1] == stop_at or count and len(out) >= count):
        msg = await next_input(observer, timeout, kinds=("input.", "source.status"), sender="footswitch")
        out.append(describe(msg))
        if isinstance(msg.body, (Confirm, Command)):
            assert msg.header.fork_id == "f1", "the adapter attaches the open fork"
            assert msg.topic.endswith(".footswitch.")
        else:  # a pedal says nothing else: no select, no focus
            assert isinstance(msg.body, SourceStatus), f"the foot switch sent {msg.header.type}"
    return out


@pytest.fixture
async def bus_side(ipc_clients: Any) -> tuple[Any, BusClient]:
    """A fork is open (published by a stand-in daemon, retained by the bus) and an observer listens to inputs."""
    daemon = await ipc_clients("fake-daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input.", "source.status."])
    daemon.publish(fork_open(["the", "a", "an"]), fork_id="f1")
    await wait_retained(observer, lambda snap: any(m.header.fork_id == "f1" for m in snap))
    return ipc_clients, observer


async def run_footswitch(factory: Any, source: Any, **cfg: Any) -> tuple[int, KeyAdapter]:
    conf = FootswitchConfig(**cfg)
    keymap = build_keymap(conf, "x11" if conf.backend == "x11" else "evdev")
    client = await factory(conf.name, role="input", subscribe=list(SUBSCRIBE))
    adapter = KeyAdapter(client, source, make_interpreter(conf, keymap), name=conf.name)
    return await adapter.run(), adapter


def replay(path: Path, **cfg: Any) -> Any:
    conf = FootswitchConfig(reconnect_ms=20, **cfg)
    return make_source(conf, build_keymap(conf, "evdev"), "evdev", "", replay=str(path))


# ---------------------------------------------------------------- recorded sequences (no /dev/uinput here)
async def test_three_pedals_left_back_middle_confirm_right_more(bus_side: Any) -> None:
    factory, observer = bus_side
    source = replay(THREE)
    code, _ = await run_footswitch(factory, source)
    assert code == 0
    assert await messages(observer) == ["status:ok", "command:back", "confirm", "command:more", "status:stopped"]


async def test_one_pedal_short_confirms_long_goes_back_and_replug_recovers(bus_side: Any) -> None:
    factory, observer = bus_side
    source = replay(ONE, **ONE_PEDAL)
    code, _ = await run_footswitch(factory, source, **ONE_PEDAL)
    assert code == 0
    assert await messages(observer) == [
        "status:ok", "confirm", "command:back",           # 260 ms, 1100 ms
        "status:lost", "status:recovered", "confirm",     # unplugged, back, 230 ms
        "status:stopped",
    ]


async def test_device_status_details(bus_side: Any) -> None:
    factory, observer = bus_side
    finder = RecordedFinder(Recording.load(ONE))
    conf = FootswitchConfig(reconnect_ms=20, **ONE_PEDAL)
    source = EvdevSource(DeviceSpec.parse("05f3:00ff"), build_keymap(conf, "evdev").keys(), finder=finder)
    await run_footswitch(factory, source, **ONE_PEDAL)
    details: dict[str, str] = {}
    while len(details) < 3:
        status = body_of(await next_input(observer, kinds=("source.status",), sender="footswitch"), SourceStatus)
        details.setdefault(status.state, status.detail)
    assert "VEC  VEC USB Footpedal (05f3:00ff)" in details["ok"] and "grabbed" in details["ok"]
    assert "went away" in details["lost"] and "No such device" in details["lost"]
    assert "05f3:00ff" in details["recovered"]


async def test_hid_keyboard_pedal_through_evdev(bus_side: Any) -> None:
    """A PCsensor pedal sends KEY_B; held, the kernel repeats it; the long press is measured."""
    factory, observer = bus_side
    cfg: dict[str, Any] = {"device": "PCsensor FootSwitch", "pedals": {"b": "confirm"}, "long_press": {"KEY_B": "back"}}
    source = replay(PCSENSOR, **cfg)
    code, _ = await run_footswitch(factory, source, **cfg)
    assert code == 0
    assert await messages(observer) == ["status:ok", "confirm", "command:back", "status:stopped"]


async def test_cli_replay(ipc_bus: Any, bus_side: Any, tmp_path: Path) -> None:
    """`razvilka input footswitch --replay FILE`: the real entry point, config and bus discovery."""
    _, observer = bus_side
    proc = await asyncio.create_subprocess_exec(
        *cli_command("--set", f"bus.runtime_dir={ipc_bus.config.runtime_dir}", "input", "footswitch",
                     "--replay", str(THREE)),
        env=cli_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert await messages(observer) == ["status:ok", "command:back", "confirm", "command:more", "status:stopped"]


# ---------------------------------------------------------------- HID-keyboard pedal via X (the keyboard path)
@pytest.mark.x11
async def test_hid_keyboard_pedal_through_x11(display: XServer, bus_side: Any) -> None:
    from razvilka.inputs.x11keys import X11KeySource

    factory, observer = bus_side
    cfg: dict[str, Any] = {"backend": "x11", "pedals": {"a": "back", "b": "confirm", "c": "more"},
           "long_press": {"b": "back"}, "long_press_ms": 500}
    source = X11KeySource()
    await source.open()
    conf = FootswitchConfig(**cfg)
    keymap = build_keymap(conf, "x11")
    client = await factory(conf.name, role="input", subscribe=list(SUBSCRIBE))
    adapter = KeyAdapter(client, source, make_interpreter(conf, keymap), name=conf.name)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        await until(lambda: adapter.state == "ok" and adapter.interp.fork is not None)
        await display.key("a", "b", "c", "x")   # x is no pedal: nothing
        await display.hold("b", 0.9)            # held: X autorepeats, one long press
        said = await messages(observer, count=5)  # the long press is out: stop now
        stop.set()
        assert await asyncio.wait_for(task, 5) == 0
    finally:
        stop.set()
        source.close()
    assert said + await messages(observer) == ["status:ok", "command:back", "confirm", "command:more",
                                               "command:back", "status:stopped"]


# ---------------------------------------------------------------- a virtual device through the kernel
def _uinput_usable() -> str:
    if not os.path.exists("/dev/uinput"):
        return "no /dev/uinput on this machine (modprobe uinput, as root); the recorded sequences cover the path"
    if not os.access("/dev/uinput", os.W_OK):
        return "/dev/uinput is not writable by this user; the recorded sequences cover the path"
    return ""


@pytest.mark.skipif(bool(_uinput_usable()), reason=_uinput_usable() or "ok")
async def test_virtual_pedal_through_uinput(bus_side: Any) -> None:
    """A uinput device is a real /dev/input/event* node: match, grab, read, unplug, replug."""
    from evdev import UInput, ecodes

    factory, observer = bus_side
    caps: dict[int, Sequence[int]] = {ecodes.EV_KEY: [ecodes.BTN_0, ecodes.BTN_1, ecodes.BTN_2]}
    ids: dict[str, Any] = {"vendor": 0x1209, "product": 0x7ed1, "name": "razvilka test pedal"}  # pid.codes test range

    def tap(ui: Any, code: int, hold_s: float) -> None:
        ui.write(ecodes.EV_KEY, code, 1)
        ui.syn()
        import time

        time.sleep(hold_s)
        ui.write(ecodes.EV_KEY, code, 0)
        ui.syn()

    def node_seen() -> bool:  # udev has created the node and it can be read
        return any((d.vendor, d.product) == (0x1209, 0x7ED1) for d in EvdevFinder().scan()[0])

    conf = FootswitchConfig(device="1209:7ed1", reconnect_ms=50, **ONE_PEDAL)
    ui = UInput(caps, **ids)
    try:
        await until(node_seen, "the virtual pedal's /dev/input node")
        source = make_source(conf, build_keymap(conf, "evdev"), "evdev", conf.device)
        client = await factory(conf.name, role="input", subscribe=list(SUBSCRIBE))
        adapter = KeyAdapter(client, source, make_interpreter(conf, build_keymap(conf, "evdev")), name=conf.name)
        stop = asyncio.Event()
        task = asyncio.create_task(adapter.run(stop))
        await until(lambda: adapter.state == "ok")
        await asyncio.to_thread(tap, ui, ecodes.BTN_1, 0.1)
        await asyncio.to_thread(tap, ui, ecodes.BTN_1, 0.8)
        ui.close()
        await until(lambda: adapter.state == "lost")
        ui = UInput(caps, **ids)
        await until(lambda: adapter.state == "recovered", timeout=10)
        await asyncio.to_thread(tap, ui, ecodes.BTN_1, 0.1)
        said = await messages(observer, count=6)  # the last tap's confirm is out: stop now
        stop.set()
        assert await asyncio.wait_for(task, 5) == 0
    finally:
        ui.close()
    assert said + await messages(observer) == ["status:ok", "confirm", "command:back", "status:lost",
                                               "status:recovered", "confirm", "status:stopped"]


# ---------------------------------------------------------------- matching and bad input
def test_device_spec_and_choice() -> None:
    pedal = DeviceInfo("/dev/input/event12", "VEC  VEC USB Footpedal", 0x05F3, 0x00FF, frozenset(key_codes("btn_1")))
    kbd = DeviceInfo("/dev/input/event3", "AT Translated Set 2 keyboard", 1, 1,
                     frozenset(key_codes("a") | key_codes("b") | key_codes("enter")))
    pcs = DeviceInfo("/dev/input/event20", "PCsensor FootSwitch Keyboard", 0x3553, 0xB001,
                     frozenset(key_codes("b")))
    pcs_mouse = DeviceInfo("/dev/input/event21", "PCsensor FootSwitch Mouse", 0x3553, 0xB001,
                           frozenset(key_codes("btn_left")))
    devices = [kbd, pedal, pcs_mouse, pcs]
    assert choose_device(DeviceSpec.parse("05f3:00ff"), devices, key_codes("btn_1")) is pedal
    assert choose_device(DeviceSpec.parse("VEC USB"), devices, set()) is pedal
    # The pedal's mouse node has none of the mapped keys; the keyboard node of the same ids does.
    assert choose_device(DeviceSpec.parse("3553:B001"), devices, key_codes("b")) is pcs
    assert choose_device(DeviceSpec.parse("/dev/input/event3"), devices, key_codes("b")) is kbd
    assert choose_device(DeviceSpec.parse("05f3:00ff"), [kbd], set()) is None
    for bad in ("05f3:zz", "vec:1"):
        with pytest.raises(ProtocolError) as err:
            DeviceSpec.parse(bad)
        assert err.value.code == ErrorCode.BAD_CONFIG and "05f3:00ff" in err.value.detail


async def test_missing_device_reports_lost_and_keeps_waiting(tmp_path: Path) -> None:
    """The real /dev/input scanner on an empty directory: lost once, with what to check, then waits."""
    source = EvdevSource(DeviceSpec.parse("05f3:00ff"), ["btn_1"], finder=EvdevFinder(str(tmp_path)),
                         reconnect_s=0.01)
    events = source.events()
    first = await anext(events)
    assert isinstance(first, StatusEvent) and first.state == "lost"
    assert "no input device matches 05f3:00ff" in first.detail and "waiting" in first.detail
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # no second "lost": one report per outage
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await events.aclose()


def test_bad_pedal_config_is_refused_clearly() -> None:
    with pytest.raises(ProtocolError) as err:
        build_keymap(FootswitchConfig(pedals={"btn_9x": "confirm", "btn_2": "jump"}), "evdev")
    text = err.value.detail
    assert err.value.code == ErrorCode.BAD_CONFIG
    assert "unknown key name 'btn_9x'" in text and "unknown action 'jump'" in text and "btn_0" in text
    with pytest.raises(ProtocolError) as err:
        build_keymap(FootswitchConfig(backend="x11"), "x11")  # btn_* exist only for evdev
    assert "unknown key name 'btn_0'" in err.value.detail and "x11 backend" in err.value.detail
    conf = FootswitchConfig(device="")
    with pytest.raises(ProtocolError) as err:
        make_source(conf, build_keymap(conf, "evdev"), "evdev", "")
    assert "device is empty" in err.value.detail and "--list" in err.value.detail


def test_bad_recording_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "razvilka-evdev-recording/1", "device": {"name": "x", "vendor": "1", '
                   '"product": "2"}, "events": [[1, 2, 3]]}')
    with pytest.raises(ProtocolError) as err:
        Recording.load(bad)
    assert "event 0 is not [sec, usec, type, code, value]" in err.value.detail
    bad.write_text("{}")
    with pytest.raises(ProtocolError) as err:
        Recording.load(bad)
    assert "is not a razvilka-evdev-recording/1 file" in err.value.detail


async def test_record_format_round_trips(tmp_path: Path) -> None:
    """`--record` writes what `--replay` reads (driven here from a recording, as no device exists)."""
    out = tmp_path / "rec.json"
    n = await record(DeviceSpec.parse("05f3:00ff"), out, seconds=5, finder=RecordedFinder(Recording.load(THREE)))
    again, original = Recording.load(out), Recording.load(THREE)
    assert n == 18 and again.entries == original.entries and again.device.codes == original.device.codes
    assert "no readable input devices" in list_devices_text(EvdevFinder(str(tmp_path)))


def test_cli_tools_without_devices(tmp_path: Path) -> None:
    res = subprocess.run(cli_command("input", "footswitch", "--list-keys"), env=cli_env(tmp_path),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "btn_0" in res.stdout.split() and "enter" in res.stdout.split()
    res = subprocess.run(cli_command("--set", "inputs.footswitch.pedals.btn_1=confrim", "input", "footswitch"),
                         env=cli_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "unknown action 'confrim'" in res.stderr and "did you mean 'confirm'" in res.stderr
