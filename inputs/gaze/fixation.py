"""I-VT fixation detection: samples slower than a velocity threshold (deg/s) belong to a fixation.

Streaming (:class:`IVT` keeps the previous sample and the running fixation between chunks);
:func:`detect_fixations` runs the same filter over a whole recording for offline checks.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

LOST, SACCADE, FIXATION = 0, 1, 2


@dataclass(frozen=True)
class Fixation:
    """One fixation in normalised display coordinates."""

    start: float
    end: float
    x: float
    y: float
    n: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Track:
    """Per-sample output of the filter: label, fixation id, and the running fixation centroid."""

    label: np.ndarray  # (n,) LOST / SACCADE / FIXATION
    fix_id: np.ndarray  # (n,) id of the fixation a sample belongs to, -1 otherwise
    start: np.ndarray  # (n,) start time of that fixation, NaN otherwise
    centroid: np.ndarray  # (n, 2) mean of the fixation's last ``window`` samples, NaN otherwise


def degrees_per_unit(screen_mm: tuple[float, float] | list[float], distance_mm: float) -> tuple[float, float]:
    """Visual degrees per normalised display unit along x and y (small-angle, at the screen centre)."""
    w, h = screen_mm
    return (math.degrees(2 * math.atan(w / 2 / distance_mm)), math.degrees(2 * math.atan(h / 2 / distance_mm)))


class IVT:
    """Velocity-threshold identification: each valid sample's speed over the last ``velocity_window_s``.

    A gap longer than ``max_gap_s`` (blink, tracking loss) ends the fixation; the first sample
    after it starts a new one. The centroid is taken over the fixation's last ``window`` samples,
    so that a slow drift (below the threshold) is followed instead of averaged away.
    """

    def __init__(
        self,
        velocity_deg_s: float,
        deg_per_unit: tuple[float, float],
        max_gap_s: float = 0.075,
        window: int = 15,
        velocity_window_s: float = 0.02,
    ) -> None:
        self.threshold = velocity_deg_s
        self.scale = np.asarray(deg_per_unit, dtype=np.float64)
        self.max_gap_s = max_gap_s
        self.velocity_window_s = velocity_window_s
        self._hist: deque[tuple[float, float, float]] = deque(maxlen=32)  # recent valid (t, x, y)
        self._fix_id = -1
        self._in_fix = False
        self._start = math.nan
        self._recent: deque[tuple[float, float]] = deque(maxlen=max(1, window))

    def reset(self) -> None:
        self._hist.clear()
        self._in_fix = False

    @property
    def current_id(self) -> int:
        """Id of the fixation in progress (or of the last one); later fixations have larger ids."""
        return self._fix_id

    def _speed(self, t: float, x: float, y: float) -> float | None:
        """deg/s from the newest sample at least ``velocity_window_s`` older (robust to timestamp jitter)."""
        ref = None
        for h in reversed(self._hist):
            ref = h
            if t - h[0] >= self.velocity_window_s:
                break
        if ref is None or t - ref[0] <= 0:
            return None
        sx, sy = self.scale
        return math.hypot((x - ref[1]) * sx, (y - ref[2]) * sy) / (t - ref[0])

    def feed(self, t: np.ndarray, xy: np.ndarray) -> Track:
        """Classify samples; NaN points are LOST."""
        n = len(t)
        label = np.full(n, LOST, dtype=np.int8)
        fix_id = np.full(n, -1, dtype=np.int64)
        start = np.full(n, np.nan)
        centroid = np.full((n, 2), np.nan)
        for i in range(n):
            x, y = float(xy[i, 0]), float(xy[i, 1])
            ti = float(t[i])
            if self._hist and not 0 <= ti - self._hist[-1][0] <= self.max_gap_s:
                self._hist.clear()  # after a gap (or time running backwards) the speed is unknown: start afresh
                self._in_fix = False
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            speed = self._speed(ti, x, y)
            self._hist.append((ti, x, y))
            slow = speed is None or speed < self.threshold
            if not slow:
                label[i] = SACCADE
                self._in_fix = False
                continue
            if not self._in_fix:
                self._in_fix = True
                self._fix_id += 1
                self._start = ti
                self._recent.clear()
            self._recent.append((x, y))
            k = len(self._recent)
            label[i] = FIXATION
            fix_id[i] = self._fix_id
            start[i] = self._start
            centroid[i] = (sum(p[0] for p in self._recent) / k, sum(p[1] for p in self._recent) / k)
        return Track(label, fix_id, start, centroid)


def detect_fixations(
    t: np.ndarray,
    xy: np.ndarray,
    velocity_deg_s: float,
    deg_per_unit: tuple[float, float],
    max_gap_s: float = 0.075,
    min_duration_s: float = 0.06,
    velocity_window_s: float = 0.02,
) -> list[Fixation]:
    """All fixations of a recording lasting at least ``min_duration_s`` (offline use, same filter)."""
    t, xy = np.asarray(t), np.asarray(xy)
    track = IVT(velocity_deg_s, deg_per_unit, max_gap_s, velocity_window_s=velocity_window_s).feed(t, xy)
    out: list[Fixation] = []
    ids = track.fix_id
    for fid in np.unique(ids[ids >= 0]):
        idx = np.flatnonzero(ids == fid)
        start, end = float(t[idx[0]]), float(t[idx[-1]])
        if end - start >= min_duration_s:
            cx, cy = xy[idx].mean(axis=0)
            out.append(Fixation(start, end, float(cx), float(cy), len(idx)))
    return out
