"""Text out with the real parts: the real X clipboard of an Xvfb server (read back with xclip), and
real key events typed into a real X text window (a Tk text box that reports what it holds).
A missing tool must name its Debian package and keep the text."""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from key_helpers import XServer, xserver  # noqa: F401 - the module's Xvfb

from razvilka.clipboard import copy_text
from razvilka.outconfig import TextOutConfig
from razvilka.outtools import ErrorCode, OutputError
from razvilka.typer import bind_missing, type_text

TEXT = "Hello, мир! Ёжик — «ёлка», 3.5 € ✓"

#: a real X text window: a Tk text box that prints what it holds after every key, as JSON lines
TK_WINDOW = r"""
import json, sys, time, tkinter as tk
slow = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0  # s a busy receiver spends on each key press
root = tk.Tk(); root.geometry("700x120+0+0"); root.title("razvilka typing target")
box = tk.Text(root, height=4); box.pack(fill="both", expand=True)
def say(**kw): sys.stdout.write(json.dumps(kw, ensure_ascii=False) + "\n"); sys.stdout.flush()
box.bind("<KeyRelease>", lambda e: say(text=box.get("1.0", "end-1c")))
if slow:
    box.bind("<KeyPress>", lambda e: time.sleep(slow), add="+")
box.bind("<FocusIn>", lambda e: say(ready=True))
root.after(50, lambda: (root.focus_force(), box.focus_set()))
root.mainloop()
"""


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed: install the Debian package {package} (`./dev.sh test` does)",
                    pytrace=False)


class TextWindow:
    """The Tk window, in its own process; ``wait_for`` reads its reports until the text matches."""

    def __init__(self, x: XServer, slow_s: float = 0.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TK_WINDOW, str(slow_s)], env=x.env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.text = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_ready(self, timeout: float = 15) -> None:
        try:
            while not self.lines.get(timeout=timeout).get("ready"):
                pass
        except queue.Empty:
            err = self.proc.stderr
            why = err.read() if self.proc.poll() is not None and err is not None else "it runs"
            pytest.fail(f"the Tk window never got the focus: {why}")

    def wait_for(self, expected: str, timeout: float = 20) -> str:
        try:
            while self.text != expected:
                report = self.lines.get(timeout=timeout)
                self.text = str(report.get("text", self.text))
        except queue.Empty:
            pass
        return self.text

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def window(xserver: XServer) -> Iterator[TextWindow]:  # noqa: F811
    win = TextWindow(xserver)
    win.wait_ready()
    yield win
    win.close()


def tool_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (links to the real ones): the others are "not installed"."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real, f"{tool} is needed to build this test's PATH"
        (folder / tool).symlink_to(real)
    return str(folder)


# ------------------------------------------------------------------------------ clipboard
@pytest.mark.x11
def test_copy_puts_the_text_on_the_x_clipboard(xserver: XServer) -> None:  # noqa: F811
    _require("xclip", "xclip")
    assert copy_text(TEXT, TextOutConfig(), env=xserver.env()) == "xclip"
    back = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=xserver.env(), capture_output=True,
                          timeout=10, check=True)
    assert back.stdout.decode("utf-8") == TEXT


@pytest.mark.x11
def test_copy_without_xclip_names_the_package_and_keeps_the_text(xserver: XServer, tmp_path: Path) -> None:  # noqa: F811
    env = {**xserver.env(), "PATH": tool_path(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    with pytest.raises(OutputError) as err:
        copy_text(TEXT, TextOutConfig(), env=env)
    assert err.value.code == ErrorCode.DEVICE_MISSING
    assert "xclip or xsel" in str(err.value) and "apt-get install xclip" in str(err.value)
    assert err.value.text == TEXT
    kept = err.value.kept
    assert kept is not None and kept.parent == tmp_path / "data" / "razvilka" / "kept"
    assert str(kept) in str(err.value)
    assert kept.read_text(encoding="utf-8") == TEXT
    assert kept.stat().st_mode & 0o777 == 0o600 and kept.parent.stat().st_mode & 0o777 == 0o700


def test_wayland_asks_for_wl_clipboard(tmp_path: Path) -> None:
    env = {"PATH": tool_path(tmp_path), "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    config = TextOutConfig(kept_dir=str(tmp_path / "kept"))
    with pytest.raises(OutputError, match=r"apt-get install wl-clipboard") as err:
        copy_text(TEXT, config, env=env)
    assert err.value.kept is not None and err.value.kept.parent == tmp_path / "kept"
    with pytest.raises(OutputError, match=r"apt-get install wtype"):
        type_text(TEXT, config, env=env)


def test_no_desktop_at_all_keeps_the_text(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "XDG_DATA_HOME": str(tmp_path)}
    for send in (copy_text, type_text):
        with pytest.raises(OutputError, match="neither WAYLAND_DISPLAY nor DISPLAY") as err:
            send(TEXT, TextOutConfig(), env=env)
        assert err.value.code == ErrorCode.DEVICE_MISSING
        assert err.value.kept is not None and err.value.kept.read_text(encoding="utf-8") == TEXT


# ------------------------------------------------------------------------------ typing
@pytest.mark.x11
def test_xdotool_types_cyrillic_into_the_focused_window(window: TextWindow, xserver: XServer) -> None:  # noqa: F811
    assert type_text(TEXT, TextOutConfig(), env=xserver.env()) == "xdotool"
    assert window.wait_for(TEXT) == TEXT


@pytest.mark.x11
def test_a_busy_window_gets_every_letter_of_a_russian_sentence(xserver: XServer) -> None:  # noqa: F811
    """A receiver that reads its key events late (30 ms per key press, as on a loaded machine) still gets
    each letter: the letters the keyboard map lacks are bound to their own key codes before typing, so
    no key code means another letter by the time the event is read. (xdotool alone rebinds one scratch
    code per letter; this window then got e.g. "Пивет, мир!" for "Привет, мир!".)"""
    text = "Привет, мир! Ёжик в тумане, и щука съела ёлку."
    window = TextWindow(xserver, slow_s=0.03)
    try:
        window.wait_ready()
        assert type_text(text, TextOutConfig(), env=xserver.env()) == "xdotool"
        assert window.wait_for(text) == text
    finally:
        window.close()
    assert bind_missing(text, xserver.display) == 0  # bound once, and left bound for the next time


@pytest.mark.x11
def test_typing_with_a_missing_xdotool_names_the_package(xserver: XServer, tmp_path: Path) -> None:  # noqa: F811
    config = TextOutConfig(kept_dir=str(tmp_path / "kept"))
    with pytest.raises(OutputError, match=r"apt-get install xdotool") as err:
        type_text(TEXT, config, env={**xserver.env(), "PATH": tool_path(tmp_path)})
    assert err.value.text == TEXT and err.value.kept is not None
    assert err.value.kept.read_text(encoding="utf-8") == TEXT
