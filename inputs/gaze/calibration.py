"""Calibration check: show targets, measure the gaze offset and spread per region, store them per user.

* :func:`measure` is pure: gaze samples plus the windows in which known targets were shown
  (by the live routine, or by a recorded session's triggers) give one :class:`Region` per target.
* :class:`Calibration` corrects gaze by the offsets (inverse-distance weighted between regions)
  and turns the spread into the ``confidence`` of Focus events (:func:`box_confidence`).
* :func:`run_routine` is the live routine; :class:`TkTargetDisplay` draws the targets full screen
  (tkinter is imported only there).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.signal import combine_eyes
from razvilka.private import private_dir, write_private
from razvilka.protocol.clock import now_s
from razvilka.protocol.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from razvilka.inputs.gaze.stream import GazeStream

FORMAT = "razvilka-gaze-calibration"
MIN_SAMPLES = 10  # a region needs at least this many valid samples after settling


class Region(msgspec.Struct, kw_only=True):
    """One target: where it was (normalised), how far off the gaze was on average, and how scattered."""

    target: tuple[float, float]
    offset: tuple[float, float]  # median gaze - target, normalised units
    spread_px: float  # robust per-axis standard deviation of the gaze around its median, screen px
    samples: int


class CalibrationFile(msgspec.Struct, kw_only=True):
    format: str
    version: int
    user: str
    created: str
    screen_px: tuple[float, float]
    regions: list[Region]
    source: str = ""


@dataclass
class Calibration:
    """A user's measured offsets and spreads; applies them to live gaze."""

    user: str
    screen_px: tuple[float, float]
    regions: list[Region]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source: str = ""

    def __post_init__(self) -> None:
        if not self.regions:
            raise ProtocolError(ErrorCode.BAD_CALIBRATION, "a calibration needs at least one region")
        self._targets = np.asarray([r.target for r in self.regions], dtype=np.float64)
        self._offsets = np.asarray([r.offset for r in self.regions], dtype=np.float64)
        self._spreads = np.asarray([r.spread_px for r in self.regions], dtype=np.float64)

    def _weights(self, xy: np.ndarray) -> np.ndarray:
        d2 = ((xy[:, None, :] - self._targets[None, :, :]) ** 2).sum(axis=2)
        w = 1.0 / (d2 + 1e-6)
        return w / w.sum(axis=1, keepdims=True)

    def offset_at(self, xy: np.ndarray) -> np.ndarray:
        """Expected gaze error (normalised) at each point: inverse-distance weighted region offsets."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        out = np.full_like(xy, np.nan)
        ok = np.isfinite(xy).all(axis=1)
        if ok.any():
            out[ok] = self._weights(xy[ok]) @ self._offsets
        return out

    def correct(self, xy: np.ndarray) -> np.ndarray:
        """Gaze minus the expected offset where it looks (NaN stays NaN)."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        return xy - self.offset_at(xy)

    def spread_at(self, x: float, y: float) -> float:
        """Gaze spread (px) expected around a point (normalised), from the nearest regions."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return float(np.max(self._spreads))
        return float((self._weights(np.asarray([[x, y]])) @ self._spreads)[0])

    # ------------------------------------------------------------------ storage
    def to_file(self) -> CalibrationFile:
        return CalibrationFile(format=FORMAT, version=1, user=self.user, created=self.created,
                               screen_px=self.screen_px, regions=self.regions, source=self.source)

    def save(self, path: Path) -> Path:
        """Write atomically, private (0600 in a 0700 directory): where a person looks is theirs."""
        data = msgspec.to_builtins(self.to_file())
        data["summary"] = self.summary()
        private_dir(path.parent)
        write_private(path, json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read a stored calibration; anything wrong with it is BAD_CALIBRATION (never a crash)."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ProtocolError(ErrorCode.BAD_CALIBRATION, f"cannot read {path}: {exc.strerror}") from None
        try:
            f = msgspec.json.decode(raw, type=CalibrationFile)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProtocolError(ErrorCode.BAD_CALIBRATION, f"{path} is not a gaze calibration: {exc}") from None
        if f.format != FORMAT or f.version != 1:
            raise ProtocolError(ErrorCode.BAD_CALIBRATION,
                                f"{path}: format {f.format!r} v{f.version} is not {FORMAT} v1")
        for r in f.regions:
            if not all(math.isfinite(v) for v in (*r.target, *r.offset, r.spread_px)) or r.spread_px < 0:
                raise ProtocolError(ErrorCode.BAD_CALIBRATION, f"{path}: region at {r.target} has unusable values")
        return cls(f.user, f.screen_px, f.regions, f.created, f.source)

    def summary(self) -> dict[str, float]:
        w, h = self.screen_px
        off_px = np.hypot(self._offsets[:, 0] * w, self._offsets[:, 1] * h)
        return {
            "regions": len(self.regions),
            "mean_offset_px": round(float(off_px.mean()), 1),
            "max_offset_px": round(float(off_px.max()), 1),
            "mean_spread_px": round(float(self._spreads.mean()), 1),
        }


def box_confidence(spread_px: float, w: float, h: float) -> float:
    """Probability that one gaze sample aimed at the centre of a w x h px box lands inside it.

    With isotropic Gaussian scatter of standard deviation ``spread_px`` per axis:
    erf(w / (2 sqrt2 s)) * erf(h / (2 sqrt2 s)). Big boxes and steady gaze give values near 1.
    """
    if spread_px <= 0:
        return 1.0
    k = 2 * math.sqrt(2) * spread_px
    return max(0.0, min(1.0, math.erf(w / k) * math.erf(h / k)))


# ---------------------------------------------------------------- measuring
@dataclass(frozen=True)
class TargetWindow:
    """A target shown at (x, y) (normalised, y down) from ``start`` to ``end`` (bus-clock seconds)."""

    start: float
    end: float
    x: float
    y: float


def robust_std(v: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (ignores the odd stray sample)."""
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def measure(
    t: np.ndarray,
    xy: np.ndarray,
    ok: np.ndarray,
    windows: Sequence[TargetWindow],
    screen_px: tuple[float, float],
    settle_s: float = 0.5,
    user: str = "",
    source: str = "",
) -> Calibration:
    """Offset and spread per target from combined-eye gaze (one region per distinct target position)."""
    t, xy, ok = np.asarray(t), np.asarray(xy, dtype=np.float64), np.asarray(ok, dtype=bool)
    pooled: dict[tuple[float, float], list[np.ndarray]] = {}
    for win in windows:
        sel = ok & (t >= win.start + settle_s) & (t <= win.end)
        pooled.setdefault((round(win.x, 6), round(win.y, 6)), []).append(xy[sel])
    w, h = screen_px
    regions = []
    for (x, y), parts in pooled.items():
        pts = np.concatenate(parts) if parts else np.zeros((0, 2))
        if len(pts) < MIN_SAMPLES:
            continue
        med = np.median(pts, axis=0)
        sx, sy = robust_std(pts[:, 0]) * w, robust_std(pts[:, 1]) * h
        regions.append(Region(target=(x, y), offset=(float(med[0] - x), float(med[1] - y)),
                              spread_px=float(math.sqrt((sx * sx + sy * sy) / 2)), samples=len(pts)))
    if not regions:
        raise ProtocolError(
            ErrorCode.BAD_CALIBRATION,
            f"no target had {MIN_SAMPLES} valid gaze samples; is the tracker seeing the eyes?",
        )
    return Calibration(user=user or default_user(), screen_px=(float(w), float(h)), regions=regions, source=source)


# ---------------------------------------------------------------- where it is stored
def default_user() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "default"


def calibration_path(cfg: GazeConfig) -> Path:
    """``<calibration_dir>/<user>.json``; the directory defaults to $XDG_DATA_HOME/razvilka/gaze."""
    base = Path(cfg.calibration_dir).expanduser() if cfg.calibration_dir else (
        Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "razvilka" / "gaze")
    user = cfg.user or default_user()
    if not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"user name {user!r} must be letters, digits, '-', '_' or '.'")
    return base / f"{user}.json"


# ---------------------------------------------------------------- the live routine
def grid_targets(n: int = 3, margin: float = 0.1) -> list[tuple[float, float]]:
    """n x n targets covering the display, row by row, ``margin`` from the edges."""
    if n < 1:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"calibration_grid must be at least 1, not {n}")
    pos = [0.5] if n == 1 else list(np.linspace(margin, 1 - margin, n))
    return [(float(x), float(y)) for y in pos for x in pos]


class TargetDisplay(Protocol):
    """Something that shows one calibration target at a time."""

    screen_px: tuple[float, float]

    def show(self, x: float, y: float) -> float:
        """Draw the target at normalised (x, y); return the bus-clock time it became visible."""

    def pump(self) -> None:
        """Keep the display responsive between samples."""

    def close(self) -> None: ...


def run_routine(
    stream: GazeStream,
    display: TargetDisplay,
    cfg: GazeConfig,
    targets: Sequence[tuple[float, float]] | None = None,
) -> Calibration:
    """Show each target for ``calibration_target_ms``, collect gaze, measure (blocking)."""
    targets = list(targets) if targets is not None else grid_targets(cfg.calibration_grid)
    hold_s = cfg.calibration_target_ms / 1000
    ts: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    oks: list[np.ndarray] = []
    windows: list[TargetWindow] = []
    try:
        stream.pull(1 << 16)  # drop whatever queued before the first target
        for x, y in targets:
            shown = display.show(x, y)
            while now_s() < shown + hold_s:
                raw = stream.pull()
                if raw is not None:
                    xy, ok = combine_eyes(raw.left, raw.right, raw.valid, cfg.offscreen_margin)
                    ts.append(raw.t)
                    pts.append(xy)
                    oks.append(ok)
                display.pump()
                time.sleep(0.01)
            windows.append(TargetWindow(shown, shown + hold_s, x, y))
    finally:
        display.close()
    if not ts:
        raise ProtocolError(ErrorCode.BAD_CALIBRATION, "no gaze samples arrived during the calibration")
    return measure(np.concatenate(ts), np.concatenate(pts), np.concatenate(oks), windows, display.screen_px,
                   cfg.calibration_settle_ms / 1000, user=cfg.user, source="routine")


class TkTargetDisplay:
    """A full-screen black window with one white ring-and-dot target (tkinter; needs a display)."""

    RADIUS = 14

    def __init__(self) -> None:
        import tkinter

        try:
            self.root = tkinter.Tk()
        except tkinter.TclError as exc:
            raise ProtocolError(
                ErrorCode.DEVICE_MISSING,
                f"cannot open a window for the calibration targets ({exc}); run it inside the desktop session",
            ) from None
        self.root.title("razvilka gaze calibration")
        self.root.attributes("-fullscreen", True)
        self.root.configure(background="black", cursor="none")
        self.screen_px = (float(self.root.winfo_screenwidth()), float(self.root.winfo_screenheight()))
        self.canvas = tkinter.Canvas(self.root, background="black", highlightthickness=0,
                                     width=int(self.screen_px[0]), height=int(self.screen_px[1]))
        self.canvas.pack(fill="both", expand=True)
        self.items: list[int] = []
        self.root.update()

    def show(self, x: float, y: float) -> float:
        cx, cy, r = x * self.screen_px[0], y * self.screen_px[1], self.RADIUS
        for item in self.items:
            self.canvas.delete(item)
        self.items = [
            self.canvas.create_oval(cx - r, cy - r, cx + r, cy + r, outline="white", width=3),
            self.canvas.create_oval(cx - 3, cy - 3, cx + 3, cy + 3, fill="red", outline="red"),
        ]
        self.root.update()
        return now_s()

    def target_centre(self) -> tuple[float, float]:
        """Where the drawn target's centre is, in window pixels (for checks)."""
        x0, y0, x1, y1 = self.canvas.coords(self.items[0])
        return (x0 + x1) / 2, (y0 + y1) / 2

    def pump(self) -> None:
        self.root.update()

    def close(self) -> None:
        try:
            self.root.destroy()
        except Exception:  # pragma: no cover - already gone
            pass
