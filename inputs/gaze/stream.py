"""The gaze stream: which channel is what (channel map) and the LSL inlet that delivers it on the bus clock.

The channel map is pure (it binds to a stream's channel count and labels and slices sample
arrays); only :class:`GazeStream` touches pylsl, which is imported inside functions so that
``razvilka --help`` does not load liblsl.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from razvilka.inputs.gaze.config import GazeConfig
from razvilka.protocol.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    import pylsl

log = logging.getLogger("razvilka.gaze.stream")

#: Roles a channel can play. A map needs x+y (one gaze point) or lx+ly+rx+ry (two eyes).
ROLES = ("x", "y", "lx", "ly", "rx", "ry", "lpupil", "rpupil", "valid")

#: Presets: role -> channel index, and the exact channel count the stream must have.
PRESETS: dict[str, tuple[dict[str, int], int]] = {
    # The Tobii Pro LSL connector: left x, left y, left pupil, right x, right y, right pupil.
    "tobii": ({"lx": 0, "ly": 1, "lpupil": 2, "rx": 3, "ry": 4, "rpupil": 5}, 6),
    "binocular": ({"lx": 0, "ly": 1, "rx": 2, "ry": 3}, 4),
    "mono": ({"x": 0, "y": 1}, 2),
}

#: LSL channel formats that carry numbers (cf_float32, cf_double64, cf_int32, cf_int16, cf_int8, cf_int64).
NUMERIC_FORMATS = {1, 2, 4, 5, 6, 7}


@dataclass(frozen=True)
class RawGaze:
    """Samples in normalised display coordinates (0..1, y down), before the eyes are combined.

    ``right`` is None for a one-point tracker; ``valid`` is None when the stream has no validity channel.
    """

    t: np.ndarray  # (n,) bus-clock seconds
    left: np.ndarray  # (n, 2)
    right: np.ndarray | None = None  # (n, 2)
    valid: np.ndarray | None = None  # (n,) bool


@dataclass(frozen=True)
class ChannelMap:
    """Which channel plays which role; checked against the configuration before any stream is seen."""

    roles: dict[str, int | str]
    count: int | None = None  # the exact channel count a preset requires
    valid_min: float = 0.5
    units: str = "norm"
    tracker_px: tuple[float, float] = (1920.0, 1080.0)
    y_up: bool = False

    @classmethod
    def from_config(cls, cfg: GazeConfig) -> ChannelMap:
        """Build the map from ``channels``/``channel_map``; a map that cannot work is BAD_CONFIG."""
        common: dict[str, Any] = dict(
            valid_min=cfg.valid_min, units=cfg.units, y_up=cfg.y_up,
            tracker_px=tuple(cfg.tracker_px),
        )
        if len(cfg.tracker_px) != 2 or min(cfg.tracker_px) <= 0:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"tracker_px must be [width, height] > 0, not {cfg.tracker_px}")
        if cfg.channels in PRESETS:
            preset, count = PRESETS[cfg.channels]
            if cfg.channel_map:
                raise ProtocolError(
                    ErrorCode.BAD_CONFIG,
                    f"channel_map is given but channels = {cfg.channels!r}; set channels = \"custom\" to use it",
                )
            return cls(dict(preset), count, **common)
        if cfg.channels != "custom":
            raise ProtocolError(
                ErrorCode.BAD_CONFIG,
                f"unknown channel preset {cfg.channels!r}; use one of {', '.join([*PRESETS, 'custom'])}",
            )
        roles = dict(cfg.channel_map)
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ProtocolError(
                ErrorCode.BAD_CONFIG,
                f"unknown channel role(s) {', '.join(unknown)} in channel_map; roles are {', '.join(ROLES)}",
            )
        has_mono = {"x", "y"} <= set(roles)
        has_bino = {"lx", "ly", "rx", "ry"} <= set(roles)
        if not (has_mono or has_bino) or (has_mono and bool({"lx", "ly", "rx", "ry"} & set(roles))):
            raise ProtocolError(
                ErrorCode.BAD_CONFIG,
                f"channel_map {roles} must name x and y (one gaze point) or lx, ly, rx and ry (two eyes), not a mix",
            )
        for role, where in roles.items():
            if isinstance(where, int) and where < 0:
                raise ProtocolError(ErrorCode.BAD_CONFIG, f"channel_map.{role} = {where}: indices start at 0")
            if isinstance(where, str) and not where:
                raise ProtocolError(ErrorCode.BAD_CONFIG, f"channel_map.{role} is an empty label")
        return cls(roles, None, **common)

    def bind(self, channel_count: int, labels: list[str] | None = None, channel_format: int = 1) -> BoundMap:
        """Resolve labels to indices for one stream; a stream this map cannot read is BAD_STREAM."""
        if channel_format not in NUMERIC_FORMATS:
            raise ProtocolError(ErrorCode.BAD_STREAM, f"the stream's channel format {channel_format} is not numeric")
        if self.count is not None and channel_count != self.count:
            raise ProtocolError(
                ErrorCode.BAD_STREAM,
                f"the stream has {channel_count} channels; this channel map needs exactly {self.count} "
                f"(set inputs.gaze.channels, or channels = \"custom\" with a channel_map)",
            )
        index: dict[str, int] = {}
        for role, where in self.roles.items():
            if isinstance(where, str):
                if not labels or where not in labels:
                    raise ProtocolError(
                        ErrorCode.BAD_STREAM,
                        f"channel_map.{role} names channel label {where!r}, which the stream does not have "
                        f"(its labels: {labels or 'none'})",
                    )
                index[role] = labels.index(where)
            else:
                if where >= channel_count:
                    raise ProtocolError(
                        ErrorCode.BAD_STREAM,
                        f"channel_map.{role} = {where}, but the stream has only {channel_count} channels",
                    )
                index[role] = where
        return BoundMap(index, channel_count, self)


@dataclass(frozen=True)
class BoundMap:
    """A channel map bound to one stream: slices (n, channels) arrays into :class:`RawGaze`."""

    index: dict[str, int]
    channel_count: int
    spec: ChannelMap = field(repr=False)

    def extract(self, t: np.ndarray, data: np.ndarray) -> RawGaze:
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.channel_count:
            raise ProtocolError(
                ErrorCode.BAD_STREAM, f"samples of shape {data.shape}; expected (n, {self.channel_count})",
            )
        i = self.index
        if "x" in i:
            left, right = self._point(data, i["x"], i["y"]), None
        else:
            left, right = self._point(data, i["lx"], i["ly"]), self._point(data, i["rx"], i["ry"])
        valid = None
        if "valid" in i:
            conf = data[:, i["valid"]]
            valid = np.isfinite(conf) & (conf >= self.spec.valid_min)
        return RawGaze(np.asarray(t, dtype=np.float64), left, right, valid)

    def _point(self, data: np.ndarray, ix: int, iy: int) -> np.ndarray:
        xy = data[:, [ix, iy]].copy()
        if self.spec.units == "px":
            xy /= np.asarray(self.spec.tracker_px)
        if self.spec.y_up:
            xy[:, 1] = 1.0 - xy[:, 1]
        return xy


def _lost_error() -> type[Exception]:
    """pylsl's LostError (pylsl.util in 1.17+, the top-level module before)."""
    try:
        from pylsl.util import LostError
    except ImportError:  # pragma: no cover - older pylsl
        from pylsl import LostError
    return LostError


def predicate(cfg: GazeConfig) -> str:
    """The LSL XPath predicate for the configured name/type/source_id (empty fields are not matched)."""
    parts = []
    for key, value in (("name", cfg.stream_name), ("type", cfg.stream_type), ("source_id", cfg.source_id)):
        if value:
            if "'" in value:
                raise ProtocolError(ErrorCode.BAD_CONFIG, f"stream {key} {value!r} may not contain a quote")
            parts.append(f"{key}='{value}'")
    if not parts:
        raise ProtocolError(ErrorCode.BAD_CONFIG, "set at least one of stream_name, stream_type, source_id")
    return " and ".join(parts)


def channel_labels(info: pylsl.StreamInfo) -> list[str]:
    """Labels from the stream description (``desc/channels/channel/label``), if it has them."""
    labels: list[str] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling("channel")
    return labels if len(labels) == info.channel_count() else []


class GazeStream:
    """An open LSL inlet on the gaze stream. Timestamps come out on the bus clock.

    LSL's ``time_correction`` (the tracker host's clock -> this host's ``local_clock``, which
    is the bus clock) is measured on open and refreshed by :meth:`refresh_clock`.
    """

    def __init__(self, inlet: pylsl.StreamInlet, info: pylsl.StreamInfo, bound: BoundMap) -> None:
        self.inlet = inlet
        self.info = info
        self.bound = bound
        self.offset_s = 0.0
        self.clock_checked = 0.0

    @classmethod
    def open(cls, cfg: GazeConfig, channel_map: ChannelMap | None = None, timeout: float | None = None) -> GazeStream:
        """Resolve, check the shape, open the inlet (blocking: call it from a thread in async code).

        Raises ProtocolError: DEVICE_MISSING (no such stream), BAD_STREAM (wrong shape), BAD_CONFIG.
        """
        import pylsl

        channel_map = channel_map or ChannelMap.from_config(cfg)
        pred = predicate(cfg)
        wait = cfg.resolve_timeout_s if timeout is None else timeout
        found = pylsl.resolve_bypred(pred, 1, wait)
        if not found:
            raise ProtocolError(
                ErrorCode.DEVICE_MISSING,
                f"no LSL stream matches {pred} (waited {wait:.1f}s); is the tracker's LSL connector running?",
            )
        if len(found) > 1:
            log.warning("%d streams match %s; using the first (set inputs.gaze.source_id to choose)", len(found), pred)
        info = found[0]
        inlet = pylsl.StreamInlet(info, max_buflen=60, recover=True)
        try:
            full = inlet.info(timeout=max(wait, 1.0))
            bound = channel_map.bind(full.channel_count(), channel_labels(full), full.channel_format())
            inlet.open_stream(timeout=max(wait, 1.0))
        except ProtocolError:
            inlet.close_stream()
            raise
        except Exception as exc:  # pylsl.TimeoutError / LostError
            inlet.close_stream()
            raise ProtocolError(ErrorCode.DEVICE_LOST, f"stream {info.name()!r} did not open: {exc}") from None
        stream = cls(inlet, full, bound)
        stream.refresh_clock(timeout=max(wait, 1.0))
        return stream

    def describe(self) -> str:
        i = self.info
        return (f"{i.name()} ({i.type()}) {i.nominal_srate():g} Hz, {i.channel_count()} ch, "
                f"source_id={i.source_id() or '-'}, host={i.hostname()}, clock offset {self.offset_s * 1e3:+.2f} ms")

    def refresh_clock(self, timeout: float = 2.0) -> float:
        """Re-measure the tracker->bus clock offset (blocking up to ``timeout`` the first time)."""
        try:
            self.offset_s = float(self.inlet.time_correction(timeout=timeout))
        except Exception as exc:  # a timeout keeps the last offset
            log.debug("time_correction failed, keeping %.6f s: %s", self.offset_s, exc)
        self.clock_checked = time.monotonic()
        return self.offset_s

    def pull(self, max_samples: int = 4096) -> RawGaze | None:
        """Everything waiting in the inlet (non-blocking), mapped and on the bus clock; None if nothing.

        Raises ProtocolError(DEVICE_LOST) when liblsl reports the source gone for good.
        """
        try:
            data, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=max_samples)
        except _lost_error() as exc:
            raise ProtocolError(ErrorCode.DEVICE_LOST, f"stream {self.info.name()!r} lost: {exc}") from None
        if not ts:
            return None
        t = np.asarray(ts, dtype=np.float64) + self.offset_s
        return self.bound.extract(t, np.asarray(data))

    def close(self) -> None:
        try:
            self.inlet.close_stream()
        except Exception:  # pragma: no cover - closing a broken inlet
            pass
