"""Gaze signal conditioning: combine the two eyes with validity checks, then smooth.

Pure numpy in, numpy out. The smoother keeps a little state so a stream can be fed in
chunks of any size and give the same result as one big array.
"""
from __future__ import annotations

from collections import deque

import numpy as np


def eye_valid(xy: np.ndarray, margin: float) -> np.ndarray:
    """Finite and not far off the display (an eye that reports y = 1.6 is not looking at us)."""
    finite = np.isfinite(xy).all(axis=1)
    lo, hi = -margin, 1.0 + margin
    with np.errstate(invalid="ignore"):
        inside = ((xy >= lo) & (xy <= hi)).all(axis=1)
    return finite & inside


def combine_eyes(
    left: np.ndarray,
    right: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    margin: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """One gaze point per sample: the mean of the valid eyes, or the one valid eye.

    Returns ``(xy, ok)``: ``xy`` (n, 2) with NaN where ``ok`` is False (blink, both eyes lost,
    looking away, or the tracker's own validity channel says no).
    """
    left = np.asarray(left, dtype=np.float64)
    lv = eye_valid(left, margin)
    if right is None:
        xy, ok = left.copy(), lv
    else:
        right = np.asarray(right, dtype=np.float64)
        rv = eye_valid(right, margin)
        both = lv & rv
        xy = np.full_like(left, np.nan)
        xy[both] = (left[both] + right[both]) / 2.0
        only_l, only_r = lv & ~rv, rv & ~lv
        xy[only_l] = left[only_l]
        xy[only_r] = right[only_r]
        ok = lv | rv
    if valid is not None:
        ok = ok & np.asarray(valid, dtype=bool)
    xy[~ok] = np.nan
    return xy, ok


class Smoother:
    """Causal moving average over the last ``n`` valid samples; a gap longer than ``max_gap_s`` (or time
    running backwards) restarts it.

    Causal so that the focus never waits for samples from the future; restarting after a
    blink keeps the pre-blink position from dragging the post-blink one.
    """

    def __init__(self, n: int = 3, max_gap_s: float = 0.075) -> None:
        self.n = max(1, int(n))
        self.max_gap_s = max_gap_s
        self._buf: deque[tuple[float, float]] = deque(maxlen=self.n)
        self._last_t: float | None = None

    def reset(self) -> None:
        self._buf.clear()
        self._last_t = None

    def feed(self, t: np.ndarray, xy: np.ndarray, ok: np.ndarray) -> np.ndarray:
        out = np.full((len(t), 2), np.nan)
        buf = self._buf
        for i in range(len(t)):
            if not ok[i]:
                continue
            ti = float(t[i])
            if self._last_t is not None and not 0 <= ti - self._last_t <= self.max_gap_s:
                buf.clear()
            buf.append((float(xy[i, 0]), float(xy[i, 1])))
            self._last_t = ti
            k = len(buf)
            out[i, 0] = sum(p[0] for p in buf) / k
            out[i, 1] = sum(p[1] for p in buf) / k
        return out
