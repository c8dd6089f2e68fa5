"""Any BrainFlow board, by id and connection parameters, with its samples on the bus clock.

BrainFlow stamps samples with the host's Unix time. :class:`ClockOffset` tracks the offset
from Unix time to the bus clock (LSL ``local_clock``) and notices when the wall clock steps
(NTP), and :class:`BoardLink` turns every chunk into EEG rows + bus-clock timestamps. It
reports a board that stops sending as lost and can be connected again.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from razvilka.inputs.eeg.boards import PLAYBACK_BOARD, SERIAL_BOARDS, STREAMING_BOARD, BoardInfo, board_info, brainflow
from razvilka.inputs.eeg.config import EegConfig
from razvilka.protocol.clock import now_ns
from razvilka.protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("razvilka.eeg.acquisition")

#: BrainFlow exit codes that mean "your settings are wrong", not "the device is not there (yet)".
CONFIG_ERRORS = {"UNSUPPORTED_BOARD_ERROR", "INVALID_ARGUMENTS_ERROR", "UNSUPPORTED_CLASSIFIER_AND_METRIC_COMBINATION"}


class ClockOffset:
    """Seconds to add to a Unix time to land on the bus clock, from the median of recent readings."""

    def __init__(self, keep: int = 15, step_s: float = 0.02) -> None:
        self.readings: list[float] = []
        self.keep = keep
        self.step_s = step_s
        self.steps = 0

    @staticmethod
    def read() -> float:
        before = now_ns()
        wall = time.time()
        after = now_ns()
        return (before + after) / 2e9 - wall

    def update(self) -> float:
        reading = self.read()
        if self.readings and abs(reading - self.offset) > self.step_s:
            self.steps += 1
            log.warning("the wall clock stepped by %.1f ms; re-basing BrainFlow timestamps",
                        (self.offset - reading) * 1e3)
            self.readings.clear()
        self.readings.append(reading)
        del self.readings[:-self.keep]
        return self.offset

    @property
    def offset(self) -> float:
        return median(self.readings) if self.readings else self.read()


@dataclass
class Chunk:
    eeg: np.ndarray        # samples x channels (µV)
    ts: np.ndarray         # bus clock, seconds
    markers: np.ndarray    # the board's marker row


def input_params(cfg: EegConfig) -> Any:
    """BrainFlowInputParams from the config."""
    brainflow()
    from brainflow.board_shim import BrainFlowInputParams

    p = BrainFlowInputParams()
    p.serial_port, p.mac_address, p.ip_address = cfg.serial_port, cfg.mac_address, cfg.ip_address
    p.ip_port, p.ip_protocol, p.serial_number = cfg.ip_port, cfg.ip_protocol, cfg.serial_number
    p.other_info, p.timeout = cfg.other_info, cfg.discovery_timeout_s
    p.file, p.master_board = cfg.playback_file, cfg.master_board
    return p


def describe_board(cfg: EegConfig) -> BoardInfo:
    """The layout of the data the configured board will send; BAD_CONFIG/DEVICE_MISSING up front."""
    if cfg.board_id in (PLAYBACK_BOARD, STREAMING_BOARD):
        if cfg.master_board < -2:
            raise ProtocolError(ErrorCode.BAD_CONFIG,
                                f"board_id {cfg.board_id} replays another board's data: set inputs.eeg.master_board "
                                "to the id of the board that recorded it (e.g. 41 Muse 2016, -1 synthetic)")
        if cfg.board_id == PLAYBACK_BOARD and not os.path.isfile(cfg.playback_file):
            raise ProtocolError(ErrorCode.DEVICE_MISSING,
                                f"playback file {cfg.playback_file!r} does not exist (inputs.eeg.playback_file)")
        return board_info(cfg.master_board)
    if cfg.board_id in SERIAL_BOARDS:
        name = SERIAL_BOARDS[cfg.board_id]
        if not cfg.serial_port:
            raise ProtocolError(ErrorCode.BAD_CONFIG, f"board {cfg.board_id} ({name}) needs a serial port: "
                                "set inputs.eeg.serial_port, e.g. /dev/ttyUSB0 (Cyton) or /dev/ttyACM0 (dongle)")
        if os.name == "posix" and not os.path.exists(cfg.serial_port):
            raise ProtocolError(ErrorCode.DEVICE_MISSING, f"serial port {cfg.serial_port} of board {cfg.board_id} "
                                f"({name}) does not exist: is the dongle plugged in?")
    return board_info(cfg.board_id)


class BoardLink:
    """One BrainFlow session: connect, read chunks on the bus clock, notice silence, close."""

    def __init__(self, cfg: EegConfig) -> None:
        self.cfg = cfg
        self.info = describe_board(cfg)
        self.rows, self.channels = self.info.select(cfg.channels)
        self.clock = ClockOffset()
        self.board: Any = None
        self.last_data = 0.0          # monotonic time of the last chunk
        self.samples = 0

    @property
    def connected(self) -> bool:
        return self.board is not None

    def connect(self) -> None:
        """Prepare and start the stream (blocking: BLE discovery can take seconds)."""
        bf = brainflow()
        from brainflow.board_shim import BoardShim

        self.close()
        describe_board(self.cfg)   # the device may have gone since
        try:
            board = BoardShim(self.cfg.board_id, input_params(self.cfg))
            board.prepare_session()
        except bf.board_shim.BrainFlowError as exc:
            raise self._error(exc, "connect to") from None
        try:
            for command in self.cfg.board_config:
                board.config_board(command)
            board.start_stream(max(45000, int(self.info.sampling_rate * 60)))
        except bf.board_shim.BrainFlowError as exc:
            _quietly(board.release_session)
            raise self._error(exc, "start") from None
        self.board = board
        self.last_data = time.monotonic()
        self.clock.update()
        log.info("streaming from %s (board %d): %s at %d Hz", self.info.name, self.cfg.board_id,
                 ",".join(self.channels), self.info.sampling_rate)

    def _error(self, exc: Exception, what: str) -> ProtocolError:
        from brainflow.board_shim import BrainFlowExitCodes

        code_name = BrainFlowExitCodes(getattr(exc, "exit_code", 1)).name
        where = self.cfg.serial_port or self.cfg.mac_address or self.cfg.playback_file or "default connection"
        message = f"cannot {what} board {self.cfg.board_id} ({self.info.name}) via {where}: {code_name}"
        if code_name in CONFIG_ERRORS:
            return ProtocolError(ErrorCode.BAD_CONFIG, message + " (check inputs.eeg settings)")
        return ProtocolError(ErrorCode.DEVICE_MISSING, message + " (is it on, charged and in range?)")

    def read(self) -> Chunk | None:
        """Everything new since the last read, or None; DEVICE_LOST if BrainFlow fails."""
        if self.board is None:
            return None
        bf = brainflow()
        try:
            data = self.board.get_board_data()
        except bf.board_shim.BrainFlowError as exc:
            raise ProtocolError(ErrorCode.DEVICE_LOST, f"{self.info.name} stopped answering: {exc}") from None
        if data.shape[1] == 0:
            return None
        self.last_data = time.monotonic()
        self.samples += data.shape[1]
        offset = self.clock.update()
        return Chunk(eeg=data[list(self.rows)].T, ts=data[self.info.timestamp_row] + offset,
                     markers=data[self.info.marker_row])

    def silent_for(self) -> float:
        return time.monotonic() - self.last_data if self.board is not None else 0.0

    def insert_marker(self, value: float) -> None:
        """Mark a flash in BrainFlow's own data (kept by its file streamer)."""
        if self.board is not None:
            _quietly(lambda: self.board.insert_marker(value))

    def close(self) -> None:
        board, self.board = self.board, None
        if board is not None:
            _quietly(board.stop_stream)
            _quietly(board.release_session)


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception as exc:  # closing a dead board fails in many ways; none matter here
        log.debug("ignored while closing: %s", exc)
