"""Error codes and the error types that carry them (as BrainFlow's one error type with codes).

Codes are part of the protocol: ``daemon.error`` messages carry them, and the
conformance vectors name them, so a client in any language can branch on them.

Every error of the project is a :class:`RazvilkaError` with a code; each part raises its own
subclass, so a caller can tell where it came from: :class:`ProtocolError` (the wire: decoding,
signing, sending), ``razvilka.daemon.errors.DaemonRefusal`` (the daemon refusing a request or
failing to serve it) and ``razvilka.daemon.learn.errors.LearnError`` (the profile and training).
"""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    # 1-99: decoding a message off the wire
    FRAME_COUNT = 1        # not [topic, header, body] (+ signature when signing)
    OVERSIZE = 2           # a frame exceeds the configured limit
    BAD_TOPIC = 3          # topic is not UTF-8 dotted text ending in "."
    MALFORMED = 4          # a frame is not valid msgpack
    NOT_A_MAP = 5          # header or body is valid msgpack but not a map
    MISSING_FIELD = 6      # a required field is absent
    WRONG_TYPE = 7         # a field has the wrong type
    BAD_VERSION = 8        # version is not "MAJOR.MINOR"
    UNSUPPORTED_VERSION = 9  # major version this receiver does not speak
    TOPIC_MISMATCH = 10    # topic does not start with the header's type
    UNSIGNED = 11          # signing is on and the message has no signature
    BAD_SIGNATURE = 12     # the HMAC does not match the bytes
    BAD_VALUE = 13         # right type, value out of range (negative seq, prob > 1, ...)
    UNKNOWN_TYPE = 14      # not an error on receive (ignored); raised only when *sending* an unregistered type
    REPLAYED = 15          # signing is on and seq is not above the last one of its (sender, session, type)
    # 100-199: the daemon refusing a request
    UNKNOWN_FORK = 100     # the message names a fork the daemon never opened
    STALE_FORK = 101       # the fork was already decided or superseded
    OUT_OF_RANGE = 102     # candidate index outside the fork
    NO_FOCUS = 103         # a confirm arrived with no fresh focus to confirm
    BAD_COMMAND = 104      # unknown command or missing argument
    NOT_READY = 105        # the model is still loading, or generation is paused
    MODEL_ERROR = 106      # llama.cpp failed; the daemon keeps serving
    STORE_ERROR = 107      # the session store could not be written
    # 200-299: adapters and renderers
    DEVICE_LOST = 200
    DEVICE_MISSING = 201
    BAD_CONFIG = 202
    BAD_LAYOUT = 203
    BAD_STREAM = 204
    BAD_CALIBRATION = 205


class RazvilkaError(Exception):
    """Base of every error of the project; ``code`` says which, ``str()`` says it in words."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{ErrorCode(code).name}: {message}")
        self.code = ErrorCode(code)
        self.detail = message


class ProtocolError(RazvilkaError):
    """A protocol failure: a frame that cannot be decoded, a bad signature, a message that cannot be sent."""
