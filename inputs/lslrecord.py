"""``--lsl`` for the gaze and key adapters: their side of the research record (docs/research.md).

* Gaze: a sample stream (type ``Gaze``) of every sample as the tracker sent it, in screen pixels,
  and a marker stream of what the pipeline made of it: fixations (I-VT, the adapter's own
  parameters), focus with dwell progress, dwell confirms and rests.
* Keys: a marker stream of every key going down and up, with what it meant on the bus.

How the streams look (names, JSON markers, description) is ``razvilka/lslrecord.py``; all are
stamped on the bus clock, the same clock as the daemon's session stream and the EEG.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from razvilka import lslrecord as rec
from razvilka.inputs.gaze.dwell import ConfirmEvent, FocusEvent, GazeEvent, RestEvent
from razvilka.inputs.gaze.fixation import FIXATION, IVT, degrees_per_unit
from razvilka.inputs.gaze.signal import Smoother, combine_eyes

if TYPE_CHECKING:
    from razvilka.inputs.gaze.calibration import Calibration
    from razvilka.inputs.gaze.config import GazeConfig
    from razvilka.inputs.gaze.pipeline import GazeTracker
    from razvilka.inputs.gaze.stream import RawGaze
    from razvilka.inputs.keymap import KeyEvent

#: The gaze sample stream's channels: each eye as received, the combined (calibrated) point, validity.
GAZE_CHANNELS = [("left_x", "px"), ("left_y", "px"), ("right_x", "px"), ("right_y", "px"),
                 ("x", "px"), ("y", "px"), ("valid", "bool")]


def gaze_stream_names(adapter_name: str) -> tuple[str, str]:
    """(samples, markers) stream names of the gaze adapter called ``adapter_name``."""
    return f"razvilka-{adapter_name}", f"razvilka-{adapter_name}-markers"


class GazeRecord:
    """The gaze adapter's LSL outlets. ``push(raw, events, tracker)`` after each pipeline step.

    Pixels are those of the renderer's latest layout (its ``screen_w`` x ``screen_h``); before the
    first layout, of ``tracker_px``. A change of screen size is itself a marker (``gaze.screen``).
    Fixations are found by the same smoothing and I-VT the pipeline runs, with its parameters, and
    each is one ``gaze.fixation`` marker stamped at its end (``start`` and ``duration_ms`` inside).
    """

    def __init__(self, cfg: GazeConfig, calibration: Calibration | None = None) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.names = gaze_stream_names(cfg.name)
        self.samples: rec.SampleOutlet | None = None   # opened at the first samples, with the tracker's rate
        self.markers = rec.MarkerOutlet(self.names[1], rec.source_id(self.names[1]), rec.ROLE_GAZE_MARKERS,
                                    {"velocity_deg_s": str(cfg.velocity_deg_s), "dwell_ms": str(cfg.dwell_ms),
                                     "min_fixation_ms": str(cfg.min_fixation_ms)})
        gap_s = cfg.max_gap_ms / 1000
        self.smoother = Smoother(cfg.smooth_samples, gap_s)
        self.ivt = IVT(cfg.velocity_deg_s, degrees_per_unit(cfg.screen_mm, cfg.distance_mm), gap_s,
                       velocity_window_s=cfg.velocity_window_ms / 1000)
        self.screen = (float(cfg.tracker_px[0]), float(cfg.tracker_px[1]))
        self.fix: list[float] | None = None  # id, start, last t, sum x, sum y, n (normalised)

    def _open(self, rate: float) -> rec.SampleOutlet:
        return rec.SampleOutlet(self.names[0], rec.GAZE_TYPE, rec.source_id(self.names[0]), rec.ROLE_GAZE,
                                GAZE_CHANNELS, rate,
                            {"screen": "px of the renderer's layout (tracker_px before the first layout)",
                             "source_stream": f"{self.cfg.stream_name} ({self.cfg.stream_type})"})

    def push(self, raw: RawGaze, events: list[GazeEvent], tracker: GazeTracker, rate: float = 0.0) -> None:
        """One drained chunk: its samples, its fixations, and the events the pipeline made of it."""
        fork_id = tracker.fork_id
        if tracker.hitmap is not None:
            screen = (tracker.hitmap.screen_w, tracker.hitmap.screen_h)
            if screen != self.screen:
                self.screen = screen
                self.markers.push({"type": "gaze.screen", "fork_id": fork_id, "w": screen[0], "h": screen[1]},
                                  float(raw.t[0]) if len(raw.t) else tracker.last_t)
        if len(raw.t):
            self._samples(raw, rate, fork_id)
        for e in events:
            self.markers.push(self._event(e, fork_id), e.t)

    def _samples(self, raw: RawGaze, rate: float, fork_id: str | None) -> None:
        w, h = self.screen
        scale = np.array([w, h])
        xy, ok = combine_eyes(raw.left, raw.right, raw.valid, self.cfg.offscreen_margin)
        if self.calibration is not None and self.cfg.apply_calibration:
            xy = self.calibration.correct(xy)
        n = len(raw.t)
        right = raw.right if raw.right is not None else np.full((n, 2), np.nan)
        table = np.column_stack([np.asarray(raw.left) * scale, np.asarray(right) * scale, xy * scale,
                                 ok.astype(np.float32)])
        if self.samples is None:
            self.samples = self._open(rate)
        self.samples.push(table, raw.t)
        smooth = self.smoother.feed(raw.t, xy, ok)
        track = self.ivt.feed(raw.t, smooth)
        for i in range(n):
            fid = int(track.fix_id[i]) if track.label[i] == FIXATION else -1
            t = float(raw.t[i])
            if self.fix is not None and fid != int(self.fix[0]):
                self._end_fixation(fork_id)
            if fid >= 0:
                cx, cy = float(smooth[i, 0]), float(smooth[i, 1])
                if self.fix is None:
                    self.fix = [fid, t, t, 0.0, 0.0, 0]
                if math.isfinite(cx) and math.isfinite(cy):
                    self.fix[3] += cx
                    self.fix[4] += cy
                    self.fix[5] += 1
                self.fix[2] = t

    def _end_fixation(self, fork_id: str | None) -> None:
        assert self.fix is not None
        _, start, end, sx, sy, n = self.fix
        self.fix = None
        if n and (end - start) * 1000 >= self.cfg.min_fixation_ms:
            w, h = self.screen
            self.markers.push({"type": "gaze.fixation", "fork_id": fork_id, "start": start,
                               "duration_ms": round((end - start) * 1000, 1),
                               "x": round(sx / n * w, 1), "y": round(sy / n * h, 1), "samples": int(n)}, end)

    @staticmethod
    def _event(e: GazeEvent, fork_id: str | None) -> dict[str, Any]:
        if isinstance(e, FocusEvent):
            return {"type": "gaze.focus", "fork_id": fork_id, "index": e.index, "target": e.target,
                    "dwell": e.dwell, "x": e.x, "y": e.y, "confidence": round(e.confidence, 4)}
        if isinstance(e, ConfirmEvent):
            return {"type": "gaze.confirm", "fork_id": fork_id, "index": e.index, "target": e.target,
                    "confidence": round(e.confidence, 4)}
        assert isinstance(e, RestEvent)
        return {"type": "gaze.rest", "fork_id": fork_id, "away_s": round(e.away_s, 3)}

    def close(self) -> None:
        self.markers.close()
        if self.samples is not None:
            self.samples.close()


class KeyRecord:
    """A key adapter's marker stream: ``key.down`` / ``key.up`` with the key's name, the text it types,
    and what it sent on the bus (stamped when the key moved, on the bus clock)."""

    def __init__(self, adapter_name: str) -> None:
        name = f"razvilka-{adapter_name}-markers"
        self.markers = rec.MarkerOutlet(name, rec.source_id(name), rec.ROLE_KEY_MARKERS, {"adapter": adapter_name})

    def push(self, ev: KeyEvent, fork_id: str | None, sent: list[str]) -> None:
        self.markers.push({"type": "key.down" if ev.down else "key.up", "fork_id": fork_id, "key": ev.name,
                           "char": ev.char, "sent": sent}, ev.t_ns / 1e9)

    def close(self) -> None:
        self.markers.close()
