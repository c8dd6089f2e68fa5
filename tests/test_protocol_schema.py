"""The generated JSON Schema: current, valid draft 2020-12, and agreeing with the codec."""
from __future__ import annotations

import copy
import json
import re

import jsonschema
import msgspec
import pytest
from conftest import ROOT

from razvilka.protocol import messages, schema, vectors
from razvilka.protocol.messages import BODY_TYPES

SCHEMA = json.loads(schema.SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
GOOD = [v for v in vectors.load_vectors() if v["result"] != "error"]


def test_schema_is_not_stale() -> None:
    assert schema.schema_is_current(), "regenerate with `razvilka protocol schema` (messages.py changed)"


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {b["title"] for b in SCHEMA["oneOf"]} >= set(BODY_TYPES)


@pytest.mark.parametrize("vector", GOOD, ids=[f"{v['file']}:{v['name']}" for v in GOOD])
def test_valid_vectors_validate(vector: dict) -> None:
    VALIDATOR.validate(vector["decoded"])
    VALIDATOR.validate(vector["wire"])  # unknown fields are allowed too


def _fork_open() -> dict:
    return copy.deepcopy(next(v["decoded"] for v in GOOD if v["name"] == "fork.open/full"))


@pytest.mark.parametrize("mutate", [
    lambda m: m.update(topic="fork.decided."),                         # topic/type mismatch
    lambda m: m.update(topic="fork.open"),                             # no trailing dot
    lambda m: m["header"].update(fork_id=None),                        # a fork message needs its fork
    lambda m: m["header"].update(version="2"),                         # not MAJOR.MINOR
    lambda m: m["header"].update(seq=-1),
    lambda m: m["body"].pop("candidates"),                             # required field
    lambda m: m["body"]["candidates"][0].update(prob=1.5),             # out of range
    lambda m: m["header"].update(type="input.focus", fork_id="f"),     # body no longer fits the type
    lambda m: m.pop("body"),
], ids=["mismatch", "no-dot", "no-fork", "version", "seq", "missing", "prob", "wrong-body", "no-body"])
def test_schema_rejects_what_the_codec_rejects(mutate) -> None:
    msg = _fork_open()
    VALIDATOR.validate(msg)
    mutate(msg)
    assert not VALIDATOR.is_valid(msg)


def test_spec_documents_every_type_and_field() -> None:
    """docs/protocol.md names every type, and every field of it, in the type's own section."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    nested: dict[str, list[type[msgspec.Struct]]] = {
        "fork.open": [messages.Candidate, messages.Letter], "fork.lookahead": [messages.Lookahead],
        "text.state": [messages.Span], "render.layout": [messages.Box, messages.TargetBox]}
    for name, cls in BODY_TYPES.items():
        match = re.search(rf"^#### `{re.escape(name)}`.*?(?=^#)", doc, flags=re.S | re.M)
        assert match, f"docs/protocol.md has no section for {name}"
        for struct in (cls, *nested.get(name, [])):
            for f in msgspec.structs.fields(struct):
                assert f"`{f.name}`" in match.group(0), f"{name}: field {f.name} is not documented"
    for f in msgspec.structs.fields(messages.Header):
        assert f"| `{f.name}` |" in doc, f"header field {f.name} is not documented"
    assert "## Decision rules (fusion)" in doc
