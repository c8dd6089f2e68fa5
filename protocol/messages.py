"""Protocol v1 message definitions: the header and one body type per message type.

These classes are the single source of truth: the JSON Schema (``protocol/schema.json``)
and the conformance vectors are generated from them, and ``docs/protocol.md`` describes them.

Receivers ignore unknown fields (structs do not forbid them) and unknown types
(the codec hands those back as plain maps, and clients skip them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

import msgspec
from msgspec import Meta, Struct, field

from razvilka.protocol.errors import ErrorCode, ProtocolError

PROTOCOL_MAJOR = 1
# 1.1: input.select / fork.decided phrase_words; 1.2: Candidate.joins;
# 1.3: kind on input.focus / input.confirm / input.select (what sort of input the source is), and
#      with signing on, receivers refuse replays (a seq not above the last of its stream: REPLAYED).
# 1.4: targets (protocol/targets.py): render.layout targets (+ Box.row/col), input.focus target/group,
#      input.confirm target, input.select target (index optional: exactly one of the two),
#      render.stimulus targets, fork.open letters/script, fork.decided target.
# 1.5: input.command speak/repeat/stop_speaking/copy/typeout/phrase/partner; targets cmd:speak ... cmd:settings and
#      phrase:<id>; config.update / config.state; text.state partner; phrases.state; fork.open unseen.
PROTOCOL_MINOR = 5
PROTOCOL_VERSION = f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"

NonNeg = Annotated[int, Meta(ge=0)]
Prob = Annotated[float, Meta(ge=0.0, le=1.0)]
Index = Annotated[int, Meta(ge=0, le=255)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]

#: The kinds of input source 1.3 knows (``kind`` of focus, confirm and select). The set is closed
#: for 1.3 senders, but the field is a string, not an enum: a later minor may add a kind, and a 1.3
#: receiver accepts a value it does not know and treats it as "other" (a minor only adds).
#: "" (the default) = not said: a 1.0-1.2 sender.
SOURCE_KINDS = ("key", "switch", "pointer", "gaze", "eeg", "other")
Kind = Annotated[str, Meta(max_length=32, description=(
    "1.3: what sort of input the source is: key, switch, pointer, gaze, eeg or other; "
    "'' = not said (a 1.0-1.2 sender); a value a receiver does not know counts as other"))]


#: 1.4: a target id, ``kind:value`` (protocol/targets.py holds the grammar; the wire checks only the
#: shape, so a later minor's kind or command still decodes, and the daemon refuses what it cannot do).
TARGET_PATTERN = r"^[a-z][a-z0-9_]*:\S+$"
TargetId = Annotated[str, Meta(min_length=3, max_length=64, pattern=TARGET_PATTERN, description=(
    "1.4: a target id kind:value: cand:<i>, word:<i>:<n>, cmd:<name>, key:<ch>, key:space, key:delete, "
    "key:accept (docs/protocol.md, 'Targets')"))]

#: 1.4: the keyboard layouts ``fork.open`` ``script`` names. A string, not an enum (as ``kind``): a later
#: minor may add a script, and a 1.4 receiver shows its Latin keyboard for one it does not know.
SCRIPTS = ("latin", "cyrillic")
Script = Annotated[str, Meta(min_length=1, max_length=32, description=(
    "1.4: the keyboard layout to show: latin or cyrillic; a value a receiver does not know counts as latin"))]


def _one_of(body: str, index: int | None, target: str | None, *, required: bool) -> None:
    """A message names its candidate by ``index`` or by ``target``, never both (1.4); ``required``:
    one of them must be there (select). Raised from ``__post_init__``, so decoding (and building) fails."""
    if index is not None and target is not None:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"body: {body} names both index {index} and target {target!r}: "
                            "name one (target cand:<i> is index i)")
    if required and index is None and target is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, f"body: {body} names neither index nor target: one is required")


VERSION_PATTERN = r"^[0-9]{1,6}\.[0-9]{1,6}$"
TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"


class Header(Struct, kw_only=True):
    """Every message's second frame.

    ``version`` and ``type`` carry their patterns as JSON Schema only: the codec checks them
    by hand (an equality or a set lookup for the usual values), since msgspec would run Python
    regexes on every header (a third of its decoding time).
    """

    version: Annotated[str, Meta(extra_json_schema={"pattern": VERSION_PATTERN})]  # "MAJOR.MINOR"
    type: Annotated[str, Meta(max_length=64, extra_json_schema={"pattern": TYPE_PATTERN})]
    id: Annotated[str, Meta(min_length=1, max_length=64)]
    sender: Name
    session: Annotated[str, Meta(min_length=1, max_length=64)]
    seq: NonNeg
    ts_ns: NonNeg
    fork_id: str | None = None


class Body(Struct, kw_only=True):
    """Base of all bodies. ``TYPE`` is the message type; the topic starts with ``TYPE + '.'``."""

    TYPE: ClassVar[str] = ""
    NEEDS_FORK: ClassVar[bool] = False


# ---------------------------------------------------------------- daemon: forks
class Candidate(Struct, kw_only=True):
    """One word offered at a fork, with its probability and (maybe) look-ahead phrases.

    ``joins`` (1.2): the word continues the word before, with no space ("es" after "Miss" writes
    "Misses"), so a renderer can show what it makes instead of a bare piece."""

    index: Index
    word: str
    prob: Prob
    lookahead: list[str] = field(default_factory=list)
    joins: bool = False


class Letter(Struct, kw_only=True):
    """1.4: the model's probability that the typed word goes on with ``ch`` (" ": the word ends here); from a 1.5
    daemon, for a word that is none of the fork's candidates (a person spells when the word is not shown)."""

    ch: Annotated[str, Meta(min_length=1, max_length=1)]
    prob: Prob


class ForkOpen(Body):
    """A fork: the model is unsure and asks the human. Words first; look-aheads follow."""

    TYPE: ClassVar[str] = "fork.open"
    NEEDS_FORK: ClassVar[bool] = True
    candidates: list[Candidate]
    context: str = ""
    position: NonNeg = 0
    prefix: str = ""
    reason: str = "uncertain"
    entropy: float = 0.0
    margin: float = 0.0
    page: NonNeg = 0
    pregenerated: bool = False
    compute_ms: float = 0.0
    # 1.4: P(next character | the typed prefix) from the same word search, likeliest first, and the
    # keyboard layout to show. An older receiver ignores both.
    letters: list[Letter] = field(default_factory=list)
    script: Script = "latin"
    # 1.5: the probability mass the model's rows did not show the word search (a backend that gives only its
    # top-N tokens, as a server does), in the units of the candidates' probs: how far they could be off.
    # 0 with full rows (the embedded model). An older receiver ignores it.
    unseen: Prob = 0.0


class Lookahead(Struct, kw_only=True):
    """Look-ahead phrases for the candidate ``index``; ``long`` marks the focused one's longer look-ahead."""

    index: Index
    phrases: list[str]
    long: bool = False


class ForkLookahead(Body):
    """Look-ahead phrases arriving for candidates of an open fork."""

    TYPE: ClassVar[str] = "fork.lookahead"
    NEEDS_FORK: ClassVar[bool] = True
    entries: list[Lookahead]
    done: bool = False
    compute_ms: float = 0.0


class ForkDecided(Body):
    """The fork's outcome: which candidate, from which sources, and how long it took."""

    TYPE: ClassVar[str] = "fork.decided"
    NEEDS_FORK: ClassVar[bool] = True
    index: int | None
    words: list[str]
    sources: list[str]
    rule: str = ""
    latency_ms: float = 0.0
    decision_id: str = ""
    phrase: bool = False
    typed: bool = False
    phrase_words: NonNeg = 0  # 1.1: look-ahead words committed with the candidate (0 when none)
    # 1.4: the target that decided it (cand:<i>, word:<i>:<n>, key:space, key:accept); "" = not said
    target: Annotated[str, Meta(max_length=64)] = ""


# ---------------------------------------------------------------- daemon: text
#: Who wrote a span of the text.
Origin = Literal["prompt", "human", "model"]


class Span(Struct, kw_only=True, array_like=False):
    """Characters ``[start, end)`` of the text, and who wrote them."""

    start: NonNeg
    end: NonNeg
    origin: Origin


class TextAuto(Body):
    """Words the model wrote on its own while it was confident."""

    TYPE: ClassVar[str] = "text.auto"
    text: str
    words: list[str]
    position: NonNeg = 0


class TextUndo(Body):
    """A backtrack: the last decision (and the auto-text after it) was removed."""

    TYPE: ClassVar[str] = "text.undo"
    removed: str
    position: NonNeg = 0
    decisions_undone: NonNeg = 1


class TextState(Body):
    """The whole document, who wrote which part; retained for late joiners."""

    TYPE: ClassVar[str] = "text.state"
    text: str
    spans: list[Span] = field(default_factory=list)
    document: str = ""
    position: NonNeg = 0
    partner: str = ""  # 1.5: the conversation partner's last turn, which this text replies to ("" = none)


#: 1.5: a quick phrase's id (``phrase:<id>`` targets): lower-case letters, digits, ``_`` and ``-``.
PHRASE_ID_PATTERN = r"^[a-z0-9_-]+$"
PhraseId = Annotated[str, Meta(min_length=1, max_length=57, pattern=PHRASE_ID_PATTERN)]


class Phrase(Struct, kw_only=True):
    """1.5: one ready phrase: ``kind`` "quick" (the person's or a caregiver's list) or "frequent" (what the
    person writes most often); a string, not an enum: a receiver shows a kind it does not know as quick."""

    id: PhraseId
    text: Annotated[str, Meta(min_length=1, max_length=1000)]
    kind: Annotated[str, Meta(max_length=32)] = "quick"


class PhrasesState(Body):
    """1.5: the quick phrases to show as ``phrase:<id>`` targets; retained for late joiners."""

    TYPE: ClassVar[str] = "phrases.state"
    phrases: list[Phrase] = field(default_factory=list)


# ---------------------------------------------------------------- settings (1.5)
SECTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
KEY_PATTERN = r"^[a-z][a-z0-9_-]*$"
SettingValue = str | int | float | bool


class ConfigUpdate(Body):
    """1.5: change one setting (``section.key`` of the configuration, e.g. ``gating`` ``k``) now and for good;
    the daemon checks it, applies it, saves it and answers with ``config.state``."""

    TYPE: ClassVar[str] = "config.update"
    section: Annotated[str, Meta(min_length=1, max_length=64, pattern=SECTION_PATTERN)]
    key: Annotated[str, Meta(min_length=1, max_length=64, pattern=KEY_PATTERN)]
    value: SettingValue
    source: Name


class ConfigState(Body):
    """1.5: the settings the person can change, ``"section.key"`` -> value; retained. ``error``: why the last
    update was refused ("" = it was applied); ``changed``: the setting the last update changed."""

    TYPE: ClassVar[str] = "config.state"
    values: dict[str, SettingValue] = field(default_factory=dict)
    error: str = ""
    changed: Annotated[str, Meta(max_length=130)] = ""


# ---------------------------------------------------------------- daemon: itself
DaemonState = Literal["loading", "ready", "generating", "waiting", "paused", "error", "stopping", "stopped"]


class DaemonStatus(Body):
    """The daemon's state, model and input sources; retained for late joiners."""

    TYPE: ClassVar[str] = "daemon.status"
    state: DaemonState
    model: str = ""
    mode: str = ""
    k: NonNeg = 0
    progress: float | None = None
    last_fork_ms: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    detail: str = ""


class DaemonError(Body):
    """A refused request or an internal failure; the daemon keeps serving."""

    TYPE: ClassVar[str] = "daemon.error"
    code: int
    name: str
    message: str
    ref_id: str | None = None


# ---------------------------------------------------------------- inputs
class Focus(Body):
    """Attention on a candidate or (1.4) any target (gaze fixation, hover, arrows, a scan step);
    ``index`` and ``target`` null = none."""

    TYPE: ClassVar[str] = "input.focus"
    NEEDS_FORK: ClassVar[bool] = True
    index: Index | None
    source: Name
    confidence: Prob = 1.0
    dwell: Prob | None = None  # progress towards a dwell confirm, 0..1
    x: float | None = None     # where the gaze is, in screen pixels (the layout's coordinates)
    y: float | None = None
    kind: Kind = ""            # 1.3: key, switch, pointer, gaze, eeg, other ("" = a 1.2 sender)
    # 1.4: the focused target (index must then be null: an older daemon sees focus on nothing), and
    # targets highlighted together (a scanned row); a group alone is not a focus that can be confirmed.
    target: TargetId | None = None
    group: list[TargetId] = field(default_factory=list)

    def __post_init__(self) -> None:
        _one_of("input.focus", self.index, self.target, required=False)


class Confirm(Body):
    """Confirm the focused candidate (key, pedal, dwell, P300 posterior)."""

    TYPE: ClassVar[str] = "input.confirm"
    NEEDS_FORK: ClassVar[bool] = True
    source: Name
    confidence: Prob = 1.0
    index: Index | None = None
    posterior: list[float] | None = None
    kind: Kind = ""  # 1.3: see SOURCE_KINDS
    target: TargetId | None = None  # 1.4: the target confirmed (a dwell or P300 naming it); not with index

    def __post_init__(self) -> None:
        _one_of("input.confirm", self.index, self.target, required=False)


class Select(Body, kw_only=True):
    """Choose a candidate or (1.4) any target directly (number key, click, confident P300, a scan select).
    Exactly one of ``index`` and ``target``: an older daemon refuses a select without an index."""

    TYPE: ClassVar[str] = "input.select"
    NEEDS_FORK: ClassVar[bool] = True
    index: Index | None = None  # 1.4: optional (was required)
    source: Name
    confidence: Prob = 1.0
    phrase: bool = False
    posterior: list[float] | None = None
    # 1.1: take the candidate and the first N words of its look-ahead (a click on the look-ahead's
    # Nth word). 0: as ``phrase`` says. A 1.0 daemon ignores it and commits the word alone.
    phrase_words: Annotated[int, Meta(ge=0, le=64)] = 0
    kind: Kind = ""  # 1.3: see SOURCE_KINDS
    target: TargetId | None = None  # 1.4: the target chosen (instead of index)

    def __post_init__(self) -> None:
        _one_of("input.select", self.index, self.target, required=True)


#: What an ``input.command`` asks for.
CommandName = Literal["back", "more", "type", "pause", "resume", "toggle_pause", "regenerate", "bias", "new",
                      "speak", "repeat", "stop_speaking", "copy", "typeout", "phrase", "partner"]
COMMANDS: tuple[CommandName, ...] = get_args(CommandName)


def command_name(value: str) -> CommandName | None:
    """``value`` as an ``input.command`` name, or None when it names no command."""
    return next((c for c in COMMANDS if c == value), None)


class Command(Body):
    """Back, more candidates, type my own word, pause, regenerate, bias a word, new text; (1.5) speak, repeat,
    stop speaking, copy, type out, a quick phrase, the conversation partner's turn."""

    TYPE: ClassVar[str] = "input.command"
    command: CommandName
    source: Name
    text: str = ""
    bias: float = 0.0


# ---------------------------------------------------------------- renderers
class Box(Struct, kw_only=True):
    """Candidate ``index`` drawn at ``(x, y)`` (top-left), ``w`` x ``h``, in screen pixels;
    (1.4) ``row``/``col``: its place in the renderer's scan order."""

    index: Index
    x: float
    y: float
    w: Annotated[float, Meta(ge=0)]
    h: Annotated[float, Meta(ge=0)]
    row: NonNeg = 0  # 1.4: rows are scanned in row order, a row's items in col order
    col: NonNeg = 0


class TargetBox(Struct, kw_only=True):
    """1.4: any other target (a command, a key, a look-ahead word) drawn at ``(x, y)``, ``w`` x ``h``."""

    target: TargetId
    x: float
    y: float
    w: Annotated[float, Meta(ge=0)]
    h: Annotated[float, Meta(ge=0)]
    row: NonNeg = 0
    col: NonNeg = 0
    label: str = ""  # what the box shows ("Back", "e"), for a scanner's or a reader's benefit


class Layout(Body):
    """Where each candidate (``boxes``) and (1.4) each other target (``targets``) is on screen (screen
    pixels), for gaze hit-testing and scanning. Candidates stay in ``boxes``: a 1.3 adapter still works."""

    TYPE: ClassVar[str] = "render.layout"
    NEEDS_FORK: ClassVar[bool] = True
    boxes: list[Box]
    screen_w: Annotated[float, Meta(gt=0)]
    screen_h: Annotated[float, Meta(gt=0)]
    renderer: Name
    targets: list[TargetBox] = field(default_factory=list)  # 1.4


class Stimulus(Body):
    """A P300 flash: which candidates and (1.4) which other targets lit up, and when the frame was drawn (bus clock)."""

    TYPE: ClassVar[str] = "render.stimulus"
    NEEDS_FORK: ClassVar[bool] = True
    indices: list[Index]
    onset_ns: NonNeg
    duration_ms: Annotated[float, Meta(ge=0)] = 100.0
    flash: NonNeg = 0
    renderer: str = ""
    targets: list[TargetId] = field(default_factory=list)  # 1.4: flashed together with ``indices``


# ---------------------------------------------------------------- every sender
#: What a client is on the bus (its heartbeat says it).
Role = Literal["bus", "daemon", "input", "renderer", "tool"]
#: An input source's health, as ``source.status`` reports it.
SourceState = Literal["ok", "lost", "recovered", "stopped", "calibrating", "error"]


class Heartbeat(Body):
    """Sent by every client each ``interval_ms``; 3 missed beats = silent; ``state="stopped"`` = goodbye."""

    TYPE: ClassVar[str] = "heartbeat"
    role: Role
    interval_ms: Annotated[int, Meta(gt=0)]
    state: str = "ok"


class SourceStatus(Body):
    """An input device's health: lost, recovered, calibrated, stopped."""

    TYPE: ClassVar[str] = "source.status"
    source: Name
    state: SourceState
    detail: str = ""


BODY_TYPES: dict[str, type[Body]] = {
    cls.TYPE: cls
    for cls in (
        ForkOpen, ForkLookahead, ForkDecided,
        TextAuto, TextUndo, TextState, PhrasesState,
        DaemonStatus, DaemonError, ConfigUpdate, ConfigState,
        Focus, Confirm, Select, Command,
        Layout, Stimulus,
        Heartbeat, SourceStatus,
    )
}


def topic_for(body_type: str, *suffix: str) -> str:
    """``fork.open`` -> ``fork.open.``; extra segments refine it: ``input.focus.gaze.``."""
    return ".".join((body_type, *suffix)) + "."


@dataclass(slots=True)
class Message:
    """A decoded message. ``body`` is a typed struct, or a plain map for an unknown type."""

    topic: str
    header: Header
    body: Body | dict[str, Any]
    frames: list[bytes] | None = None

    @property
    def type(self) -> str:
        return self.header.type

    @property
    def known(self) -> bool:
        return not isinstance(self.body, dict)


def to_builtins(obj: object) -> object:
    return msgspec.to_builtins(obj)
