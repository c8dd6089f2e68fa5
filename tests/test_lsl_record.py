"""One research-grade record of a session: the real daemon, gaze and EEG adapters, LabRecorder, one XDF.

The module records one short session once (a module-scoped fixture), on real parts throughout:

* the daemon as ``razvilka daemon`` builds it (real model, profile on) with ``[record] lsl = true``;
* the real gaze adapter with ``--lsl``, fed by an in-process LSL outlet shaped like the Tobii connector,
  its gaze moving as a person's would: to another word first, then to the one it chooses, dwelling there;
* the real EEG adapter with its LSL outlets, its EEG coming from BrainFlow's playback board (synthetic EEG
  with a P300-like response after every flash of the word the gaze then chooses);
* this test as the renderer: a layout for each fork, and a flash every 175 ms with its onset;
* a ``back`` command after the second decision;
* LabRecorder's Python bindings (``labrecorder`` on PyPI, liblsl inside) writing every stream to one XDF.

The XDF is then read back with pyxdf, and ``razvilka analyse`` writes its report from it.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import zmq
import zmq.asyncio
from bus_helpers import B, MessageOf, body_of, drained, message_of
from daemon_fixtures import daemon_config

from razvilka.protocol.client import BusClient, ForkTracker
from razvilka.protocol.clock import now_s, unix_to_bus_offset_s
from razvilka.protocol.messages import Box, Command, ForkDecided, Layout, Message, Role, Stimulus

pytestmark = pytest.mark.model

K = 5
SOA = 0.175
LEAD = 6.0          # s from writing the EEG file to its first flash slot: the daemon and adapters start meanwhile
SLOTS = 300         # flash slots in the EEG file (52 s): the session ends well before
RATE = 250
CHANNELS = ("Fz", "C3", "Cz", "C4", "Pz", "PO7", "Oz", "PO8")
WEIGHTS = np.array([0.3, 0.6, 0.9, 0.6, 1.0, 0.7, 0.6, 0.7])
DECISIONS = 4       # fork.decided messages the session makes; ``back`` follows the second
BACK_AFTER = 2
SCREEN = (1000.0, 200.0)
GAZE_HZ = 60.0


def box_centre(pos: int) -> tuple[float, float]:
    """Where the word at position ``pos`` is drawn, normalised (the layout below: a row of K boxes)."""
    return ((pos * 200 + 90) / SCREEN[0], 0.5)


def layout_for(indices: list[int]) -> Layout:
    return Layout(boxes=[Box(index=i, x=pos * 200.0, y=50.0, w=180.0, h=100.0, row=0, col=pos)
                         for pos, i in enumerate(indices)], screen_w=SCREEN[0], screen_h=SCREEN[1], renderer="test")


def flash_plan(seed: int = 3) -> list[int]:
    """The position flashed in each slot: every round a fresh order of the K positions."""
    rng = np.random.default_rng(seed)
    return [int(p) for _ in range(SLOTS // K + 1) for p in rng.permutation(K)][:SLOTS]


def synthetic_eeg(plan: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """EEG (samples x channels, µV) with a P300-like wave after every flash of position 0, and the
    flash slots' offsets (s) from the first sample."""
    rng = np.random.default_rng(11)
    onsets = LEAD + SOA * np.arange(len(plan))
    n = int((onsets[-1] + 2.0) * RATE)
    t = np.arange(n) / RATE
    eeg = rng.normal(0, 5.0, (n, len(CHANNELS)))
    eeg += 4.0 * np.sin(2 * np.pi * 10 * t[:, None] + rng.uniform(0, 2 * np.pi, len(CHANNELS)))
    w = int(0.8 * RATE)
    tw = np.arange(w) / RATE
    wave = 12.0 * (np.exp(-((tw - 0.30) ** 2) / (2 * 0.05 ** 2)) - 0.4 * np.exp(-((tw - 0.20) ** 2) / (2 * 0.03 ** 2)))
    for onset, pos in zip(onsets, plan):
        if pos == 0:
            i = int(round(onset * RATE))
            eeg[i:i + w] += (WEIGHTS[:, None] * wave[None, :]).T[: n - i]
    return eeg, onsets


class GazeReplay:
    """An eye tracker on LSL (the Tobii connector's shape), 60 Hz in real time, looking where it is told."""

    def __init__(self, source_id: str) -> None:
        info = pylsl.StreamInfo("Tobii", "Eyetracker", 6, GAZE_HZ, pylsl.cf_float32, source_id)
        chans = info.desc().append_child("channels")
        for label in ("left_x", "left_y", "left_pupil", "right_x", "right_y", "right_pupil"):
            chans.append_child("channel").append_child_value("label", label)
        self.outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        self.at = box_centre(K - 1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gaze-replay", daemon=True)
        self.rng = np.random.default_rng(5)

    def look(self, pos: int) -> None:
        self.at = box_centre(pos)

    def _run(self) -> None:
        next_t = pylsl.local_clock()
        while not self.stop.is_set():
            n = 3
            ts = next_t + np.arange(n) / GAZE_HZ
            x, y = self.at
            noise = self.rng.normal(0, 0.001, (n, 2))
            rows = np.column_stack([x + noise[:, 0], y + noise[:, 1], np.full(n, 3.0),
                                    x + noise[:, 0], y + noise[:, 1], np.full(n, 3.0)]).astype(np.float32)
            assert self.outlet is not None
            self.outlet.push_chunk(rows, [float(v) for v in ts])
            next_t = float(ts[-1]) + 1 / GAZE_HZ
            self.stop.wait(max(0.0, next_t - pylsl.local_clock()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.outlet = None


@dataclass
class Recorded:
    """The XDF and what the session did, as a bus observer saw it."""

    xdf: Path
    seen: list[Message]
    tag: str
    names: dict[str, str]
    flashed: list[tuple[str, int, float]] = field(default_factory=list)  # fork, candidate index, onset (bus s)
    forks: list[str] = field(default_factory=list)  # the forks the session opened, in order (while recording)

    def of(self, cls: type[B]) -> list[MessageOf[B]]:
        """The messages seen whose body is a ``cls``, typed so."""
        return [message_of(m, cls) for m in self.seen if m.type == cls.TYPE]


async def _pull_until(inlet: pylsl.StreamInlet, done: Any, timeout: float, out: list[Any] | None = None) -> None:
    """Pull samples (off the loop) until ``done(sample, ts)``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample, ts = await asyncio.to_thread(inlet.pull_sample, 0.5)
        if sample is None:
            continue
        if out is not None:
            out.append((sample, ts))
        if done(sample, ts):
            return
    raise AssertionError(f"{inlet.info().name()}: the awaited sample did not come within {timeout}s")


async def _resolve(name: str) -> pylsl.StreamInfo:
    found = await asyncio.to_thread(pylsl.resolve_byprop, "name", name, 1, 10.0)
    assert found, f"LSL stream {name!r} not found within 10 s"
    return found[0]


async def _session(engine: Any, work: Path) -> Recorded:
    import labrecorder

    from razvilka.daemon.cli import build_daemon
    from razvilka.inputs.eeg.adapter import SUBSCRIBE as EEG_SUBSCRIBE
    from razvilka.inputs.eeg.adapter import EegAdapter
    from razvilka.inputs.eeg.config import EegConfig
    from razvilka.inputs.eeg.recording import NON_TARGET, TARGET, Recording, write_playback_file
    from razvilka.inputs.gaze.adapter import SUBSCRIBE as GAZE_SUBSCRIBE
    from razvilka.inputs.gaze.adapter import GazeAdapter
    from razvilka.inputs.gaze.config import GazeConfig
    from razvilka.inputs.lslrecord import gaze_stream_names

    tag = uuid.uuid4().hex[:8]
    plan = flash_plan()
    eeg, offsets = synthetic_eeg(plan)
    start_unix = time.time()
    ts = start_unix + np.arange(len(eeg)) / RATE
    markers = np.zeros(len(eeg), dtype=int)
    for off, pos in zip(offsets, plan):
        markers[int(round(off * RATE))] = TARGET if pos == 0 else NON_TARGET
    playback = write_playback_file(work / "eeg.csv", Recording(eeg, ts, markers, CHANNELS, RATE, "synthetic"), -1,
                                   start_unix=start_unix)
    onsets_bus = start_unix + unix_to_bus_offset_s() + offsets    # each slot's onset on the bus clock

    names = {"session": f"rz-session-{tag}", "eeg": f"rz-eeg-{tag}", "eeg_markers": f"rz-mk-{tag}"}
    names["gaze"], names["gaze_markers"] = gaze_stream_names(f"gaze-{tag}")
    config = daemon_config(work, record={"lsl": True, "lsl_name": names["session"]})
    engine.clear_cache()
    daemon = build_daemon(config, engine=engine, resume=False)
    gaze = GazeReplay(f"tobii-{tag}")
    clients: list[BusClient] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    rec: Recorded | None = None
    try:
        await daemon.start()
        assert daemon.bus is not None
        endpoints = daemon.bus.endpoints

        async def client(name: str, subscribe: list[str], role: Role = "tool") -> BusClient:
            c = BusClient(name, endpoints, subscribe=subscribe, role=role, heartbeat_ms=200)
            clients.append(c)
            await c.start()
            assert await c.wait_connected(5.0)
            return c

        observer = await client("observer", [""])
        renderer = await client("renderer", ["fork.", "text.undo."], role="renderer")
        keys = await client("keys", [], role="input")
        gaze.thread.start()
        gaze_cfg = GazeConfig(name=f"gaze-{tag}", source_id=f"tobii-{tag}", resolve_timeout_s=5.0, dwell_ms=1500)
        gaze_adapter = GazeAdapter(gaze_cfg, await client(gaze_cfg.name, list(GAZE_SUBSCRIBE), "input"), lsl=True)
        eeg_cfg = EegConfig(name=f"eeg-{tag}", board_id=-3, master_board=-1, playback_file=str(playback),
                            board_config=["old_timestamps"], channels=list(CHANNELS), model_dir=str(work),
                            lsl=True, lsl_eeg_name=names["eeg"], lsl_marker_name=names["eeg_markers"])
        eeg_adapter = EegAdapter(eeg_cfg, await client(eeg_cfg.name, list(EEG_SUBSCRIBE), "input"))
        tasks += [asyncio.create_task(gaze_adapter.run(stop)), asyncio.create_task(eeg_adapter.run(stop))]

        infos = [await _resolve(names[k]) for k in ("session", "gaze", "gaze_markers", "eeg", "eeg_markers")]
        session_in = pylsl.StreamInlet(infos[0])
        eeg_in = pylsl.StreamInlet(infos[3])
        await asyncio.to_thread(session_in.open_stream, 5.0)
        await asyncio.to_thread(eeg_in.open_stream, 5.0)
        xdf = work / "session.xdf"
        recording = await asyncio.to_thread(labrecorder.Recording, str(xdf), infos)

        # ---- the session: this test draws each fork and flashes it; the gaze chooses position 0.
        # The fork open before LabRecorder started is not in the record: ``more`` supersedes it, and
        # the session proper starts with the fork that follows.
        rec = Recorded(xdf, [], tag, names)
        tracker = ForkTracker()
        before = {m.header.fork_id for m in await renderer.snapshot() if tracker.update(m) == "open"}
        before |= {tracker.fork_id} if tracker.fork_id else set()
        keys.publish(Command(command="more", source="keys"))
        drawn: str | None = None
        looked_at_target: asyncio.TimerHandle | None = None
        decided = 0
        loop = asyncio.get_running_loop()

        def on_message(msg: Message) -> None:
            nonlocal drawn, looked_at_target, decided
            what = tracker.update(msg)
            fork = tracker.fork
            if what == "open" and fork is not None and fork.fork_id not in before:
                rec.forks.append(fork.fork_id)
                renderer.publish(layout_for(fork.indices), fork_id=fork.fork_id)
                drawn = fork.fork_id
                gaze.look(2)       # a glance at another word first ...
                if looked_at_target is not None:
                    looked_at_target.cancel()
                looked_at_target = loop.call_later(0.4, gaze.look, 0)   # ... then the chosen one, held
            elif what == "decided" and tracker.ended not in before:
                decided += 1
                drawn = None
                if decided == BACK_AFTER:
                    keys.publish(Command(command="back", source="keys"))

        slot = int(np.searchsorted(onsets_bus, now_s() + 0.05))
        while decided < DECISIONS:
            assert slot < len(plan), f"the EEG file ran out after {decided} decisions"
            wait = onsets_bus[slot] - now_s()
            if wait > 0:
                msg = await renderer.recv(timeout=max(0.001, wait))
                if msg is not None:
                    on_message(msg)
                continue
            fork = tracker.fork
            if fork is not None and drawn == fork.fork_id:
                index = fork.indices[plan[slot]]
                renderer.publish(Stimulus(indices=[index], onset_ns=int(onsets_bus[slot] * 1e9), flash=slot,
                                          renderer="test"), fork_id=fork.fork_id)
                rec.flashed.append((fork.fork_id, index, float(onsets_bus[slot])))
            slot += 1

        # ---- everything sent has reached LSL: the last decision in the session stream, the EEG past the last flash
        assert tracker.last_decided is not None
        last_id = body_of(tracker.last_decided, ForkDecided).decision_id
        got: list[Any] = []
        await _pull_until(session_in, lambda s, t: json.loads(s[0]).get("decision_id") == last_id, 15.0, got)
        last_onset = rec.flashed[-1][2]
        await _pull_until(eeg_in, lambda s, t: t > last_onset + 1.0, 30.0)
        # LabRecorder pulls its inlets every 500 ms and writes only when stopped: nothing to watch,
        # so give it one more pull before stopping (its inlets got the same data as ours above)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(recording.stop)
        box = [recording]
        del recording
        await asyncio.to_thread(box.clear)  # the destructor writes the footers and closes the file (seconds)
        rec.seen += await drained(observer, 0.2)
        del session_in, eeg_in
        return rec
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        gaze.close()
        await asyncio.gather(*(c.close() for c in clients))
        await asyncio.wait_for(daemon.close(), timeout=60)


@pytest.fixture(scope="module")
def recorded(engine: Any) -> Iterator[Recorded]:
    """One session recorded into one XDF (own event loop and ZeroMQ contexts: it outlives single tests)."""
    work = Path(tempfile.mkdtemp(prefix="rz-lsl-", dir="/tmp"))
    contexts: dict[Any, Any] = {zmq.Context: zmq.Context(), zmq.asyncio.Context: zmq.asyncio.Context()}
    saved: dict[Any, Any] = {cls: cls.__dict__.get("_instance") for cls in contexts}
    for cls, ctx in contexts.items():
        cls._instance, cls._instance_pid = ctx, os.getpid()
    try:
        yield asyncio.run(_session(engine, work))
    finally:
        for cls, ctx in contexts.items():
            ctx.term()
            cls._instance = saved[cls]
        shutil.rmtree(work, ignore_errors=True)


def _xdf_streams(path: Path) -> dict[str, dict[str, Any]]:
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    return {s["info"]["name"][0]: s for s in streams}


def test_labrecorder_writes_the_whole_session_into_one_xdf(recorded: Recorded) -> None:
    streams = _xdf_streams(recorded.xdf)
    names = recorded.names
    assert set(names.values()) <= set(streams), f"streams in the XDF: {sorted(streams)}"
    session = streams[names["session"]]
    info = session["info"]
    assert (info["type"][0], info["channel_format"][0], info["channel_count"][0]) == ("Markers", "string", "1")
    assert float(info["nominal_srate"][0]) == 0.0
    desc = info["desc"][0]
    assert desc["role"][0] == "session" and desc["protocol_version"][0] and desc["format"][0] == "json"
    markers = [json.loads(s[0]) for s in session["time_series"]]
    stamps = np.asarray(session["time_stamps"])
    # every fork, decision, command and stimulus the session made is there, once
    decided = recorded.of(ForkDecided)
    assert len(decided) == DECISIONS and len(recorded.forks) >= DECISIONS + 1  # a fork reopens after back
    opened = [m["fork_id"] for m in markers if m["type"] == "fork.open"]
    assert opened[: len(recorded.forks)] == recorded.forks  # then at most the fork opened after the last decision
    assert len(opened) <= len(recorded.forks) + 1
    fork_of = {m["fork_id"]: m for m in markers if m["type"] == "fork.open"}
    assert all(len(fork_of[f]["candidates"]) == K and fork_of[f]["candidates"][0]["word"] for f in recorded.forks)
    assert [m["decision_id"] for m in markers if m["type"] == "fork.decided"] == [d.body.decision_id for d in decided]
    commands = [m["command"] for m in markers if m["type"] == "input.command"]
    assert commands in (["more", "back"], ["back"])  # "more" went out as LabRecorder's inlets were opening
    assert [m["source"] for m in markers if m["type"] == "input.command"][-1] == "keys"
    assert sum(m["type"] == "text.undo" for m in markers) == 1
    stimuli = [(m, t) for m, t in zip(markers, stamps) if m["type"] == "render.stimulus"]
    assert [(m["fork_id"], m["indices"][0]) for m, _ in stimuli] == [(f, i) for f, i, _ in recorded.flashed]
    assert len(stimuli) >= 10
    # a stimulus is stamped with its onset, not its arrival
    for (m, t), (_, _, onset) in zip(stimuli, recorded.flashed):
        assert t == pytest.approx(onset, abs=1e-4) and m["sent_ns"] / 1e9 >= onset
    # the daemon's own markers are in order, with monotonic timestamps; each fork: open, focus, decided
    own = [t for m, t in zip(markers, stamps) if m["sender"] == "daemon"]
    assert np.all(np.diff(own) >= 0)
    for d in decided:
        fid = d.header.fork_id
        t_open = min(t for m, t in zip(markers, stamps) if m["type"] == "fork.open" and m["fork_id"] == fid)
        t_dec = next(t for m, t in zip(markers, stamps) if m["type"] == "fork.decided" and m["fork_id"] == fid)
        focus = [(m, t) for m, t in zip(markers, stamps) if m["type"] == "input.focus" and m["fork_id"] == fid]
        assert all(t >= t_open for _, t in focus) and any(t <= t_dec for _, t in focus)
        assert any(m["index"] == fork_of[fid]["candidates"][2]["index"] for m, _ in focus)  # the glance first
        assert any(m["source"] == f"gaze-{recorded.tag}" and m["kind"] == "gaze" for m, _ in focus)
        assert d.body.rule == "dwell"
    # EEG and gaze are there, on the same clock
    eeg = streams[names["eeg"]]
    assert eeg["time_series"].shape[1] == len(CHANNELS) and float(eeg["info"]["nominal_srate"][0]) == RATE
    assert eeg["time_stamps"][0] < stimuli[0][1] and eeg["time_stamps"][-1] > stimuli[-1][1] + 0.8
    gaze = streams[names["gaze"]]
    assert gaze["info"]["type"][0] == "Gaze" and gaze["time_series"].shape[1] == 7
    gaze_markers = streams[names["gaze_markers"]]
    gaze_marks = [json.loads(s[0])["type"] for s in gaze_markers["time_series"]]
    # pixels of the renderer's screen from its first layout on (a gaze.screen marker says when)
    screen_at = gaze_markers["time_stamps"][gaze_marks.index("gaze.screen")]
    later = gaze["time_series"][gaze["time_stamps"] > screen_at + 0.1]
    assert len(later) and np.nanmax(later[:, 4]) <= SCREEN[0] and np.nanmin(later[:, 4]) >= 0
    assert gaze["time_stamps"][0] < stamps[0] + 5 and gaze["time_stamps"][-1] > stimuli[-1][1]
    assert gaze_marks.count("gaze.confirm") >= DECISIONS and "gaze.fixation" in gaze_marks


def test_analyse_writes_the_report_from_the_recorded_xdf(recorded: Recorded, tmp_path: Path) -> None:
    from razvilka.cli import main

    out = tmp_path / "report.html"
    assert main(["analyse", str(recorded.xdf), "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    page = out.read_text(encoding="utf-8")

    def cell(key: str) -> str:
        m = re.search(rf'<td id="{key}">([^<]*)</td>', page)
        assert m, f"no {key} in the report"
        return m.group(1)

    for section in ("streams", "selections", "eeg", "gaze"):
        assert f'<section id="{section}">' in page
    assert 'id="missing"' not in page
    opened = [json.loads(s[0])["fork_id"] for s in _xdf_streams(recorded.xdf)[recorded.names["session"]]["time_series"]
              if json.loads(s[0])["type"] == "fork.open"]
    assert int(cell("forks")) == len(opened) and len(opened) >= len(recorded.forks)
    assert int(cell("decisions")) == DECISIONS
    assert int(cell("undone")) == 1
    assert float(cell("accuracy")) == pytest.approx((DECISIONS - 1) / DECISIONS, abs=1e-3)
    per_fork = [sum(f == d.header.fork_id for f, _, _ in recorded.flashed) for d in recorded.of(ForkDecided)]
    with_flashes = [n for n in per_fork if n]
    assert cell("flashes_per_selection") == f"{np.mean(with_flashes):.1f}"  # the report's one decimal
    assert float(cell("itr_bits_per_min")) > 0 and float(cell("words_per_min")) > 0
    # the EEG: a P300 after every flash of the chosen word, so the classifier tells them apart
    targets = sum(f == d.header.fork_id and i == d.body.index
                  for d in recorded.of(ForkDecided) for f, i, _ in recorded.flashed)
    assert int(cell("n_target")) == targets and targets >= 3
    assert int(cell("n_target")) + int(cell("n_nontarget")) == len(recorded.flashed)
    assert float(cell("auc")) > 0.8
    assert 'id="erp" alt="target and non-target ERPs" src="data:image/png;base64,' in page
    # the gaze: one dwell confirm per decision, each after about the dwell time
    assert int(cell("dwell_confirms")) >= DECISIONS and int(cell("fixations")) >= DECISIONS
    assert 1400 <= float(cell("dwell_ms_median")) <= 2500
