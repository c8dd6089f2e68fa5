"""Gaze adapter: the real Tobii recording through a real pylsl outlet/inlet, synthetic gaze for edge cases,
the real adapter on a real ipc bus.

The recording (tests/data/gaze/tobii-matrix-calibration, see its PROVENANCE.md) is a BciPy matrix-speller calibration:
28 symbols at known positions; before each inquiry a symbol is prompted and the person looks at it
while the matrix flashes. So each inquiry is a fork whose right answer is known.
"""
from __future__ import annotations

import asyncio
import functools
import json
import lzma
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pylsl
import pytest
from bus_helpers import body_of, message_of, wait_retained
from conftest import ROOT, TEST_DATA

from razvilka.daemon.decider import Decider
from razvilka.inputs.gaze.adapter import GazeAdapter, config_from_args, load_calibration
from razvilka.inputs.gaze.calibration import (
    Calibration,
    TargetWindow,
    TkTargetDisplay,
    box_confidence,
    calibration_path,
    grid_targets,
    measure,
    run_routine,
)
from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.dwell import ConfirmEvent, FocusEvent, GazeEvent, dwell_for
from razvilka.inputs.gaze.fixation import degrees_per_unit, detect_fixations
from razvilka.inputs.gaze.hittest import HitMap
from razvilka.inputs.gaze.pipeline import GazeTracker
from razvilka.inputs.gaze.signal import Smoother, combine_eyes
from razvilka.inputs.gaze.stream import ChannelMap, GazeStream, RawGaze
from razvilka.protocol.clock import now_s
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Box,
    Candidate,
    Confirm,
    Focus,
    ForkDecided,
    ForkOpen,
    Layout,
    Message,
    SourceStatus,
)

DATA = TEST_DATA / "gaze" / "tobii-matrix-calibration"
RATE = 60.0


# ====================================================================== the real session
@dataclass(frozen=True)
class Inquiry:
    symbol: str
    prompt: float  # recording clock (lsl_timestamp)
    fixation: float
    last_flash: float


@dataclass(frozen=True)
class Session:
    t: np.ndarray  # (n,) lsl_timestamp
    data: np.ndarray  # (n, 6) float32: lx ly lpupil rx ry rpupil (the Tobii connector's channels)
    symbols: list[str]
    layout: Layout  # one 168 px box per matrix cell, 1920 x 1080
    inquiries: list[Inquiry]

    def index(self, symbol: str) -> int:
        return self.symbols.index(symbol)

    def symbol(self, index: int | None) -> str:
        """The symbol a confirm chose: this layout has only candidates, so a confirm always names one."""
        assert index is not None, "a confirm on a target: this layout has none"
        return self.symbols[index]

    def target_norm(self, symbol: str) -> tuple[float, float]:
        box = self.layout.boxes[self.index(symbol)]
        return (box.x + box.w / 2) / self.layout.screen_w, (box.y + box.h / 2) / self.layout.screen_h


@functools.lru_cache(maxsize=1)
def session() -> Session:
    with lzma.open(DATA / "eyetracker_data_tobii-p0.csv.xz", "rt") as f:
        rows = np.genfromtxt(f, delimiter=",", skip_header=3)
    pos = json.loads((DATA / "stimuli_positions.json").read_text())
    w, h = pos["screen_size_pixels"]
    symbols = [k for k, v in pos.items() if k not in ("screen_size_pixels", "screen_hz", "screen_units")]
    cell = 0.175 / 2 * w  # PsychoPy norm units: the cells are 0.175 apart in x (= 168 px) and as tall
    boxes = [Box(index=i, x=(pos[s][0] + 1) / 2 * w - cell / 2, y=(1 - pos[s][1]) / 2 * h - cell / 2, w=cell, h=cell)
             for i, s in enumerate(symbols)]
    inquiries: list[Inquiry] = []
    symbol = ""                    # the inquiry being read: its prompted symbol,
    times: dict[str, float] = {}   # and its prompt, fixation and last_flash times
    for line in (DATA / "triggers.txt").read_text().splitlines():
        sym, kind, when = line.split()
        if kind == "prompt":
            if times:
                inquiries.append(Inquiry(symbol, times["prompt"], times["fixation"], times["last_flash"]))
            symbol, times = sym, {"prompt": float(when)}
        elif kind == "fixation":
            times["fixation"] = float(when)
        elif kind in ("target", "nontarget"):
            times["last_flash"] = float(when)
    inquiries.append(Inquiry(symbol, times["prompt"], times["fixation"], times["last_flash"]))
    return Session(rows[:, 9], rows[:, 3:9].astype(np.float32), symbols,
                   Layout(boxes=boxes, screen_w=w, screen_h=h, renderer="bcipy-matrix"), inquiries)


# ====================================================================== LSL helpers
def tobii_info(source_id: str, channels: int = 6, name: str = "Tobii") -> pylsl.StreamInfo:
    """Shaped like the Tobii Pro LSL connector's stream."""
    info = pylsl.StreamInfo(name, "Eyetracker", channels, RATE, pylsl.cf_float32, source_id)
    labels = ["left_x", "left_y", "left_pupil", "right_x", "right_y", "right_pupil"][:channels]
    chans = info.desc().append_child("channels")
    for label in labels:
        chans.append_child("channel").append_child_value("label", label)
    return info


async def close_outlet(box: list[pylsl.StreamOutlet]) -> None:
    """Destroy an outlet off the event loop: liblsl may wait up to 2 s for its transfer threads."""
    await asyncio.to_thread(box.clear)


def stream_cfg(source_id: str, **kw: object) -> GazeConfig:
    return msgspec.structs.replace(GazeConfig(), source_id=source_id, **kw)


def push(outlet: pylsl.StreamOutlet, ts: np.ndarray, data: np.ndarray, block: int = 600) -> None:
    for s in range(0, len(ts), block):
        outlet.push_chunk(np.ascontiguousarray(data[s:s + block], dtype=np.float32),
                          [float(v) for v in ts[s:s + block]])


def replay_through_lsl(ts: np.ndarray, data: np.ndarray, source_id: str,
                       block: int = 600) -> tuple[GazeStream, list[RawGaze]]:
    """Push samples with explicit timestamps (faster than real time) and read them back with the real inlet.

    Blocks of ``block`` samples (10 s of gaze) go out as fast as the inlet drains them: its buffer
    holds 60 s, so the whole 459 s session takes well under a second.
    """
    outlet = pylsl.StreamOutlet(tobii_info(source_id))
    stream = GazeStream.open(stream_cfg(source_id, resolve_timeout_s=5.0))
    assert outlet.wait_for_consumers(5.0)
    chunks: list[RawGaze] = []
    got = 0
    for s in range(0, len(ts), block):
        push(outlet, ts[s:s + block], data[s:s + block])
        deadline = time.monotonic() + 5
        while got < min(s + block, len(ts)) and time.monotonic() < deadline:
            raw = stream.pull()
            if raw is None:
                time.sleep(0.001)
                continue
            chunks.append(raw)
            got += len(raw.t)
    del outlet
    return stream, chunks


def split_at(raw: RawGaze, cut: float) -> tuple[RawGaze, RawGaze]:
    i = int(np.searchsorted(raw.t, cut))

    def part(s: slice) -> RawGaze:
        return RawGaze(raw.t[s], raw.left[s], None if raw.right is None else raw.right[s],
                       None if raw.valid is None else raw.valid[s])
    return part(slice(0, i)), part(slice(i, None))


def run_session(tracker: GazeTracker, chunks: list[RawGaze], prompts: list[float], layout: Layout,
                k: int) -> list[tuple[int, GazeEvent]]:
    """Feed chunks; open a new fork (0, 1, ...) with the layout at each prompt time. Returns (fork, event)."""
    events: list[tuple[int, GazeEvent]] = []
    hitmap = HitMap.from_layout(layout, tracker.cfg.fuzzy_radius_px, k)
    fork = -1
    for raw in chunks:
        while fork + 1 < len(prompts) and len(raw.t) and raw.t[-1] >= prompts[fork + 1]:
            head, raw = split_at(raw, prompts[fork + 1])
            events += [(fork, e) for e in tracker.feed(head)]
            fork += 1
            tracker.open_fork(f"fork-{fork}", dict.fromkeys(range(k), 1 / k))
            tracker.set_layout(hitmap)
        events += [(fork, e) for e in tracker.feed(raw)]
    return events


# ====================================================================== synthetic gaze
SCREEN = (1920.0, 1080.0)
#: Three candidates in a row, 200 x 80 px, 100 px apart.
BOXES = {0: (400.0, 500.0), 1: (700.0, 500.0), 2: (1000.0, 500.0)}
BOX_W, BOX_H = 200.0, 80.0


def synth_layout() -> Layout:
    return Layout(boxes=[Box(index=i, x=x, y=y, w=BOX_W, h=BOX_H) for i, (x, y) in BOXES.items()],
                  screen_w=SCREEN[0], screen_h=SCREEN[1], renderer="synthetic")


def centre(i: int) -> tuple[float, float]:
    x, y = BOXES[i]
    return x + BOX_W / 2, y + BOX_H / 2


def synth(segments: list[tuple[float, tuple[float, float] | None]], t0: float = 1000.0, noise_px: float = 3.0,
          seed: int = 1) -> RawGaze:
    """60 Hz binocular gaze: each segment is (seconds, (x, y) screen px) or (seconds, None) for NaN (blink)."""
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    for seconds, where in segments:
        n = int(round(seconds * RATE))
        seg = np.full((n, 2), np.nan) if where is None else np.asarray(where) + rng.normal(0, noise_px, (n, 2))
        pts.append(seg)
    xy = np.concatenate(pts) / np.asarray(SCREEN)
    t = t0 + np.arange(len(xy)) / RATE
    return RawGaze(t, xy, xy.copy(), None)


def tracker_for(layout: Layout | None = None, probs: dict[int, float] | None = None, **kw: object) -> GazeTracker:
    tracker = GazeTracker(msgspec.structs.replace(GazeConfig(), **kw))
    tracker.open_fork("fork-s", probs or dict.fromkeys(BOXES, 1 / 3))
    tracker.set_layout(HitMap.from_layout(layout or synth_layout(), tracker.cfg.fuzzy_radius_px, tracker.k))
    return tracker


def confirms(events: list[GazeEvent]) -> list[ConfirmEvent]:
    return [e for e in events if isinstance(e, ConfirmEvent)]


def focuses(events: list[GazeEvent]) -> list[FocusEvent]:
    return [e for e in events if isinstance(e, FocusEvent)]


# ====================================================================== the real recording
def test_real_recording_replayed_through_lsl_confirms_the_prompted_symbols() -> None:
    s = session()
    base = pylsl.local_clock()
    ts = base + (s.t - s.t[0])
    stream, chunks = replay_through_lsl(ts, s.data, f"tobii-{uuid.uuid4().hex[:8]}")
    try:
        assert abs(stream.offset_s) < 0.005, "in-process LSL time correction should be ~0"
        got_t = np.concatenate([c.t for c in chunks]) - stream.offset_s
        assert len(got_t) == len(ts), "the inlet lost or duplicated samples"
        np.testing.assert_allclose(got_t, ts, atol=1e-6)
        got_left = np.concatenate([c.left for c in chunks])
        np.testing.assert_array_equal(got_left, s.data[:, [0, 1]].astype(np.float64))
        got_right = np.concatenate([c.right for c in chunks])
        np.testing.assert_array_equal(got_right, s.data[:, [3, 4]].astype(np.float64))
    finally:
        stream.close()

    # each inquiry is a fork opened at its prompt; its right answer is the prompted symbol
    k = len(s.symbols)
    prompts = [base + (q.prompt - s.t[0]) for q in s.inquiries]
    events = run_session(GazeTracker(GazeConfig()), chunks, prompts, s.layout, k)
    first_ok, latency, misses, wrong_first = 0, [], [], 0
    for f, q in enumerate(s.inquiries):
        end = base + (q.last_flash - s.t[0]) + 0.3
        mine = [e for g, e in events if g == f and isinstance(e, ConfirmEvent) and e.t <= end]
        if mine and s.symbol(mine[0].index) == q.symbol:
            first_ok += 1
            latency.append(mine[0].t - prompts[f])
        else:
            misses.append((f, q.symbol, [s.symbol(e.index) for e in mine]))
            wrong_first += bool(mine)
    print(f"\nreal recording: first dwell confirm = prompted symbol in {first_ok}/{len(s.inquiries)} inquiries, "
          f"a wrong symbol first in {wrong_first}; prompt->confirm median {np.median(latency) * 1e3:.0f} ms, "
          f"max {max(latency) * 1e3:.0f} ms (600 ms dwell + finding the symbol); misses {misses}")
    # Inquiry 14 (P) is the person's: they looked at W, from before the prompt to the end. Their
    # fixation began before the fork opened, so it adds no dwell (fresh_fixation): no confirm at all.
    assert first_ok >= 53, misses
    assert wrong_first <= 1, misses
    assert 0.6 <= float(np.median(latency)) <= 2.0

    # every confirm happened on a valid sample: none inside a stretch where both eyes are NaN
    both_nan = np.isnan(s.data[:, 0]) & np.isnan(s.data[:, 3])
    nan_times = set(np.round(ts[both_nan], 6))
    assert not any(round(e.t, 6) in nan_times for _, e in events if isinstance(e, ConfirmEvent))

    # progress is published while dwelling and reaches 1 exactly at the confirm
    progress = [e.dwell for _, e in events if isinstance(e, FocusEvent) and e.dwell is not None]
    assert any(0 < p < 1 for p in progress) and max(progress) == 1.0


def test_real_recording_fixations_land_on_the_prompted_symbol() -> None:
    s = session()
    cfg = GazeConfig()
    xy, ok = combine_eyes(s.data[:, [0, 1]], s.data[:, [3, 4]])
    smooth = Smoother(cfg.smooth_samples, cfg.max_gap_ms / 1000).feed(s.t, xy, ok)
    fixations = detect_fixations(s.t, smooth, cfg.velocity_deg_s, degrees_per_unit(cfg.screen_mm, cfg.distance_mm),
                                 velocity_window_s=cfg.velocity_window_ms / 1000)
    hm = HitMap.from_layout(s.layout, cfg.fuzzy_radius_px)
    on = total = 0.0
    per_inquiry = []
    for q in s.inquiries:
        overlap = [(min(f.end, q.last_flash) - max(f.start, q.fixation), f) for f in fixations
                   if f.end > q.fixation and f.start < q.last_flash]
        dur = sum(d for d, _ in overlap)
        hit = sum(d for d, f in overlap if hm.hit(f.x * SCREEN[0], f.y * SCREEN[1]) == s.index(q.symbol))
        on, total = on + hit, total + dur
        per_inquiry.append(hit / dur if dur else 0.0)
    share = on / total
    majority = sum(p > 0.5 for p in per_inquiry)
    median_ms = np.median([f.duration for f in fixations]) * 1e3
    print(f"\nreal recording: {len(fixations)} fixations (median {median_ms:.0f} ms); "
          f"{share:.1%} of fixation time during the flashes is on the prompted symbol; "
          f"{majority}/{len(s.inquiries)} inquiries mostly on it")
    assert share > 0.9 and majority >= 53


def test_nan_stretch_inside_a_real_dwell_never_confirms() -> None:
    """Blank the gaze 150 ms after one real prompt until the end of its flashes: nothing may confirm then."""
    s = session()
    q = s.inquiries[0]
    data = s.data.copy()
    blank = (s.t >= q.prompt + 0.15) & (s.t <= q.last_flash)
    data[blank, :] = np.nan
    stop = s.inquiries[1].prompt
    sel = s.t < stop
    chunk = ChannelMap.from_config(GazeConfig()).bind(6).extract(s.t[sel], data[sel])
    events = run_session(GazeTracker(GazeConfig()), [chunk], [q.prompt], s.layout, len(s.symbols))
    blank_end = float(s.t[blank][-1])
    done = confirms([e for _, e in events])
    # nothing during the 2.6 s without gaze; after it, a fresh full dwell is needed
    assert done and all(c.t >= blank_end + 0.6 for c in done)
    # the focus it had was withdrawn once the loss outlasted blink_hold_ms
    during = [e.index for _, e in events if isinstance(e, FocusEvent) and q.prompt < e.t <= blank_end]
    assert during and during[-1] is None
    # the same stretch without the blanking does confirm the prompted symbol
    clean = ChannelMap.from_config(GazeConfig()).bind(6).extract(s.t[sel], s.data[sel])
    events = run_session(GazeTracker(GazeConfig()), [clean], [q.prompt], s.layout, len(s.symbols))
    assert [s.symbol(e.index) for e in confirms([e for _, e in events])][:1] == [q.symbol]


# ====================================================================== synthetic edge cases
def test_dwell_confirms_after_600_ms_and_reports_progress() -> None:
    tr = tracker_for()
    raw = synth([(0.3, (100.0, 100.0)), (1.0, centre(1))])
    events = tr.feed(raw)
    arrive = raw.t[int(0.3 * RATE)]
    (c,) = confirms(events)
    assert c.index == 1
    assert 0.58 <= c.t - arrive <= 0.70
    f = focuses(events)
    # at once: after the saccade, smoothing (3 samples), the 20 ms velocity window and min_fixation_ms
    assert f[0].index == 1 and f[0].t - arrive <= 0.15, "focus moves at once, long before the dwell"
    dwell = [e.dwell for e in f if e.dwell is not None]
    assert dwell == sorted(dwell) and dwell[-1] == 1.0 and len(dwell) >= 5
    assert f[0].x is not None and abs(f[0].x - centre(1)[0]) < 15


def test_blink_mid_dwell_pauses_and_never_confirms_while_lost() -> None:
    tr = tracker_for()
    raw = synth([(0.3, centre(0)), (0.2, None), (0.8, centre(0))])
    events = tr.feed(raw)
    (c,) = confirms(events)
    blink_end = raw.t[int(0.5 * RATE)]
    assert c.index == 0
    assert c.t >= raw.t[0] + 0.6 + 0.2 - 0.05, "the blink's 200 ms must not count as dwell"
    assert c.t > blink_end
    lost = set(np.round(raw.t[np.isnan(raw.left[:, 0])], 6))
    assert not any(round(e.t, 6) in lost for e in events if isinstance(e, ConfirmEvent))
    assert all(e.index == 0 for e in focuses(events)), "a short blink keeps the focus"


def test_long_loss_drops_focus_and_restarts_the_dwell() -> None:
    tr = tracker_for()
    raw = synth([(0.4, centre(0)), (0.5, None), (0.5, centre(0)), (0.3, centre(0))])
    events = tr.feed(raw)
    indices = [e.index for e in focuses(events)]
    assert None in indices, "gaze lost longer than blink_hold_ms withdraws the focus"
    back = raw.t[int(0.9 * RATE)]
    (c,) = confirms(events)
    assert c.t - back >= 0.55, "the 400 ms before the loss must not count"


def test_looking_away_off_screen_never_confirms() -> None:
    tr = tracker_for()
    raw = synth([(0.3, centre(2)), (1.5, (3500.0, 2000.0))])  # far off the display: invalid eyes
    events = tr.feed(raw)
    assert confirms(events) == []
    assert focuses(events)[-1].index is None


def test_jitter_at_a_box_edge_within_the_fuzzy_radius_keeps_focus() -> None:
    tr = tracker_for(fuzzy_radius_px=40.0)
    x_edge = BOXES[0][0] + BOX_W  # right edge of box 0; box 1 starts 100 px further right
    rng = np.random.default_rng(7)
    n = int(1.0 * RATE)
    # hop across the edge every other sample: +-12 px (slow enough to stay one fixation)
    xs = x_edge + np.where(np.arange(n) % 2 == 0, -12.0, 12.0) + rng.normal(0, 2, n)
    xy = np.column_stack([xs, np.full(n, centre(0)[1])])
    raw0 = synth([(0.3, centre(0))])
    t = raw0.t[-1] + (1 + np.arange(n)) / RATE
    raw1 = RawGaze(t, xy / SCREEN, xy / SCREEN, None)
    events = tr.feed(raw0) + tr.feed(raw1)
    assert {e.index for e in focuses(events)} == {0}
    assert [c.index for c in confirms(events)] == [0]
    # the same point 12 px outside is still box 0 for a fresh hit test (nearest within the radius) ...
    hm = tr.hitmap
    assert hm is not None and hm.hit(x_edge + 12, centre(0)[1]) == 0
    # ... and nothing beyond the radius
    assert hm.hit(x_edge + 45, centre(0)[1] - BOX_H) is None


def test_saccade_between_boxes_resets_the_dwell() -> None:
    tr = tracker_for()
    raw = synth([(0.45, centre(0)), (0.45, centre(1)), (0.45, centre(0)), (0.8, centre(2))])
    events = tr.feed(raw)
    c = confirms(events)
    assert [x.index for x in c] == [2], "no visit but the last lasted 600 ms"
    arrive = raw.t[int(1.35 * RATE)]
    assert c[0].t - arrive >= 0.55
    visits = [i for n, i in enumerate(e.index for e in focuses(events))
              if n == 0 or i != focuses(events)[n - 1].index]
    assert visits == [0, 1, 0, 2]
    early = [e.dwell for e in focuses(events) if e.t < arrive and e.dwell is not None]
    assert early and max(early) < 0.75, "no earlier visit got near a confirm"


def test_cascading_dwell_is_shorter_for_a_likely_word() -> None:
    probs = {0: 0.9, 1: 0.05, 2: 0.05}
    assert dwell_for(0.9, 600, True, 300) == pytest.approx(330)
    assert dwell_for(0.05, 600, True, 300) == pytest.approx(585)
    assert dwell_for(0.9, 600, False, 300) == 600

    def time_to_confirm(target: int, cascade: bool) -> float:
        tr = tracker_for(probs=probs, cascade=cascade)
        raw = synth([(0.3, (100.0, 100.0)), (1.0, centre(target))])
        (c,) = confirms(tr.feed(raw))
        return c.t - raw.t[int(0.3 * RATE)]

    likely, unlikely, plain = time_to_confirm(0, True), time_to_confirm(1, True), time_to_confirm(0, False)
    assert likely < 0.42 and unlikely > 0.55 and plain > 0.58
    assert likely < plain - 0.15


def test_focus_is_refreshed_while_held_and_dwell_zero_never_confirms() -> None:
    tr = tracker_for(dwell_ms=0, refresh_ms=500)
    raw = synth([(3.0, centre(1))])
    events = tr.feed(raw)
    assert confirms(events) == []
    f = focuses(events)
    assert all(e.index == 1 and e.dwell is None for e in f)
    gaps = np.diff([e.t for e in f])
    assert len(f) >= 5 and gaps.max() <= 0.55, "a held focus must be re-sent before the daemon finds it stale"


def test_a_resting_gaze_does_not_confirm_the_next_forks_word_until_it_looks_again() -> None:
    tr = tracker_for()
    # 1.0 s on box 1 (confirms), 1.5 s more on the same spot, then a saccade (2 deg) within box 1 and 1.0 s there
    raw = synth([(1.0, centre(1)), (1.5, centre(1)), (1.0, (centre(1)[0] + 85, centre(1)[1]))], noise_px=2.0)
    first, rest = split_at(raw, raw.t[0] + 1.0)
    assert [c.index for c in confirms(tr.feed(first))] == [1]
    tr.open_fork("fork-next", dict.fromkeys(BOXES, 1 / 3))  # the daemon decided; new words in the same boxes
    tr.set_layout(HitMap.from_layout(synth_layout(), 40.0, 3))
    resting, looked = split_at(rest, raw.t[0] + 2.5)
    during = tr.feed(resting)
    assert confirms(during) == [] and focuses(during)[0].index == 1, "focus yes, dwell no"
    assert max(e.dwell or 0 for e in focuses(during)) == 0
    after = tr.feed(looked)
    (c,) = confirms(after)
    assert c.index == 1 and c.t - looked.t[0] >= 0.55
    # with fresh_fixation off, the resting gaze confirms the new fork's word after 600 ms
    tr2 = tracker_for(fresh_fixation=False)
    tr2.feed(first)
    tr2.open_fork("fork-next", dict.fromkeys(BOXES, 1 / 3))
    tr2.set_layout(HitMap.from_layout(synth_layout(), 40.0, 3))
    assert [c.index for c in confirms(tr2.feed(resting))] == [1]


def test_one_confirm_per_visit() -> None:
    tr = tracker_for()
    events = tr.feed(synth([(3.0, centre(0))]))
    assert len(confirms(events)) == 1


def test_signal_combines_eyes_with_validity() -> None:
    left = np.array([[0.4, 0.5], [np.nan, np.nan], [0.4, 1.63], [0.2, 0.2], [np.nan, 0.1]])
    right = np.array([[0.6, 0.5], [0.3, 0.3], [0.5, 0.5], [np.nan, np.nan], [np.nan, np.nan]])
    xy, ok = combine_eyes(left, right, margin=0.25)
    assert ok.tolist() == [True, True, True, True, False]
    np.testing.assert_allclose(xy[:4], [[0.5, 0.5], [0.3, 0.3], [0.5, 0.5], [0.2, 0.2]])
    assert np.isnan(xy[4]).all()
    # a chunked smoother equals a whole-array one
    t = np.arange(50) / RATE
    pts = np.random.default_rng(0).random((50, 2))
    good = np.ones(50, bool)
    good[20:30] = False
    whole = Smoother(3, 0.075).feed(t, pts, good)
    sm = Smoother(3, 0.075)
    parts = np.concatenate([sm.feed(t[a:b], pts[a:b], good[a:b]) for a, b in ((0, 7), (7, 31), (31, 50))])
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(parts))
    np.testing.assert_allclose(whole[good], parts[good])
    assert np.allclose(whole[30], pts[30]), "a gap longer than max_gap restarts the average"


# ====================================================================== bad input
def test_malformed_layouts_are_bad_layout() -> None:
    good = msgspec.to_builtins(synth_layout())
    cases: dict[str, Callable[[dict], None]] = {
        "nan": lambda d: d["boxes"][0].update(x=float("nan")),
        "zero area": lambda d: d["boxes"][1].update(w=0.0),
        "duplicate": lambda d: d["boxes"][2].update(index=0),
        "not in fork": lambda d: d["boxes"][2].update(index=7),
        "wrong type": lambda d: d["boxes"][0].update(x="left"),
        "no screen": lambda d: d.pop("screen_w"),
        "negative size": lambda d: d["boxes"][0].update(h=-5.0),
    }
    for name, spoil in cases.items():
        d = json.loads(json.dumps(good))
        spoil(d)
        with pytest.raises(ProtocolError) as err:
            HitMap.from_layout(d, 40.0, k=3)
        assert err.value.code == ErrorCode.BAD_LAYOUT, name
        assert str(err.value).startswith("BAD_LAYOUT: ")
    HitMap.from_layout(good, 40.0, k=3)
    empty = HitMap.from_layout({**good, "boxes": []}, 40.0, k=3)
    assert empty.hit(500, 500) is None


def test_channel_map_presets_and_bad_config() -> None:
    bad: list[dict[str, Any]] = [
        dict(channels="eyelink"),
        dict(channels="custom", channel_map={"x": 0}),
        dict(channels="custom", channel_map={"x": 0, "y": 1, "lx": 2, "ly": 3, "rx": 4, "ry": 5}),
        dict(channels="custom", channel_map={"x": 0, "y": 1, "gaze_z": 2}),
        dict(channels="custom", channel_map={"x": -1, "y": 1}),
        dict(channels="tobii", channel_map={"x": 0, "y": 1}),
        dict(tracker_px=[1920.0]),
    ]
    for kw in bad:
        with pytest.raises(ProtocolError) as err:
            ChannelMap.from_config(msgspec.structs.replace(GazeConfig(), **kw))
        assert err.value.code == ErrorCode.BAD_CONFIG, kw
    # a Pupil-Labs-like stream: labelled channels, y up, a confidence channel
    cfg = msgspec.structs.replace(GazeConfig(), channels="custom", y_up=True, valid_min=0.6,
                                  channel_map={"x": "norm_pos_x", "y": "norm_pos_y", "valid": "confidence"})
    bound = ChannelMap.from_config(cfg).bind(3, ["confidence", "norm_pos_x", "norm_pos_y"])
    raw = bound.extract(np.arange(2.0), np.array([[0.9, 0.25, 0.8], [0.3, 0.5, 0.5]]))
    np.testing.assert_allclose(raw.left[0], [0.25, 0.2])
    assert raw.right is None and raw.valid is not None and raw.valid.tolist() == [True, False]
    # pixels from the tracker are normalised by tracker_px
    px = ChannelMap.from_config(msgspec.structs.replace(GazeConfig(), channels="mono", units="px")).bind(2)
    np.testing.assert_allclose(px.extract(np.zeros(1), np.array([[960.0, 270.0]])).left, [[0.5, 0.25]])


def test_channel_map_against_wrong_streams_is_bad_stream() -> None:
    tobii = ChannelMap.from_config(GazeConfig())
    for count in (4, 5, 8):
        with pytest.raises(ProtocolError) as err:
            tobii.bind(count)
        assert err.value.code == ErrorCode.BAD_STREAM and "exactly 6" in str(err.value)
    with pytest.raises(ProtocolError) as err:
        tobii.bind(6, channel_format=pylsl.cf_string)
    assert err.value.code == ErrorCode.BAD_STREAM
    custom = ChannelMap.from_config(msgspec.structs.replace(
        GazeConfig(), channels="custom", channel_map={"x": 0, "y": 7}))
    with pytest.raises(ProtocolError) as err:
        custom.bind(4)
    assert err.value.code == ErrorCode.BAD_STREAM and "only 4 channels" in str(err.value)
    labelled = ChannelMap.from_config(msgspec.structs.replace(
        GazeConfig(), channels="custom", channel_map={"x": "gx", "y": "gy"}))
    with pytest.raises(ProtocolError) as err:
        labelled.bind(2, ["a", "b"])
    assert err.value.code == ErrorCode.BAD_STREAM and "'gx'" in str(err.value)


def test_wrong_shape_lsl_stream_is_refused_by_the_real_inlet_code() -> None:
    sid = f"tobii4-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(tobii_info(sid, channels=4))
    with pytest.raises(ProtocolError) as err:
        GazeStream.open(stream_cfg(sid, resolve_timeout_s=5.0))
    assert err.value.code == ErrorCode.BAD_STREAM and "4 channels" in str(err.value)
    del outlet
    with pytest.raises(ProtocolError) as err:
        GazeStream.open(stream_cfg(f"absent-{uuid.uuid4().hex[:8]}"), timeout=0.3)
    assert err.value.code == ErrorCode.DEVICE_MISSING and "connector" in str(err.value)


# ====================================================================== calibration
def session_windows(s: Session, which: range | list[int]) -> list[TargetWindow]:
    return [TargetWindow(s.inquiries[i].fixation, s.inquiries[i].last_flash, *s.target_norm(s.inquiries[i].symbol))
            for i in which]


def test_calibration_from_the_real_session_measures_offset_and_spread(tmp_path: Path) -> None:
    s = session()
    xy, ok = combine_eyes(s.data[:, [0, 1]], s.data[:, [3, 4]])
    cal = measure(s.t, xy, ok, session_windows(s, range(len(s.inquiries))), SCREEN, settle_s=0.3, user="p0")
    summary = cal.summary()
    dy = np.median([r.offset[1] for r in cal.regions]) * SCREEN[1]
    print(f"\nreal calibration: {summary}; median vertical offset {dy:+.1f} px")
    assert summary["regions"] == len({q.symbol for q in s.inquiries})
    assert -45 < dy < -10, "this tracker read gaze ~25 px above the symbols"
    assert 2 < summary["mean_spread_px"] < 30

    # cross-validated: calibrate on even inquiries, check the odd ones' gaze error with and without correction
    train = measure(s.t, xy, ok, session_windows(s, range(0, len(s.inquiries), 2)), SCREEN, settle_s=0.3)
    raw_err, fixed_err = [], []
    for i in range(1, len(s.inquiries), 2):
        q = s.inquiries[i]
        sel = ok & (s.t >= q.fixation + 0.3) & (s.t <= q.last_flash)
        target = np.asarray(s.target_norm(q.symbol))
        med_raw = np.median(xy[sel], axis=0)
        med_fix = np.median(train.correct(xy[sel]), axis=0)
        raw_err.append(np.hypot(*((med_raw - target) * SCREEN)))
        fixed_err.append(np.hypot(*((med_fix - target) * SCREEN)))
    print(f"held-out inquiries: median gaze error {np.median(raw_err):.1f} px raw, "
          f"{np.median(fixed_err):.1f} px calibrated")
    assert np.median(fixed_err) < 0.8 * np.median(raw_err)

    # stored per user, read back the same
    cfg = msgspec.structs.replace(GazeConfig(), calibration_dir=str(tmp_path), user="p0")
    path = cal.save(calibration_path(cfg))
    assert path == tmp_path / "p0.json" and json.loads(path.read_text())["summary"] == summary
    again = load_calibration(cfg)
    assert again is not None and again.regions == cal.regions and again.user == "p0"

    # the spread becomes the focus confidence: a steadier gaze gives higher confidence than the default guess
    assert box_confidence(40.0, 200, 80) < box_confidence(cal.spread_at(0.5, 0.5), 200, 80) <= 1.0
    tr = GazeTracker(GazeConfig(), calibration=cal)
    tr.open_fork("f", dict.fromkeys(BOXES, 1 / 3))
    tr.set_layout(HitMap.from_layout(synth_layout(), 40.0, 3))
    conf = [e.confidence for e in focuses(tr.feed(synth([(0.5, centre(1))], noise_px=1.0))) if e.index == 1]
    plain = tracker_for()
    conf0 = [e.confidence for e in focuses(plain.feed(synth([(0.5, centre(1))], noise_px=1.0))) if e.index == 1]
    assert conf and conf0 and min(conf) > max(conf0)


def test_bad_calibration_files_are_reported_not_fatal(tmp_path: Path) -> None:
    cfg = msgspec.structs.replace(GazeConfig(), calibration_dir=str(tmp_path), user="bob")
    assert load_calibration(cfg) is None  # none yet
    path = calibration_path(cfg)
    for text in ("{not json", json.dumps({"format": "other", "version": 1, "user": "bob", "created": "",
                                          "screen_px": [1, 1], "regions": []}),
                 json.dumps({"format": "razvilka-gaze-calibration", "version": 1, "user": "bob", "created": "",
                             "screen_px": [1920, 1080], "regions": []})):
        path.write_text(text)
        with pytest.raises(ProtocolError) as err:
            Calibration.load(path)
        assert err.value.code == ErrorCode.BAD_CALIBRATION
        assert load_calibration(cfg) is None
    with pytest.raises(ProtocolError) as err:
        calibration_path(msgspec.structs.replace(cfg, user="../etc"))
    assert err.value.code == ErrorCode.BAD_CONFIG


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: the calibration routine draws real targets. "
                    "Install it with `apt-get install -y xvfb`.", pytrace=False)
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24", "-nolisten", "tcp",
                             "-noreset"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    assert number, "Xvfb did not report a display"
    return proc, f":{number}"


@pytest.mark.x11
def test_calibration_routine_shows_targets_and_measures_a_live_stream(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real routine: Tk targets on Xvfb, a live LSL stream whose 'eye' looks at each shown target
    with a known error of (+0.02, -0.03) screen units."""
    xvfb, display_name = _start_xvfb()
    monkeypatch.setenv("DISPLAY", display_name)
    sid = f"tobii-cal-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(tobii_info(sid))
    cfg = stream_cfg(sid, calibration_grid=2, calibration_target_ms=500.0, calibration_settle_ms=150.0,
                     calibration_dir=str(tmp_path), user="live")
    stream = GazeStream.open(cfg, timeout=5.0)
    error = np.array([0.02, -0.03])

    class Watched:
        """The real Tk display; remembers the target so the simulated eye can look at it."""

        def __init__(self) -> None:
            self.inner = TkTargetDisplay()
            self.screen_px = self.inner.screen_px
            self.current: tuple[float, float] | None = None
            self.drawn: list[tuple[float, float]] = []

        def show(self, x: float, y: float) -> float:
            t = self.inner.show(x, y)
            self.drawn.append(self.inner.target_centre())
            self.current = (x, y)
            return t

        def pump(self) -> None:
            self.inner.pump()

        def close(self) -> None:
            self.inner.close()

    display = Watched()
    done = threading.Event()

    def eye() -> None:
        rng = np.random.default_rng(3)
        while not done.is_set():
            where = display.current
            p = np.full(2, np.nan) if where is None else np.asarray(where) + error + rng.normal(0, 0.002, 2)
            outlet.push_sample([p[0], p[1], 3.5, p[0], p[1], 3.5], now_s())
            time.sleep(1 / RATE)

    thread = threading.Thread(target=eye, daemon=True)
    thread.start()
    try:
        cal = run_routine(stream, display, cfg)
    finally:
        done.set()
        thread.join()
        stream.close()
        xvfb.terminate()
        xvfb.wait(5)
    assert display.screen_px == (1280.0, 720.0)
    targets = grid_targets(2)
    assert [(round(x), round(y)) for x, y in display.drawn] == [(round(x * 1280), round(y * 720)) for x, y in targets]
    assert len(cal.regions) == 4
    for r in cal.regions:
        np.testing.assert_allclose(r.offset, error, atol=0.004)
        assert r.samples >= 10 and r.spread_px < 10
    corrected = cal.correct(np.asarray([[0.52, 0.47]]))
    np.testing.assert_allclose(corrected, [[0.5, 0.5]], atol=0.005)


# ====================================================================== the adapter on a real bus
async def expect(client, pred: Callable[[Message], bool], timeout: float = 8.0,
                 seen: list[Message] | None = None) -> Message:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(timeout=left)
        if msg is None:
            break
        if seen is not None:
            seen.append(msg)
        if pred(msg):
            return msg
    raise AssertionError(f"no matching message within {timeout}s; saw {[m.type for m in (seen or [])][-20:]}")


def status_is(state: str, *, contains: str = "") -> Callable[[Message], bool]:
    return lambda m: isinstance(m.body, SourceStatus) and m.body.state == state and contains in m.body.detail


async def until(holds: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll in-process state until ``holds()`` (the adapter's fields have no event to await); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


async def start_adapter(ipc_clients, cfg: GazeConfig, calibration: Calibration | None = None):
    client = await ipc_clients(cfg.name, subscribe=["fork.", "render.layout."], role="input")
    adapter = GazeAdapter(cfg, client, calibration)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    return adapter, stop, task


async def stop_adapter(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 5)


def fork_open(s: Session) -> ForkOpen:
    return ForkOpen(candidates=[Candidate(index=i, word=w, prob=1 / len(s.symbols)) for i, w in enumerate(s.symbols)])


async def test_adapter_publishes_focus_and_confirm_for_the_fork_on_the_bus(ipc_clients) -> None:
    s = session()
    sid = f"tobii-{uuid.uuid4().hex[:8]}"
    outlet = [pylsl.StreamOutlet(tobii_info(sid))]  # in a list, so that close_outlet can destroy it off the loop
    watcher = await ipc_clients("watcher", subscribe=["input.", "source.status."])
    daemon = await ipc_clients("daemon", role="daemon")
    renderer = await ipc_clients("renderer", role="renderer")
    adapter, stop, task = await start_adapter(ipc_clients, stream_cfg(sid, resolve_timeout_s=5.0))
    try:
        await expect(watcher, status_is("ok", contains="Tobii (Eyetracker) 60 Hz, 6 ch"))
        clock = {"next": 0.0}

        async def one_inquiry(fork_id: str, q: Inquiry, layout: Layout) -> tuple[list[Message], Message]:
            daemon.publish(fork_open(s), fork_id=fork_id)
            renderer.publish(layout, fork_id=fork_id)
            await until(lambda: adapter.tracker.fork_id == fork_id and adapter.tracker.active,
                        f"the adapter follows fork {fork_id} with its layout")
            sel = (s.t >= q.prompt) & (s.t <= q.last_flash)
            base = max(pylsl.local_clock(), clock["next"])  # faster than real time, but never backwards
            ts = base + (s.t[sel] - q.prompt)
            clock["next"] = float(ts[-1]) + 1.0
            push(outlet[0], ts, s.data[sel])
            seen: list[Message] = []
            confirm = await expect(watcher, lambda m: isinstance(m.body, Confirm), seen=seen)
            return seen, confirm

        for n, q in enumerate(s.inquiries[:2]):
            fork_id = f"fork-{n}"
            if n == 1:  # a malformed layout first: reported, and the adapter carries on
                bad = msgspec.structs.replace(s.layout, boxes=[*s.layout.boxes, s.layout.boxes[0]])
                daemon.publish(fork_open(s), fork_id=fork_id)
                renderer.publish(bad, fork_id=fork_id)
                err = await expect(watcher, status_is("error", contains="BAD_LAYOUT"))
                detail = body_of(err, SourceStatus).detail
                assert "two boxes" in detail and fork_id in detail
            seen, confirm = await one_inquiry(fork_id, q, s.layout)
            want = s.index(q.symbol)
            gaze_focus = [message_of(m, Focus) for m in seen if isinstance(m.body, Focus)]
            assert gaze_focus and all(m.header.fork_id == fork_id for m in gaze_focus)
            assert all(m.topic == "input.focus.gaze." and m.body.source == "gaze" for m in gaze_focus)
            last = gaze_focus[-1].body
            assert last.index == want and last.dwell == 1.0
            assert any(0 < m.body.dwell < 1 for m in gaze_focus if m.body.dwell is not None)
            assert last.x is not None and abs(last.x - (s.layout.boxes[want].x + 84)) < 84
            assert confirm.header.fork_id == fork_id and confirm.topic == "input.confirm.gaze."
            confirmed = body_of(confirm, Confirm)
            assert confirmed.source == "gaze" and 0 < confirmed.confidence <= 1
            assert adapter.tracker.dwell.focus == want
            # the daemon's real fusion reads these messages as a dwell decision for that candidate
            decider = Decider()
            decider.open(fork_id, len(s.symbols), gaze_focus[0].header.ts_ns)
            for m in gaze_focus:
                decider.on_focus(m.body, m.header.ts_ns)
            decision = decider.on_confirm(confirmed, confirm.header.ts_ns)
            assert (decision.index, decision.rule, decision.sources) == (want, "dwell", ["gaze"])
            daemon.publish(ForkDecided(index=want, words=[q.symbol], sources=["gaze"], rule="dwell"), fork_id=fork_id)
        assert not task.done()
    finally:
        await stop_adapter(stop, task)
        await close_outlet(outlet)
    await expect(watcher, status_is("stopped"))


async def test_late_joiner_takes_fork_and_layout_from_the_snapshot(ipc_clients) -> None:
    """Fork and layouts published before the adapter starts; only the configured renderer's layout counts."""
    s = session()
    sid = f"tobii-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(tobii_info(sid))
    watcher = await ipc_clients("watcher", subscribe=["input.", "source.status."])
    daemon = await ipc_clients("daemon", role="daemon")
    other = await ipc_clients("other-renderer", role="renderer")
    daemon.publish(fork_open(s), fork_id="fork-early")
    daemon.publish(s.layout, fork_id="fork-early")
    shifted = msgspec.structs.replace(s.layout, renderer="tui", boxes=[
        msgspec.structs.replace(b, x=b.x + 500.0) for b in s.layout.boxes])  # another renderer's boxes elsewhere
    other.publish(shifted, fork_id="fork-early")
    # the adapter starts only once the bus retains the fork and both layouts (its snapshot is what is tested)
    await wait_retained(watcher, lambda snap: sum(m.header.fork_id == "fork-early" for m in snap) >= 3)
    adapter, stop, task = await start_adapter(ipc_clients, stream_cfg(sid, renderer="bcipy-matrix",
                                                                      resolve_timeout_s=5.0))
    try:
        await expect(watcher, status_is("ok"))
        assert adapter.tracker.fork_id == "fork-early" and adapter.tracker.active
        assert adapter.tracker.hitmap is not None and adapter.tracker.hitmap.renderer == "bcipy-matrix"
        q = s.inquiries[3]
        sel = (s.t >= q.prompt) & (s.t <= q.last_flash)
        push(outlet, pylsl.local_clock() + (s.t[sel] - q.prompt), s.data[sel])
        confirm = await expect(watcher, lambda m: isinstance(m.body, Confirm))
        assert confirm.header.fork_id == "fork-early" and adapter.tracker.dwell.focus == s.index(q.symbol)
    finally:
        await stop_adapter(stop, task)
        box = [outlet]
        del outlet
        await close_outlet(box)


async def test_stream_loss_and_recovery_are_reported(ipc_clients) -> None:
    s = session()
    sid = f"tobii-{uuid.uuid4().hex[:8]}"
    watcher = await ipc_clients("watcher", subscribe=["input.", "source.status."])
    daemon = await ipc_clients("daemon", role="daemon")
    cfg = stream_cfg(sid, lost_after_ms=300.0, retry_s=0.2, resolve_timeout_s=2.0)
    holder: dict[str, pylsl.StreamOutlet] = {"outlet": pylsl.StreamOutlet(tobii_info(sid))}
    adapter, stop, task = await start_adapter(ipc_clients, cfg)
    pushing = asyncio.Event()
    pushing.set()
    q = s.inquiries[0]
    steady = s.data[(s.t >= q.fixation) & (s.t <= q.last_flash)]

    async def live() -> None:
        """Real-time gaze on the prompted symbol, 3 samples every 50 ms, while ``pushing`` is set."""
        i = 0
        while True:
            await pushing.wait()
            out = holder.get("outlet")
            if out is not None:
                now = pylsl.local_clock()
                rows = np.take(steady, range(i, i + 3), axis=0, mode="wrap")
                out.push_chunk(rows, [now - 2 / RATE, now - 1 / RATE, now])
                i += 3
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(live())
    try:
        await expect(watcher, status_is("ok"))
        daemon.publish(fork_open(s), fork_id="fork-L")
        daemon.publish(s.layout, fork_id="fork-L")
        await expect(watcher, lambda m: isinstance(m.body, Focus) and m.body.index == s.index(q.symbol))
        pushing.clear()
        await close_outlet([holder.pop("outlet")])  # the tracker's connector goes away
        seen: list[Message] = []
        lost = await expect(watcher, status_is("lost", contains="DEVICE_LOST"), seen=seen)
        assert "no samples" in body_of(lost, SourceStatus).detail
        # the focus was withdrawn with it
        assert any(isinstance(m.body, Focus) and m.body.index is None for m in seen)
        holder["outlet"] = pylsl.StreamOutlet(tobii_info(sid))  # it comes back (same source_id)
        pushing.set()
        await expect(watcher, status_is("recovered"), timeout=10.0, seen=seen)
        assert not any(isinstance(m.body, Confirm) for m in seen), "gaze lost never confirms"
        assert not task.done()
    finally:
        feeder.cancel()
        await stop_adapter(stop, task)
        await close_outlet(list(holder.values()))
        holder.clear()


async def test_unrecoverable_stream_is_resolved_again(ipc_clients) -> None:
    """A stream without source_id cannot be recovered by liblsl: the adapter re-resolves it."""
    name = f"TobiiNoSid{uuid.uuid4().hex[:6]}"
    watcher = await ipc_clients("watcher", subscribe=["source.status."])
    cfg = msgspec.structs.replace(GazeConfig(), stream_name=name, lost_after_ms=300.0, retry_s=0.2,
                                  resolve_timeout_s=1.0)
    outlet = pylsl.StreamOutlet(tobii_info("", name=name))
    adapter, stop, task = await start_adapter(ipc_clients, cfg)
    try:
        await expect(watcher, status_is("ok", contains=name))
        outlet.push_sample([0.5, 0.5, 3.0, 0.5, 0.5, 3.0])
        box = [outlet]
        del outlet
        await close_outlet(box)
        await expect(watcher, status_is("lost"))
        outlet = pylsl.StreamOutlet(tobii_info("", name=name))
        for _ in range(200):
            outlet.push_sample([0.5, 0.5, 3.0, 0.5, 0.5, 3.0])
            if adapter.state == "recovered":
                break
            await asyncio.sleep(0.05)
        await expect(watcher, status_is("recovered"))
    finally:
        await stop_adapter(stop, task)
        box = [outlet]
        del outlet
        await close_outlet(box)


async def test_wrong_shape_stream_and_bad_config_keep_the_adapter_running(ipc_clients) -> None:
    sid = f"tobii-{uuid.uuid4().hex[:8]}"
    watcher = await ipc_clients("watcher", subscribe=["source.status."])
    outlet = pylsl.StreamOutlet(tobii_info(sid, channels=4))
    adapter, stop, task = await start_adapter(ipc_clients, stream_cfg(sid, retry_s=0.2, resolve_timeout_s=1.0))
    try:
        err = await expect(watcher, status_is("error", contains="BAD_STREAM"))
        assert "4 channels" in body_of(err, SourceStatus).detail
        box = [outlet]
        del outlet
        await close_outlet(box)
        outlet = pylsl.StreamOutlet(tobii_info(sid))  # the connector restarted with the right shape
        await expect(watcher, status_is("ok", contains="6 ch"))
        assert not task.done()
    finally:
        await stop_adapter(stop, task)
        box = [outlet]
        del outlet
        await close_outlet(box)

    bad = msgspec.structs.replace(GazeConfig(), name="gaze2", channels="eyelink")
    adapter, stop, task = await start_adapter(ipc_clients, bad)
    try:
        err = await expect(watcher, status_is("error", contains="BAD_CONFIG"))
        assert "eyelink" in body_of(err, SourceStatus).detail
        # still working after the error: it follows a fork opened afterwards
        daemon = await ipc_clients("daemon", role="daemon")
        daemon.publish(ForkOpen(candidates=[Candidate(index=0, word="yes", prob=1.0)]), fork_id="fork-after")
        await until(lambda: adapter.tracker.fork_id == "fork-after", "the adapter follows forks after a bad config")
        assert not task.done(), "a bad channel map is reported, not fatal"
        assert adapter.errors[-1].code == ErrorCode.BAD_CONFIG
    finally:
        await stop_adapter(stop, task)
    await expect(watcher, status_is("stopped"))


def test_cli_arguments_map_onto_the_config() -> None:
    import argparse

    from razvilka.inputs import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["input", "gaze", "--source-id", "TX300-1", "--dwell-ms", "450", "--cascade"])
    assert args.adapter_module == "razvilka.inputs.gaze.adapter"
    cfg = config_from_args(GazeConfig(), args)
    assert (cfg.source_id, cfg.dwell_ms, cfg.cascade, cfg.stream_name) == ("TX300-1", 450, True, "Tobii")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, razvilka.inputs.gaze.adapter; print('pylsl' in sys.modules)"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False", "the adapter module must not load liblsl at import (--help)"


def test_cli_process_reports_and_stops_on_sigterm(ipc_bus, tmp_path: Path) -> None:
    """``razvilka input gaze`` as a real process: joins the bus from the discovery file, says the tracker
    is missing, and stops cleanly on SIGTERM."""
    runtime = ipc_bus.config.resolved_runtime_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAZVILKA_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    code = "import sys, razvilka.cli as c; c.AREAS = ('razvilka.inputs.cli',); sys.exit(c.main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "-v", "--set", f"bus.runtime_dir={runtime}",
         "--set", "inputs.gaze.resolve_timeout_s=0.3",
         "input", "gaze", "--source-id", f"absent-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        out = b""
        assert proc.stdout is not None
        while b"DEVICE_MISSING" not in out and time.monotonic() < deadline and proc.poll() is None:
            out += proc.stdout.readline()
        assert b"DEVICE_MISSING" in out, out.decode()
        proc.terminate()
        rest, _ = proc.communicate(timeout=10)
        out += rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    assert b"gaze stopped" in out, out.decode()
