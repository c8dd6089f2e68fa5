"""Target ids (protocol 1.4, 1.5): the one grammar of what a layout box, a focus, a confirm or a select names.

A target is a string ``kind:value``:

* ``cand:<i>``      candidate ``i`` of the open fork (the same as index ``i``)
* ``word:<i>:<n>``  candidate ``i`` and the first ``n`` words (1-based) of its short look-ahead
* ``cmd:<name>``    a command: back, more, pause, resume, new; (1.5) speak (the last sentence), speak_all
                    (the whole text), repeat, stop_speaking, copy,
                    typeout (the text goes out: the daemon runs them and the fork stays open), settings
                    (a renderer's own: it opens its settings page and never sends it)
* ``phrase:<id>``   (1.5) a quick phrase of ``phrases.state``: ``id`` is lower-case letters, digits, ``_``, ``-``
* ``ui:<id>``       (1.5) a renderer's own control (its settings page's steps and presets, its Close): the
                    renderer acts on it when an input selects or confirms it; the daemon decides nothing by it.
                    ``id`` as a phrase id
* ``key:<ch>``      a letter key of the on-screen keyboard: one lower-case Latin or Cyrillic letter,
                    or ``'`` or ``-``
* ``key:space``     end the typed word (commit the typed prefix as the word)
* ``key:delete``    delete the last typed letter
* ``key:accept``    accept the likeliest candidate that completes the typed prefix

Everything that reads or writes target ids (daemon, decider, adapters, renderers' Python side,
bench, tests) goes through :func:`parse_target` and :class:`Target`; the browser view and the Node
example mirror the grammar and check themselves against ``protocol/vectors/targets.json``.
A bad id is a :class:`~razvilka.protocol.errors.ProtocolError` ``BAD_VALUE`` naming the id.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import CommandName, command_name

TARGET_KINDS = ("cand", "word", "cmd", "key", "phrase", "ui")
#: Commands that steer the writing (1.4). A later minor's command name is refused here as unknown.
TARGET_COMMANDS = ("back", "more", "pause", "resume", "new")
#: 1.5: commands that send the text out; the daemon runs them at once and the open fork stays open.
OUTPUT_COMMANDS = ("speak", "speak_all", "repeat", "stop_speaking", "copy", "typeout")
#: 1.5: output commands that go out as another ``input.command`` with a ``text``: ``cmd:speak`` says the
#: last sentence, ``cmd:speak_all`` the whole text (``speak`` with text "all").
COMMAND_TEXT: dict[str, tuple[CommandName, str]] = {"speak_all": ("speak", "all")}
#: 1.5: commands a renderer handles itself (it opens its settings page); a daemon that gets one ignores it.
RENDERER_COMMANDS = ("settings",)
#: Every command a target may name.
ALL_COMMANDS = TARGET_COMMANDS + OUTPUT_COMMANDS + RENDERER_COMMANDS
#: 1.5: the characters of a quick phrase's id (``phrase:<id>``).
PHRASE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_PHRASE_ID = 57  # MAX_TARGET_CHARS - len("phrase:")
#: Named keys besides the letters.
KEY_NAMES = ("space", "delete", "accept")
#: Key characters that are not letters (they join word parts: "don't", "well-known").
KEY_JOINERS = "'-"
MAX_INDEX = 255        # protocol Index
MAX_WORDS = 64         # protocol Select.phrase_words
MAX_TARGET_CHARS = 64  # the wire limit of a target id (messages.TargetId)

Script = Literal["latin", "cyrillic"]
SCRIPTS: tuple[Script, ...] = ("latin", "cyrillic")
#: The on-screen keyboard's letters of each script, in their fixed order (renderers draw them so;
#: the likeliest letters are shown again first, ranked by ``fork.open`` ``letters``).
ALPHABETS: dict[Script, str] = {
    "latin": "abcdefghijklmnopqrstuvwxyz",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
}

# Code point ranges of the scripts a key may be from (lower-case letters only, checked by category).
_LATIN = ((0x61, 0x7A), (0xDF, 0xFF), (0x100, 0x24F))
_CYRILLIC = ((0x430, 0x52F),)


def _in(ranges: tuple[tuple[int, int], ...], ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in ranges)


def char_script(ch: str) -> Script | None:
    """The script of one lower-case letter a key may carry, else None (not a key letter)."""
    if len(ch) != 1 or unicodedata.category(ch) != "Ll":
        return None
    if _in(_LATIN, ch):
        return "latin"
    if _in(_CYRILLIC, ch):
        return "cyrillic"
    return None


def is_key_char(ch: str) -> bool:
    """Whether ``key:<ch>`` is a letter key: one lower-case Latin or Cyrillic letter, ``'`` or ``-``."""
    return len(ch) == 1 and (ch in KEY_JOINERS or char_script(ch) is not None)


def text_script(text: str, default: Script = "latin", window: int = 400) -> Script:
    """The script most of the last ``window`` characters' letters are in (``keyboard.script = "auto"``)."""
    counts = {"latin": 0, "cyrillic": 0}
    for ch in text[-window:]:
        script = char_script(ch.lower()) if ch.isalpha() else None
        if script is not None:
            counts[script] += 1
    if counts["latin"] == counts["cyrillic"]:
        return default
    return "cyrillic" if counts["cyrillic"] > counts["latin"] else "latin"


@dataclass(frozen=True, slots=True)
class Target:
    """One parsed target id. ``index``: the candidate (cand, word); ``words``: look-ahead words (word)."""

    kind: str
    value: str
    index: int | None = None
    words: int = 0

    @property
    def id(self) -> str:
        return format_target(self)

    def __str__(self) -> str:
        return format_target(self)

    @property
    def candidate(self) -> bool:
        """A candidate or a word of its look-ahead: it decides the fork with that candidate."""
        return self.kind in ("cand", "word")

    @property
    def output(self) -> bool:
        """1.5: it sends the text out or speaks (``cmd:speak`` ... ``cmd:typeout``, ``phrase:<id>``): the daemon runs
        it without deciding the fork."""
        return (self.kind == "cmd" and self.value in OUTPUT_COMMANDS) or self.kind == "phrase"

    @property
    def renderer_own(self) -> bool:
        """1.5: a renderer's own target (``cmd:settings``, ``ui:<id>``): the renderer acts on it, the daemon decides
        nothing by it."""
        return (self.kind == "cmd" and self.value in RENDERER_COMMANDS) or self.kind == "ui"

    @property
    def letter(self) -> str | None:
        """The character of a letter key (``key:e`` -> ``"e"``); None for other targets and named keys."""
        return self.value if self.kind == "key" and self.value not in KEY_NAMES else None


def command_of(target: Target) -> tuple[CommandName, str] | None:
    """The ``input.command`` (command, text) that does what ``target`` does, for a sender with no open fork to
    name in a select: ``cmd:<name>`` is that command (``cmd:speak_all`` is ``speak`` "all"), ``phrase:<id>``
    is ``phrase`` with the id; None for a target that is no command (a candidate, a key, a renderer's own)."""
    if target.kind == "cmd" and not target.renderer_own:
        if target.value in COMMAND_TEXT:
            return COMMAND_TEXT[target.value]
        command = command_name(target.value)  # every other command target is the command of its name
        return None if command is None else (command, "")
    if target.kind == "phrase":
        return ("phrase", target.value)
    return None


def _bad(text: object, why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, f"target {str(text)[:MAX_TARGET_CHARS + 8]!r}: {why}")


def _number(text: str, part: str, lo: int, hi: int, whole: str) -> int:
    """A decimal without sign or leading zeros (one spelling per number, as JSON's)."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise _bad(whole, f"{part} must be a whole number {lo}..{hi}, got {text!r}")
    n = int(text)
    if not lo <= n <= hi:
        raise _bad(whole, f"{part} must be {lo}..{hi}, got {n}")
    return n


def parse_target(text: str) -> Target:
    """``"cand:2"`` -> ``Target("cand", "2", index=2)``; a bad id is ``BAD_VALUE`` naming it and why."""
    if not isinstance(text, str):
        raise _bad(text, f"a target id is a string, got {type(text).__name__}")
    if len(text) > MAX_TARGET_CHARS:
        raise _bad(text, f"longer than {MAX_TARGET_CHARS} characters")
    kind, sep, value = text.partition(":")
    if not sep:
        raise _bad(text, "not kind:value (kinds: " + ", ".join(TARGET_KINDS) + ")")
    if kind == "cand":
        return Target("cand", value, index=_number(value, "the candidate", 0, MAX_INDEX, text))
    if kind == "word":
        i, sep, n = value.partition(":")
        if not sep:
            raise _bad(text, "word targets are word:<candidate>:<n>")
        index = _number(i, "the candidate", 0, MAX_INDEX, text)
        words = _number(n, "the look-ahead word", 1, MAX_WORDS, text)
        return Target("word", value, index=index, words=words)
    if kind == "cmd":
        if value not in ALL_COMMANDS:
            raise _bad(text, f"unknown command {value!r} (commands: {', '.join(ALL_COMMANDS)})")
        return Target("cmd", value)
    if kind == "phrase":
        if not is_phrase_id(value):
            raise _bad(text, "a phrase id is lower-case Latin letters, digits, _ and -")
        return Target("phrase", value)
    if kind == "ui":  # 1.5: a renderer's own control
        if not is_phrase_id(value):
            raise _bad(text, "a ui id is lower-case Latin letters, digits, _ and -")
        return Target("ui", value)
    if kind == "key":
        if value in KEY_NAMES or is_key_char(value):
            return Target("key", value)
        raise _bad(text, "a key is one lower-case Latin or Cyrillic letter, ' or -, or one of "
                   + ", ".join(KEY_NAMES))
    raise _bad(text, f"unknown kind {kind!r} (kinds: {', '.join(TARGET_KINDS)})")


def is_phrase_id(text: str) -> bool:
    """Whether ``text`` may be a quick phrase's id (``phrase:<id>``, protocol 1.5)."""
    return 0 < len(text) <= MAX_PHRASE_ID and all(ch in PHRASE_ID_CHARS for ch in text)


def format_target(target: Target) -> str:
    """The id of a target (the inverse of :func:`parse_target`)."""
    if target.kind == "cand":
        return f"cand:{target.index}"
    if target.kind == "word":
        return f"word:{target.index}:{target.words}"
    return f"{target.kind}:{target.value}"


def cand(index: int) -> Target:
    """The target of candidate ``index`` (checked as a parsed one is)."""
    return parse_target(f"cand:{index}")


def word(index: int, words: int) -> Target:
    """Candidate ``index`` with its look-ahead's first ``words`` words."""
    return parse_target(f"word:{index}:{words}")


def cmd(name: str) -> Target:
    return parse_target(f"cmd:{name}")


def phrase(phrase_id: str) -> Target:
    """1.5: the quick phrase ``phrase_id``."""
    return parse_target(f"phrase:{phrase_id}")


def key(ch: str) -> Target:
    """A key: a letter (``"e"``) or a named key (``"space"``, ``"delete"``, ``"accept"``)."""
    return parse_target(f"key:{ch}")


#: Ids a mirror of the grammar (the browser view's app.js, the Node example) must agree on:
#: ``protocol/vectors/targets.json`` is generated from these by ``razvilka protocol vectors``.
SAMPLE_VALID = (
    "cand:0", "cand:7", "cand:255", "word:0:1", "word:3:2", "word:12:64",
    "cmd:back", "cmd:more", "cmd:pause", "cmd:resume", "cmd:new",
    "cmd:speak", "cmd:speak_all", "cmd:repeat", "cmd:stop_speaking", "cmd:copy", "cmd:typeout", "cmd:settings",
    "phrase:yes", "phrase:thank-you", "phrase:f-3a9c01d2e4", "phrase:_", "phrase:" + "a" * 57,
    "ui:close", "ui:dwell-up", "ui:dwell-1000", "ui:" + "a" * 57,
    "key:a", "key:z", "key:é", "key:ß", "key:'", "key:-", "key:ж", "key:ё", "key:я", "key:ї",
    "key:space", "key:delete", "key:accept",
)
SAMPLE_INVALID = (
    "", "cand", "cand:", "cand:-1", "cand:256", "cand:01", "cand:1.0", "cand:x", "cand:٣",
    "word:1", "word:1:0", "word:1:65", "word::2", "word:1:2:3",
    "cmd:", "cmd:fly", "cmd:Back", "cmd:back ",
    "key:", "key:E", "key:Ж", "key:ab", "key:1", "key: ", "key:.", "key:α", "key:enter", "key:Space",
    "Cand:1", ":1", "cand:1 ",
    "cmd:Speak", "cmd:speak ", "cmd:stop-speaking", "phrase:", "phrase:Yes", "phrase:a b", "phrase:a.b", "phrase:да",
    "phrase:" + "a" * 58, "phrase:a:b",
    "ui:", "ui:Close", "ui:dwell+", "ui:a:b",
)
