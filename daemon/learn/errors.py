"""The learner's own error type: a profile that cannot be read or written, training that cannot run."""
from __future__ import annotations

from razvilka.protocol.errors import ErrorCode, RazvilkaError

__all__ = ["LearnError", "ErrorCode"]


class LearnError(RazvilkaError):
    """A failure of the profile or of training (a profile from a newer razvilka, a file that is
    not a profile, a profile with no file to save to)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
