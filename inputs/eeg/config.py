"""The EEG adapter's section of the configuration (``[inputs.eeg]``); see docs/eeg.md.

Kept free of heavy imports: the CLI imports it to build ``--help``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Positive = Annotated[float, Meta(gt=0)]
Prob = Annotated[float, Meta(ge=0.0, le=1.0)]


class EegConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """P300 selection through BrainFlow: board, signal processing, decision rule, storage."""

    name: str = "eeg"                 # bus sender name and the ``source`` of its Select/Confirm events

    # -- the board: BrainFlow board id and its BrainFlowInputParams ---------------------------
    board_id: int = -1                # BrainFlow BoardIds: -1 synthetic, -3 playback file, 0 Cyton, 1 Ganglion,
                                      # 2 Cyton+Daisy, 22 Muse 2 (BLED dongle), 38 Muse 2 (native BLE),
                                      # 41 Muse 2016 (native BLE)
    serial_port: str = ""             # /dev/ttyUSB0 (Cyton dongle), /dev/ttyACM0 (Ganglion/BLED dongle)
    mac_address: str = ""             # Ganglion/Muse: pick one headset by address (empty: the first found)
    ip_address: str = ""              # WiFi shield / network boards
    ip_port: int = 0                  # WiFi shield / network boards
    ip_protocol: int = 0              # BrainFlow IpProtocolTypes: 0 none, 1 UDP, 2 TCP
    serial_number: str = ""           # Muse/Unicorn/Enophone: device serial or name
    other_info: str = ""              # board-specific extra parameter (see BrainFlow's "supported boards")
    discovery_timeout_s: int = 0      # discovery timeout for BLE boards (0: BrainFlow's default)
    playback_file: str = ""           # board_id -3: the file to replay, in BrainFlow's file format
    master_board: int = -100          # board_id -3: the board that recorded playback_file (-100: none given)
    board_config: list[str] = msgspec.field(default_factory=list)  # config_board() strings sent after connecting,
                                      # e.g. ["old_timestamps"] for playback, Cyton channel settings "x1060110X"

    # -- channels and signal ----------------------------------------------------------------
    channels: list[str] = msgspec.field(default_factory=list)  # EEG channel names to use (empty: all EEG
                                      # channels of BrainFlow's board description, e.g. TP9,AF7,AF8,TP10 on Muse)
    low_hz: Positive = 1.0            # band-pass low edge (causal Butterworth, same filter online and in calibration)
    high_hz: Positive = 20.0          # band-pass high edge
    filter_order: Annotated[int, Meta(ge=1, le=8)] = 4
    epoch_start_ms: Annotated[float, Meta(ge=0)] = 0.0     # epoch window after each flash onset...
    epoch_end_ms: Positive = 800.0                          # ...0-800 ms holds the P300 (250-500 ms) and its tail
    reject_uv: Annotated[float, Meta(ge=0)] = 150.0         # epochs with a larger peak-to-peak (µV) are artefacts:
                                      # left out of calibration and give no evidence online (0: keep all)
    reject_mad: Annotated[float, Meta(ge=0)] = 5.0          # calibration adapts that limit to the recording: median +
                                      # this x MAD (scaled to σ) of its epochs' peak-to-peak, saved with the model
                                      # and used online (0: keep the fixed reject_uv)

    # -- stimulus timing (the renderer flashes; these describe what to expect) ------------------
    flash_on_ms: Positive = 100.0     # flash duration
    flash_off_ms: Annotated[float, Meta(ge=0)] = 75.0      # dark interval between flashes

    # -- the decision -----------------------------------------------------------------------
    threshold: Prob = 0.9             # publish Select once a candidate's posterior passes this
    confirm_threshold: Prob = 0.6     # publish Confirm (for gaze+EEG fusion) once the posterior passes this
    mode: Literal["select", "confirm", "both"] = "both"     # which events to publish
    min_repetitions: Annotated[int, Meta(ge=0)] = 1         # every item flashed this often before deciding
    max_repetitions: Annotated[int, Meta(ge=1)] = 30        # give up (time out) after this many flashes of every
                                      # item (a round of rows + columns is 2): docs/eeg.md, "Flashing in groups"
    fork_timeout_s: Annotated[float, Meta(ge=0)] = 0.0      # also give up this long after a fork's first flash
                                      # (0: max_repetitions x items flashed x (on+off) + epoch + 2 s)
    prior_weight: Annotated[float, Meta(ge=0)] = 1.0        # exponent on the LM prior (ForkOpen candidate probs);
                                      # 0 = uniform prior, 1 = the model's probabilities as they are
    prior_floor: Prob = 0.02          # mix this much of a uniform prior in, so no item is unreachable
    command_prior: Prob = 0.1         # prior share of the commands and the keys delete/accept when they flash
                                      # (1/7 of it each); candidates and letter keys share the rest (docs/eeg.md)
    null_prior: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.05  # prior of "none of them" (no P300 anywhere):
                                      # keeps a fork with no response from crowning its least bad candidate
    llr_clip: Positive = 4.0          # cap on one flash's log-likelihood ratio (nats), against overconfidence

    # -- per-user model ---------------------------------------------------------------------
    user: str = "default"             # whose calibration to load/save
    model_dir: str = ""               # default: $XDG_DATA_HOME/razvilka/eeg (~/.local/share/razvilka/eeg)
    calibration_targets: Annotated[int, Meta(ge=4)] = 40    # live calibration ends after this many target epochs
    min_auc: Prob = 0.6               # a calibration whose cross-validated AUC is below this (or not above chance)
                                      # is saved marked unusable, and the adapter will not select with it (0: off)

    # -- acquisition health -----------------------------------------------------------------
    poll_ms: Annotated[int, Meta(ge=5)] = 40                # how often to pull samples from BrainFlow
    lost_after_s: Positive = 2.0      # no samples for this long: the board is lost (reported, then reconnected)
    reconnect_s: Positive = 2.0       # pause between reconnection attempts
    buffer_s: Positive = 30.0         # filtered history kept for late stimulus events
    gap_tolerance_ms: Positive = 250.0  # a timestamp jump beyond the sample clock by more than this = dropped samples

    # -- optional Lab Streaming Layer outlets (LabRecorder -> one XDF) ------------------------
    lsl: bool = False                 # publish raw EEG and a marker stream (flashes, forks, decisions) over LSL
    lsl_eeg_name: str = "razvilka-eeg"
    lsl_marker_name: str = "razvilka-markers"

    def resolved_model_dir(self) -> Path:
        if self.model_dir:
            return Path(self.model_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "razvilka" / "eeg"

    def model_path(self) -> Path:
        """The user's calibration file."""
        return self.resolved_model_dir() / f"{self.user}.p300.pkl"
