"""BrainFlow, loaded safely, and what its board descriptions say (rates, rows, channel names).

BrainFlow 5.23 finds its shared libraries with ``importlib.resources.files(module)``, which
Python 3.11 refuses for a module, and then falls back to ``pkg_resources``, which setuptools
>= 81 no longer ships. :func:`brainflow` loads the libraries with a one-call stand-in for
``pkg_resources.resource_filename`` when the real one is missing, and removes it afterwards.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from typing import Any

from razvilka.protocol.errors import ErrorCode, ProtocolError

PLAYBACK_BOARD = -3
STREAMING_BOARD = -2
SYNTHETIC_BOARD = -1
#: Boards that talk through a serial port (a dongle) and cannot start without ``serial_port``.
SERIAL_BOARDS = {0: "Cyton", 1: "Ganglion (BLED112 dongle)", 2: "Cyton+Daisy", 22: "Muse 2 (BLED112 dongle)",
                 21: "Muse S (BLED112 dongle)", 42: "Muse 2016 (BLED112 dongle)"}

_loaded = False


def brainflow() -> types.ModuleType:
    """Import ``brainflow`` with its native libraries loaded; safe to call often."""
    global _loaded
    if _loaded:
        return sys.modules["brainflow"]
    import brainflow as bf
    from brainflow.board_shim import BoardControllerDLL
    from brainflow.data_filter import DataHandlerDLL

    shim = None
    try:
        import pkg_resources  # noqa: F401  (present with setuptools < 81)
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, path: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.origin is not None
            return os.path.join(os.path.dirname(spec.origin), path)

        shim.__dict__["resource_filename"] = resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        BoardControllerDLL.get_instance()
        DataHandlerDLL.get_instance()
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    from brainflow.board_shim import BoardShim

    BoardShim.disable_board_logger()  # its failures come back to us as exit codes, which we explain
    _loaded = True
    return bf


@dataclass(frozen=True)
class BoardInfo:
    """One board's data layout, from ``BoardShim.get_board_descr``."""

    board_id: int
    name: str
    sampling_rate: int
    num_rows: int
    eeg_rows: tuple[int, ...]
    eeg_names: tuple[str, ...]
    timestamp_row: int
    marker_row: int
    package_row: int

    def select(self, names: list[str] | tuple[str, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """Rows and names of the chosen EEG channels (all when ``names`` is empty)."""
        if not names:
            return self.eeg_rows, self.eeg_names
        rows = []
        for name in names:
            if name not in self.eeg_names:
                raise ProtocolError(ErrorCode.BAD_CONFIG, f"channel {name!r} is not an EEG channel of {self.name} "
                                    f"(it has {', '.join(self.eeg_names)})")
            rows.append(self.eeg_rows[self.eeg_names.index(name)])
        return tuple(rows), tuple(names)


def board_info(board_id: int) -> BoardInfo:
    """Describe a (data-producing) board; ProtocolError(BAD_CONFIG) for an id BrainFlow does not know."""
    bf = brainflow()
    from brainflow.board_shim import BoardShim

    try:
        descr: dict[str, Any] = BoardShim.get_board_descr(board_id)
    except bf.board_shim.BrainFlowError as exc:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"BrainFlow knows no board with id {board_id} ({exc}); "
                            "see BrainFlow's BoardIds for the list") from None
    if "eeg_channels" not in descr:
        raise ProtocolError(ErrorCode.BAD_CONFIG, f"board {board_id} ({descr.get('name', '?')}) has no EEG channels")
    rows = tuple(int(r) for r in descr["eeg_channels"])
    names = tuple(str(descr.get("eeg_names", "")).split(",")) if descr.get("eeg_names") else ()
    if len(names) != len(rows):
        names = tuple(f"EEG{i + 1}" for i in range(len(rows)))
    return BoardInfo(
        board_id=board_id, name=str(descr.get("name", board_id)), sampling_rate=int(descr["sampling_rate"]),
        num_rows=int(descr["num_rows"]), eeg_rows=rows, eeg_names=names,
        timestamp_row=int(descr["timestamp_channel"]), marker_row=int(descr["marker_channel"]),
        package_row=int(descr.get("package_num_channel", 0)),
    )
