"""The research record over Lab Streaming Layer: the one place that says how razvilka's LSL streams look.

LabRecorder (or any LSL recorder) writes every stream on the network into one XDF file; ``razvilka
analyse`` reads it back (docs/research.md). Every stream here:

* has a stable name, content type and ``source_id`` (``NAME@HOST``), so a recorder can be told which
  streams a study needs, and an inlet reconnects by itself when the sender restarts;
* is stamped on the bus clock, which *is* LSL's ``local_clock`` (protocol/clock.py): no offsets to fix;
* says in its description who wrote it (``razvilka`` version, protocol version, its role).

Markers are one ``string`` channel at an irregular rate, each sample one JSON object with at least
``type`` (what happened: a bus message type such as ``fork.open``, or ``gaze.fixation``, ``key.down``)
and ``fork_id`` (null outside a fork). Readers find the streams by ``role`` in the description, or
by the names below.
"""
from __future__ import annotations

import json
import socket
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pylsl

#: The daemon's session stream (every fork, focus, confirm, decision, stimulus and command).
SESSION_STREAM = "razvilka-session"
#: Marker streams' content type (what LabRecorder and MNE look for).
MARKER_TYPE = "Markers"
#: The gaze adapter's sample stream's content type.
GAZE_TYPE = "Gaze"
#: What ``desc/format`` says of marker samples.
MARKER_FORMAT = "json"

#: ``desc/role`` values, for readers that pick streams by what they are rather than by name.
ROLE_SESSION = "session"
ROLE_GAZE = "gaze"
ROLE_GAZE_MARKERS = "gaze-markers"
ROLE_KEY_MARKERS = "key-markers"


def source_id(name: str, *parts: str) -> str:
    """``NAME@HOST[/PART...]``: stable across restarts of the same sender on the same machine
    (LSL recovers a stream by its source_id), distinct between machines and users."""
    return "/".join((f"{name}@{socket.gethostname()}", *parts))


def _version() -> str:
    try:
        return metadata.version("razvilka")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def describe(info: pylsl.StreamInfo, role: str, fields: dict[str, str] | None = None) -> None:
    """Add razvilka's description to a stream: writer, protocol, role, clock and any ``fields``."""
    from razvilka.protocol.messages import PROTOCOL_VERSION

    desc = info.desc()
    desc.append_child_value("writer", "razvilka")
    desc.append_child_value("razvilka_version", _version())
    desc.append_child_value("protocol_version", PROTOCOL_VERSION)
    desc.append_child_value("role", role)
    desc.append_child_value("clock", "bus clock = LSL local_clock (seconds)")
    for key, value in (fields or {}).items():
        desc.append_child_value(key, value)


class MarkerOutlet:
    """One marker stream: ``push(marker, ts)`` sends a JSON object stamped with ``ts`` (bus clock, s)."""

    def __init__(self, name: str, sid: str, role: str, fields: dict[str, str] | None = None) -> None:
        import pylsl

        info = pylsl.StreamInfo(name, MARKER_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, sid)
        describe(info, role, {"format": MARKER_FORMAT, **(fields or {})})
        self.name = name
        self.source_id = sid
        self.outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        self.pushed = 0

    def push(self, marker: dict[str, Any], ts: float) -> None:
        if self.outlet is None:
            return
        self.outlet.push_sample([json.dumps(marker, ensure_ascii=False, separators=(",", ":"))], ts)
        self.pushed += 1

    def close(self) -> None:
        """Drop the outlet (liblsl may take up to a second or two to end its transfer threads)."""
        self.outlet = None


class SampleOutlet:
    """A regular float32 stream with labelled channels (gaze samples): ``push(samples, ts)``."""

    def __init__(self, name: str, kind: str, sid: str, role: str, channels: list[tuple[str, str]],
                 rate: float, fields: dict[str, str] | None = None) -> None:
        import pylsl

        info = pylsl.StreamInfo(name, kind, len(channels), rate, pylsl.cf_float32, sid)
        chans = info.desc().append_child("channels")
        for label, unit in channels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
        describe(info, role, fields)
        self.name = name
        self.source_id = sid
        self.outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)

    def push(self, samples: np.ndarray, ts: np.ndarray) -> None:
        import numpy as np

        if self.outlet is not None and len(ts):
            self.outlet.push_chunk(np.ascontiguousarray(samples, dtype=np.float32), [float(t) for t in ts])

    def close(self) -> None:
        self.outlet = None
