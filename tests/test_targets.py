"""The target grammar (protocol 1.4): one parser, its refusals, and the vector file mirrors check against."""
from __future__ import annotations

import json

import pytest

from razvilka.protocol import targets, vectors
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.targets import Target, parse_target, text_script


@pytest.mark.parametrize("text", targets.SAMPLE_VALID)
def test_valid_ids_parse_and_format_back(text: str) -> None:
    t = parse_target(text)
    assert str(t) == t.id == text
    assert parse_target(t.id) == t


@pytest.mark.parametrize("text", targets.SAMPLE_INVALID)
def test_invalid_ids_are_bad_value_naming_the_id(text: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_target(text)
    assert err.value.code == ErrorCode.BAD_VALUE
    assert repr(text) in str(err.value)


def test_what_each_kind_parses_to() -> None:
    assert parse_target("cand:7") == Target("cand", "7", index=7)
    assert parse_target("word:3:2") == Target("word", "3:2", index=3, words=2)
    assert parse_target("cmd:back") == Target("cmd", "back")
    assert parse_target("key:ё").letter == "ё"
    assert parse_target("key:space").letter is None
    assert parse_target("word:0:1").candidate and parse_target("cand:0").candidate
    assert not parse_target("cmd:more").candidate and not parse_target("key:e").candidate
    assert targets.cand(2) == parse_target("cand:2") and targets.key("delete").value == "delete"
    with pytest.raises(ProtocolError):
        targets.cand(256)


def test_every_keyboard_letter_is_a_key_of_its_script() -> None:
    for script, letters in targets.ALPHABETS.items():
        assert len(set(letters)) == len(letters)
        for ch in letters:
            assert parse_target(f"key:{ch}").letter == ch and targets.char_script(ch) == script


def test_text_script_follows_the_letters_of_the_text() -> None:
    assert text_script("Она сказала: ok, да") == "cyrillic"
    assert text_script("She said: да, ok then") == "latin"
    assert text_script("12345 ...") == "latin" and text_script("", default="cyrillic") == "cyrillic"


def test_the_vector_file_is_what_the_grammar_says() -> None:
    """protocol/vectors/targets.json (what app.js and the Node example test against) is current and agrees."""
    doc = json.loads((vectors.VECTORS_DIR / vectors.TARGETS_FILE).read_text(encoding="utf-8"))
    assert doc == vectors.build_targets()
    assert [v["id"] for v in doc["valid"]] == list(targets.SAMPLE_VALID)
    assert {v["id"] for v in doc["invalid"]} == set(targets.SAMPLE_INVALID)
    for v in doc["valid"]:
        t = parse_target(v["id"])
        assert (v["kind"], v["value"], v["index"], v["words"]) == (t.kind, t.value, t.index, t.words)
    assert doc["alphabets"] == targets.ALPHABETS and doc["commands"] == list(targets.TARGET_COMMANDS)


def test_wire_pattern_admits_every_valid_id_and_only_the_shape() -> None:
    """The wire checks a target's shape only (kind:value); every valid id fits it."""
    import re

    from razvilka.protocol.messages import TARGET_PATTERN

    pattern = re.compile(TARGET_PATTERN)
    assert all(pattern.search(t) for t in targets.SAMPLE_VALID)
    assert pattern.search("gesture:wave")          # a later minor's kind: decoded, refused by the daemon
    assert not pattern.search("key: ") and not pattern.search("back")
