"""Encoding and two-stage decoding of protocol frames (the role of jupyter_client's Session).

Wire format, one ZeroMQ multipart message::

    [topic, header, body]            signing off
    [topic, header, body, hmac]      signing on: HMAC-SHA256 over the exact bytes of
                                     topic, header and body, in that order

Decoding checks frame count and size, the topic, then the header (version first),
then the body by type. Every failure is a :class:`ProtocolError` with a code.

With signing on, the codec also refuses replays (as jupyter_client's Session refuses a
signature it has seen): a signed frame captured off the wire and sent again carries the same
``seq``, and a message whose ``seq`` is not above the last one received for its (sender,
session, type) is :data:`~razvilka.protocol.errors.ErrorCode.REPLAYED`. The table of last
seqs is an LRU of :data:`REPLAY_STREAMS` streams, so a flood of sessions cannot grow it.
Without a key anyone may send anything, so there is nothing to protect and nothing is tracked.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from razvilka.protocol.clock import now_ns
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    BODY_TYPES,
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    TYPE_PATTERN,
    VERSION_PATTERN,
    Body,
    Header,
    Message,
    topic_for,
)

DEFAULT_MAX_FRAME = 1 << 20
MAX_TOPIC = 256
#: (sender, session, type) streams whose last seq a signing receiver remembers (least recent dropped).
#: ~16 types per sender session: room for a few hundred sessions, about 0.5 MB at most.
REPLAY_STREAMS = 4096
_TOPIC_RE = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_\-]+)*\.$")
_FIELD_RE = re.compile(r"at `\$\.?([^`]*)`")

_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(Header)  # version/type patterns are checked in _decode_header
_TYPE_RE = re.compile(TYPE_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_good_topics: set[str] = set()  # topics already matched against _TOPIC_RE (bounded below)
_raw_decoder = msgspec.msgpack.Decoder()
_body_decoders = {name: msgspec.msgpack.Decoder(cls) for name, cls in BODY_TYPES.items()}


def validation_error(part: str, exc: msgspec.ValidationError) -> ProtocolError:
    """A msgspec validation failure as the protocol error a receiver must raise (shared with bridges)."""
    text = str(exc)
    where = _FIELD_RE.search(text)
    at = f"{part}.{where.group(1)}" if where and where.group(1) else part
    if text.startswith("Object missing required field"):
        name = text.split("`")[1]
        suffix = f".{where.group(1)}" if where and where.group(1) else ""
        return ProtocolError(ErrorCode.MISSING_FIELD, f"{part}{suffix} is missing required field {name!r}")
    if text.startswith("Expected `object`") and not (where and where.group(1)):
        return ProtocolError(ErrorCode.NOT_A_MAP, f"{part} must be a map: {text}")
    if re.match(r"Expected `\w+` (>|<|>=|<=|of length|matching)", text) or "Invalid enum value" in text:
        if at == "header.version":
            return ProtocolError(ErrorCode.BAD_VERSION, f"header.version must be 'MAJOR.MINOR': {text}")
        return ProtocolError(ErrorCode.BAD_VALUE, f"{at}: {text}")
    return ProtocolError(ErrorCode.WRONG_TYPE, f"{at}: {text}")


def _too_deep(part: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, f"{part} frame nests too deeply to decode")


def _loads_map(frame: bytes, part: str) -> dict[str, Any]:
    try:
        value = _raw_decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"{part} frame is not valid msgpack: {exc}") from None
    except RecursionError:  # msgspec raises it for hostile nesting (~thousands of levels)
        raise _too_deep(part) from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.NOT_A_MAP, f"{part} must be a map, got {type(value).__name__}")
    return value


def check_version(version: object) -> tuple[int, int]:
    # Bounded digits: int() refuses strings over 4300 digits, and no real version is that long.
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise ProtocolError(ErrorCode.BAD_VERSION, f"header.version must be 'MAJOR.MINOR', got {repr(version)[:40]}")
    major, minor = (int(x) for x in version.split("."))
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol {version} is not spoken here (this receiver speaks {PROTOCOL_MAJOR}.x)",
        )
    return major, minor


class Codec:
    """Stamps outgoing messages for one sender and decodes incoming ones.

    ``key`` turns on signing: every sent message carries an HMAC, every received one must
    carry a valid one, and one whose ``seq`` is not above the last seen of its (sender,
    session, type) is refused as a replay. ``replay_streams`` bounds that table.
    """

    def __init__(
        self,
        sender: str,
        *,
        key: bytes | None = None,
        session: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        replay_streams: int = REPLAY_STREAMS,
    ) -> None:
        self.sender = sender
        self.session = session or uuid.uuid4().hex
        self.key = key or None
        self.max_frame = max_frame
        self.replay_streams = max(1, replay_streams)
        self._last_seen: OrderedDict[tuple[str, str, str], int] = OrderedDict()  # signing only
        self._seq: dict[str, itertools.count[int]] = {}
        self._ids = itertools.count()
        self._topics: dict[Any, bytes] = {}  # (type, *subtopic) -> checked topic bytes
        self._id_prefix = os.urandom(6).hex()

    # ------------------------------------------------------------------ send
    def header(self, body_type: str, fork_id: str | None = None) -> Header:
        """A fresh header. ``seq`` counts per message type, so a subscriber to one type sees no false gaps."""
        counter = self._seq.get(body_type)
        if counter is None:
            counter = self._seq[body_type] = itertools.count()
        seq = next(counter)
        return Header(
            version=PROTOCOL_VERSION,
            type=body_type,
            id=f"{self._id_prefix}-{next(self._ids)}",
            sender=self.sender,
            session=self.session,
            seq=seq,
            ts_ns=now_ns(),
            fork_id=fork_id,
        )

    def encode(self, body: Body, *, fork_id: str | None = None, subtopic: Sequence[str] = ()) -> list[bytes]:
        """Frames for ``body``, with a fresh header (next sequence number, current time)."""
        return self.build(body, fork_id=fork_id, subtopic=subtopic)[1]

    def build(
        self, body: Body, *, fork_id: str | None = None, subtopic: Sequence[str] = ()
    ) -> tuple[Header, list[bytes]]:
        """Like :meth:`encode`, and also the header it stamped (no need to decode it back)."""
        kind = type(body).TYPE
        if kind not in BODY_TYPES:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"{type(body).__name__} is not a registered message type")
        if body.NEEDS_FORK and not fork_id:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{kind} needs header.fork_id")
        key = (kind, *subtopic) if subtopic else kind
        topic = self._topics.get(key)
        if topic is None:
            text = topic_for(kind, *subtopic)
            if not _TOPIC_RE.fullmatch(text) or len(text) > MAX_TOPIC:
                raise ProtocolError(ErrorCode.BAD_TOPIC, f"subtopic {tuple(subtopic)!r} makes topic {text!r}, which "
                                    "receivers refuse: segments are letters, digits, '_' or '-'")
            topic = self._topics[key] = text.encode()
        header = self.header(kind, fork_id)
        frames = [topic, _encoder.encode(header), _encoder.encode(body)]
        if self.key:
            frames.append(self.sign(frames))
        return header, frames

    def encode_parts(self, topic: str, header: Header | dict[str, Any], body: Body | dict[str, Any]) -> list[bytes]:
        frames = [topic.encode(), _encoder.encode(header), _encoder.encode(body)]
        if self.key:
            frames.append(self.sign(frames))
        return frames

    def sign(self, frames: Sequence[bytes]) -> bytes:
        mac = hmac.new(self.key or b"", digestmod=hashlib.sha256)
        for frame in frames[:3]:
            mac.update(frame)
        return mac.hexdigest().encode()

    # ------------------------------------------------------------------ receive
    def decode(self, frames: Sequence[bytes], *, keep_frames: bool = False, retained: bool = False) -> Message:
        """Frames -> :class:`Message`. Unknown types come back with a plain-map body.

        ``retained``: the frames come from the bus's snapshot, which re-delivers old messages by
        design (signatures intact); they are neither checked for replay nor recorded, so the
        live copies that follow are still dropped quietly by the snapshot's ``last_seq``.
        """
        n = len(frames)
        if n not in (3, 4):
            raise ProtocolError(ErrorCode.FRAME_COUNT, f"expected 3 frames (4 when signed), got {n}")
        if max(map(len, frames)) > self.max_frame:
            i, size = next((i, len(f)) for i, f in enumerate(frames) if len(f) > self.max_frame)
            raise ProtocolError(ErrorCode.OVERSIZE, f"frame {i} is {size} bytes (limit {self.max_frame})")
        raw_topic, raw_header, raw_body = bytes(frames[0]), bytes(frames[1]), bytes(frames[2])
        if self.key:
            if n != 4:
                raise ProtocolError(ErrorCode.UNSIGNED, "signing is on and the message carries no signature")
            if not hmac.compare_digest(self.sign(frames), bytes(frames[3])):
                raise ProtocolError(ErrorCode.BAD_SIGNATURE, "HMAC does not match the bytes received")
        if len(raw_topic) > MAX_TOPIC:
            raise ProtocolError(ErrorCode.OVERSIZE, f"topic is {len(raw_topic)} bytes (limit {MAX_TOPIC})")
        try:
            topic = raw_topic.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.BAD_TOPIC, "topic is not UTF-8") from None
        if topic not in _good_topics:
            if not _TOPIC_RE.fullmatch(topic):  # fullmatch: "$" alone would accept a trailing newline
                raise ProtocolError(ErrorCode.BAD_TOPIC,
                                    f"topic {topic!r} must be dotted lowercase words ending in '.'")
            if len(_good_topics) < 4096:
                _good_topics.add(topic)
        header = self._decode_header(raw_header)
        if not topic.startswith(header.type + "."):
            raise ProtocolError(ErrorCode.TOPIC_MISMATCH, f"topic {topic!r} does not start with type {header.type!r}")
        decoder = _body_decoders.get(header.type)
        body: Body | dict[str, Any]
        if decoder is None:
            body = _loads_map(raw_body, "body")
        else:
            try:
                body = decoder.decode(raw_body)
            except msgspec.ValidationError as exc:
                raise validation_error("body", exc) from None
            except msgspec.DecodeError as exc:
                raise ProtocolError(ErrorCode.MALFORMED, f"body frame is not valid msgpack: {exc}") from None
            except RecursionError:
                raise _too_deep("body") from None
            if body.NEEDS_FORK and not header.fork_id:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{header.type} needs header.fork_id")
        if self.key and not retained:
            self._check_replay(header)
        return Message(topic, header, body, list(frames) if keep_frames else None)

    def _check_replay(self, header: Header) -> None:
        """Refuse a seq at or below the last one of its stream; record it (the last check of decoding)."""
        stream = (header.sender, header.session, header.type)
        seen = self._last_seen
        last = seen.get(stream)
        if last is not None:
            if header.seq <= last:
                raise ProtocolError(
                    ErrorCode.REPLAYED,
                    f"{header.type} seq {header.seq} from {header.sender!r} (session {header.session[:16]}) is not "
                    f"after the last one received ({last}): a replayed or duplicated message",
                )
            seen.move_to_end(stream)
        elif len(seen) >= self.replay_streams:
            seen.popitem(last=False)
        seen[stream] = header.seq

    def _decode_header(self, raw: bytes) -> Header:
        try:
            header = _header_decoder.decode(raw)
        except RecursionError:
            raise _too_deep("header") from None
        except msgspec.DecodeError as exc:
            if not isinstance(exc, msgspec.ValidationError):
                raise ProtocolError(ErrorCode.MALFORMED, f"header frame is not valid msgpack: {exc}") from None
            # Slow path, only on failure: a wrong major version is reported as such
            # even when the rest of the header has another shape.
            raw_map = _loads_map(raw, "header")
            if "version" not in raw_map:
                raise ProtocolError(ErrorCode.MISSING_FIELD, "header is missing required field 'version'") from None
            check_version(raw_map["version"])
            raise validation_error("header", exc) from None
        if header.version != PROTOCOL_VERSION:
            check_version(header.version)
        if header.type not in BODY_TYPES and not _TYPE_RE.fullmatch(header.type):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"header.type {header.type!r} must match {_TYPE_RE.pattern}")
        return header
