"""Conformance vectors: exact frames (hex) and what a receiver must make of them.

A decoder in any language checks itself against ``protocol/vectors/*.json``; the format
is specified in docs/protocol.md ("Conformance vectors"). Everything here is deterministic
(fixed ids, sessions, timestamps), so ``razvilka protocol vectors --check`` and the tests
can tell when the checked-in files are stale.

Files:

* ``valid.json``   - every message type, full and minimal, plus the compatibility cases
                     (unknown fields, unknown type, newer minor version, subtopics);
* ``invalid.json`` - one fault per vector, each with the error code a receiver must raise;
* ``signed.json``  - HMAC-signed messages under :data:`TEST_KEY`, the forged/unsigned ones, and
                     replays (a vector's ``before`` frames are decoded first, by the same receiver);
* ``targets.json`` - target ids (protocol 1.4, 1.5) with what :func:`~razvilka.protocol.targets.parse_target`
                     makes of them, and the ones it refuses: a mirror of the grammar (the browser
                     view, the Node example) checks itself against them. Not frames: its own format.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from razvilka.protocol import targets
from razvilka.protocol.codec import DEFAULT_MAX_FRAME, MAX_TOPIC, Codec
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    BODY_TYPES,
    PROTOCOL_VERSION,
    Body,
    Box,
    Candidate,
    Command,
    ConfigState,
    ConfigUpdate,
    Confirm,
    DaemonError,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Header,
    Heartbeat,
    Layout,
    Letter,
    Lookahead,
    Phrase,
    PhrasesState,
    Select,
    SourceStatus,
    Span,
    Stimulus,
    TargetBox,
    TextAuto,
    TextState,
    TextUndo,
    topic_for,
)
from razvilka.protocol.schema import message_to_json

VECTORS_DIR = Path(__file__).with_name("vectors")
FORMAT = 2  # 2: vectors may carry ``before`` (frames the same receiver decodes first: replays)
#: The documented HMAC key of the signed vectors (its UTF-8 bytes are the key). Never use it on a real bus.
TEST_KEY = "razvilka-conformance-test-key"
OTHER_KEY = "not-the-bus-key"
SENDER = "vectors"
SESSION = "5e55105e55105e55105e55105e551050"
BASE_TS = 123_456_789_000_000  # ~34 h of uptime, in ns: below 2**53, exact in JavaScript numbers
FORK = "f-0001"


def other_session(n: int) -> str:
    """A session of the same sender other than :data:`SESSION` (each replay vector has its own)."""
    return f"{SESSION[:-4]}{n:04d}"

TOO_DEEP = 2000  # nesting levels; receivers must refuse (MALFORMED) anything deeper than 1000

_pack = msgspec.msgpack.encode


def sample_bodies() -> dict[str, Body]:
    """One realistic body per message type, every field set."""
    return {
        "fork.open": ForkOpen(
            candidates=[
                Candidate(index=0, word="river", prob=0.375, lookahead=["river ran dry", "river bank"]),
                Candidate(index=1, word="road", prob=0.25),
                Candidate(index=2, word="forest", prob=0.125, lookahead=[]),
                Candidate(index=3, word="atre", prob=0.0625, joins=True),  # "the" + "atre": "theatre"
            ],
            context="She walked down to the", position=5, prefix="", reason="uncertain",
            entropy=1.75, margin=0.125, page=0, pregenerated=True, compute_ms=24.5,
            letters=[Letter(ch="r", prob=0.5), Letter(ch="f", prob=0.25), Letter(ch=" ", prob=0.125)],
            script="latin", unseen=0.0625,
        ),
        "fork.lookahead": ForkLookahead(
            entries=[Lookahead(index=1, phrases=["road home", "road to town"]),
                     Lookahead(index=0, phrases=["river ran dry and then the rain came"], long=True)],
            done=True, compute_ms=560.25,
        ),
        "fork.decided": ForkDecided(
            index=1, words=["road"], sources=["gaze", "footswitch"], rule="focus+confirm",
            latency_ms=1830.5, decision_id="d-0001", phrase=False, typed=False, target="cand:1",
        ),
        "text.auto": TextAuto(text=" and then", words=["and", "then"], position=7),
        "text.undo": TextUndo(removed=" road and then", position=5, decisions_undone=1),
        "text.state": TextState(
            text="She walked down to the road",
            spans=[Span(start=0, end=22, origin="prompt"), Span(start=22, end=27, origin="human")],
            document="doc-1", position=6, partner="Where are you going?",
        ),
        "phrases.state": PhrasesState(phrases=[
            Phrase(id="yes", text="Yes.", kind="quick"), Phrase(id="thank-you", text="Thank you!", kind="quick"),
            Phrase(id="f-3a9c01d2e4", text="Could you open the window?", kind="frequent"),
        ]),
        "config.update": ConfigUpdate(section="inputs.gaze", key="dwell_ms", value=800, source="web"),
        "config.state": ConfigState(
            values={"gating.k": 6, "inputs.gaze.dwell_ms": 800, "inputs.gaze.rest_ms": 2500.5,
                    "renderers.web.theme": "light", "speech.each_sentence": False},
            error="", changed="inputs.gaze.dwell_ms",
        ),
        "daemon.status": DaemonStatus(
            state="waiting", model="gemma-3-270m-q4_k_m", mode="auto", k=8, progress=None,
            last_fork_ms=24.5, sources={"gaze": "ok", "eeg": "lost"}, detail="",
        ),
        "daemon.error": DaemonError(
            code=int(ErrorCode.STALE_FORK), name=ErrorCode.STALE_FORK.name,
            message="fork f-0000 was already decided", ref_id="a1b2c3-7",
        ),
        "input.focus": Focus(index=2, source="gaze", confidence=0.875, dwell=0.5, x=812.5, y=440.0, kind="gaze",
                             group=["cand:2", "cand:3"]),
        "input.confirm": Confirm(source="footswitch", confidence=1.0, index=2, posterior=None, kind="switch"),
        "input.select": Select(index=3, source="eeg", confidence=0.75, phrase=True,
                               posterior=[0.125, 0.0625, 0.0625, 0.75], kind="eeg"),
        "input.command": Command(command="type", source="keyboard", text="lake", bias=0.0),
        "render.layout": Layout(
            boxes=[Box(index=0, x=100.0, y=400.0, w=180.0, h=64.0, row=0, col=0),
                   Box(index=1, x=300.0, y=400.0, w=180.0, h=64.0, row=0, col=1)],
            screen_w=1920.0, screen_h=1080.0, renderer="web",
            targets=[TargetBox(target="cmd:back", x=20.0, y=20.0, w=120.0, h=56.0, row=1, col=0, label="Back"),
                     TargetBox(target="key:e", x=100.0, y=600.0, w=96.0, h=96.0, row=2, col=0, label="e")],
        ),
        "render.stimulus": Stimulus(indices=[0, 3], onset_ns=BASE_TS + 5_000_000, duration_ms=100.0,
                                    flash=17, renderer="web", targets=["cmd:more", "key:t"]),
        "heartbeat": Heartbeat(role="input", interval_ms=1000, state="ok"),
        "source.status": SourceStatus(source="gaze", state="lost", detail="no samples for 2.0 s"),
    }


def minimal_bodies() -> dict[str, dict[str, Any]]:
    """Only the required fields: the decoder must fill in every default."""
    return {
        "fork.open": {"candidates": [{"index": 0, "word": "the", "prob": 0.5}]},
        "fork.lookahead": {"entries": [{"index": 0, "phrases": ["the end"]}]},
        "fork.decided": {"index": None, "words": ["lake"], "sources": ["keyboard"]},
        "text.auto": {"text": " it", "words": ["it"]},
        "text.undo": {"removed": " it"},
        "text.state": {"text": ""},
        "phrases.state": {},
        "config.update": {"section": "gating", "key": "k", "value": 6, "source": "web"},
        "config.state": {},
        "daemon.status": {"state": "loading"},
        "daemon.error": {"code": 105, "name": "NOT_READY", "message": "model loading"},
        "input.focus": {"index": None, "source": "mouse"},
        "input.confirm": {"source": "keyboard"},
        "input.select": {"index": 0, "source": "keyboard"},
        "input.command": {"command": "back", "source": "keyboard"},
        "render.layout": {"boxes": [], "screen_w": 800, "screen_h": 600, "renderer": "tui"},
        "render.stimulus": {"indices": [1], "onset_ns": 0},
        "heartbeat": {"role": "bus", "interval_ms": 1000},
        "source.status": {"source": "eeg", "state": "ok"},
    }


def make_header(kind: str, seq: int = 0, *, fork_id: str | None = None, **over: Any) -> dict[str, Any]:
    """A header map in field order; ``over`` replaces or adds fields (for the invalid vectors)."""
    needs_fork = getattr(BODY_TYPES.get(kind), "NEEDS_FORK", False)
    h: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "type": kind,
        "id": f"vec-{kind}-{seq}",
        "sender": SENDER,
        "session": SESSION,
        "seq": seq,
        "ts_ns": BASE_TS + 1_000_000 * seq,
        "fork_id": fork_id if fork_id is not None else (FORK if needs_fork else None),
    }
    h.update(over)
    return h


def _hex(frames: Sequence[bytes]) -> list[str]:
    return [bytes(f).hex() for f in frames]


def _sign(frames: Sequence[bytes], key: str) -> bytes:
    mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
    for frame in frames[:3]:
        mac.update(frame)
    return mac.hexdigest().encode()


class _Builder:
    """Collects vectors, running each through the real codec so a file never lies."""

    def __init__(self) -> None:
        self.vectors: list[dict[str, Any]] = []

    def frames(self, topic: str, header: dict[str, Any] | Header, body: Any, *, key: str | None = None) -> list[bytes]:
        codec = Codec(SENDER, key=key.encode() if key else None, session=SESSION)
        return codec.encode_parts(topic, header, body)

    @staticmethod
    def receiver(key: str | None, max_frame: int, before: Sequence[Sequence[bytes]]) -> Codec:
        """A fresh receiver that has decoded ``before`` (each must decode: they set up a replay)."""
        codec = Codec("receiver", key=key.encode() if key else None, max_frame=max_frame)
        for earlier in before:
            codec.decode(earlier)
        return codec

    def ok(self, name: str, description: str, frames: list[bytes], *, key: str | None = None,
           max_frame: int = DEFAULT_MAX_FRAME, before: Sequence[Sequence[bytes]] = ()) -> None:
        codec = self.receiver(key, max_frame, before)
        msg = codec.decode(frames)  # raises if the vector is wrong: the generator refuses to lie
        wire = {
            "topic": bytes(frames[0]).decode(),
            "header": msgspec.msgpack.decode(frames[1]),
            "body": msgspec.msgpack.decode(frames[2]),
        }
        vector: dict[str, Any] = {
            "name": name,
            "description": description,
            "key": key,
            "max_frame": max_frame,
            **({"before": [_hex(f) for f in before]} if before else {}),
            "frames": _hex(frames),
            "result": "ok" if msg.known else "ignore",
            "wire": wire,
            "decoded": message_to_json(msg),
        }
        if msg.known:
            again = Codec(SENDER, key=key.encode() if key else None).encode_parts(msg.topic, msg.header, msg.body)
            vector["canonical"] = again == [bytes(f) for f in frames]
        self.vectors.append(vector)

    def error(self, name: str, description: str, frames: Sequence[bytes], code: ErrorCode, *,
              key: str | None = None, max_frame: int = DEFAULT_MAX_FRAME,
              before: Sequence[Sequence[bytes]] = ()) -> None:
        codec = self.receiver(key, max_frame, before)
        try:
            codec.decode(frames)
        except ProtocolError as exc:
            if exc.code != code:
                raise AssertionError(f"vector {name}: codec says {exc.code.name}, vector says {code.name}") from None
            message = exc.detail
        else:
            raise AssertionError(f"vector {name}: codec accepted it, vector says {code.name}")
        self.vectors.append({
            "name": name,
            "description": description,
            "key": key,
            "max_frame": max_frame,
            **({"before": [_hex(f) for f in before]} if before else {}),
            "frames": _hex(frames),
            "result": "error",
            "error": {"code": int(code), "name": code.name},
            "message": message,
        })


def build_valid() -> list[dict[str, Any]]:
    b = _Builder()
    for kind, body in sample_bodies().items():
        header = Header(**make_header(kind, seq=1))
        b.ok(f"{kind}/full", f"a {kind} message with every field set", b.frames(topic_for(kind), header, body))
    for kind, raw in minimal_bodies().items():
        b.ok(f"{kind}/minimal", f"a {kind} message with only its required fields: the decoder fills the defaults",
             b.frames(topic_for(kind), make_header(kind, seq=2), raw))
    b.ok("subtopic", "a topic refined by extra segments (type + '.' + 'gaze.'); subscribers to 'input.focus.' get it",
         b.frames("input.focus.gaze.", make_header("input.focus", 3),
                  {"index": 1, "source": "gaze", "x": 10.5, "y": 20.25}))
    b.ok("unknown-fields",
         "unknown fields in header, body and a nested struct are ignored (a later minor version may add them)",
         b.frames("fork.open.", make_header("fork.open", 4, priority=7, trace={"hop": 1}),
                  {"candidates": [{"index": 0, "word": "yes", "prob": 0.5, "color": "red"}],
                   "temperature": 0.75, "context": "Say"}))
    b.ok("minor-version", "a newer minor version (1.7) of the same major is accepted: minors only add",
         b.frames("heartbeat.", make_header("heartbeat", 5, version="1.7"), {"role": "tool", "interval_ms": 500}))
    b.ok("older-minor",
         "a 1.0 sender's select, without the 1.1 field phrase_words: accepted, the default (0) filled in",
         b.frames("input.select.", make_header("input.select", 8, version="1.0", fork_id="f-1"),
                  {"index": 2, "source": "keyboard", "confidence": 1.0, "phrase": True, "posterior": None}))
    b.ok("older-minor-candidate", "a 1.1 sender's fork.open, candidates without the 1.2 field joins: accepted, "
         "the default (false) filled in",
         b.frames("fork.open.", make_header("fork.open", 10, version="1.1", fork_id="f-2"),
                  {"candidates": [{"index": 0, "word": "yes", "prob": 0.5, "lookahead": []}], "context": "Say"}))
    b.ok("older-minor-focus", "a 1.2 sender's focus, without the 1.3 field kind: accepted, the default ('' = not "
         "said) filled in; the daemon then guesses the kind from the source's name",
         b.frames("input.focus.", make_header("input.focus", 11, version="1.2", fork_id="f-3"),
                  {"index": 1, "source": "gaze", "confidence": 0.5, "dwell": None, "x": None, "y": None}))
    b.ok("kind-pointer", "a 1.3 focus from a page's mouse: kind 'pointer' (it outranks gaze in the daemon)",
         b.frames("input.focus.web.", make_header("input.focus", 12, fork_id="f-3"),
                  {"index": 0, "source": "web", "kind": "pointer"}))
    b.ok("kind-unknown", "a kind this receiver does not know (a later minor's 'voice'): accepted and kept as sent; "
         "a receiver treats it as 'other' (a minor only adds, so it is not refused)",
         b.frames("input.confirm.", make_header("input.confirm", 13, version="1.5", fork_id="f-3"),
                  {"source": "mic", "kind": "voice"}))
    _targets_valid(b)
    _v15_valid(b)
    again = b.frames("input.select.", make_header("input.select", 14, fork_id="f-3"), {"index": 1, "source": "k"})
    b.ok("repeat-unsigned", "the same frames twice to a receiver that does not sign: accepted again (without a key "
         "anyone may send anything, so nothing is tracked; replays are refused only with signing on)",
         again, before=[again])
    b.ok("unknown-type", "a type this receiver does not know: valid, ignored (not delivered, not an error)",
         b.frames("gaze.calibration.", make_header("gaze.calibration", 0), {"points": [[0.1, 0.2]], "ok": True}))
    b.ok("unknown-type-unknown-major-field", "an unknown type with a body of any shape of map is still ignored",
         b.frames("future.thing.sub.", make_header("future.thing", 9), {}))
    signed = b.frames("heartbeat.", make_header("heartbeat", 6), {"role": "tool", "interval_ms": 1000}, key=TEST_KEY)
    b.ok("signed-to-unsigned-receiver", "a receiver with signing off accepts a 4th (signature) frame and ignores it",
         signed)
    b.ok("null-fork-id", "fork_id may be null (or absent) for types that do not refer to a fork",
         b.frames("text.auto.", make_header("text.auto", 7), {"text": " so", "words": ["so"]}))
    b.ok("max-ints", "the largest seq and ts_ns (uint64) decode exactly; JavaScript needs BigInt for them",
         b.frames("heartbeat.", make_header("heartbeat", 2**64 - 1, ts_ns=2**64 - 1),
                  {"role": "tool", "interval_ms": 1}))
    return b.vectors


def _targets_valid(b: _Builder) -> None:
    """1.4: every message that names targets, and 1.3 messages without the new fields."""
    fork = "f-4"
    b.ok("targets/layout", "1.4: a layout with command and key targets beside the candidate boxes, each with its "
         "scan row and col (a 1.3 adapter reads the boxes and ignores the targets)",
         b.frames("render.layout.", make_header("render.layout", 20, fork_id=fork),
                  {"boxes": [{"index": 0, "x": 10.0, "y": 10.0, "w": 100.0, "h": 40.0, "row": 0, "col": 0}],
                   "targets": [{"target": "cmd:back", "x": 10.0, "y": 60.0, "w": 80.0, "h": 40.0, "row": 1,
                                "label": "Back"},
                               {"target": "key:space", "x": 100.0, "y": 60.0, "w": 200.0, "h": 40.0, "row": 1,
                                "col": 1},
                               {"target": "word:0:2", "x": 120.0, "y": 10.0, "w": 60.0, "h": 40.0}],
                   "screen_w": 1280.0, "screen_h": 720.0, "renderer": "web"}))
    b.ok("targets/focus", "1.4: a scan step's focus on a key (index null: a 1.3 daemon sees focus on nothing) with "
         "its row highlighted as a group",
         b.frames("input.focus.", make_header("input.focus", 21, fork_id=fork),
                  {"index": None, "target": "key:e", "group": ["key:e", "key:t", "key:a"], "source": "switch",
                   "kind": "switch"}))
    b.ok("targets/focus-group", "1.4: a row highlighted by a scanner, no single target yet: a focus on nothing "
         "that can be confirmed",
         b.frames("input.focus.", make_header("input.focus", 22, fork_id=fork),
                  {"index": None, "group": ["cmd:back", "cmd:more", "cmd:pause"], "source": "switch"}))
    b.ok("targets/confirm", "1.4: a dwell confirm naming its target, a command",
         b.frames("input.confirm.", make_header("input.confirm", 23, fork_id=fork),
                  {"source": "gaze", "kind": "gaze", "target": "cmd:back"}))
    b.ok("targets/confirm-p300", "1.4: a P300 confirm naming a key target with its confidence",
         b.frames("input.confirm.", make_header("input.confirm", 24, fork_id=fork),
                  {"source": "eeg", "kind": "eeg", "target": "key:t", "confidence": 0.875}))
    b.ok("targets/select", "1.4: a select naming a target and no index (index is optional from 1.4; a 1.3 daemon "
         "refuses it: safe, never a wrong word)",
         b.frames("input.select.", make_header("input.select", 25, fork_id=fork),
                  {"target": "key:accept", "source": "switch", "kind": "switch"}))
    b.ok("targets/select-null-index", "1.4: the same with index sent as null (what an encoder that writes every "
         "field sends)",
         b.frames("input.select.", make_header("input.select", 26, fork_id=fork),
                  {"index": None, "target": "word:2:3", "source": "web", "kind": "pointer"}))
    b.ok("targets/select-unknown-kind", "1.4: the wire checks only a target's shape (kind:value): a later minor's "
         "kind decodes, and the daemon refuses what it cannot do (protocol/targets.py is the grammar)",
         b.frames("input.select.", make_header("input.select", 27, version="1.5", fork_id=fork),
                  {"target": "gesture:wave", "source": "cam"}))
    b.ok("targets/stimulus", "1.4: a flash of commands and keys together with a candidate",
         b.frames("render.stimulus.", make_header("render.stimulus", 28, fork_id=fork),
                  {"indices": [1], "targets": ["cmd:back", "key:о", "key:delete"], "onset_ns": BASE_TS,
                   "renderer": "web"}))
    b.ok("targets/fork-open-letters", "1.4: a fork under the typed prefix 'пр' with the next letters' probabilities "
         "(' ' = the word ends) and the Cyrillic keyboard",
         b.frames("fork.open.", make_header("fork.open", 29, fork_id=fork),
                  {"candidates": [{"index": 0, "word": "привет", "prob": 0.5},
                                  {"index": 1, "word": "про", "prob": 0.25}],
                   "prefix": "пр", "letters": [{"ch": "и", "prob": 0.5}, {"ch": "о", "prob": 0.375},
                                               {"ch": " ", "prob": 0.0625}],
                   "script": "cyrillic"}))
    b.ok("targets/script-unknown", "1.4: a script this receiver does not know (a later minor's): accepted and kept "
         "as sent; a renderer shows its Latin keyboard",
         b.frames("fork.open.", make_header("fork.open", 30, version="1.5", fork_id=fork),
                  {"candidates": [{"index": 0, "word": "καλά", "prob": 0.5}], "script": "greek"}))
    b.ok("targets/decided", "1.4: a fork decided by accept-word, naming the target",
         b.frames("fork.decided.", make_header("fork.decided", 31, fork_id=fork),
                  {"index": 0, "words": ["привет"], "sources": ["gaze"], "rule": "dwell", "target": "key:accept"}))
    b.ok("older-minor-layout", "a 1.3 sender's layout, boxes without row/col and no targets: accepted, the "
         "defaults (0, 0, []) filled in",
         b.frames("render.layout.", make_header("render.layout", 32, version="1.3", fork_id=fork),
                  {"boxes": [{"index": 0, "x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0}], "screen_w": 800.0,
                   "screen_h": 600.0, "renderer": "tui"}))
    b.ok("older-minor-select", "a 1.3 sender's select by index, without target: accepted as before",
         b.frames("input.select.", make_header("input.select", 33, version="1.3", fork_id=fork),
                  {"index": 1, "source": "keyboard", "kind": "key"}))
    b.ok("older-minor-fork-open", "a 1.3 daemon's fork.open, without letters or script: accepted, the defaults "
         "([], 'latin') filled in",
         b.frames("fork.open.", make_header("fork.open", 34, version="1.3", fork_id=fork),
                  {"candidates": [{"index": 0, "word": "yes", "prob": 0.5}], "prefix": "y"}))


def _v15_valid(b: _Builder) -> None:
    """1.5: the new commands, targets and settings, and a 1.4 text.state without ``partner``."""
    fork = "f-5"
    for n, command in enumerate(("speak", "repeat", "stop_speaking", "copy", "typeout")):
        b.ok(f"v15/command-{command}", f"1.5: input.command {command} (text out; no fork needed, the fork stays open)",
             b.frames("input.command.", make_header("input.command", 40 + n), {"command": command, "source": "web"}))
    b.ok("v15/command-speak-all", "1.5: speak with text 'all': the whole text ('sentence' or '' = the last "
         "sentence; any other text is said as it is)",
         b.frames("input.command.", make_header("input.command", 45),
                  {"command": "speak", "source": "keyboard", "text": "all"}))
    b.ok("v15/command-phrase", "1.5: a quick phrase by its id, as a command",
         b.frames("input.command.", make_header("input.command", 46),
                  {"command": "phrase", "source": "web", "text": "thank-you"}))
    b.ok("v15/command-partner", "1.5: the conversation partner's turn (from the partner page)",
         b.frames("input.command.partner.", make_header("input.command", 47),
                  {"command": "partner", "source": "web-partner", "text": "Чай или кофе?"}))
    b.ok("v15/select-phrase", "1.5: a dwell on a quick phrase's target",
         b.frames("input.confirm.", make_header("input.confirm", 48, fork_id=fork),
                  {"source": "gaze", "kind": "gaze", "target": "phrase:yes"}))
    b.ok("v15/select-speak", "1.5: a select of the speak command's target",
         b.frames("input.select.", make_header("input.select", 49, fork_id=fork),
                  {"target": "cmd:speak", "source": "switch", "kind": "switch"}))
    for n, value in enumerate((True, 1.5, "light")):
        b.ok(f"v15/config-update-{type(value).__name__}", f"1.5: config.update with a {type(value).__name__} value",
             b.frames("config.update.", make_header("config.update", 50 + n),
                      {"section": "speech" if n == 0 else "renderers.web" if n == 2 else "inputs.gaze",
                       "key": "each_sentence" if n == 0 else "theme" if n == 2 else "rest_ms",
                       "value": value, "source": "web"}))
    b.ok("v15/config-state-error", "1.5: the answer to a refused update: the values unchanged and the error",
         b.frames("config.state.", make_header("config.state", 53),
                  {"values": {"gating.k": 8}, "error": "gating.k: expected an integer >= 1, got 0"}))
    b.ok("v15/phrase-kind-unknown", "1.5: a phrase kind this receiver does not know (a later minor's): accepted "
         "and kept; a renderer shows it as a quick phrase",
         b.frames("phrases.state.", make_header("phrases.state", 54, version="1.6"),
                  {"phrases": [{"id": "hi", "text": "Hi!", "kind": "recent"}]}))
    b.ok("v15/fork-open-unseen", "1.5: a fork from top-N rows (a server's backend) stating the mass they did not "
         "show; under the typed prefix 'sh' the candidates' probs are their share of all the mass the model gives "
         "'sh' (0.75 together: the letters, for a word not shown, share the rest)",
         b.frames("fork.open.", make_header("fork.open", 56, fork_id=fork),
                  {"candidates": [{"index": 0, "word": "shop", "prob": 0.5},
                                  {"index": 1, "word": "show", "prob": 0.25}],
                   "prefix": "sh", "letters": [{"ch": "e", "prob": 0.5}, {"ch": "i", "prob": 0.25}],
                   "unseen": 0.125}))
    b.ok("older-minor-fork-open-unseen", "a 1.4 daemon's fork.open, without unseen: accepted, the default (0.0) "
         "filled in",
         b.frames("fork.open.", make_header("fork.open", 57, version="1.4", fork_id=fork),
                  {"candidates": [{"index": 0, "word": "yes", "prob": 0.5}], "prefix": "y",
                   "letters": [{"ch": "e", "prob": 0.5}]}))
    b.ok("older-minor-text-state", "a 1.4 daemon's text.state, without partner: accepted, the default ('') "
         "filled in",
         b.frames("text.state.", make_header("text.state", 55, version="1.4"),
                  {"text": "Hello", "spans": [], "document": "d", "position": 1}))


def build_invalid() -> list[dict[str, Any]]:
    b = _Builder()
    E = ErrorCode
    hb_h, hb_b = make_header("heartbeat", 1), {"role": "tool", "interval_ms": 1000}
    fo_h = make_header("fork.open", 1)
    fo_b = {"candidates": [{"index": 0, "word": "the", "prob": 0.5}]}
    good = b.frames("heartbeat.", hb_h, hb_b)

    # frame count
    b.error("frames/one", "a single frame", good[:1], E.FRAME_COUNT)
    b.error("frames/two", "topic and header, no body", good[:2], E.FRAME_COUNT)
    b.error("frames/five", "five frames", [*good, b"", b""], E.FRAME_COUNT)
    b.error("frames/zero-length-all", "three empty frames: the topic check fails first", [b"", b"", b""], E.BAD_TOPIC)
    # size
    b.error("oversize/body", "a 353-byte body over the receiver's limit (max_frame=200 here; 1 MiB by default)",
            b.frames("fork.open.", fo_h, {**fo_b, "context": "x" * 300}), E.OVERSIZE, max_frame=200)
    b.error("oversize/header", "a 183-byte header over the limit (max_frame=160)",
            b.frames("heartbeat.", make_header("heartbeat", 1, id="i" * 64), hb_b), E.OVERSIZE, max_frame=160)
    b.error("oversize/topic", f"a topic over {MAX_TOPIC} bytes", [b"heartbeat." + b"a." * 130, good[1], good[2]],
            E.OVERSIZE)
    # topic
    b.error("topic/no-trailing-dot", "topic 'heartbeat' does not end in '.'", [b"heartbeat", good[1], good[2]],
            E.BAD_TOPIC)
    b.error("topic/uppercase-first", "the first topic segment must be lowercase", [b"Heartbeat.", good[1], good[2]],
            E.BAD_TOPIC)
    b.error("topic/empty-segment", "'heartbeat..' has an empty segment", [b"heartbeat..", good[1], good[2]],
            E.BAD_TOPIC)
    b.error("topic/not-utf8", "the topic bytes are not UTF-8", [b"heartbeat.\xff.", good[1], good[2]], E.BAD_TOPIC)
    b.error("topic/trailing-newline",
            "'heartbeat.\\n': the whole topic must match (a regex '$' alone allows a final newline)",
            [b"heartbeat.\n", good[1], good[2]], E.BAD_TOPIC)
    b.error("topic/space", "spaces are not allowed in a topic", [b"heartbeat. x.", good[1], good[2]], E.BAD_TOPIC)
    # malformed msgpack
    b.error("malformed/header-reserved-byte", "0xc1 is never valid msgpack", [good[0], b"\xc1", good[2]], E.MALFORMED)
    b.error("malformed/header-truncated", "the header map is cut short", [good[0], good[1][:-3], good[2]], E.MALFORMED)
    b.error("malformed/header-trailing", "extra bytes after the header map", [good[0], good[1] + b"\x00", good[2]],
            E.MALFORMED)
    b.error("malformed/header-empty", "an empty header frame", [good[0], b"", good[2]], E.MALFORMED)
    b.error("malformed/body-truncated", "the body map is cut short", [good[0], good[1], good[2][:-1]], E.MALFORMED)
    b.error("malformed/body-unknown-type", "even an unknown type's body must be msgpack",
            b.frames("future.thing.", make_header("future.thing", 1), {})[:2] + [b"\xc1"], E.MALFORMED)
    b.error("malformed/too-deep", f"arrays nested {TOO_DEEP} deep in an unknown field (limit: 1000 levels)",
            [good[0], good[1], b"\x81\xa2zz" + b"\x91" * TOO_DEEP + b"\x00"], E.MALFORMED)
    # not a map
    b.error("not-a-map/header-array", "the header is an array", [good[0], _pack(list(hb_h.values())), good[2]],
            E.NOT_A_MAP)
    b.error("not-a-map/body-string", "the body is a string", [good[0], good[1], _pack("ok")], E.NOT_A_MAP)
    b.error("not-a-map/unknown-type-body", "an unknown type's body must still be a map",
            b.frames("future.thing.", make_header("future.thing", 1), [1, 2]), E.NOT_A_MAP)
    # missing fields
    h = dict(hb_h)
    del h["version"]
    b.error("missing/header-version", "the header has no version", b.frames("heartbeat.", h, hb_b), E.MISSING_FIELD)
    h = dict(hb_h)
    del h["seq"]
    b.error("missing/header-seq", "the header has no seq", b.frames("heartbeat.", h, hb_b), E.MISSING_FIELD)
    b.error("missing/body-field", "fork.open without candidates", b.frames("fork.open.", fo_h, {"context": "x"}),
            E.MISSING_FIELD)
    b.error("missing/nested-field", "a candidate without its word",
            b.frames("fork.open.", fo_h, {"candidates": [{"index": 0, "prob": 0.5}]}), E.MISSING_FIELD)
    b.error("missing/fork-id", "input.focus needs header.fork_id (null here)",
            b.frames("input.focus.", {**make_header("input.focus", 1), "fork_id": None},
                     {"index": 0, "source": "gaze"}), E.MISSING_FIELD)
    b.error("missing/fork-id-empty", "an empty fork_id counts as missing",
            b.frames("input.confirm.", make_header("input.confirm", 1, fork_id=""), {"source": "key"}),
            E.MISSING_FIELD)
    # wrong types
    b.error("wrong-type/header-seq-string", "seq is a string", b.frames("heartbeat.", {**hb_h, "seq": "1"}, hb_b),
            E.WRONG_TYPE)
    b.error("wrong-type/header-ts-float", "ts_ns is a float", b.frames("heartbeat.", {**hb_h, "ts_ns": 1.5}, hb_b),
            E.WRONG_TYPE)
    b.error("wrong-type/header-id-int", "id is an integer", b.frames("heartbeat.", {**hb_h, "id": 7}, hb_b),
            E.WRONG_TYPE)
    b.error("wrong-type/body-prob-string", "a probability given as text",
            b.frames("fork.open.", fo_h, {"candidates": [{"index": 0, "word": "a", "prob": "0.5"}]}), E.WRONG_TYPE)
    b.error("wrong-type/body-words-string", "words is a string, not an array",
            b.frames("text.auto.", make_header("text.auto", 1), {"text": " a", "words": "a"}), E.WRONG_TYPE)
    b.error("wrong-type/body-bool-as-int", "a boolean where an integer index belongs",
            b.frames("input.select.", make_header("input.select", 1), {"index": True, "source": "k"}), E.WRONG_TYPE)
    # versions
    b.error("version/one-number", "version '1' lacks the minor", b.frames("heartbeat.", {**hb_h, "version": "1"}, hb_b),
            E.BAD_VERSION)
    b.error("version/float", "version sent as the number 1.0", b.frames("heartbeat.", {**hb_h, "version": 1.0}, hb_b),
            E.BAD_VERSION)
    b.error("version/prefixed", "version 'v1.0'", b.frames("heartbeat.", {**hb_h, "version": "v1.0"}, hb_b),
            E.BAD_VERSION)
    b.error("version/too-long", "a version with 5000 digits",
            b.frames("heartbeat.", {**hb_h, "version": "1" * 5000 + ".0"}, hb_b), E.BAD_VERSION)
    b.error("version/trailing-newline", "version '1.0\\n'", b.frames("heartbeat.", {**hb_h, "version": "1.0\n"}, hb_b),
            E.BAD_VERSION)
    b.error("version/major-2", "major version 2 is a different contract",
            b.frames("heartbeat.", {**hb_h, "version": "2.0"}, hb_b), E.UNSUPPORTED_VERSION)
    b.error("version/major-0", "major version 0", b.frames("heartbeat.", {**hb_h, "version": "0.9"}, hb_b),
            E.UNSUPPORTED_VERSION)
    b.error("version/major-2-other-shape", "a major-2 header of another shape is still reported as the version",
            b.frames("heartbeat.", {"version": "2.0", "kind": "heartbeat"}, hb_b), E.UNSUPPORTED_VERSION)
    # topic vs type
    b.error("topic-mismatch/other-type", "topic fork.decided. carries a fork.open header",
            b.frames("fork.decided.", fo_h, fo_b), E.TOPIC_MISMATCH)
    b.error("topic-mismatch/longer-word",
            "topic 'fork.opening.' does not start with 'fork.open.' (why topics end in '.')",
            b.frames("fork.opening.", fo_h, fo_b), E.TOPIC_MISMATCH)
    # values out of range
    b.error("bad-value/negative-seq", "seq -1", b.frames("heartbeat.", {**hb_h, "seq": -1}, hb_b), E.BAD_VALUE)
    b.error("bad-value/empty-sender", "an empty sender name", b.frames("heartbeat.", {**hb_h, "sender": ""}, hb_b),
            E.BAD_VALUE)
    b.error("bad-value/prob-above-1", "probability 1.5",
            b.frames("fork.open.", fo_h, {"candidates": [{"index": 0, "word": "a", "prob": 1.5}]}), E.BAD_VALUE)
    b.error("bad-value/index-256", "candidate index 256 (0..255)",
            b.frames("input.select.", make_header("input.select", 1), {"index": 256, "source": "k"}), E.BAD_VALUE)
    b.error("bad-value/unknown-command", "command 'fly' is not one of the commands",
            b.frames("input.command.", make_header("input.command", 1), {"command": "fly", "source": "k"}),
            E.BAD_VALUE)
    b.error("bad-value/heartbeat-interval-0", "interval_ms must be > 0",
            b.frames("heartbeat.", hb_h, {"role": "tool", "interval_ms": 0}), E.BAD_VALUE)
    b.error("bad-value/screen-zero", "screen_w must be > 0",
            b.frames("render.layout.", make_header("render.layout", 1),
                     {"boxes": [], "screen_w": 0.0, "screen_h": 600.0, "renderer": "web"}), E.BAD_VALUE)
    b.error("bad-value/kind-too-long", "a kind of 33 characters (at most 32)",
            b.frames("input.focus.", make_header("input.focus", 1), {"index": 0, "source": "k", "kind": "k" * 33}),
            E.BAD_VALUE)
    b.error("wrong-type/kind-int", "kind is an integer, not a string",
            b.frames("input.select.", make_header("input.select", 1), {"index": 0, "source": "k", "kind": 2}),
            E.WRONG_TYPE)
    # 1.4 targets
    sel_h = make_header("input.select", 1)
    b.error("targets/select-neither", "1.4: a select naming neither index nor target (one is required)",
            b.frames("input.select.", sel_h, {"source": "k"}), E.MISSING_FIELD)
    b.error("targets/select-neither-null", "1.4: the same with both sent as null",
            b.frames("input.select.", sel_h, {"index": None, "target": None, "source": "k"}), E.MISSING_FIELD)
    b.error("targets/select-both", "1.4: a select naming both index and target (name one: cand:<i> is index i)",
            b.frames("input.select.", sel_h, {"index": 1, "target": "cand:1", "source": "k"}), E.BAD_VALUE)
    b.error("targets/focus-both", "1.4: a focus naming both index and target",
            b.frames("input.focus.", make_header("input.focus", 1), {"index": 0, "target": "cmd:back", "source": "g"}),
            E.BAD_VALUE)
    b.error("targets/confirm-both", "1.4: a confirm naming both index and target",
            b.frames("input.confirm.", make_header("input.confirm", 1),
                     {"index": 2, "target": "key:e", "source": "g"}), E.BAD_VALUE)
    b.error("targets/not-kind-value", "1.4: a target id that is not kind:value",
            b.frames("input.select.", sel_h, {"target": "back", "source": "k"}), E.BAD_VALUE)
    b.error("targets/space-in-id", "1.4: a target id with a space ('key: ': the space key is key:space)",
            b.frames("input.select.", sel_h, {"target": "key: ", "source": "k"}), E.BAD_VALUE)
    b.error("targets/layout-target-too-long", "1.4: a layout target id of 65 characters (at most 64)",
            b.frames("render.layout.", make_header("render.layout", 1),
                     {"boxes": [], "targets": [{"target": "cmd:" + "x" * 61, "x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0}],
                      "screen_w": 800.0, "screen_h": 600.0, "renderer": "web"}), E.BAD_VALUE)
    b.error("targets/letter-two-chars", "1.4: a letter of two characters",
            b.frames("fork.open.", fo_h, {**fo_b, "letters": [{"ch": "th", "prob": 0.5}]}), E.BAD_VALUE)
    b.error("targets/group-not-array", "1.4: a focus group that is a string",
            b.frames("input.focus.", make_header("input.focus", 1), {"index": None, "group": "key:e", "source": "g"}),
            E.WRONG_TYPE)
    # 1.5
    cu_h = make_header("config.update", 1)
    b.error("v15/config-update-value-list", "1.5: a setting's value is a list (only a string, number or boolean)",
            b.frames("config.update.", cu_h, {"section": "gating", "key": "k", "value": [6], "source": "web"}),
            E.WRONG_TYPE)
    b.error("v15/config-update-no-value", "1.5: a config.update without its value",
            b.frames("config.update.", cu_h, {"section": "gating", "key": "k", "source": "web"}), E.MISSING_FIELD)
    b.error("v15/config-update-section-pattern", "1.5: a section that is not dotted lower-case words",
            b.frames("config.update.", cu_h, {"section": "Gating", "key": "k", "value": 6, "source": "web"}),
            E.BAD_VALUE)
    b.error("v15/phrase-id-pattern", "1.5: a phrase id with a capital letter",
            b.frames("phrases.state.", make_header("phrases.state", 1),
                     {"phrases": [{"id": "Yes", "text": "Yes."}]}), E.BAD_VALUE)
    b.error("v15/phrase-empty-text", "1.5: a phrase with no text",
            b.frames("phrases.state.", make_header("phrases.state", 1), {"phrases": [{"id": "yes", "text": ""}]}),
            E.BAD_VALUE)
    b.error("v15/fork-open-unseen-above-one", "1.5: an unseen mass above 1",
            b.frames("fork.open.", fo_h, {**fo_b, "unseen": 1.5}), E.BAD_VALUE)
    b.error("v15/command-settings", "1.5: 'settings' is a target a renderer handles (cmd:settings), not a command",
            b.frames("input.command.", make_header("input.command", 1), {"command": "settings", "source": "web"}),
            E.BAD_VALUE)
    b.error("bad-value/type-pattern", "header.type 'fork..open' is not dotted words",
            b.frames("fork.open.", {**fo_h, "type": "fork..open"}, fo_b), E.BAD_VALUE)
    b.error("bad-value/type-trailing-newline", "header.type 'heartbeat\\n'",
            b.frames("heartbeat.", {**hb_h, "type": "heartbeat\n"}, hb_b), E.BAD_VALUE)
    return b.vectors


def build_signed() -> list[dict[str, Any]]:
    b = _Builder()
    E = ErrorCode
    for kind, body in sample_bodies().items():
        b.ok(f"signed/{kind}", f"{kind}, signed with the test key",
             b.frames(topic_for(kind), Header(**make_header(kind, 1)), body, key=TEST_KEY), key=TEST_KEY)
    hb_h, hb_b = make_header("heartbeat", 2), {"role": "input", "interval_ms": 1000}
    good = b.frames("heartbeat.", hb_h, hb_b, key=TEST_KEY)
    b.error("unsigned", "signing is on and the message has 3 frames", good[:3], E.UNSIGNED, key=TEST_KEY)
    b.error("forged/other-key", "signed with another key",
            b.frames("heartbeat.", hb_h, hb_b, key=OTHER_KEY), E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/tampered-body", "the body changed after signing (interval 1000 -> 10)",
            [good[0], good[1], _pack({"role": "input", "interval_ms": 10}), good[3]], E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/tampered-topic", "the topic changed after signing (a subtopic added)",
            [b"heartbeat.x.", good[1], good[2], good[3]], E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/uppercase-hex", "the signature is compared as exact bytes: uppercase hex is wrong",
            [*good[:3], good[3].upper()], E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/raw-digest", "the signature is the lowercase hex text of the digest, not the raw 32 bytes",
            [*good[:3], hmac.new(TEST_KEY.encode(), b"".join(good[:3]), hashlib.sha256).digest()],
            E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/wrong-order", "HMAC over header, topic, body (wrong order)",
            [*good[:3], _sign([good[1], good[0], good[2]], TEST_KEY)], E.BAD_SIGNATURE, key=TEST_KEY)
    b.error("forged/empty", "an empty signature frame", [*good[:3], b""], E.BAD_SIGNATURE, key=TEST_KEY)
    bad_topic = [b"Heartbeat.", good[1], good[2]]
    b.error("signed-then-checked", "the signature is checked before the topic: a validly signed bad topic is BAD_TOPIC",
            [*bad_topic, _sign(bad_topic, TEST_KEY)], E.BAD_TOPIC, key=TEST_KEY)

    # Replays: a receiver with a key keeps the last seq of each (sender, session, type).
    def signed(kind: str, seq: int, session: str, body: Any) -> list[bytes]:
        return b.frames(topic_for(kind), make_header(kind, seq, session=session), body, key=TEST_KEY)

    select = {"index": 1, "source": "keyboard", "kind": "key"}
    captured = signed("input.select", 3, other_session(1), select)
    b.error("replay/same-frames", "a signed select captured off the wire and sent again: the second copy is refused",
            captured, E.REPLAYED, key=TEST_KEY, before=[captured])
    beat = {"role": "input", "interval_ms": 1000}
    b.error("replay/older-seq", "seq 4 after seq 5 of the same sender, session and type (validly signed)",
            signed("heartbeat", 4, other_session(2), beat), E.REPLAYED, key=TEST_KEY,
            before=[signed("heartbeat", 5, other_session(2), beat)])
    b.error("replay/same-seq-other-bytes", "seq 5 again with another id and body: the seq decides, not the bytes",
            b.frames("heartbeat.", make_header("heartbeat", 5, session=other_session(3), id="vec-other"),
                     {"role": "input", "interval_ms": 500}, key=TEST_KEY), E.REPLAYED, key=TEST_KEY,
            before=[signed("heartbeat", 5, other_session(3), beat)])
    b.ok("replay/next-seq", "seq 9 after seq 5 (a gap: messages were lost, not replayed): accepted",
         signed("heartbeat", 9, other_session(4), beat), key=TEST_KEY,
         before=[signed("heartbeat", 5, other_session(4), beat)])
    b.ok("replay/other-session", "seq 0 of a new session after seq 5 of the old one (the sender restarted): accepted",
         signed("heartbeat", 0, other_session(6), beat), key=TEST_KEY,
         before=[signed("heartbeat", 5, other_session(5), beat)])
    b.ok("replay/other-type", "seq 0 of another type after seq 5 of a heartbeat (seq counts per type): accepted",
         signed("source.status", 0, other_session(7), {"source": "gaze", "state": "ok"}), key=TEST_KEY,
         before=[signed("heartbeat", 5, other_session(7), beat)])
    return b.vectors


FILES = {
    "valid.json": ("Valid messages: every type (full and minimal) and the compatibility cases.", build_valid),
    "invalid.json": ("Invalid messages, one fault each, with the error a receiver must raise.", build_invalid),
    "signed.json": (f"HMAC-SHA256 signing with the test key {TEST_KEY!r}: valid, unsigned and forged.", build_signed),
}
TARGETS_FILE = "targets.json"


def build_targets() -> dict[str, Any]:
    """The target grammar's own vectors: ids with what they parse to, ids refused, the keyboards' letters."""
    valid = []
    for text in targets.SAMPLE_VALID:
        t = targets.parse_target(text)
        valid.append({"id": text, "kind": t.kind, "value": t.value, "index": t.index, "words": t.words,
                      "candidate": t.candidate, "letter": t.letter, "output": t.output})
    invalid = []
    for text in targets.SAMPLE_INVALID:
        try:
            targets.parse_target(text)
        except ProtocolError as exc:
            invalid.append({"id": text, "error": {"code": int(exc.code), "name": exc.code.name}, "message": exc.detail})
        else:
            raise AssertionError(f"target {text!r} is in SAMPLE_INVALID but parses")
    return {
        "format": 1,
        "protocol": PROTOCOL_VERSION,
        "description": ("Target ids (protocol 1.4 and 1.5, docs/protocol.md 'Targets'): each valid id with what it "
                        "parses to, each invalid one with the error a parser must raise; the on-screen keyboards' "
                        "letters in their fixed order. Generated from protocol/targets.py."),
        "commands": list(targets.TARGET_COMMANDS),
        "output_commands": list(targets.OUTPUT_COMMANDS),
        "renderer_commands": list(targets.RENDERER_COMMANDS),
        "key_names": list(targets.KEY_NAMES),
        "alphabets": dict(targets.ALPHABETS),
        "valid": valid,
        "invalid": invalid,
    }


def render_vectors() -> dict[str, str]:
    """File name -> exact file text."""
    out = {TARGETS_FILE: json.dumps(build_targets(), indent=1, ensure_ascii=False) + "\n"}
    for name, (description, build) in FILES.items():
        doc = {
            "format": FORMAT,
            "protocol": PROTOCOL_VERSION,
            "description": description,
            "test_key": TEST_KEY,
            "default_max_frame": DEFAULT_MAX_FRAME,
            "error_codes": {code.name: int(code) for code in ErrorCode if int(code) < 100},
            "vectors": build(),
        }
        out[name] = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    return out


def write_vectors(directory: Path = VECTORS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_vectors().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale_vectors(directory: Path = VECTORS_DIR) -> list[str]:
    """Names of the files that differ from what the definitions generate now (empty: current)."""
    stale = []
    for name, text in render_vectors().items():
        try:
            if (directory / name).read_text(encoding="utf-8") != text:
                stale.append(name)
        except FileNotFoundError:
            stale.append(name)
    return stale


def load_vectors(directory: Path = VECTORS_DIR) -> list[dict[str, Any]]:
    """All vectors of all files, each with its file name under ``"file"``."""
    out: list[dict[str, Any]] = []
    for name in FILES:
        doc = json.loads((directory / name).read_text(encoding="utf-8"))
        out.extend({**v, "file": name} for v in doc["vectors"])
    return out


def vector_frames(vector: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in vector["frames"]]
