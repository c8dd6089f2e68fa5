"""JSON Schema (draft 2020-12) of protocol messages, generated from ``messages.py``.

The schema describes a message in its JSON form, the shape the web bridge forwards and
the conformance vectors use::

    {"topic": "fork.open.", "header": {...Header...}, "body": {...ForkOpen...}}

One ``oneOf`` branch per message type ties ``header.type`` to the body's definition (and
the topic to the type); a last branch admits unknown types, which receivers ignore.
``protocol/schema.json`` is the checked-in copy; ``razvilka protocol schema --check``
and the tests fail when it is stale.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from razvilka.protocol.codec import _TOPIC_RE, MAX_TOPIC
from razvilka.protocol.messages import BODY_TYPES, PROTOCOL_VERSION, Header, Message

SCHEMA_PATH = Path(__file__).with_name("schema.json")
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _branch(name: str, cls: type) -> dict[str, Any]:
    header: dict[str, Any] = {"properties": {"type": {"const": name}}}
    if getattr(cls, "NEEDS_FORK", False):
        header["required"] = ["fork_id"]
        header["properties"]["fork_id"] = {"type": "string", "minLength": 1}
    return {
        "title": name,
        "properties": {
            "topic": {"pattern": "^" + name.replace(".", r"\.") + r"\."},  # types are [a-z0-9_.]
            "header": header,
            "body": {"$ref": f"#/$defs/{cls.__name__}"},
        },
    }


def build_schema() -> dict[str, Any]:
    """The whole schema as plain data (deterministic: same definitions, same text)."""
    names = sorted(BODY_TYPES)
    _, defs = msgspec.json.schema_components(
        [Header, *(BODY_TYPES[n] for n in names)], ref_template="#/$defs/{name}"
    )
    branches = [_branch(name, BODY_TYPES[name]) for name in names]
    branches.append({
        "title": "unknown type (a receiver ignores it)",
        "properties": {
            "header": {"properties": {"type": {"not": {"enum": names}}}},
            "body": {"type": "object"},
        },
    })
    return {
        "$schema": DRAFT,
        "$id": f"urn:razvilka:protocol:{PROTOCOL_VERSION}",
        "title": f"razvilka protocol {PROTOCOL_VERSION} message (JSON form)",
        "description": (
            "One bus message as JSON: the topic frame as text, the header and body maps. "
            "Generated from protocol/messages.py by `razvilka protocol schema`; see docs/protocol.md. "
            "Receivers ignore unknown fields and unknown types."
        ),
        "type": "object",
        "required": ["topic", "header", "body"],
        "properties": {
            "topic": {"type": "string", "maxLength": MAX_TOPIC, "pattern": _TOPIC_RE.pattern},
            "header": {"$ref": "#/$defs/Header"},
            "body": {"type": "object"},
        },
        "oneOf": branches,
        "$defs": dict(sorted(defs.items())),
    }


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(render_schema(), encoding="utf-8")
    return path


def schema_is_current(path: Path = SCHEMA_PATH) -> bool:
    """True when the checked-in schema equals what the definitions generate now."""
    try:
        return path.read_text(encoding="utf-8") == render_schema()
    except FileNotFoundError:
        return False


def message_to_json(msg: Message) -> dict[str, Any]:
    """A decoded message in the schema's JSON form (defaults filled, unknown fields dropped)."""
    return {
        "topic": msg.topic,
        "header": msgspec.to_builtins(msg.header),
        "body": msgspec.to_builtins(msg.body),
    }
