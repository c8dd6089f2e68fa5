"""The whole gaze pipeline for one user, without any I/O: raw samples in, focus/confirm events out.

combine eyes -> calibration offset -> smoothing -> I-VT -> hit test on the fork's layout -> dwell.
The adapter feeds it from the LSL inlet and the bus; tests feed it numpy arrays.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from razvilka.inputs.gaze.calibration import Calibration, box_confidence
from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.dwell import DwellTracker, GazeEvent
from razvilka.inputs.gaze.fixation import FIXATION, IVT, degrees_per_unit
from razvilka.inputs.gaze.hittest import HitMap
from razvilka.inputs.gaze.signal import Smoother, combine_eyes
from razvilka.inputs.gaze.stream import RawGaze


class GazeTracker:
    """Signal state lives across forks; focus and dwell state belong to the current fork."""

    def __init__(self, cfg: GazeConfig, calibration: Calibration | None = None) -> None:
        self.cfg = cfg
        self.calibration = calibration
        gap_s = cfg.max_gap_ms / 1000
        self.smoother = Smoother(cfg.smooth_samples, gap_s)
        self.ivt = IVT(cfg.velocity_deg_s, degrees_per_unit(cfg.screen_mm, cfg.distance_mm), gap_s,
                       velocity_window_s=cfg.velocity_window_ms / 1000)
        self.dwell = DwellTracker(
            dwell_ms=cfg.dwell_ms, min_fixation_ms=cfg.min_fixation_ms, blink_hold_ms=cfg.blink_hold_ms,
            progress_hz=cfg.progress_hz, refresh_ms=cfg.refresh_ms,
            cascade=cfg.cascade, cascade_min_ms=cfg.cascade_min_ms,
        )
        self.fork_id: str | None = None
        self.k: int | None = None
        self.hitmap: HitMap | None = None
        self.last_t = math.nan
        self.opened_fix = -1  # the fixation in progress when the fork opened: it and older ones add no dwell

    # ------------------------------------------------------------------ fork and layout
    def open_fork(self, fork_id: str, probs: Mapping[int, float] | None = None) -> None:
        """A new fork (``probs``: candidate index -> probability): forget the old focus and layout."""
        self.fork_id = fork_id
        self.opened_fix = self.ivt.current_id
        self.k = max(probs) + 1 if probs else None
        self.hitmap = None
        self.dwell.reset({int(i): float(p) for i, p in (probs or {}).items()})

    def close_fork(self, fork_id: str | None = None) -> None:
        """The fork was decided: stop focusing and confirming until the next one."""
        if fork_id is None or fork_id == self.fork_id:
            self.fork_id, self.hitmap, self.k = None, None, None
            self.dwell.reset()

    def set_layout(self, hitmap: HitMap) -> None:
        """New boxes for the current fork (resize, scroll): focus and dwell carry on."""
        self.hitmap = hitmap

    @property
    def active(self) -> bool:
        return self.fork_id is not None and self.hitmap is not None

    def drop(self) -> list[GazeEvent]:
        """The stream is gone: unfocus (never confirm)."""
        self.smoother.reset()
        self.ivt.reset()
        t = self.last_t if math.isfinite(self.last_t) else 0.0
        return self.dwell.drop(t) if self.active else []

    # ------------------------------------------------------------------ samples
    def feed(self, raw: RawGaze) -> list[GazeEvent]:
        if not len(raw.t):
            return []
        xy, ok = combine_eyes(raw.left, raw.right, raw.valid, self.cfg.offscreen_margin)
        if self.calibration is not None and self.cfg.apply_calibration:
            xy = self.calibration.correct(xy)
        smooth = self.smoother.feed(raw.t, xy, ok)
        track = self.ivt.feed(raw.t, smooth)
        self.last_t = float(raw.t[-1])
        if not self.active:
            return []
        assert self.hitmap is not None
        hm, dwell = self.hitmap, self.dwell
        px = hm.to_px(track.centroid)
        events: list[GazeEvent] = []
        for i in range(len(raw.t)):
            label = int(track.label[i])
            x = y = None
            hit = None
            conf = 1.0
            if label == FIXATION:
                x, y = float(px[i, 0]), float(px[i, 1])
                hit = hm.hit(x, y, dwell.focus)
                box = hit if hit is not None else dwell.focus
                if box is not None and box in hm.indices:
                    conf = self.confidence(box, track.centroid[i])
            elif dwell.focus is not None and dwell.focus in hm.indices:
                conf = self.confidence(dwell.focus, (math.nan, math.nan))
            fresh = not self.cfg.fresh_fixation or int(track.fix_id[i]) > self.opened_fix
            events += dwell.step(float(raw.t[i]), label, hit, x, y, conf, fresh)
        return events

    def confidence(self, index: int, at: Sequence[float] | np.ndarray) -> float:
        """How sure one gaze sample on this box is: the calibrated spread there against the box size."""
        assert self.hitmap is not None
        spread = (self.calibration.spread_at(float(at[0]), float(at[1]))
                  if self.calibration is not None else self.cfg.default_spread_px)
        _, _, w, h = self.hitmap.box(index)
        return box_confidence(spread, w, h)
