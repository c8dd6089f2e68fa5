"""Map a gaze point to a target using the renderer's Layout (boxes in screen pixels).

What a box hits is its *key*: a candidate's index (an ``int``, from ``boxes``) or, since protocol
1.4, any other target's id (a ``str`` from ``targets``: ``cmd:back``, ``key:e``, ``word:0:2``,
``cmd:resume``). A ``cand:<i>`` in ``targets`` is candidate ``i``. A target may have several boxes
(a letter shown in the likeliest-letters row and in the alphabet): either one hits it.

Rules, in order: a point inside a box hits it (the focused key first, then the box whose
centre is nearest); outside every box, the focused key keeps the focus within the fuzzy radius
(hysteresis against jitter at its edge); otherwise the nearest box within the fuzzy radius hits.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Layout
from razvilka.protocol.targets import parse_target

#: What a gaze point hits: a candidate index, or another target's id (protocol 1.4).
Key = int | str


def key_of(target: str) -> Key:
    """The key of a target id: ``cand:<i>`` is the candidate index ``i``; any other id is itself."""
    parsed = parse_target(target)
    return parsed.index if parsed.kind == "cand" and parsed.index is not None else parsed.id


@dataclass(frozen=True)
class HitMap:
    """The boxes of one fork's layout, checked and ready for hit tests."""

    keys: tuple[Key, ...]  # one per box: candidates first (``boxes``), then ``targets``
    rects: np.ndarray  # (n, 4): x0, y0, x1, y1 in screen px
    screen_w: float
    screen_h: float
    fuzzy_px: float
    renderer: str = ""

    @classmethod
    def from_layout(
        cls, layout: Layout | Mapping[str, Any], fuzzy_px: float = 40.0, k: int | None = None,
    ) -> HitMap:
        """Check a layout (a message body or a plain map); anything unusable is BAD_LAYOUT.

        ``k`` is the fork's candidate count, when known: boxes (and ``cand``/``word`` targets) must
        name candidates 0..k-1. Boxes scrolled off the screen and an empty layout are fine: they
        simply never hit.
        """
        if not isinstance(layout, Layout):
            try:
                layout = msgspec.convert(dict(layout), Layout)
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                raise ProtocolError(ErrorCode.BAD_LAYOUT, f"not a layout: {exc}") from None
        sw, sh = float(layout.screen_w), float(layout.screen_h)
        if not (math.isfinite(sw) and math.isfinite(sh) and sw > 0 and sh > 0):
            raise ProtocolError(ErrorCode.BAD_LAYOUT, f"screen size {sw} x {sh} px is not usable")
        seen: set[int] = set()
        keys: list[Key] = []
        rects = []

        def add(key: Key, name: str, x: float, y: float, w: float, h: float) -> None:
            vals = (x, y, w, h)
            if not all(math.isfinite(v) for v in vals):
                raise ProtocolError(ErrorCode.BAD_LAYOUT, f"{name} has a non-finite coordinate {vals}")
            if w <= 0 or h <= 0:
                raise ProtocolError(ErrorCode.BAD_LAYOUT, f"{name} has no area ({w} x {h} px)")
            keys.append(key)
            rects.append((x, y, x + w, y + h))

        for box in layout.boxes:
            if box.index in seen:
                raise ProtocolError(ErrorCode.BAD_LAYOUT, f"candidate {box.index} has two boxes")
            if k is not None and box.index >= k:
                raise ProtocolError(ErrorCode.BAD_LAYOUT,
                                    f"box {box.index} names no candidate of this fork (0..{k - 1})")
            seen.add(box.index)
            add(box.index, f"box {box.index}", box.x, box.y, box.w, box.h)
        for t in layout.targets:
            try:
                parsed = parse_target(t.target)
            except ProtocolError as exc:
                raise ProtocolError(ErrorCode.BAD_LAYOUT, f"target box: {exc.detail}") from None
            if k is not None and parsed.index is not None and parsed.index >= k:
                raise ProtocolError(ErrorCode.BAD_LAYOUT,
                                    f"target {t.target} names no candidate of this fork (0..{k - 1})")
            add(key_of(t.target), f"target {t.target}", t.x, t.y, t.w, t.h)
        return cls(tuple(keys), np.asarray(rects, dtype=np.float64).reshape(-1, 4), sw, sh, float(fuzzy_px),
                   layout.renderer)

    @property
    def indices(self) -> tuple[int, ...]:
        """The candidates that have a box."""
        return tuple(key for key in self.keys if isinstance(key, int))

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """Normalised display coordinates (0..1) -> screen pixels of this layout."""
        return np.asarray(xy, dtype=np.float64) * (self.screen_w, self.screen_h)

    def box(self, key: Key) -> tuple[float, float, float, float]:
        """(x, y, w, h) of a candidate's or a target's (first) box."""
        x0, y0, x1, y1 = self.rects[self.keys.index(key)]
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)

    def distances(self, x: float, y: float) -> np.ndarray:
        """Distance from the point to each box (0 inside)."""
        r = self.rects
        if not len(r):
            return np.zeros(0)
        dx = np.maximum(np.maximum(r[:, 0] - x, x - r[:, 2]), 0.0)
        dy = np.maximum(np.maximum(r[:, 1] - y, y - r[:, 3]), 0.0)
        return np.hypot(dx, dy)

    def hit(self, x: float, y: float, focused: Key | None = None) -> Key | None:
        """The candidate or target the point (screen px) lands on, or None."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        d = self.distances(x, y)
        if not len(d):
            return None
        inside = np.flatnonzero(d == 0.0)
        if len(inside):
            hits = [self.keys[i] for i in inside]
            if focused in hits:
                return focused
            r = self.rects[inside]
            centre = np.hypot((r[:, 0] + r[:, 2]) / 2 - x, (r[:, 1] + r[:, 3]) / 2 - y)
            return hits[int(np.argmin(centre))]
        if focused is not None and focused in self.keys:
            near = min(float(d[i]) for i, key in enumerate(self.keys) if key == focused)
            if near <= self.fuzzy_px:
                return focused
        best = int(np.argmin(d))
        return self.keys[best] if d[best] <= self.fuzzy_px else None
