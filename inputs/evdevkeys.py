"""Key events straight from ``/dev/input/event*`` through python-evdev (Linux).

Used by the foot switch (VEC/Infinity pedals send no key events to X at all; HID-keyboard
pedals are read here too so that they can be grabbed) and by ``razvilka input keyboard
--backend evdev`` (no X display needed). One :class:`EvdevSource` finds the device by
vendor:product, name or path, grabs it, turns its events into :class:`KeyEvent` and
reports unplug/replug as :class:`StatusEvent`.

Devices come from a *finder*: :class:`EvdevFinder` scans the real ``/dev/input``;
:class:`RecordedFinder` plays a recorded event sequence (see ``--record``) through the same
source, for tests on machines without ``/dev/uinput`` and for checking a pedal map offline.
evdev is imported inside functions; the module itself imports nothing heavy.
"""
from __future__ import annotations

import asyncio
import errno
import glob
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from razvilka.inputs.keymap import KeyEvent, KeyNames, StatusEvent
from razvilka.protocol.clock import now_ns, unix_to_bus_offset_s
from razvilka.protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("razvilka.inputs.evdev")

EV_SYN, EV_KEY = 0, 1
RECORDING_FORMAT = "razvilka-evdev-recording/1"

#: Kernel names that get the same canonical name the X11 backend reports.
_SPECIAL: dict[str, str] = {
    "KEY_ENTER": "enter", "KEY_KPENTER": "enter", "KEY_ESC": "esc", "KEY_BACKSPACE": "backspace",
    "KEY_SPACE": "space", "KEY_TAB": "tab", "KEY_UP": "up", "KEY_DOWN": "down", "KEY_LEFT": "left",
    "KEY_RIGHT": "right", "KEY_PAGEUP": "page_up", "KEY_PAGEDOWN": "page_down", "KEY_HOME": "home",
    "KEY_END": "end", "KEY_INSERT": "insert", "KEY_DELETE": "delete", "KEY_CAPSLOCK": "caps_lock",
    "KEY_NUMLOCK": "num_lock", "KEY_SCROLLLOCK": "scroll_lock", "KEY_PAUSE": "pause",
    "KEY_SYSRQ": "print_screen", "KEY_COMPOSE": "menu", "KEY_LEFTSHIFT": "shift",
    "KEY_RIGHTSHIFT": "shift_r", "KEY_LEFTCTRL": "ctrl", "KEY_RIGHTCTRL": "ctrl_r", "KEY_LEFTALT": "alt",
    "KEY_RIGHTALT": "alt_r", "KEY_LEFTMETA": "cmd", "KEY_RIGHTMETA": "cmd_r",
    "KEY_PLAYPAUSE": "media_play_pause", "KEY_MUTE": "media_volume_mute",
    "KEY_VOLUMEDOWN": "media_volume_down", "KEY_VOLUMEUP": "media_volume_up",
    "KEY_PREVIOUSSONG": "media_previous", "KEY_NEXTSONG": "media_next",
    "KEY_MINUS": "-", "KEY_EQUAL": "=", "KEY_LEFTBRACE": "[", "KEY_RIGHTBRACE": "]",
    "KEY_SEMICOLON": ";", "KEY_APOSTROPHE": "'", "KEY_GRAVE": "`", "KEY_BACKSLASH": "\\",
    "KEY_COMMA": ",", "KEY_DOT": ".", "KEY_SLASH": "/", "KEY_KPPLUS": "+", "KEY_KPMINUS": "-",
    "KEY_KPASTERISK": "*", "KEY_KPSLASH": "/", "KEY_KPDOT": ".",
    **{f"KEY_KP{d}": str(d) for d in range(10)},
    **{f"KEY_{d}": str(d) for d in range(10)},
    **{f"KEY_{c}": c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_F{i}": f"f{i}" for i in range(1, 25)},
}
#: Range markers that alias a real button name (BTN_0 == BTN_MISC): never the canonical name.
_MARKERS = {"BTN_MISC", "BTN_MOUSE", "BTN_JOYSTICK", "BTN_GAMEPAD", "BTN_DIGI", "BTN_WHEEL",
            "BTN_TRIGGER_HAPPY", "KEY_MIN_INTERESTING"}


@dataclass(frozen=True)
class _Tables:
    name_of: dict[int, str]          # code -> canonical name
    codes_of: dict[str, set[int]]    # canonical name -> codes (enter: KEY_ENTER and KEY_KPENTER)
    aliases: dict[str, str]          # every lower-cased kernel name -> canonical name


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    from evdev import ecodes

    name_of: dict[int, str] = {}
    codes_of: dict[str, set[int]] = {}
    aliases: dict[str, str] = {}
    for table in (ecodes.KEY, ecodes.BTN):
        for code, names in table.items():
            if not isinstance(code, int) or code in name_of:
                continue
            options = [names] if isinstance(names, str) else list(names)
            special = [_SPECIAL[n] for n in options if n in _SPECIAL]
            plain = [n for n in options if n not in _MARKERS] or options
            canonical = special[0] if special else plain[0].lower()
            name_of[code] = canonical
            codes_of.setdefault(canonical, set()).add(code)
            for n in options:
                aliases[n.lower()] = canonical
    return _Tables(name_of, codes_of, aliases)


def key_name(code: int) -> str:
    """The canonical name of a kernel key/button code (``KEY_ENTER`` -> ``enter``, BTN_0 -> ``btn_0``)."""
    return _tables().name_of.get(code, f"code_{code}")


def key_codes(name: str) -> set[int]:
    return set(_tables().codes_of.get(name, ()))


@lru_cache(maxsize=1)
def evdev_names() -> KeyNames:
    """The names an evdev device can report, with every kernel name as an alias."""
    t = _tables()
    return KeyNames("evdev", frozenset(t.codes_of), chars=False, vk=False, aliases=t.aliases)


# ---------------------------------------------------------------- which device
@dataclass(frozen=True)
class DeviceSpec:
    """How the configuration names a device: ``"05f3:00ff"``, ``"/dev/input/event5"`` or a name part."""

    vendor: int | None = None
    product: int | None = None
    path: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceSpec:
        text = text.strip()
        if not text:
            return cls()
        if text.startswith("/"):
            return cls(path=text)
        m = re.fullmatch(r"([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})", text)
        if m:
            return cls(vendor=int(m.group(1), 16), product=int(m.group(2), 16))
        if re.fullmatch(r"\w{1,4}:\w{1,4}", text):
            raise ProtocolError(ErrorCode.BAD_CONFIG,
                                f"device {text!r}: vendor:product must be two hex numbers, e.g. 05f3:00ff")
        return cls(name=text.lower())

    def __str__(self) -> str:
        if self.vendor is not None:
            return f"{self.vendor:04x}:{self.product:04x}"
        return self.path or (f"name containing {self.name!r}" if self.name else "any device")

    def matches(self, info: DeviceInfo) -> bool:
        if self.vendor is not None and (info.vendor, info.product) != (self.vendor, self.product):
            return False
        if self.path is not None and os.path.realpath(info.path) != os.path.realpath(self.path):
            return False
        return not (self.name is not None and self.name not in info.name.lower())


@dataclass(frozen=True)
class DeviceInfo:
    path: str
    name: str
    vendor: int
    product: int
    codes: frozenset[int] = frozenset()  # EV_KEY codes the device declares

    @property
    def ids(self) -> str:
        return f"{self.vendor:04x}:{self.product:04x}"


def _path_order(path: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", path)
    return (int(m.group(1)) if m else 1 << 30, path)


def choose_device(spec: DeviceSpec, devices: Iterable[DeviceInfo], wanted: set[int],
                  require: Iterable[set[int]] = ()) -> DeviceInfo | None:
    """The first device (by event number) matching ``spec`` that declares a wanted key and
    one code of each ``require`` set (a keyboard: some A key and some Enter key)."""
    require = list(require)
    for info in sorted(devices, key=lambda d: _path_order(d.path)):
        if spec.matches(info) and (not wanted or info.codes & wanted) and all(info.codes & r for r in require):
            return info
    return None


class Device(Protocol):
    """What :class:`EvdevSource` needs of an open device (python-evdev's InputDevice has it)."""

    @property
    def path(self) -> str | bytes: ...
    @property
    def name(self) -> str: ...

    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...
    def async_read_loop(self) -> Any: ...


class Finder(Protocol):
    def scan(self) -> tuple[list[DeviceInfo], list[str]]: ...
    def open(self, info: DeviceInfo) -> tuple[Device, float]: ...


class EvdevFinder:
    """The real ``/dev/input``. ``open`` returns the device and its clock offset to the bus clock."""

    def __init__(self, input_dir: str = "/dev/input") -> None:
        self.input_dir = input_dir

    def scan(self) -> tuple[list[DeviceInfo], list[str]]:
        import evdev

        found: list[DeviceInfo] = []
        unreadable: list[str] = []
        for path in sorted(glob.glob(os.path.join(self.input_dir, "event*")), key=_path_order):
            if not os.access(path, os.R_OK):
                unreadable.append(path)
                continue
            try:
                dev = evdev.InputDevice(path, readonly=True)
            except OSError:
                continue
            try:
                codes = frozenset(dev.capabilities().get(EV_KEY, []))
                found.append(DeviceInfo(path, dev.name, dev.info.vendor, dev.info.product, codes))
            finally:
                dev.close()
        return found, unreadable

    def open(self, info: DeviceInfo) -> tuple[Device, float]:
        import evdev

        dev = evdev.InputDevice(info.path, readonly=True)
        # Kernel event times are CLOCK_REALTIME unless a client changed the clock id.
        return dev, unix_to_bus_offset_s()


# ---------------------------------------------------------------- the source
class EvdevSource:
    """Key events from one matched device, across unplug and replug.

    Yields ``StatusEvent("ok")`` when the device opens, ``"lost"`` when it is missing or
    unplugged (once per outage), ``"recovered"`` when it is back, and a KeyEvent per
    press/release (kernel repeats, value 2, are dropped).
    """

    def __init__(
        self,
        spec: DeviceSpec,
        wanted_names: Iterable[str],
        *,
        finder: Finder | None = None,
        grab: bool = True,
        reconnect_s: float = 0.5,
        typing: bool = False,
        require_names: Iterable[str] = (),
    ) -> None:
        self.spec = spec
        self.wanted: set[int] = set().union(*(key_codes(n) for n in wanted_names))
        self.require: list[set[int]] = [key_codes(n) for n in require_names]
        self.finder = finder or EvdevFinder()
        self.grab = grab
        self.reconnect_s = reconnect_s
        self.typing = typing
        self.device: Device | None = None
        self.opened = 0

    def describe_missing(self, devices: list[DeviceInfo], unreadable: list[str]) -> str:
        """Why no device was picked, and what to check."""
        if self.spec == DeviceSpec() and self.require:
            msg = "no keyboard (a device with A and Enter keys) among the input devices"
        else:
            msg = f"no input device matches {self.spec}" + (" with the mapped keys" if self.wanted else "")
        if unreadable:
            msg += (f"; {len(unreadable)} of the input devices are not readable by this user"
                    " (add the udev rule in docs/inputs.md, or join the 'input' group)")
        elif not devices:
            msg += "; no input devices are visible at all (in a container, pass /dev/input through)"
        named = [d for d in devices if self.spec.matches(d)]
        if named and self.spec != DeviceSpec():
            msg += f"; {named[0].name} ({named[0].ids}) matches by name but lacks the keys"
        return msg + "; waiting for it"

    async def events(self) -> AsyncGenerator[KeyEvent | StatusEvent, None]:
        lost = False
        while True:
            try:
                devices, unreadable = self.finder.scan()
            except OSError as exc:
                devices, unreadable = [], []
                log.warning("cannot scan input devices: %s", exc)
            info = choose_device(self.spec, devices, self.wanted, self.require)
            if info is None:
                if not lost:
                    lost = True
                    yield StatusEvent("lost", self.describe_missing(devices, unreadable))
                await asyncio.sleep(self.reconnect_s)
                continue
            try:
                device, offset_s = self.finder.open(info)
            except OSError as exc:
                if not lost:
                    lost = True
                    yield StatusEvent("lost", f"cannot open {info.path} ({info.name}): {exc}")
                await asyncio.sleep(self.reconnect_s)
                continue
            self.device = device
            detail = f"{info.name} ({info.ids}) at {info.path}"
            if self.grab:
                try:
                    device.grab()
                    detail += ", grabbed"
                except OSError as exc:
                    detail += f", NOT grabbed ({exc}): its keys also reach other windows"
            yield StatusEvent("recovered" if lost or self.opened else "ok", detail)
            self.opened += 1
            lost = False
            offset_ns = int(offset_s * 1e9)
            try:
                async for ev in device.async_read_loop():
                    if ev.type != EV_KEY or ev.value == 2:
                        continue
                    name = key_name(ev.code)
                    char = name if self.typing and len(name) == 1 else None
                    t_ns = ev.sec * 1_000_000_000 + ev.usec * 1000 + offset_ns
                    yield KeyEvent(name, ev.value == 1, t_ns, char)
                return  # a recording ran out
            except OSError as exc:
                lost = True
                yield StatusEvent("lost", f"{info.name} ({info.ids}) went away: {exc}; waiting for it")
            finally:
                self.device = None
                _close(device)
            await asyncio.sleep(self.reconnect_s)


def _close(device: Device) -> None:
    for step in (device.ungrab, device.close):
        try:
            step()
        except (OSError, ValueError, RuntimeError):
            pass


# ---------------------------------------------------------------- recordings
@dataclass
class Recording:
    """A device and its events: ``[sec, usec, type, code, value]`` rows plus unplug/plug marks."""

    device: DeviceInfo
    entries: list[Any]
    provenance: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"cannot read recording {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != RECORDING_FORMAT:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"{path} is not a {RECORDING_FORMAT} file")
        try:
            d = data["device"]
            from evdev import ecodes

            codes = frozenset(ecodes.ecodes[k] if isinstance(k, str) else int(k) for k in d.get("keys", []))
            info = DeviceInfo(d.get("path", "/dev/input/event-recorded"), d["name"], int(d["vendor"], 16),
                              int(d["product"], 16), codes)
            entries = list(data["events"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"recording {path} is malformed: {exc!r}") from None
        for i, row in enumerate(entries):
            ok = (isinstance(row, list) and len(row) == 5 and all(isinstance(x, int) for x in row)) or (
                isinstance(row, dict) and set(row) <= {"unplug", "plug", "note"})
            if not ok:
                raise ProtocolError(ErrorCode.BAD_CONFIG, f"recording {path}: event {i} is not "
                                    f"[sec, usec, type, code, value] or an unplug/plug mark: {row!r}")
        return cls(info, entries, str(data.get("provenance", "")))


class RecordedDevice:
    """Plays a recording's events like an InputDevice; an unplug mark raises ENODEV as the kernel does."""

    def __init__(self, finder: RecordedFinder) -> None:
        self.finder = finder
        self.path = finder.recording.device.path
        self.name = finder.recording.device.name
        self.grabbed = False

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        pass

    async def async_read_loop(self) -> AsyncIterator[Any]:
        from evdev import InputEvent

        entries = self.finder.recording.entries
        while self.finder.cursor < len(entries):
            row = entries[self.finder.cursor]
            self.finder.cursor += 1
            if isinstance(row, dict):
                if "unplug" in row:
                    self.finder.present = False
                    raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
                continue
            if self.finder.realtime and self.finder.last_t is not None:
                await asyncio.sleep(max(0.0, row[0] + row[1] / 1e6 - self.finder.last_t))
            self.finder.last_t = row[0] + row[1] / 1e6
            yield InputEvent(*row)
            await asyncio.sleep(0)


class RecordedFinder:
    """A one-device ``/dev/input`` that follows a recording's unplug/plug marks."""

    def __init__(self, recording: Recording, *, realtime: bool = False) -> None:
        self.recording = recording
        self.realtime = realtime
        self.cursor = 0
        self.present = True
        self.last_t: float | None = None
        self.offset_s: float | None = None

    def scan(self) -> tuple[list[DeviceInfo], list[str]]:
        if not self.present:
            # Stay unplugged for one scan (the outage is reported), then follow the plug mark.
            row = self.recording.entries[self.cursor] if self.cursor < len(self.recording.entries) else None
            if isinstance(row, dict) and "plug" in row:
                self.cursor += 1
                self.present = True
            return [], []
        return [self.recording.device], []

    def open(self, info: DeviceInfo) -> tuple[Device, float]:
        if self.offset_s is None:
            first = next((r for r in self.recording.entries if isinstance(r, list)), [0, 0])
            self.offset_s = now_ns() / 1e9 - (first[0] + first[1] / 1e6)
        return RecordedDevice(self), self.offset_s


# ---------------------------------------------------------------- tools for the CLI
def list_devices_text(finder: EvdevFinder | None = None) -> str:
    """``--list``: every readable device with vendor:product, name and a few of its keys."""
    finder = finder or EvdevFinder()
    devices, unreadable = finder.scan()
    lines = []
    for d in devices:
        names = sorted({key_name(c) for c in d.codes})
        sample = ", ".join(names[:8]) + (f", ... ({len(names)} keys)" if len(names) > 8 else "")
        lines.append(f"{d.path}\t{d.ids}\t{d.name}\t{sample or '(no keys)'}")
    if not devices:
        lines.append(f"no readable input devices in {finder.input_dir}")
    if unreadable:
        lines.append(f"{len(unreadable)} device(s) not readable by this user: {', '.join(unreadable[:6])}"
                     " -- see the udev rule in docs/inputs.md")
    return "\n".join(lines)


def _kernel_name(code: int) -> str:
    from evdev import ecodes

    names = ecodes.KEY.get(code) or ecodes.BTN.get(code) or f"{code}"
    if isinstance(names, str):
        return names
    plain = [n for n in names if n not in _MARKERS]
    return (plain or list(names))[0]


def iter_recording_rows(events: Iterable[Any]) -> Iterator[list[int]]:
    for ev in events:
        yield [int(ev.sec), int(ev.usec), int(ev.type), int(ev.code), int(ev.value)]


async def record(spec: DeviceSpec, out: Path, *, seconds: float, finder: Finder | None = None) -> int:
    """``--record``: save a device's raw events (not grabbed) in the recording format."""
    finder = finder or EvdevFinder()
    devices, unreadable = finder.scan()
    info = choose_device(spec, devices, set())
    if info is None:
        raise ProtocolError(ErrorCode.DEVICE_MISSING, f"no input device matches {spec}"
                            + (f" ({len(unreadable)} unreadable: see docs/inputs.md)" if unreadable else ""))
    device, _ = finder.open(info)
    rows: list[Any] = []
    deadline = time.monotonic() + seconds
    try:
        reader = device.async_read_loop().__aiter__()
        while (left := deadline - time.monotonic()) > 0:
            try:
                ev = await asyncio.wait_for(reader.__anext__(), timeout=left)
            except (TimeoutError, StopAsyncIteration):
                break
            except OSError:
                rows.append({"unplug": True})
                break
            rows.extend(iter_recording_rows([ev]))
    finally:
        _close(device)
    keys = sorted(_kernel_name(c) for c in info.codes)
    data = {
        "format": RECORDING_FORMAT,
        "provenance": f"recorded with `razvilka input footswitch --record` from {info.path} on {time.ctime()}",
        "device": {"name": info.name, "vendor": f"{info.vendor:04x}", "product": f"{info.product:04x}",
                   "keys": keys},
        "events": rows,
    }
    await asyncio.to_thread(out.write_text, json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return len(rows)
