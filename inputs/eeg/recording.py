"""Recorded EEG with stimulus markers: the shared Muse CSVs, BrainFlow files, and playback files.

Marker convention (as in the eeg-notebooks recordings): 0 none, 1 non-target onset,
2 target onset, set on the sample nearest the stimulus onset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from razvilka.inputs.eeg.boards import BoardInfo, board_info, brainflow
from razvilka.protocol.errors import ErrorCode, ProtocolError

NON_TARGET = 1
TARGET = 2


@dataclass
class Recording:
    """Continuous EEG (samples x channels, µV), Unix timestamps, and a marker per sample."""

    eeg: np.ndarray
    timestamps: np.ndarray
    markers: np.ndarray
    channels: tuple[str, ...]
    sampling_rate: int
    source: str = ""

    @property
    def events(self) -> np.ndarray:
        """Sample indices of all stimulus onsets."""
        return np.flatnonzero(self.markers)

    @property
    def labels(self) -> np.ndarray:
        """1 for each target onset, 0 for each non-target onset (in ``events`` order)."""
        return (self.markers[self.events] == TARGET).astype(int)


def load_muse_csv(path: str | Path, sampling_rate: int = 256) -> Recording:
    """Read an eeg-notebooks Muse CSV: ``timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker``.

    The AUX column is left out: it is not connected on the headband.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_STREAM, f"cannot read recording {path}: {exc}") from None
    if "timestamps" not in header or "Marker" not in header or data.shape[1] != len(header):
        raise ProtocolError(ErrorCode.BAD_STREAM, f"{path}: expected a timestamps,...,Marker header, got {header}")
    eeg_cols = [i for i, name in enumerate(header) if name not in ("timestamps", "Marker") and "AUX" not in name]
    return Recording(
        eeg=data[:, eeg_cols], timestamps=data[:, header.index("timestamps")],
        markers=data[:, header.index("Marker")].astype(int), channels=tuple(header[i] for i in eeg_cols),
        sampling_rate=sampling_rate, source=str(path),
    )


def load_brainflow_file(path: str | Path, board_id: int, channels: list[str] | tuple[str, ...] = ()) -> Recording:
    """Read a file written by BrainFlow (``DataFilter.write_file`` or the file streamer)."""
    brainflow()
    from brainflow.data_filter import DataFilter

    info = board_info(board_id)
    rows, names = info.select(list(channels))
    try:
        data = DataFilter.read_file(str(path))
    except Exception as exc:  # BrainFlowError or OSError
        raise ProtocolError(ErrorCode.BAD_STREAM, f"cannot read BrainFlow file {path}: {exc}") from None
    if data.shape[0] != info.num_rows:
        raise ProtocolError(ErrorCode.BAD_STREAM,
                            f"{path} has {data.shape[0]} rows; {info.name} writes {info.num_rows}")
    return Recording(eeg=data[list(rows)].T.copy(), timestamps=data[info.timestamp_row].copy(),
                     markers=data[info.marker_row].astype(int), channels=names,
                     sampling_rate=info.sampling_rate, source=str(path))


def write_playback_file(path: str | Path, rec: Recording, board: BoardInfo | int, *,
                        start_unix: float | None = None) -> Path:
    """Write ``rec`` in BrainFlow's file format for ``board``, for the playback board (id -3).

    EEG goes to the board's EEG rows (by channel name when they match, else in order), the
    markers to its marker row and the timestamps to its timestamp row. ``start_unix`` shifts
    the timestamps so the first sample is stamped then (replay with ``old_timestamps``).
    """
    brainflow()
    from brainflow.data_filter import DataFilter

    info = board_info(board) if isinstance(board, int) else board
    if rec.eeg.shape[1] > len(info.eeg_rows):
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"{rec.eeg.shape[1]} channels do not fit {info.name}'s "
                            f"{len(info.eeg_rows)} EEG rows")
    n = rec.eeg.shape[0]
    data = np.zeros((info.num_rows, n))
    for col, name in enumerate(rec.channels):
        row = info.eeg_rows[info.eeg_names.index(name)] if name in info.eeg_names else info.eeg_rows[col]
        data[row] = rec.eeg[:, col]
    ts = rec.timestamps.astype(float)
    if start_unix is not None:
        ts = ts - ts[0] + start_unix
    data[info.timestamp_row] = ts
    data[info.marker_row] = rec.markers
    data[info.package_row] = np.arange(n) % 256
    DataFilter.write_file(np.ascontiguousarray(data), str(path), "w")
    return Path(path)
