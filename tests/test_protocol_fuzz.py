"""Fuzz the decoder: whatever arrives, only ProtocolError may come out."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from razvilka.protocol import vectors
from razvilka.protocol.codec import Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import BODY_TYPES, Message

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [vectors.vector_frames(v) for v in vectors.load_vectors()]
PLAIN, SIGNED = Codec("fuzz"), Codec("fuzz", key=vectors.TEST_KEY.encode())


#: The codes decoding may raise (1-99; UNKNOWN_TYPE is only raised when sending).
RECEIVE_CODES = {c for c in ErrorCode if int(c) < 100 and c is not ErrorCode.UNKNOWN_TYPE}


def decode_or_protocol_error(codec: Codec, frames: list[bytes]) -> Message | None:
    """Decode, or a ProtocolError with a receive code (as a value, not raised: the caller asserts)."""
    error: ProtocolError | None = None
    try:
        msg = codec.decode(frames)
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.code in RECEIVE_CODES and str(error)
        return None
    # whatever is accepted is a well-formed message
    assert msg.topic.endswith(".") and msg.topic.startswith(msg.header.type + ".")
    assert msg.known == (msg.header.type in BODY_TYPES)
    return msg


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames(frames: list[bytes]) -> None:
    decode_or_protocol_error(PLAIN, frames)
    decode_or_protocol_error(SIGNED, frames)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
header_maps = st.fixed_dictionaries(
    {}, optional={
        "version": st.sampled_from(["1.0", "1.3", "2.0", "1", "x"]) | msgpack_values,
        "type": st.sampled_from(sorted(BODY_TYPES) + ["x.y"]) | msgpack_values,
        "id": st.text(max_size=70) | msgpack_values,
        "sender": st.text(max_size=5) | msgpack_values,
        "session": st.text(max_size=5) | msgpack_values,
        "seq": st.integers(min_value=-5, max_value=2**64 - 1) | msgpack_values,
        "ts_ns": st.integers(min_value=-5, max_value=2**64 - 1) | msgpack_values,
        "fork_id": st.none() | st.text(max_size=4) | msgpack_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_maps, st.dictionaries(st.text(max_size=12), msgpack_values, max_size=6) | msgpack_values, st.data())
def test_structured_garbage(header: dict, body: object, data: st.DataObject) -> None:
    kind = header.get("type")
    topic = (kind + "." if isinstance(kind, str) and kind else "") + data.draw(st.sampled_from(["", "a.", "B-1."]))
    frames = [topic.encode(), msgspec.msgpack.encode(header), msgspec.msgpack.encode(body)]
    decode_or_protocol_error(PLAIN, frames)


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_valid_frames(seed: list[bytes], data: st.DataObject) -> None:
    frames = list(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(frames) - 1))
        frame = bytearray(frames[i])
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[pos] ^= data.draw(st.integers(1, 255))
        elif op == "truncate":
            del frame[pos:]
        elif op == "insert":
            frame[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif frame:
            del frame[pos]
        frames[i] = bytes(frame)
    decode_or_protocol_error(PLAIN, frames)
    decode_or_protocol_error(SIGNED, frames)


@pytest.mark.parametrize("depth", [999, 1000, 5000])
def test_deep_nesting_everywhere(depth: int) -> None:
    deep = b"\x91" * depth + b"\xc0"
    good = SEEDS[0]
    for frames in ([good[0], deep, good[2]], [good[0], good[1], deep],
                   [good[0], good[1], b"\x81\xa1z" + deep],
                   [b"x.y.", msgspec.msgpack.encode({**msgspec.msgpack.decode(good[1]), "type": "x.y"}),
                    b"\x81\xa1z" + deep]):
        decode_or_protocol_error(PLAIN, frames)
