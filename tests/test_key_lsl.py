"""``razvilka input keyboard --lsl``: the real adapter process under Xvfb publishes every key going
down and up as a JSON marker on its LSL stream (docs/research.md, "Keys"), stamped on the bus clock
(= ``pylsl.local_clock``), with what the key sent on a real bus."""
from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pylsl
import pytest
from bus_helpers import wait_retained
from key_helpers import XServer, cli_command, cli_env, fork_open, next_input

from razvilka import lslrecord as rec
from razvilka.protocol.messages import Select, SourceStatus

pytestmark = [pytest.mark.x11, pytest.mark.timeout(40)]


async def _markers(inlet: pylsl.StreamInlet, n: int, timeout: float) -> list[tuple[dict[str, Any], float]]:
    """The next ``n`` markers (decoded JSON, timestamp), waiting on the inlet; fail after ``timeout`` s."""
    got: list[tuple[dict[str, Any], float]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"{n} key markers expected within {timeout}s, got {got}"
        sample, ts = await asyncio.to_thread(inlet.pull_sample, min(left, 1.0))
        if sample is not None:
            got.append((json.loads(sample[0]), ts))
    return got


async def test_keyboard_lsl_publishes_key_down_and_up_markers(display: XServer, ipc_bus: Any, ipc_clients: Any,
                                                              tmp_path: Path) -> None:
    name = f"kb{uuid.uuid4().hex[:8]}"  # our own stream: other LSL senders on this machine must not answer
    daemon = await ipc_clients("fake-daemon", role="daemon")
    observer = await ipc_clients("observer", subscribe=["input.", "source.status."])
    daemon.publish(fork_open(["the", "hello", "a"]), fork_id="f1")
    await wait_retained(daemon, lambda snap: any(m.header.fork_id == "f1" for m in snap))
    # the CLI under test runs beside the event loop: Popen returns once the process has started
    proc = subprocess.Popen(cli_command("--set", f"bus.runtime_dir={ipc_bus.config.runtime_dir}",  # noqa: ASYNC220
                                        "--set", f"inputs.keyboard.name={name}", "input", "keyboard", "--lsl"),
                            env=cli_env(tmp_path, DISPLAY=display.display),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            status = await next_input(observer, timeout=20, kinds=("source.status",), sender=name)
        except AssertionError:  # say why: the adapter's own output
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the adapter said nothing on the bus; rc={proc.returncode}; "
                                 f"stdout={out.decode()[-1500:]!r} stderr={err.decode()[-1500:]!r}") from None
        # "ok" goes out once the adapter has applied the snapshot (it has fork f1) and listens to keys
        assert isinstance(status.body, SourceStatus) and status.body.state == "ok"

        stream = f"razvilka-{name}-markers"  # docs/research.md: razvilka-NAME-markers
        found = await asyncio.to_thread(pylsl.resolve_byprop, "name", stream, 1, 10.0)
        assert found, f"LSL stream {stream!r} not found within 10 s"
        inlet = pylsl.StreamInlet(found[0])
        # open_stream returns once the inlet is connected: markers pushed from then on reach it
        await asyncio.to_thread(inlet.open_stream, 10.0)
        info = await asyncio.to_thread(inlet.info, 10.0)
        assert info.type() == rec.MARKER_TYPE and info.channel_format() == pylsl.cf_string
        assert info.desc().child_value("role") == rec.ROLE_KEY_MARKERS
        assert info.desc().child_value("adapter") == name
        assert info.desc().child_value("format") == rec.MARKER_FORMAT

        before = pylsl.local_clock()
        await display.key("2", "3")
        sel = await next_input(observer, sender=name)
        assert isinstance(sel.body, Select) and sel.body.index == 1 and sel.header.fork_id == "f1"
        got = await _markers(inlet, 4, timeout=10)
        after = pylsl.local_clock()

        markers = [m for m, _ in got]
        assert [(m["type"], m["key"]) for m in markers] == [("key.down", "2"), ("key.up", "2"),
                                                              ("key.down", "3"), ("key.up", "3")]
        assert markers[0]["fork_id"] == "f1" and markers[0]["sent"] == [Select.TYPE]
        assert markers[0]["char"] == "2"
        assert markers[1]["sent"] == []
        stamps = [ts for _, ts in got]
        assert stamps == sorted(stamps), f"marker times go back: {stamps}"
        # on the LSL clock: between the first key and the last marker's arrival (X ms rounding: 5 ms slack)
        assert before - 0.005 <= stamps[0] and stamps[-1] <= after, (before, stamps, after)
        assert stamps[2] - stamps[0] >= 0.1  # xdotool's 150 ms between the keys, seen on that clock
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
