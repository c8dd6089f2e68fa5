"""What the terminal view knows, built only from protocol messages (no Textual here).

The view is a pure function of this state, so the state can be tested without a
terminal, and a late joiner rebuilds it by applying the snapshot's messages in order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from razvilka.protocol.messages import (
    Candidate,
    DaemonError,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Message,
    SourceStatus,
    Span,
    TextAuto,
    TextState,
    TextUndo,
)


@dataclass
class Fork:
    """The open fork: its candidates and the look-ahead phrases streamed for them."""

    fork_id: str
    candidates: list[Candidate]
    context: str = ""
    prefix: str = ""
    page: int = 0
    compute_ms: float = 0.0
    pregenerated: bool = False
    short: dict[int, list[str]] = field(default_factory=dict)
    long: dict[int, list[str]] = field(default_factory=dict)
    lookahead_done: bool = False

    @classmethod
    def from_open(cls, fork_id: str, body: ForkOpen) -> "Fork":
        fork = cls(
            fork_id=fork_id,
            candidates=list(body.candidates),
            context=body.context,
            prefix=body.prefix,
            page=body.page,
            compute_ms=body.compute_ms,
            pregenerated=body.pregenerated,
        )
        for cand in body.candidates:
            if cand.lookahead:
                fork.short[cand.index] = list(cand.lookahead)
        return fork

    def position_of(self, index: int | None) -> int | None:
        """Where candidate ``index`` sits in the displayed order (None if absent)."""
        for pos, cand in enumerate(self.candidates):
            if cand.index == index:
                return pos
        return None

    def phrases(self, index: int) -> list[str]:
        return self.short.get(index, [])

    def stem(self, cand: Candidate) -> str:
        """The end of the word a joining candidate continues ("Miss" for "es"): shown with it, so the
        person sees "Misses", not a bare "es" (protocol 1.2 ``joins``)."""
        if not cand.joins:
            return ""
        m = re.search(r"\w+$", self.context)
        return m.group(0) if m else ""

    def long_phrases(self, index: int) -> list[str]:
        """The longer look-ahead when it has arrived, else the short one."""
        return self.long.get(index) or self.short.get(index, [])


@dataclass
class Decision:
    """The last decided fork, shown until the next one opens."""

    words: list[str]
    sources: list[str]
    latency_ms: float
    rule: str = ""


@dataclass
class ViewState:
    """Everything drawn on screen. ``apply`` takes any decoded message and ignores the rest."""

    me: str = "tui"
    text: str = ""
    spans: list[Span] = field(default_factory=list)
    fork: Fork | None = None
    focus: int | None = None
    focus_source: str = ""
    last_decision: Decision | None = None
    status: DaemonStatus | None = None
    last_fork_ms: float | None = None
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    last_error: DaemonError | None = None
    focus_own: bool = False  # the focus came from this view's own arrow keys
    typed: str = ""  # "my own word": the prefix typed so far
    sent_prefixes: set[str] = field(default_factory=set)
    version: int = 0  # bumped on every change, so the view redraws only when needed
    marked: tuple[str, int, int] | None = None  # (fork, candidate, N): look-ahead words marked (shift+arrows)

    def look_words(self, index: int) -> list[str]:
        """The words of a candidate's short look-ahead, as the daemon counts them for ``phrase_words``."""
        phrases = self.fork.phrases(index) if self.fork else []
        return phrases[0].split() if phrases else []

    def phrase_mark(self) -> int:
        """Look-ahead words marked on the focused candidate (0 when the mark is on another candidate or fork)."""
        if self.marked and self.fork and self.marked[:2] == (self.fork.fork_id, self.focus):
            return self.marked[2]
        return 0

    # ------------------------------------------------------------------ incoming
    def apply(self, msg: Message) -> bool:
        """Fold one message into the state; True when something visible changed."""
        body = msg.body
        fork_id = msg.header.fork_id
        changed = True
        if isinstance(body, ForkOpen) and fork_id:
            self._open(fork_id, body)
        elif isinstance(body, ForkLookahead):
            changed = self._lookahead(fork_id, body)
        elif isinstance(body, ForkDecided):
            changed = self._decided(fork_id, body)
        elif isinstance(body, TextState):
            self.text, self.spans = body.text, list(body.spans)
        elif isinstance(body, TextAuto):
            self._append(body.text, "model")
        elif isinstance(body, TextUndo):
            self._undo(body.removed)
        elif isinstance(body, DaemonStatus):
            self.status = body
            if body.last_fork_ms is not None:
                self.last_fork_ms = body.last_fork_ms
        elif isinstance(body, DaemonError):
            self.last_error = body
        elif isinstance(body, SourceStatus):
            self.sources[body.source] = body
        elif isinstance(body, Focus):
            changed = self._focus(fork_id, body)
        else:
            changed = False
        if changed:
            self.version += 1
        return changed

    def _open(self, fork_id: str, body: ForkOpen) -> None:
        same_fork = self.fork is not None and self.fork.fork_id == fork_id
        keep = self.fork.candidates[self.fork.position_of(self.focus)].index if (
            same_fork and self.fork and self.fork.position_of(self.focus) is not None
        ) else None
        self.fork = Fork.from_open(fork_id, body)
        if body.compute_ms:
            self.last_fork_ms = body.compute_ms
        if keep is not None and self.fork.position_of(keep) is not None:
            self.focus = keep
        else:
            self.focus = self.fork.candidates[0].index if self.fork.candidates else None
            self.focus_source, self.focus_own = "", False
        if body.prefix != self.typed and body.prefix not in self.sent_prefixes:
            # Someone else (another adapter, the daemon) set the prefix: continue from it.
            self.typed = body.prefix
            self.sent_prefixes.clear()

    def _lookahead(self, fork_id: str | None, body: ForkLookahead) -> bool:
        if self.fork is None or self.fork.fork_id != fork_id:
            return False
        for entry in body.entries:
            target = self.fork.long if entry.long else self.fork.short
            target[entry.index] = list(entry.phrases)
        self.fork.lookahead_done = self.fork.lookahead_done or body.done
        return True

    def _decided(self, fork_id: str | None, body: ForkDecided) -> bool:
        self.last_decision = Decision(list(body.words), list(body.sources), body.latency_ms, body.rule)
        if self.fork is not None and self.fork.fork_id == fork_id:
            self.fork = None
            self.focus, self.focus_own = None, False
            self.typed = ""
            self.sent_prefixes.clear()
        return True

    def _focus(self, fork_id: str | None, body: Focus) -> bool:
        if self.fork is None or self.fork.fork_id != fork_id:
            return False
        if body.index is not None and self.fork.position_of(body.index) is None:
            return False
        self.focus, self.focus_source = body.index, body.source
        self.focus_own = body.source == self.me
        return True

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

    # ------------------------------------------------------------------ focus moves
    def moved_focus(self, step: int) -> int | None:
        """The candidate index ``step`` places from the focused one (wrapping), or None."""
        if self.fork is None or not self.fork.candidates:
            return None
        pos = self.fork.position_of(self.focus)
        n = len(self.fork.candidates)
        new = (0 if step > 0 else n - 1) if pos is None else (pos + step) % n
        return self.fork.candidates[new].index
