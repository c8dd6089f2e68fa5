"""Fusion of input intent into one decision per fork: the only place the hybrid rules live.

Inputs publish intent (focus, confirm, select); the decider turns it into a decision:

* ``input.select`` decides at once (number key, click, confident P300).
* ``input.confirm`` decides the *focused* candidate. Focus older than ``stale_focus_ms`` does
  not count; a confirm with no fresh focus does nothing and says why.
* When several sources hold focus, a physical/pointer source (``kind`` key, switch, pointer)
  wins over gaze, and gaze over the rest; among equals the most recent wins.
* A confirm that names a candidate without a posterior decides it (rule ``dwell`` from gaze,
  ``confirm`` otherwise); one with a posterior, or from an EEG source (its ``confidence`` is the
  evidence for a target the posterior does not cover), is fused with gaze focus: the
  gaze-focused target is chosen when the EEG evidence supports it; EEG alone decides only
  above ``eeg_alone`` confidence.
* Every decision says which sources decided it, by which rule, and how long it took.

Since protocol 1.4 every rule works on *targets* (protocol/targets.py): focus, confirm and select
may name a command, a keyboard key or a look-ahead word as well as a candidate, and candidate ``i``
is the target ``cand:i`` (an ``index`` is read as that). Non-candidate targets are fused by the
same rules: freshness, ranking by kind, a confirm naming its target. A decision carries its target;
the service applies it (a candidate decides the fork, a command runs, a key edits the typed word).

A source's priority comes from the ``kind`` its messages carry (protocol 1.3). A 1.0-1.2 sender
sends no kind; only then is it guessed from the source's name (:func:`guess_kind`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import SOURCE_KINDS, Confirm, Focus, Select
from razvilka.protocol.targets import Target, parse_target
from razvilka.protocol.targets import cand as cand_target
from razvilka.protocol.targets import word as word_target

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


def named_target(index: int | None, target: str | None) -> Target | None:
    """What a focus, confirm or select names: its ``target`` (parsed; a bad id is ``BAD_VALUE``), or
    candidate ``index`` as ``cand:<index>``; None when it names neither."""
    if target is not None:
        return parse_target(target)
    return cand_target(index) if index is not None else None


@dataclass
class FocusState:
    target: Target
    source: str
    confidence: float
    ts_ns: int
    kind: str = "other"

    @property
    def index(self) -> int | None:
        """The candidate focused (of a ``cand`` or ``word`` target); None for a command or a key."""
        return self.target.index


@dataclass
class Decision:
    index: int | None  # the candidate (cand and word targets); None for a command or a key
    sources: list[str]
    rule: str
    latency_ms: float
    phrase: bool = False
    phrase_words: int = 0  # look-ahead words to take with the candidate (0: all of them if phrase)
    target: Target | None = None  # what was decided; None only if built without one (then cand:<index>)

    def __post_init__(self) -> None:
        if self.target is None and self.index is not None:
            self.target = cand_target(self.index)


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

    def _check(self, target: Target) -> Target:
        """A candidate or look-ahead word target must name a candidate of this fork (``OUT_OF_RANGE``)."""
        if target.candidate and not (target.index is not None and 0 <= target.index < self.k):
            raise DaemonRefusal(ErrorCode.OUT_OF_RANGE,
                                f"target {target} is outside this fork (candidates 0..{self.k - 1})")
        return target

    def on_focus(self, body: Focus, ts_ns: int) -> int | None:
        """Record focus; returns the candidate now focused overall (for pre-generation), or None.

        A focus naming neither index nor target (a scanned row's ``group`` alone) is focus on nothing."""
        target = named_target(body.index, body.target)
        if target is None:
            self.focus.pop(body.source, None)
        else:
            self._check(target)
            self.focus[body.source] = FocusState(target, body.source, body.confidence, ts_ns, source_kind(body))
        current = self.current_focus(ts_ns)
        return current.index if current else None

    def focused_target(self, now_ns: int) -> Target | None:
        """The target the fresh focus of highest rank is on (what a confirm would decide), or None."""
        current = self.current_focus(now_ns)
        return current.target if current else None

    def current_focus(self, now_ns: int) -> FocusState | None:
        fresh = [f for f in self.focus.values() if (now_ns - f.ts_ns) / 1e6 <= self.stale_focus_ms]
        if not fresh:
            return None
        return max(fresh, key=lambda f: (rank(f.kind), f.ts_ns))

    def on_select(self, body: Select, ts_ns: int) -> Decision:
        target = named_target(body.index, body.target)
        if target is None:  # the codec refuses such a select; one built by hand gets the same answer
            raise DaemonRefusal(ErrorCode.OUT_OF_RANGE, f"select from {body.source} names neither index nor target")
        self._check(target)
        if target.kind == "cand" and body.phrase_words:  # 1.1's phrase_words is the word target it names
            target = word_target(target.index or 0, body.phrase_words)
        return self._decision(target, [body.source], "select", ts_ns, phrase=body.phrase)

    def on_confirm(self, body: Confirm, ts_ns: int) -> Decision:
        focus = self.current_focus(ts_ns)
        kind = source_kind(body)
        named = named_target(body.index, body.target)
        if named is not None and body.posterior is None and kind != "eeg":  # e.g. a dwell confirm naming its target
            self._check(named)
            return self._decision(named, [body.source], "dwell" if kind == "gaze" else "confirm", ts_ns)
        if named is not None:  # a confirm with its own evidence: a P300 posterior (over the candidates) or,
            # for a target the posterior does not cover (a command, a key), the EEG source's confidence
            self._check(named)
            post = self._posterior(body, named)
            gaze = focus if focus is not None and focus.kind == "gaze" else None
            supports = gaze is not None and (
                gaze.target == named or self._posterior(body, gaze.target, 0.0) >= self.eeg_support)
            if gaze is not None and supports:
                return self._decision(gaze.target, [gaze.source, body.source], "gaze+eeg", ts_ns)
            if post >= self.eeg_alone:
                return self._decision(named, [body.source], "eeg", ts_ns)
            raise DaemonRefusal(
                ErrorCode.NO_FOCUS,
                f"{body.source} confirmed {named} with confidence {post:.2f}; "
                f"below {self.eeg_alone} and no gaze focus supports it",
            )
        if focus is None:
            stale = list(self.focus.values())
            why = (f"the last focus ({stale[-1].source} on {stale[-1].target}) is older than "
                   f"{self.stale_focus_ms:.0f} ms" if stale else "nothing is focused")
            raise DaemonRefusal(ErrorCode.NO_FOCUS, f"confirm from {body.source} ignored: {why}")
        sources = [focus.source] if focus.source == body.source else [focus.source, body.source]
        rule = "dwell" if focus.source == body.source and kind == "gaze" else "focus+confirm"
        return self._decision(focus.target, sources, rule, ts_ns)

    @staticmethod
    def _posterior(body: Confirm, target: Target, otherwise: float | None = None) -> float:
        """The posterior a P300 confirm gives ``target``: its candidate's entry; for a target the posterior
        does not cover (a command, a key), ``otherwise`` (default: the confirm's own confidence)."""
        post = body.posterior
        i = target.index
        if post and i is not None and i < len(post):
            return float(post[i])
        return body.confidence if otherwise is None else otherwise

    def _decision(self, target: Target, sources: list[str], rule: str, ts_ns: int, *, phrase: bool = False) -> Decision:
        return Decision(target.index, sources, rule, self._latency(ts_ns), phrase=phrase,
                        phrase_words=target.words, target=target)

    def _latency(self, ts_ns: int) -> float:
        return max(0.0, (ts_ns - self.opened_ns) / 1e6)
