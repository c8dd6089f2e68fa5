"""Global key events from the X server through pynput (the keyboard's default backend).

pynput's listener runs on its own thread and hands each event to the asyncio loop. Event
times come from the X server's own timestamps, mapped onto the bus clock: XRecord delivers
events in batches (all autorepeats of a held key can arrive together with its release), so
the time a callback runs says little about when the key moved. Presses and releases are
paired by X keycode, because a key's name can change between them (shift+= goes down as
``+`` and may come up as ``=``).

pynput fails at import without a display, so it is imported in :meth:`X11KeySource.open`,
which turns that failure into a message saying what to do.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

from razvilka.inputs.keymap import KeyEvent, StatusEvent
from razvilka.protocol.clock import now_ns
from razvilka.protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("razvilka.inputs.x11")


def no_display_message(command: str, reason: str) -> str:
    """What to do when there is no usable X display."""
    wayland = " (this looks like a Wayland session: X clients only see keys sent to XWayland windows)" \
        if os.environ.get("WAYLAND_DISPLAY") else ""
    return (
        f"{reason}{wayland}. `{command}` listens to the keyboard through the X server: run it inside "
        "a desktop session, or point DISPLAY at a running X server (e.g. DISPLAY=:0). Without X, read the "
        f"device directly with `{command} --backend evdev` (needs read access to /dev/input/event*; "
        "see docs/inputs.md for the udev rule)."
    )


def translate(key: Any) -> tuple[str, str | None] | None:
    """pynput key -> (canonical name, typed character)."""
    from pynput.keyboard import Key, KeyCode

    if isinstance(key, Key):
        return key.name, (" " if key.name == "space" else None)
    if isinstance(key, KeyCode):
        if key.char:
            char = key.char
            return (char.lower() if len(char) == 1 else char), char
        if key.vk is not None:
            return f"vk_{key.vk}", None
    return None


class X11KeySource:
    """Every key event the X server sees, as KeyEvent, from the moment :meth:`open` returns."""

    def __init__(self, command: str = "razvilka input keyboard", *, ready_timeout_s: float = 5.0) -> None:
        self.command = command
        self.ready_timeout_s = ready_timeout_s
        self.listener: Any = None
        self.queue: asyncio.Queue[KeyEvent] | None = None
        self._down_by_code: dict[int, tuple[str, str | None]] = {}
        self._x_offset: int | None = None
        self._last_ns = 0  # the last stamp given: stamps never go backwards
        self.display = ""

    async def open(self) -> None:
        """Start the listener; raise ``ProtocolError(DEVICE_MISSING)`` saying what to do without X."""
        self.display = os.environ.get("DISPLAY", "")
        if not self.display:
            raise ProtocolError(ErrorCode.DEVICE_MISSING,
                                no_display_message(self.command, "no X display: DISPLAY is not set"))
        try:
            from pynput import keyboard
        except ImportError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ProtocolError(ErrorCode.DEVICE_MISSING, no_display_message(
                self.command, f"cannot use X display {self.display!r} ({reason})")) from None
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        queue = self.queue
        base: Any = keyboard.Listener  # Any: its X backend's _handle_message, overridden below, is not in the stubs

        class PairingListener(base):
            """Remembers the X keycode of the event being handled (pynput does not pass it on)."""

            rz_keycode: int | None = None
            rz_time: int | None = None

            def _handle_message(self, display: Any, event: Any, *rest: Any) -> Any:
                self.rz_keycode = getattr(event, "detail", None)
                self.rz_time = getattr(event, "time", None)
                return super()._handle_message(display, event, *rest)

        cls = PairingListener if hasattr(base, "_handle_message") else base

        def handle(key: Any, down: bool) -> None:
            t_ns = self._event_time(getattr(self.listener, "rz_time", None))
            code = getattr(self.listener, "rz_keycode", None)
            if down:
                named = translate(key)
                if named is None:
                    return
                if code is not None:
                    self._down_by_code[code] = named
            else:
                named = self._down_by_code.pop(code, None) if code is not None else None
                named = named or translate(key)
                if named is None:
                    return
            loop.call_soon_threadsafe(queue.put_nowait, KeyEvent(named[0], down, t_ns, named[1]))

        self.listener = cls(on_press=lambda key, *_: handle(key, True),
                            on_release=lambda key, *_: handle(key, False))
        self.listener.start()
        deadline = loop.time() + self.ready_timeout_s
        while not self._ready():
            if not self.listener.is_alive() or loop.time() > deadline:
                self.close()
                raise ProtocolError(ErrorCode.DEVICE_MISSING, no_display_message(
                    self.command, f"the X keyboard listener on {self.display} did not start"))
            await asyncio.sleep(0.01)

    def _event_time(self, x_ms: int | None) -> int:
        """Bus-clock ns of an X event: server ms + the smallest (arrival - server time) seen so far."""
        now = now_ns()
        if not isinstance(x_ms, int) or x_ms <= 0:
            return now
        lag = now - x_ms * 1_000_000
        # The smallest lag is the truest offset; a jump of seconds means the server time wrapped
        # (every 49.7 days) or a new server: start again.
        if self._x_offset is None or lag < self._x_offset or lag - self._x_offset > 5_000_000_000:
            self._x_offset = lag
        # a smaller offset found later must not put this event before one already stamped
        t = max(x_ms * 1_000_000 + self._x_offset, self._last_ns)
        self._last_ns = t
        return t

    def _ready(self) -> bool:
        # pynput's wait() blocks forever if the listener thread dies first, so poll its flag.
        return bool(getattr(self.listener, "_ready", self.listener.is_alive()))

    async def events(self) -> AsyncGenerator[KeyEvent | StatusEvent, None]:
        if self.listener is None:
            await self.open()
        assert self.queue is not None
        yield StatusEvent("ok", f"listening to X display {self.display}")
        while True:
            try:
                ev = await asyncio.wait_for(self.queue.get(), timeout=1.0)
            except TimeoutError:
                if not self.listener.is_alive():
                    yield StatusEvent("lost", f"the X listener on {self.display} stopped (X server gone?)")
                    return
                continue
            yield ev

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the listener and wait for its thread, so that nothing outlives the X connection."""
        if self.listener is None:
            return
        context = getattr(self.listener, "_context", None)
        try:
            self.listener.stop()
        except Exception:
            log.debug("listener stop failed", exc_info=True)
        deadline = time.monotonic() + timeout_s
        while self.listener.is_alive() and time.monotonic() < deadline:
            self.listener.join(0.05)
            if self.listener.is_alive() and context is not None:
                # pynput queues the RECORD disable without flushing it, so its thread would wait
                # for one more key event; disabling the context from a second connection ends it.
                try:
                    from Xlib import display as xdisplay

                    control = xdisplay.Display(self.display)
                    control.record_disable_context(context)
                    control.flush()
                    control.close()
                except Exception:
                    log.debug("record disable failed", exc_info=True)
        if self.listener.is_alive():
            log.warning("the X key listener thread did not stop within %.1f s", timeout_s)
