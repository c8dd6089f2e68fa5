"""What the terminal view knows, built only from protocol messages (no Textual here).

The view is a pure function of this state, so the state can be tested without a
terminal, and a late joiner rebuilds it by applying the snapshot's messages in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from razvilka.inputs.keymap import KeyInterpreter, Reaction
from razvilka.protocol.client import TrackedFork
from razvilka.protocol.messages import (
    DaemonError,
    DaemonStatus,
    ForkDecided,
    ForkOpen,
    Message,
    SourceStatus,
    Span,
    TextAuto,
    TextState,
    TextUndo,
)
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

    The open fork, the focus, the typed prefix and the marked look-ahead words are the key
    rules' state (:class:`~razvilka.inputs.keymap.KeyInterpreter`): what the keys act on is
    exactly what is drawn.
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
    keys: KeyInterpreter = field(init=False)

    def __post_init__(self) -> None:
        self.keys = tui_interpreter(self.me)

    @property
    def fork(self) -> TrackedFork | None:
        return self.keys.fork

    @property
    def focus(self) -> int | None:
        return self.keys.focus

    @property
    def focus_source(self) -> str:
        return self.keys.focus_source

    @property
    def typed(self) -> str:
        """"My own word": the prefix typed so far."""
        return self.keys.typed

    def phrase_mark(self) -> int:
        """Look-ahead words marked on the focused candidate (shift+arrows)."""
        return self.keys.phrase_mark()

    # ------------------------------------------------------------------ incoming
    def apply(self, msg: Message) -> bool:
        """Fold one message into the state; True when something visible changed."""
        body = msg.body
        changed = self.keys.observe(msg)
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
        elif isinstance(body, SourceStatus):
            self.sources[body.source] = body
            changed = True
        if changed:
            self.version += 1
        return changed

    # ------------------------------------------------------------------ keys
    def press(self, key: str, character: str | None) -> Reaction:
        """A key pressed in the view (Textual's name and character), through the shared key rules.

        The local focus, prefix and marks change at once, so the screen answers before the
        echo comes back through the bus."""
        reaction = self.keys.press(canonical_key(key, character), character)
        if reaction.action:
            self.version += 1
        return reaction

    # ------------------------------------------------------------------ text
    def _append(self, piece: str, origin: str) -> None:
        """Model words written alone; an authoritative ``text.state`` may follow and replace them."""
        if not piece:
            return
        start = len(self.text)
        self.text += piece
        if self.spans and self.spans[-1].origin == origin and self.spans[-1].end == start:
            last = self.spans[-1]
            self.spans[-1] = Span(start=last.start, end=len(self.text), origin=last.origin)
        else:
            self.spans.append(Span(start=start, end=len(self.text), origin=origin))  # type: ignore[arg-type]

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
