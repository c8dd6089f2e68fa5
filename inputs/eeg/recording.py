"""Recorded EEG with stimulus markers, and playback files for BrainFlow's playback board.

Marker convention (as in the eeg-notebooks recordings): 0 none, 1 non-target onset,
2 target onset, set on the sample nearest the stimulus onset. The readers for the formats
researchers bring (muse-lsl / eeg-notebooks CSVs, BrainFlow files, XDF) are in :mod:`readers`.
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
    device: str = ""        # what recorded it (a BrainFlow board name, an XDF stream name, "Muse2016"), for the montage

    @property
    def events(self) -> np.ndarray:
        """Sample indices of all stimulus onsets."""
        return np.flatnonzero(self.markers)

    @property
    def labels(self) -> np.ndarray:
        """1 for each target onset, 0 for each non-target onset (in ``events`` order)."""
        return (self.markers[self.events] == TARGET).astype(int)


def load_muse_csv(path: str | Path, sampling_rate: int = 256) -> Recording:
    """Read an eeg-notebooks / muse-lsl CSV (any of their headers; see :func:`readers.read_csv`)."""
    from razvilka.inputs.eeg.readers import read_csv

    return read_csv(path, sampling_rate=sampling_rate)


def load_brainflow_file(path: str | Path, board_id: int, channels: list[str] | tuple[str, ...] = ()) -> Recording:
    """Read a file written by BrainFlow (``DataFilter.write_file`` or the file streamer)."""
    from razvilka.inputs.eeg.readers import read_brainflow

    return read_brainflow(path, board_id=board_id, channels=channels)


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
