"""Fusion of input intent into one decision per fork: the only place the hybrid rules live.

Inputs publish intent (focus, confirm, select); the decider turns it into a decision:

* ``input.select`` decides at once (number key, click, confident P300).
* ``input.confirm`` decides the *focused* candidate. Focus older than ``stale_focus_ms`` does
  not count; a confirm with no fresh focus does nothing and says why.
* When several sources hold focus, a physical/pointer source (keys, mouse, touch) wins over
  gaze; among equals the most recent wins.
* A confirm that names a candidate with a posterior (EEG) is fused with gaze focus: the
  gaze-focused candidate is chosen when the EEG posterior supports it; EEG alone decides only
  above ``eeg_alone`` confidence.
* Every decision says which sources decided it, by which rule, and how long it took.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Confirm, Focus, Select

#: Sources that stand for a deliberate physical action; they beat gaze for focus.
PHYSICAL = ("keyboard", "tui", "web", "mouse", "touch", "footswitch", "switch")
GAZE = ("gaze",)


def source_class(source: str) -> int:
    """Priority of a source's focus: 2 physical/pointer, 1 gaze, 0 anything else."""
    base = source.split(":", 1)[0].split(".", 1)[0]
    if base in PHYSICAL:
        return 2
    if base in GAZE:
        return 1
    return 0


@dataclass
class FocusState:
    index: int
    source: str
    confidence: float
    ts_ns: int


@dataclass
class Decision:
    index: int
    sources: list[str]
    rule: str
    latency_ms: float
    phrase: bool = False
    phrase_words: int = 0  # look-ahead words to take with the candidate (0: all of them if phrase)


@dataclass
class Decider:
    """Holds the focus of each source for the open fork."""

    stale_focus_ms: float = 1500.0
    eeg_alone: float = 0.9
    eeg_support: float = 0.3
    fork_id: str | None = None
    k: int = 0
    opened_ns: int = 0
    focus: dict[str, FocusState] = field(default_factory=dict)

    def open(self, fork_id: str, k: int, opened_ns: int) -> None:
        self.fork_id, self.k, self.opened_ns = fork_id, k, opened_ns
        self.focus.clear()

    def _check_index(self, index: int | None) -> int:
        if index is None or not 0 <= index < self.k:
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"candidate {index} is outside this fork (0..{self.k - 1})")
        return index

    def on_focus(self, body: Focus, ts_ns: int) -> int | None:
        """Record focus; returns the index now focused overall (for pre-generation), or None."""
        if body.index is None:
            self.focus.pop(body.source, None)
        else:
            self._check_index(body.index)
            self.focus[body.source] = FocusState(body.index, body.source, body.confidence, ts_ns)
        current = self.current_focus(ts_ns)
        return current.index if current else None

    def current_focus(self, now_ns: int) -> FocusState | None:
        fresh = [f for f in self.focus.values() if (now_ns - f.ts_ns) / 1e6 <= self.stale_focus_ms]
        if not fresh:
            return None
        return max(fresh, key=lambda f: (source_class(f.source), f.ts_ns))

    def on_select(self, body: Select, ts_ns: int) -> Decision:
        index = self._check_index(body.index)
        return Decision(index, [body.source], "select", self._latency(ts_ns), phrase=body.phrase,
                        phrase_words=body.phrase_words)

    def on_confirm(self, body: Confirm, ts_ns: int) -> Decision:
        focus = self.current_focus(ts_ns)
        if body.index is not None and body.posterior is None:  # e.g. a dwell confirm naming its candidate
            index = self._check_index(body.index)
            rule = "dwell" if source_class(body.source) == 1 else "confirm"
            return Decision(index, [body.source], rule, self._latency(ts_ns))
        if body.index is not None:  # a confirm that carries its own evidence (P300 posterior)
            index = self._check_index(body.index)
            gaze = focus if focus is not None and source_class(focus.source) == 1 else None
            post = body.posterior[index] if body.posterior and index < len(body.posterior) else body.confidence
            if gaze is not None:
                gaze_post = body.posterior[gaze.index] if body.posterior and gaze.index < len(body.posterior) else 0.0
                if gaze.index == index or gaze_post >= self.eeg_support:
                    return Decision(gaze.index, [gaze.source, body.source], "gaze+eeg", self._latency(ts_ns))
            if post >= self.eeg_alone:
                return Decision(index, [body.source], "eeg", self._latency(ts_ns))
            raise ProtocolError(
                ErrorCode.NO_FOCUS,
                f"{body.source} confirmed candidate {index} with confidence {post:.2f}; "
                f"below {self.eeg_alone} and no gaze focus supports it",
            )
        if focus is None:
            stale = [f for f in self.focus.values()]
            why = (f"the last focus ({stale[-1].source} on {stale[-1].index}) is older than {self.stale_focus_ms:.0f} ms"
                   if stale else "nothing is focused")
            raise ProtocolError(ErrorCode.NO_FOCUS, f"confirm from {body.source} ignored: {why}")
        sources = [focus.source] if focus.source == body.source else [focus.source, body.source]
        rule = "dwell" if focus.source == body.source and source_class(body.source) == 1 else "focus+confirm"
        return Decision(focus.index, sources, rule, self._latency(ts_ns))

    def _latency(self, ts_ns: int) -> float:
        return max(0.0, (ts_ns - self.opened_ns) / 1e6)
