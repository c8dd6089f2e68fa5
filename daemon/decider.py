"""Fusion of input intent into one decision per fork: the only place the hybrid rules live.

Inputs publish intent (focus, confirm, select); the decider turns it into a decision:

* ``input.select`` decides at once (number key, click, confident P300).
* ``input.confirm`` decides the *focused* candidate. Focus older than ``stale_focus_ms`` does
  not count; a confirm with no fresh focus does nothing and says why.
* When several sources hold focus, a physical/pointer source (``kind`` key, switch, pointer)
  wins over gaze, and gaze over the rest; among equals the most recent wins.
* A confirm that names a candidate without a posterior decides it (rule ``dwell`` from gaze,
  ``confirm`` otherwise); one with a posterior (EEG) is fused with gaze focus: the
  gaze-focused candidate is chosen when the EEG posterior supports it; EEG alone decides only
  above ``eeg_alone`` confidence.
* Every decision says which sources decided it, by which rule, and how long it took.

A source's priority comes from the ``kind`` its messages carry (protocol 1.3). A 1.0-1.2 sender
sends no kind; only then is it guessed from the source's name (:func:`guess_kind`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import SOURCE_KINDS, Confirm, Focus, Select

#: Priority of a source's focus by kind: deliberate physical or pointer action 2, gaze 1,
#: anything else (eeg, other, a kind from a later minor) 0.
KIND_RANK = {"key": 2, "switch": 2, "pointer": 2, "gaze": 1}

#: 1.2 compatibility only: source names (before any ":" or ".") and the kind they stand for.
LEGACY_NAMES = {
    "keyboard": "key", "tui": "key", "web": "pointer", "mouse": "pointer", "touch": "pointer",
    "footswitch": "switch", "switch": "switch", "gaze": "gaze", "eeg": "eeg",
}


def guess_kind(source: str) -> str:
    """The kind of a source that did not say (a 1.0-1.2 sender), from its name; "other" if unknown."""
    return LEGACY_NAMES.get(source.split(":", 1)[0].split(".", 1)[0], "other")


def source_kind(body: Focus | Confirm | Select) -> str:
    """The kind a message's source is: as sent (1.3), "other" for a kind this daemon does not know,
    guessed from the name when the sender said nothing."""
    if not body.kind:
        return guess_kind(body.source)
    return body.kind if body.kind in SOURCE_KINDS else "other"


def rank(kind: str) -> int:
    """Focus priority of a kind: 2 physical/pointer, 1 gaze, 0 anything else."""
    return KIND_RANK.get(kind, 0)


@dataclass
class FocusState:
    index: int
    source: str
    confidence: float
    ts_ns: int
    kind: str = "other"


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
            raise DaemonRefusal(ErrorCode.OUT_OF_RANGE, f"candidate {index} is outside this fork (0..{self.k - 1})")
        return index

    def on_focus(self, body: Focus, ts_ns: int) -> int | None:
        """Record focus; returns the index now focused overall (for pre-generation), or None."""
        if body.index is None:
            self.focus.pop(body.source, None)
        else:
            self._check_index(body.index)
            self.focus[body.source] = FocusState(body.index, body.source, body.confidence, ts_ns, source_kind(body))
        current = self.current_focus(ts_ns)
        return current.index if current else None

    def current_focus(self, now_ns: int) -> FocusState | None:
        fresh = [f for f in self.focus.values() if (now_ns - f.ts_ns) / 1e6 <= self.stale_focus_ms]
        if not fresh:
            return None
        return max(fresh, key=lambda f: (rank(f.kind), f.ts_ns))

    def on_select(self, body: Select, ts_ns: int) -> Decision:
        index = self._check_index(body.index)
        return Decision(index, [body.source], "select", self._latency(ts_ns), phrase=body.phrase,
                        phrase_words=body.phrase_words)

    def on_confirm(self, body: Confirm, ts_ns: int) -> Decision:
        focus = self.current_focus(ts_ns)
        kind = source_kind(body)
        if body.index is not None and body.posterior is None:  # e.g. a dwell confirm naming its candidate
            index = self._check_index(body.index)
            rule = "dwell" if kind == "gaze" else "confirm"
            return Decision(index, [body.source], rule, self._latency(ts_ns))
        if body.index is not None:  # a confirm that carries its own evidence (P300 posterior)
            index = self._check_index(body.index)
            gaze = focus if focus is not None and focus.kind == "gaze" else None
            post = body.posterior[index] if body.posterior and index < len(body.posterior) else body.confidence
            if gaze is not None:
                gaze_post = body.posterior[gaze.index] if body.posterior and gaze.index < len(body.posterior) else 0.0
                if gaze.index == index or gaze_post >= self.eeg_support:
                    return Decision(gaze.index, [gaze.source, body.source], "gaze+eeg", self._latency(ts_ns))
            if post >= self.eeg_alone:
                return Decision(index, [body.source], "eeg", self._latency(ts_ns))
            raise DaemonRefusal(
                ErrorCode.NO_FOCUS,
                f"{body.source} confirmed candidate {index} with confidence {post:.2f}; "
                f"below {self.eeg_alone} and no gaze focus supports it",
            )
        if focus is None:
            stale = list(self.focus.values())
            why = (f"the last focus ({stale[-1].source} on {stale[-1].index}) is older than "
                   f"{self.stale_focus_ms:.0f} ms" if stale else "nothing is focused")
            raise DaemonRefusal(ErrorCode.NO_FOCUS, f"confirm from {body.source} ignored: {why}")
        sources = [focus.source] if focus.source == body.source else [focus.source, body.source]
        rule = "dwell" if focus.source == body.source and kind == "gaze" else "focus+confirm"
        return Decision(focus.index, sources, rule, self._latency(ts_ns))

    def _latency(self, ts_ns: int) -> float:
        return max(0.0, (ts_ns - self.opened_ns) / 1e6)
