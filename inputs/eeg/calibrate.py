"""Calibration from recordings (``razvilka input eeg --calibrate-from``): read, epoch, reject, choose, save.

Any format :func:`~razvilka.inputs.eeg.readers.read_recording` reads is accepted; all files must
share one montage. With several files the pipelines are cross-validated by file (run), so the
AUC says how a model does on a run it never saw.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from razvilka.inputs.eeg.readers import EEGError, read_recording
from razvilka.inputs.eeg.recording import Recording
from razvilka.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from razvilka.inputs.eeg.classifier import P300Model
    from razvilka.inputs.eeg.config import EegConfig


def board_hint(cfg: EegConfig, board_id: int | None = None) -> int | None:
    """The board whose layout a BrainFlow file is read with: the one given, the playback board's
    master, or the configured board; the reader falls back to the file's own shape when it does not fit."""
    if board_id is not None:
        return board_id
    if cfg.board_id in (-2, -3):
        return cfg.master_board if cfg.master_board != -100 else None
    return cfg.board_id


def read_all(cfg: EegConfig, files: Sequence[str], *, board_id: int | None = None, **options: Any) -> list[Recording]:
    """Every file read, checked to share the first file's channels and rate (naming the one that differs)."""
    if not files:
        raise EEGError(ErrorCode.BAD_CALIBRATION, "no recordings given")
    recs = [read_recording(name, board_id=board_hint(cfg, board_id), channels=tuple(cfg.channels), **options)
            for name in files]
    first = recs[0]
    for rec in recs[1:]:
        if rec.channels != first.channels or rec.sampling_rate != first.sampling_rate:
            raise EEGError(ErrorCode.BAD_CALIBRATION,
                           f"{rec.source} has {', '.join(rec.channels)} at {rec.sampling_rate} Hz but {first.source} "
                           f"has {', '.join(first.channels)} at {first.sampling_rate} Hz: the recordings of one "
                           "calibration must share one montage")
    return recs


def calibrate_recordings(cfg: EegConfig, recs: Sequence[Recording], *, reject_mad: float | None = None,
                         min_auc: float | None = None, pipelines: Sequence[str] | None = None) -> P300Model:
    """Epoch each recording with the online filter, reject artefacts, choose the pipeline, train."""
    from razvilka.inputs.eeg.classifier import PIPELINES, Montage, calibrate
    from razvilka.inputs.eeg.epochs import EpochSpec, epochs_from_recording

    k = cfg.reject_mad if reject_mad is None else reject_mad
    rec0 = recs[0]
    spec = EpochSpec(rec0.sampling_rate, cfg.low_hz, cfg.high_hz, cfg.filter_order, cfg.epoch_start_ms,
                     cfg.epoch_end_ms, 0.0 if k > 0 else cfg.reject_uv)   # adaptive: cut all, reject later
    parts = [epochs_from_recording(r, spec) for r in recs]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    kept = np.concatenate([p[2] for p in parts])
    groups = np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)])
    return calibrate(X, y, montage=Montage(rec0.device or "recording", rec0.channels, rec0.sampling_rate),
                     spec=spec, groups=groups if len(parts) > 1 else None, kept=kept, user=cfg.user,
                     llr_clip=cfg.llr_clip, reject_mad=k, min_auc=cfg.min_auc if min_auc is None else min_auc,
                     pipelines=tuple(pipelines or PIPELINES))


def calibrate_files(cfg: EegConfig, files: Sequence[str], *, board_id: int | None = None,
                    **options: Any) -> P300Model:
    """Read ``files`` (options go to :func:`read_recording`) and train the user's model from them."""
    return calibrate_recordings(cfg, read_all(cfg, files, board_id=board_id, **options))


__all__ = ["calibrate_files", "calibrate_recordings", "read_all", "board_hint"]
