"""The whole gaze pipeline for one user, without any I/O: raw samples in, focus/confirm/rest events out.

combine eyes -> calibration offset -> smoothing -> I-VT -> hit test on the fork's layout -> dwell.
Beside it, rest: no valid gaze inside the screen for ``rest_ms`` while a fork waits is a RestEvent
(the adapter pauses the daemon; a dwell on the page's Resume target resumes it).
The adapter feeds it from the LSL inlet and the bus; tests feed it numpy arrays.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from razvilka.inputs.gaze.calibration import Calibration, box_confidence
from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.dwell import DwellTracker, GazeEvent, RestEvent
from razvilka.inputs.gaze.fixation import FIXATION, IVT, degrees_per_unit
from razvilka.inputs.gaze.hittest import HitMap, Key
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
        self.opened_t = math.nan  # when (tracker clock) the fork opened: rest counts from then at the earliest
        self.away_since = math.nan  # the first sample of the current stretch without valid gaze on the screen
        self.rested = False  # a RestEvent was given for this stretch

    # ------------------------------------------------------------------ fork and layout
    def open_fork(self, fork_id: str, probs: Mapping[int, float] | None = None,
                  letters: Mapping[str, float] | None = None) -> None:
        """A new fork (``probs``: candidate index -> probability; ``letters``: fork.open's next-letter
        probabilities, for the keyboard keys' cascading dwell): forget the old focus and layout."""
        self.fork_id = fork_id
        self.opened_fix = self.ivt.current_id
        self.opened_t, self.rested = self.last_t, False  # a new fork waits: rest may be due again
        self.k = max(probs) + 1 if probs else None
        self.hitmap = None
        keys: dict[Key, float] = {int(i): float(p) for i, p in (probs or {}).items()}
        keys.update({f"key:{ch}": float(p) for ch, p in (letters or {}).items() if ch.strip()})
        self.dwell.reset(keys)

    def close_fork(self, fork_id: str | None = None) -> None:
        """The fork was decided: stop focusing and confirming until the next one."""
        if fork_id is None or fork_id == self.fork_id:
            self.fork_id, self.hitmap, self.k = None, None, None
            self.dwell.reset()

    def set_layout(self, hitmap: HitMap) -> None:
        """New boxes for the current fork (resize, scroll, a look-ahead opening): focus and dwell carry on.
        When the focused target is gone (Resume, once resumed), the gaze resting there now lies on
        something else: as at a new fork, the fixation in progress adds no dwell to it."""
        if self.dwell.focus is not None and self.dwell.focus not in hitmap.keys:
            self.opened_fix = self.ivt.current_id
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
        on_screen = ok & np.all((xy >= 0.0) & (xy <= 1.0), axis=1)
        events: list[GazeEvent] = []
        for i in range(len(raw.t)):
            rest = self._rest(float(raw.t[i]), bool(on_screen[i]))
            if rest is not None:
                events.append(rest)
            label = int(track.label[i])
            x = y = None
            hit = None
            conf = 1.0
            if label == FIXATION:
                x, y = float(px[i, 0]), float(px[i, 1])
                hit = hm.hit(x, y, dwell.focus)
                box = hit if hit is not None else dwell.focus
                if box is not None and box in hm.keys:
                    conf = self.confidence(box, track.centroid[i])
            elif dwell.focus is not None and dwell.focus in hm.keys:
                conf = self.confidence(dwell.focus, (math.nan, math.nan))
            fresh = not self.cfg.fresh_fixation or int(track.fix_id[i]) > self.opened_fix
            events += dwell.step(float(raw.t[i]), label, hit, x, y, conf, fresh)
        return events

    def _rest(self, t: float, on_screen: bool) -> RestEvent | None:
        """Rest: ``rest_ms`` without valid gaze inside the screen, counted from the fork's opening at the
        earliest; one RestEvent per stretch (the gaze coming back on the screen ends it)."""
        if on_screen:
            self.away_since, self.rested = math.nan, False
            return None
        if math.isnan(self.away_since):
            self.away_since = t
        since = self.away_since if math.isnan(self.opened_t) else max(self.away_since, self.opened_t)
        if self.rested or self.cfg.rest_ms <= 0 or (t - since) * 1000 < self.cfg.rest_ms:
            return None
        self.rested = True
        return RestEvent(t, t - self.away_since)

    def confidence(self, key: Key, at: Sequence[float] | np.ndarray) -> float:
        """How sure one gaze sample on this box is: the calibrated spread there against the box size."""
        assert self.hitmap is not None
        spread = (self.calibration.spread_at(float(at[0]), float(at[1]))
                  if self.calibration is not None else self.cfg.default_spread_px)
        _, _, w, h = self.hitmap.box(key)
        return box_confidence(spread, w, h)
