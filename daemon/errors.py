"""The daemon's own error type: a request it refuses, or one it could not serve.

Named ``DaemonRefusal`` (not ``DaemonError``) because ``protocol.messages.DaemonError`` is the
``daemon.error`` message body that carries it on the bus; the service turns one into the other.
"""
from __future__ import annotations

from razvilka.protocol.errors import ErrorCode, RazvilkaError

__all__ = ["DaemonRefusal", "ErrorCode"]


class DaemonRefusal(RazvilkaError):
    """The daemon refused a request (stale fork, bad command, not ready) or failed to serve it
    (model or store error); ``code`` is what the ``daemon.error`` message says."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
