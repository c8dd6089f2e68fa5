"""Saying and sending the text through the real daemon (protocol 1.5): speak, repeat and stop speaking
played by espeak-ng on a real audio server (PulseAudio with a null sink, as tests/test_speech.py), each
finished sentence said, copy onto the real X clipboard of an Xvfb server, typeout into a real X text
window; a missing program is a daemon.error naming its package, the text kept, and the daemon serves on."""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from daemon_fixtures import DEFAULT_PROMPT, RunningDaemon, StartDaemon, next_of
from key_helpers import XServer, xserver  # noqa: F401 - the module's Xvfb
from test_speech import LONG, audio_server, wait_for_stream  # noqa: F401 - the module's audio server
from test_textout import TextWindow, tool_path

from razvilka.daemon.output import what_to_say
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import Command, DaemonError, ForkDecided, ForkOpen, Select, TextState

pytestmark = pytest.mark.model

CYRILLIC_PROMPT = "Привет, мир! Ёжик в тумане и"


def test_what_to_say() -> None:
    text = "I am here. Are you there? I wonder"
    assert what_to_say("", text) == what_to_say("sentence", text) == "I wonder"
    assert what_to_say("all", text) == text and what_to_say(" Hello. ", text) == "Hello."
    assert what_to_say("", "") == ""


async def _spoken(d: RunningDaemon, before: subprocess.Popen[bytes] | None = None,
                  timeout: float = 10) -> subprocess.Popen[bytes]:
    """The espeak-ng process the daemon started after ``before`` (polled: the speaker has no event for it)."""
    deadline = time.monotonic() + timeout
    while True:
        speaker = d.daemon.output._speaker
        proc = speaker.process if speaker is not None else None
        if proc is not None and proc is not before:
            return proc
        assert time.monotonic() < deadline, "the daemon started no speech"
        await asyncio.sleep(0.02)


async def test_speak_repeat_and_stop_speaking_play_through_espeak_ng(start_daemon: StartDaemon,
                                                                     audio_server: dict[str, str]) -> None:  # noqa: F811
    d = await start_daemon(speech={"engine": "espeak-ng", "rate": 300}, build={"output_env": audio_server})
    bus = await d.client("t", ["fork.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Command(command="speak", source="t", text="all"))
    first = await _spoken(d)
    assert isinstance(first.args, list) and first.args[0] == "espeak-ng" and first.args[-1] == DEFAULT_PROMPT
    await asyncio.to_thread(wait_for_stream, audio_server)  # really playing on the audio server
    assert await asyncio.to_thread(first.wait, 30) == 0
    bus.publish(Command(command="repeat", source="t"))
    again = await _spoken(d, first)
    assert isinstance(again.args, list) and again.args[-1] == DEFAULT_PROMPT
    await asyncio.to_thread(again.wait, 30)
    bus.publish(Command(command="speak", source="t", text=LONG))
    long = await _spoken(d, again)
    await asyncio.to_thread(wait_for_stream, audio_server)
    assert long.poll() is None
    bus.publish(Command(command="stop_speaking", source="t"))
    assert await asyncio.to_thread(long.wait, 5) != 0  # cut off, not finished (it lasts ~40 s)
    # the fork stayed open through all of it: a select still decides it
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == fork.header.fork_id)


async def test_speak_target_and_each_finished_sentence(start_daemon: StartDaemon,
                                                       audio_server: dict[str, str]) -> None:  # noqa: F811
    d = await start_daemon(speech={"engine": "espeak-ng", "rate": 400, "each_sentence": True},
                           build={"output_env": audio_server})
    bus = await d.client("t", ["fork.", "text."])
    await next_of(bus, ForkOpen, 60)
    bus.publish(Command(command="type", source="t", text="sleeping. "))  # the word ends the sentence
    await next_of(bus, TextState, 30, where=lambda m: m.body.text.endswith("sleeping."))
    said = await _spoken(d)
    assert isinstance(said.args, list) and said.args[-1] == DEFAULT_PROMPT + " sleeping."
    await asyncio.to_thread(said.wait, 30)
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Select(target="cmd:speak", source="t", kind="key"), fork_id=fork.header.fork_id)
    again = await _spoken(d, said)
    assert isinstance(again.args, list) and again.args[-1] == DEFAULT_PROMPT + " sleeping."


async def test_speak_all_target_says_the_whole_text(start_daemon: StartDaemon,
                                                    audio_server: dict[str, str]) -> None:  # noqa: F811
    """``cmd:speak`` says the last sentence, ``cmd:speak_all`` (no input.command of its own: speak "all") the
    whole text; the fork stays open."""
    prompt = "It rained all day. We stayed in and"
    d = await start_daemon(daemon={"prompt": prompt}, speech={"engine": "espeak-ng", "rate": 300},
                           build={"output_env": audio_server})
    bus = await d.client("t", ["fork.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Select(target="cmd:speak", source="t", kind="key"), fork_id=fork.header.fork_id)
    last = await _spoken(d)
    assert isinstance(last.args, list) and last.args[-1] == "We stayed in and"
    await asyncio.to_thread(last.wait, 30)
    bus.publish(Select(target="cmd:speak_all", source="t", kind="key"), fork_id=fork.header.fork_id)
    whole = await _spoken(d, last)
    assert isinstance(whole.args, list) and whole.args[-1] == prompt
    await asyncio.to_thread(wait_for_stream, audio_server)  # really playing on the audio server
    assert await asyncio.to_thread(whole.wait, 30) == 0
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)  # the fork stayed open
    await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == fork.header.fork_id)


def _clipboard(x: XServer) -> str:
    out = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=x.env(), capture_output=True, timeout=10)
    return out.stdout.decode("utf-8") if out.returncode == 0 else ""


@pytest.mark.x11
async def test_copy_puts_the_text_on_the_x_clipboard_and_typeout_types_it(start_daemon: StartDaemon,
                                                                          xserver: XServer) -> None:  # noqa: F811
    d = await start_daemon(daemon={"prompt": CYRILLIC_PROMPT}, build={"output_env": xserver.env()})
    bus = await d.client("t", ["fork.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Select(target="cmd:copy", source="t", kind="key"), fork_id=fork.header.fork_id)
    deadline = time.monotonic() + 15
    while (got := await asyncio.to_thread(_clipboard, xserver)) != CYRILLIC_PROMPT:  # the X server has no event
        assert time.monotonic() < deadline, f"the clipboard holds {got!r}"
        await asyncio.sleep(0.1)
    window = TextWindow(xserver)
    try:
        await asyncio.to_thread(window.wait_ready)
        bus.publish(Command(command="typeout", source="t"))
        assert await asyncio.to_thread(window.wait_for, CYRILLIC_PROMPT) == CYRILLIC_PROMPT
    finally:
        window.close()


@pytest.mark.x11
async def test_a_missing_program_names_its_package_keeps_the_text_and_the_daemon_serves_on(
        start_daemon: StartDaemon, xserver: XServer, tmp_path: Path) -> None:  # noqa: F811
    env = {**xserver.env(), "PATH": tool_path(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    d = await start_daemon(textout={"kept_dir": str(tmp_path / "kept")}, build={"output_env": env})
    bus = await d.client("t", ["fork.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Command(command="copy", source="t"))
    err = (await next_of(bus, DaemonError, 20)).body
    assert err.code == ErrorCode.DEVICE_MISSING and "apt-get install xclip" in err.message
    kept = next((tmp_path / "kept").iterdir())
    assert str(kept) in err.message and kept.read_text(encoding="utf-8") == DEFAULT_PROMPT
    assert kept.stat().st_mode & 0o777 == 0o600
    bus.publish(Command(command="speak", source="t", text="all"))
    err = (await next_of(bus, DaemonError, 20)).body
    assert err.code == ErrorCode.DEVICE_MISSING and "apt-get install espeak-ng" in err.message
    bus.publish(Command(command="typeout", source="t"))
    err = (await next_of(bus, DaemonError, 20)).body
    assert "apt-get install xdotool" in err.message
    # the document is untouched and the open fork is still decided as usual
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == fork.header.fork_id)
    await next_of(bus, ForkOpen, 60)
