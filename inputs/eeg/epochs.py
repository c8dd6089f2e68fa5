"""Band-pass the stream and cut epochs after each flash, only once the whole window has arrived.

The same causal filter runs online (chunk by chunk) and over a recording for calibration, so a
model sees the same signal in both. Samples are placed on a *sample clock*: sample ``i`` is at
``offset + i / rate`` on the bus clock, where ``offset`` is the lower envelope of
``timestamp - i / rate`` over the last seconds. Receive-time stamps (BLE packets, bursts) only
ever lag, so the envelope removes their jitter. A timestamp that runs ahead of the sample clock
by more than the gap tolerance means samples were dropped: the gap is filled (so counting stays
right) and marked invalid, and an epoch that touches it is refused.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

from razvilka.inputs.eeg.recording import Recording


@dataclass(frozen=True)
class EpochSpec:
    """Everything that must match between calibration and use: rate, band, window, rejection."""

    sampling_rate: int
    low_hz: float = 1.0
    high_hz: float = 20.0
    order: int = 4
    start_ms: float = 0.0
    end_ms: float = 800.0
    reject_uv: float = 150.0

    @property
    def start(self) -> int:
        """Window start, in samples after the onset sample."""
        return int(round(self.start_ms / 1000 * self.sampling_rate))

    @property
    def length(self) -> int:
        return int(round((self.end_ms - self.start_ms) / 1000 * self.sampling_rate))

    def sos(self) -> np.ndarray:
        return butter(self.order, [self.low_hz, self.high_hz], btype="bandpass", fs=self.sampling_rate, output="sos")

    def artefact(self, epoch: np.ndarray) -> bool:
        """True when the epoch's peak-to-peak exceeds ``reject_uv`` on any channel."""
        return bool(self.reject_uv > 0 and float(np.ptp(epoch, axis=-1).max()) > self.reject_uv)


class StreamFilter:
    """A causal IIR band-pass that keeps its state between chunks."""

    def __init__(self, spec: EpochSpec, n_channels: int) -> None:
        self.sos = spec.sos()
        self.n_channels = n_channels
        self.zi: np.ndarray | None = None

    def reset(self) -> None:
        self.zi = None

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Filter ``chunk`` (samples x channels); the first call starts from the first sample's level."""
        if chunk.shape[0] == 0:
            return chunk
        if self.zi is None:
            self.zi = sosfilt_zi(self.sos)[:, :, None] * chunk[0][None, None, :]
        out, self.zi = sosfilt(self.sos, chunk, axis=0, zi=self.zi)
        return out


CutStatus = Literal["ready", "wait", "expired", "gap", "artefact"]


@dataclass
class Cut:
    status: CutStatus
    epoch: np.ndarray | None = None   # channels x samples, when ``status == "ready"``
    index: int = -1                   # absolute index of the onset sample


class EpochBuffer:
    """Filtered history on a sample clock; cuts epochs by onset time (bus seconds)."""

    def __init__(self, spec: EpochSpec, n_channels: int, *, buffer_s: float = 30.0,
                 gap_tolerance_s: float = 0.25, clock_window_s: float = 10.0, max_fill_s: float = 2.0) -> None:
        self.spec = spec
        self.rate = spec.sampling_rate
        self.n_channels = n_channels
        self.size = int(buffer_s * self.rate) + spec.start + spec.length
        self.data = np.zeros((self.size, n_channels))
        self.valid = np.zeros(self.size, dtype=bool)
        self.filter = StreamFilter(spec, n_channels)
        self.total = 0                       # samples placed so far (received + filled)
        self.gap_tolerance = gap_tolerance_s
        self.clock_window = int(clock_window_s * self.rate)
        self.max_fill = int(max_fill_s * self.rate)
        self._offsets: deque[tuple[int, float]] = deque()  # (index, min(ts - i/rate)) per chunk
        self._last_raw: np.ndarray | None = None
        self.dropped = 0                     # samples found missing
        self.gaps = 0

    # ------------------------------------------------------------------ the sample clock
    @property
    def offset(self) -> float | None:
        """Bus time of absolute sample 0 (None before any data)."""
        return min(o for _, o in self._offsets) if self._offsets else None

    def time_of(self, index: int) -> float:
        off = self.offset
        assert off is not None
        return off + index / self.rate

    def _note_offset(self, first: int, offsets: np.ndarray) -> None:
        self._offsets.append((first, float(offsets.min())))
        while self._offsets and self._offsets[0][0] < self.total - self.clock_window and len(self._offsets) > 1:
            self._offsets.popleft()

    # ------------------------------------------------------------------ adding samples
    def add(self, eeg: np.ndarray, ts: np.ndarray) -> None:
        """Append raw samples (samples x channels, µV) stamped on the bus clock (seconds)."""
        eeg = np.asarray(eeg, dtype=float)
        ts = np.asarray(ts, dtype=float)
        while len(ts):
            rel = ts - (self.total + np.arange(len(ts))) / self.rate
            ref = self.offset
            if ref is None:
                self._place(eeg, ts, rel)
                return
            ahead = np.flatnonzero(rel - ref > self.gap_tolerance)
            behind = rel - ref < -self.gap_tolerance
            if behind.any() and (not len(ahead) or np.flatnonzero(behind)[0] < ahead[0]):
                # the stamps jumped back (a clock step, or too much filled earlier): trust them anew
                self._offsets.clear()
                continue
            if not len(ahead):
                self._place(eeg, ts, rel)
                return
            cut = int(ahead[0])
            if cut:
                self._place(eeg[:cut], ts[:cut], rel[:cut])
            missing = int(round((rel[cut] - ref) * self.rate))
            self._fill(missing, eeg[cut])
            eeg, ts = eeg[cut:], ts[cut:]

    def _place(self, eeg: np.ndarray, ts: np.ndarray, rel: np.ndarray) -> None:
        if not len(ts):
            return
        self._note_offset(self.total, rel)
        self._write(self.filter(eeg), True)
        self._last_raw = eeg[-1].copy()

    def _fill(self, missing: int, next_raw: np.ndarray) -> None:
        """Dropped samples: bridge them (short gaps) or restart the filter (long ones); never valid."""
        self.dropped += missing
        self.gaps += 1
        if missing <= self.max_fill and self._last_raw is not None:
            steps = np.linspace(0.0, 1.0, missing + 2)[1:-1, None]
            bridge = self._last_raw[None, :] * (1 - steps) + next_raw[None, :] * steps
            self._write(self.filter(bridge), False)
        else:
            self.filter.reset()
            self._write(np.zeros((missing, self.n_channels)), False)

    def _write(self, block: np.ndarray, valid: bool) -> None:
        n = block.shape[0]
        if n > self.size:
            block = block[-self.size:]
            self.total += n - self.size
            n = self.size
        pos = (self.total + np.arange(n)) % self.size
        self.data[pos] = block
        self.valid[pos] = valid
        self.total += n

    # ------------------------------------------------------------------ cutting
    def locate(self, onset_s: float) -> int | None:
        """Absolute index of the sample nearest ``onset_s`` (bus seconds)."""
        off = self.offset
        return None if off is None else int(round((onset_s - off) * self.rate))

    def cut(self, onset_s: float) -> Cut:
        """The epoch after ``onset_s``: ready, or wait (data not all here), or why it cannot be had."""
        onset = self.locate(onset_s)
        if onset is None:
            return Cut("wait")
        first = onset + self.spec.start
        last = first + self.spec.length
        if last > self.total:
            return Cut("wait", index=onset)
        if first < max(0, self.total - self.size):
            return Cut("expired", index=onset)
        pos = np.arange(first, last) % self.size
        if not self.valid[pos].all():
            return Cut("gap", index=onset)
        epoch = self.data[pos].T.copy()
        if self.spec.artefact(epoch):
            return Cut("artefact", epoch, index=onset)
        return Cut("ready", epoch, index=onset)


def epochs_from_recording(rec: Recording, spec: EpochSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut every marked onset of a recording with the online filter: (epochs, labels, kept-mask).

    ``kept`` is False for epochs past the end of the data or over the artefact limit.
    """
    filtered = StreamFilter(spec, rec.eeg.shape[1])(rec.eeg.astype(float))
    events, labels = rec.events, rec.labels
    epochs = np.zeros((len(events), rec.eeg.shape[1], spec.length))
    kept = np.zeros(len(events), dtype=bool)
    for k, onset in enumerate(events):
        first = onset + spec.start
        if first + spec.length > len(filtered):
            continue
        epochs[k] = filtered[first:first + spec.length].T
        kept[k] = not spec.artefact(epochs[k])
    return epochs, labels, kept
