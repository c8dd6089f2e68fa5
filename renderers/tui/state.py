"""What the terminal view knows, built only from protocol messages (no Textual here).

The view is a pure function of this state, so the state can be tested without a
terminal, and a late joiner rebuilds it by applying the snapshot's messages in order.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from razvilka.inputs.keymap import KeyInterpreter, Reaction
from razvilka.protocol.client import TrackedFork
from razvilka.protocol.errors import ProtocolError
from razvilka.protocol.messages import (
    DaemonError,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkOpen,
    Message,
    Origin,
    Phrase,
    PhrasesState,
    SourceStatus,
    Span,
    TextAuto,
    TextState,
    TextUndo,
)
from razvilka.protocol.targets import Target, parse_target
from razvilka.renderers.tui.keys import canonical_key, tui_interpreter


@dataclass
class Decision:
    """The last decided fork, shown until the next one opens."""

    words: list[str]
    sources: list[str]
    latency_ms: float
    rule: str = ""


@dataclass
class ViewState:
    """Everything drawn on screen. ``apply`` takes any decoded message and ignores the rest.

    The open fork, the typed prefix and the marked look-ahead words are the key rules' state
    (:class:`~razvilka.inputs.keymap.KeyInterpreter`): what the keys act on is exactly what is
    drawn. The highlight is the latest focus of any source, as a target (protocol 1.4): a
    candidate, a command or a key (``target``), or a scanned row (``group``), with its dwell
    progress; the view's own arrows put it on a candidate.
    """

    me: str = "tui"
    text: str = ""
    spans: list[Span] = field(default_factory=list)
    last_decision: Decision | None = None
    status: DaemonStatus | None = None
    last_fork_ms: float | None = None
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    last_error: DaemonError | None = None
    version: int = 0  # bumped on every change, so the view redraws only when needed
    target: str | None = None          # the focused target (any source), None = none
    target_source: str = ""
    group: tuple[str, ...] = ()        # targets highlighted together (a scanned row)
    dwell: float | None = None         # the focus's progress towards a dwell confirm, 0..1
    phrases: list[Phrase] = field(default_factory=list)  # 1.5: the quick phrases (phrases.state)
    last_fork_id: str | None = None    # the last fork seen open (kept once decided: a paused view's Resume names it)
    script: str = "latin"              # the keyboard layout of the open (or last) fork
    keys: KeyInterpreter = field(init=False)

    def __post_init__(self) -> None:
        self.keys = tui_interpreter(self.me)

    @property
    def fork(self) -> TrackedFork | None:
        return self.keys.fork

    @property
    def focused(self) -> Target | None:
        """The focused target, parsed (None when none, or when another source sent an id this view
        cannot read: a later minor's kind draws as no focus)."""
        if self.target is None:
            return None
        try:
            return parse_target(self.target)
        except ProtocolError:
            return None

    @property
    def focus(self) -> int | None:
        """The focused candidate (a ``cand`` or ``word`` target), else None."""
        focused = self.focused
        return focused.index if focused is not None else None

    @property
    def focus_source(self) -> str:
        return self.target_source if self.target is not None else ""

    @property
    def paused(self) -> bool:
        """The daemon is paused (by a command or, detail "rest", by the person looking away)."""
        return self.status is not None and self.status.state == "paused"

    @property
    def resting(self) -> bool:
        return self.paused and self.status is not None and self.status.detail == "rest"

    @property
    def typed(self) -> str:
        """"My own word": the prefix typed so far."""
        return self.keys.typed

    def phrase_mark(self) -> int:
        """Look-ahead words marked on the focused candidate: by shift+arrows, or by a focused
        ``word:<i>:<n>`` target (another source pointing at the n-th word of the look-ahead)."""
        focused = self.focused
        if focused is not None and focused.kind == "word":
            return focused.words
        return self.keys.phrase_mark()

    # ------------------------------------------------------------------ incoming
    def apply(self, msg: Message) -> bool:
        """Fold one message into the state; True when something visible changed."""
        body = msg.body
        changed = self.keys.observe(msg)
        if self.fork is not None:
            self.last_fork_id, self.script = self.fork.fork_id, self.fork.body.script
        if isinstance(body, (ForkOpen, ForkDecided, TextUndo)) and changed:
            self._highlight(None, "")  # a new fork (or none): nothing is focused, as the decider sees it
        elif isinstance(body, Focus):
            changed = self._follow_focus(msg, body) or changed
        if isinstance(body, ForkOpen):
            if body.compute_ms and changed:
                self.last_fork_ms = body.compute_ms
        elif isinstance(body, ForkDecided):
            self.last_decision = Decision(list(body.words), list(body.sources), body.latency_ms, body.rule)
            changed = True
        elif isinstance(body, TextState):
            self.text, self.spans = body.text, list(body.spans)
            changed = True
        elif isinstance(body, TextAuto):
            self._append(body.text, "model")
            changed = True
        elif isinstance(body, TextUndo):
            self._undo(body.removed)
            changed = True
        elif isinstance(body, DaemonStatus):
            self.status = body
            if body.last_fork_ms is not None:
                self.last_fork_ms = body.last_fork_ms
            changed = True
        elif isinstance(body, DaemonError):
            self.last_error = body
            changed = True
        elif isinstance(body, PhrasesState):
            self.phrases = list(body.phrases)
            changed = True
        elif isinstance(body, SourceStatus):
            self.sources[body.source] = body
            changed = True
        if changed:
            self.version += 1
        return changed

    def _follow_focus(self, msg: Message, body: Focus) -> bool:
        """Another source's focus on the open fork: a target, a candidate index, a group, or none. Paused
        with no fork open, a focus naming the last fork (a scanner on Resume) is drawn too."""
        fork = self.fork
        between = fork is None and self.paused and msg.header.fork_id == self.last_fork_id
        if not between and (fork is None or msg.header.fork_id != fork.fork_id) or body.source == self.me:
            return False  # another fork's, or our own echo (already drawn)
        if body.index is not None and (fork is None or fork.position_of(body.index) is None):
            return False  # a candidate this fork lacks
        target = body.target if body.target is not None else (
            f"cand:{body.index}" if body.index is not None else None)
        self._highlight(target, body.source, tuple(body.group), body.dwell)
        return True

    def _highlight(self, target: str | None, source: str, group: tuple[str, ...] = (),
                   dwell: float | None = None) -> None:
        self.target, self.target_source, self.group, self.dwell = target, source if target else "", group, dwell

    def highlighted(self, target: str, row: Collection[str] = ()) -> str:
        """How ``target``, drawn in a row of ``row`` targets, is drawn: "focus", "group" or "".

        A scanned row lights the drawn row that holds all of it, not another copy of one of its keys
        (a likeliest letter is drawn again in the alphabet); a focused target lights every copy."""
        if target == self.target:
            return "focus"
        if target in self.group and set(self.group) <= set(row):
            return "group"
        focused = self.focused
        if focused is not None and focused.kind == "word" and target == f"cand:{focused.index}":
            return "focus"  # a look-ahead word is focused: its candidate is drawn focused
        return ""

    # ------------------------------------------------------------------ keys
    def press(self, key: str, character: str | None) -> Reaction:
        """A key pressed in the view (Textual's name and character), through the shared key rules.

        The local focus, prefix and marks change at once, so the screen answers before the
        echo comes back through the bus."""
        before = self.keys.focus
        reaction = self.keys.press(canonical_key(key, character), character)
        if self.keys.focus != before or reaction.action in ("focus_next", "focus_prev"):
            # the view's own arrows moved the focus, or typing dropped it (the key rules did the same)
            index = self.keys.focus
            self._highlight(f"cand:{index}" if index is not None else None, self.me)
        if reaction.action:
            self.version += 1
        return reaction

    # ------------------------------------------------------------------ text
    def _append(self, piece: str, origin: Origin) -> None:
        """Model words written alone; an authoritative ``text.state`` may follow and replace them."""
        if not piece:
            return
        start = len(self.text)
        self.text += piece
        if self.spans and self.spans[-1].origin == origin and self.spans[-1].end == start:
            last = self.spans[-1]
            self.spans[-1] = Span(start=last.start, end=len(self.text), origin=last.origin)
        else:
            self.spans.append(Span(start=start, end=len(self.text), origin=origin))

    def _undo(self, removed: str) -> None:
        if removed and self.text.endswith(removed):
            self.text = self.text[: len(self.text) - len(removed)]
            cut = len(self.text)
            kept: list[Span] = []
            for span in self.spans:
                if span.start >= cut:
                    continue
                kept.append(span if span.end <= cut else Span(start=span.start, end=cut, origin=span.origin))
            self.spans = kept

    def segments(self) -> list[tuple[str, str]]:
        """The text as (piece, origin) runs; text no span covers counts as the model's."""
        out: list[tuple[str, str]] = []
        pos = 0
        for span in sorted(self.spans, key=lambda s: s.start):
            start, end = max(span.start, pos), min(span.end, len(self.text))
            if start > pos:
                out.append((self.text[pos:start], "model"))
            if end > start:
                out.append((self.text[start:end], span.origin))
                pos = end
        if pos < len(self.text):
            out.append((self.text[pos:], "model"))
        return out
