"""Optional Lab Streaming Layer outlets, so LabRecorder can write EEG and events into one XDF.

Two streams: the raw EEG (type ``EEG``, the board's channel labels, µV) stamped on the bus
clock, which *is* LSL's ``local_clock``; and a string marker stream (type ``Markers``) of
flashes, forks and decisions, each a small JSON object stamped with its own onset.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np


class LslOutlets:
    def __init__(self, eeg_name: str, marker_name: str, board: str, channels: tuple[str, ...], rate: float) -> None:
        import pylsl

        source = f"razvilka-{board}-{'-'.join(channels)}"
        info = pylsl.StreamInfo(eeg_name, "EEG", len(channels), rate, "float32", source)
        chans = info.desc().append_child("channels")
        for name in channels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", name)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", "EEG")
        info.desc().append_child_value("manufacturer", f"BrainFlow {board}")
        self.eeg = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        markers = pylsl.StreamInfo(marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", source + "-markers")
        self.markers = pylsl.StreamOutlet(markers)

    def push_eeg(self, eeg: np.ndarray, ts: np.ndarray) -> None:
        """Samples x channels, with one bus-clock time (seconds) per sample."""
        if len(ts):
            self.eeg.push_chunk(np.ascontiguousarray(eeg, dtype=np.float32), [float(t) for t in ts])

    def push_marker(self, event: dict[str, Any], ts: float) -> None:
        self.markers.push_sample([json.dumps(event, separators=(",", ":"))], ts)

    def close(self) -> None:
        del self.eeg, self.markers
