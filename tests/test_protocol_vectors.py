"""The conformance vectors: not stale, complete, and what the codec actually does."""
from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from razvilka.protocol import vectors
from razvilka.protocol.codec import Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import BODY_TYPES, PROTOCOL_VERSION
from razvilka.protocol.schema import message_to_json

VECTORS = vectors.load_vectors()
IDS = [f"{v['file']}:{v['name']}" for v in VECTORS]


def receiver(vector: dict[str, Any]) -> Codec:
    key = vector["key"]
    return Codec("receiver", key=key.encode() if key else None, max_frame=vector["max_frame"])


def primed(vector: dict[str, Any]) -> Codec:
    """A receiver that has decoded the vector's ``before`` frames (each must decode)."""
    codec = receiver(vector)
    for earlier in vector.get("before", []):
        codec.decode([bytes.fromhex(h) for h in earlier])
    return codec


def test_vectors_are_not_stale() -> None:
    stale = vectors.stale_vectors()
    assert not stale, f"regenerate with `razvilka protocol vectors`: {stale} differ from messages.py/codec.py"


def test_names_are_unique_and_files_self_describing() -> None:
    assert len(set(IDS)) == len(IDS)
    for name in vectors.FILES:
        doc = json.loads((vectors.VECTORS_DIR / name).read_text())
        assert doc["format"] == vectors.FORMAT and doc["protocol"] == PROTOCOL_VERSION
        assert doc["error_codes"]["BAD_SIGNATURE"] == 12


def test_every_type_and_every_receive_error_is_covered() -> None:
    ok = {v["decoded"]["header"]["type"] for v in VECTORS if v["result"] == "ok"}
    assert ok == set(BODY_TYPES)
    signed = {v["decoded"]["header"]["type"] for v in VECTORS if v["result"] == "ok" and v["key"]}
    assert signed == set(BODY_TYPES)
    assert any(v["result"] == "ignore" for v in VECTORS)
    raised = {v["error"]["name"] for v in VECTORS if v["result"] == "error"}
    receive_errors = {c.name for c in ErrorCode if int(c) < 100 and c is not ErrorCode.UNKNOWN_TYPE}
    assert raised == receive_errors


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_decodes_as_stated(vector: dict[str, Any]) -> None:
    frames = vectors.vector_frames(vector)
    codec = primed(vector)
    if vector["result"] == "error":
        with pytest.raises(ProtocolError) as err:
            codec.decode(frames)
        assert int(err.value.code) == vector["error"]["code"]
        assert err.value.code.name == vector["error"]["name"]
        return
    msg = codec.decode(frames)
    assert msg.known == (vector["result"] == "ok")
    assert message_to_json(msg) == vector["decoded"]
    # the wire form is exactly what a plain msgpack decoder reads from the frames
    assert vector["wire"] == {
        "topic": frames[0].decode(),
        "header": msgspec.msgpack.decode(frames[1]),
        "body": msgspec.msgpack.decode(frames[2]),
    }


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["result"] == "ok"],
                         ids=[i for i, v in zip(IDS, VECTORS) if v["result"] == "ok"])
def test_encoder_round_trip(vector: dict[str, Any]) -> None:
    """What another language's encoder must do: encode the decoded value, decode it back, equal."""
    key = vector["key"]
    decoded = vector["decoded"]
    sender = Codec("x", key=key.encode() if key else None)
    frames = sender.encode_parts(decoded["topic"], decoded["header"], decoded["body"])
    again = receiver(vector).decode(frames)
    assert message_to_json(again) == decoded
    if vector.get("canonical"):
        assert [f.hex() for f in frames] == vector["frames"]


def test_signature_is_hex_hmac_sha256_of_three_frames() -> None:
    """The documented signing rule, computed independently of the codec."""
    import hashlib
    import hmac

    v = next(v for v in VECTORS if v["name"] == "signed/fork.open")
    topic, header, body, sig = vectors.vector_frames(v)
    expected = hmac.new(vectors.TEST_KEY.encode(), topic + header + body, hashlib.sha256).hexdigest()
    assert sig == expected.encode()


def test_replay_vectors_need_their_before_frames() -> None:
    """Without ``before`` the replayed frames decode: the refusal comes from what the receiver saw."""
    replays = [v for v in VECTORS if v["result"] == "error" and v["error"]["name"] == "REPLAYED"]
    assert {v["name"] for v in replays} >= {"replay/same-frames", "replay/older-seq"}
    for v in replays:
        assert v["before"] and v["key"] == vectors.TEST_KEY
        assert receiver(v).decode(vectors.vector_frames(v)).known
    same = next(v for v in replays if v["name"] == "replay/same-frames")
    assert same["before"] == [same["frames"]]


def test_kind_vectors() -> None:
    """1.3 kind: set, defaulted for a 1.2 sender, and kept when unknown (a later minor's)."""
    by_name = {v["name"]: v for v in VECTORS}
    assert by_name["older-minor-focus"]["decoded"]["body"]["kind"] == ""
    assert "kind" not in by_name["older-minor-focus"]["wire"]["body"]
    assert by_name["kind-pointer"]["decoded"]["body"]["kind"] == "pointer"
    assert by_name["kind-unknown"]["decoded"]["body"]["kind"] == "voice"
    assert by_name["input.focus/full"]["decoded"]["body"]["kind"] == "gaze"


def test_target_vectors() -> None:
    """1.4 targets: each message that names them, the one-of rule of index and target, older minors."""
    by_name = {v["name"]: v for v in VECTORS}
    select = by_name["targets/select"]["decoded"]["body"]
    assert (select["index"], select["target"]) == (None, "key:accept")
    assert "index" not in by_name["targets/select"]["wire"]["body"]
    focus = by_name["targets/focus"]["decoded"]["body"]
    assert (focus["index"], focus["target"], focus["group"]) == (None, "key:e", ["key:e", "key:t", "key:a"])
    assert by_name["targets/confirm"]["decoded"]["body"]["target"] == "cmd:back"
    assert by_name["targets/stimulus"]["decoded"]["body"]["targets"] == ["cmd:back", "key:о", "key:delete"]
    layout = by_name["targets/layout"]["decoded"]["body"]
    assert [t["target"] for t in layout["targets"]] == ["cmd:back", "key:space", "word:0:2"]
    assert layout["targets"][2]["row"] == 0 and layout["targets"][0]["label"] == "Back"
    opened = by_name["targets/fork-open-letters"]["decoded"]["body"]
    assert opened["script"] == "cyrillic" and opened["letters"][0] == {"ch": "и", "prob": 0.5}
    assert by_name["targets/script-unknown"]["decoded"]["body"]["script"] == "greek"
    assert by_name["targets/decided"]["decoded"]["body"]["target"] == "key:accept"
    # a 1.3 sender's messages: the new fields take their defaults
    old_layout = by_name["older-minor-layout"]["decoded"]["body"]
    assert old_layout["targets"] == [] and (old_layout["boxes"][0]["row"], old_layout["boxes"][0]["col"]) == (0, 0)
    assert by_name["older-minor-select"]["decoded"]["body"]["target"] is None
    old_open = by_name["older-minor-fork-open"]["decoded"]["body"]
    assert (old_open["letters"], old_open["script"]) == ([], "latin")
    # exactly one of index and target: the refusals say which
    assert by_name["targets/select-neither"]["error"]["name"] == "MISSING_FIELD"
    assert "neither index nor target" in by_name["targets/select-neither"]["message"]
    assert by_name["targets/select-both"]["error"]["name"] == "BAD_VALUE"
    assert "both index 1 and target 'cand:1'" in by_name["targets/select-both"]["message"]
