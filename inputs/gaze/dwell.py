"""Dwell: focus follows fixations; enough fixation time on one target confirms it.

What is focused is a *key* (hittest.Key): a candidate's index, or since protocol 1.4 any other
target's id (a command, a keyboard key, a look-ahead word, Resume); every rule below holds for both.
Per sample the tracker gets the sample's label (fixation / saccade / lost) and the key
its fixation hits. It

* moves the focus once a fixation has stayed ``min_fixation_ms`` on another candidate (or on
  none), and says so at once;
* counts only time between consecutive fixation samples on the focused candidate, so
  saccades and blinks add nothing, and a confirm can only happen on a valid fixation sample
  (gaze lost never confirms);
* holds focus and progress through short losses (blinks up to ``blink_hold_ms``), and drops
  them after longer ones;
* reports progress ``progress_hz`` times a second while dwelling, and re-sends a held focus
  every ``refresh_ms`` so it never goes stale;
* confirms once per visit: the same key is confirmed again only after the focus left it. For a
  target other than a candidate this holds across forks too (a key reopens the fork under the
  gaze: typing "ee" takes a look away from "e" and back);
* counts no dwell for a fixation that began before the fork opened (the caller says which are
  ``fresh``), so a confirm is never chained onto the next fork's word under a resting gaze.

With cascading dwell each key's dwell is ``dwell_ms - (dwell_ms - cascade_min_ms) * prob`` (the
candidates' probabilities, and the next letters' for keyboard keys).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from razvilka.inputs.gaze.fixation import FIXATION
from razvilka.inputs.gaze.hittest import Key

#: Longest step between two samples that still counts as dwell time (a dropped sample or two).
MAX_STEP_S = 0.05


class _OnKey:
    """A focus or confirm names a candidate (``index``) or another target (``target``); ``key`` is that one,
    as the hit test names it."""

    index: int | None
    target: str | None

    @property
    def key(self) -> Key | None:
        return self.index if self.target is None else self.target


@dataclass(frozen=True)
class FocusEvent(_OnKey):
    """Focus on a candidate (``index``) or another target (``target``); both None = on none.
    ``dwell`` is progress 0..1 or None."""

    t: float
    index: int | None
    dwell: float | None = None
    x: float | None = None
    y: float | None = None
    confidence: float = 1.0
    target: str | None = None  # protocol 1.4: a target that is not a candidate (then index is None)


@dataclass(frozen=True)
class ConfirmEvent(_OnKey):
    """A dwell confirmed candidate ``index``, or (``index`` None) the target ``target``."""

    t: float
    index: int | None
    confidence: float = 1.0
    target: str | None = None


@dataclass(frozen=True)
class RestEvent:
    """No valid gaze on the screen for ``rest_ms`` while a fork waits: the person rests (pause)."""

    t: float
    away_s: float


GazeEvent = FocusEvent | ConfirmEvent | RestEvent


def _split(key: Key | None) -> tuple[int | None, str | None]:
    """(index, target) of a key: a candidate index, or a target id."""
    return (key, None) if key is None or isinstance(key, int) else (None, key)


def dwell_for(prob: float, dwell_ms: float, cascade: bool, cascade_min_ms: float) -> float:
    """Dwell time (ms) for a candidate of probability ``prob``; shorter for likely words with cascade."""
    if not cascade or dwell_ms <= 0:
        return dwell_ms
    p = min(max(prob, 0.0), 1.0)
    return max(cascade_min_ms, dwell_ms - (dwell_ms - cascade_min_ms) * p)


class DwellTracker:
    """Focus and dwell state of one fork (pure: samples in, events out)."""

    def __init__(
        self,
        dwell_ms: float = 600.0,
        min_fixation_ms: float = 50.0,
        blink_hold_ms: float = 300.0,
        progress_hz: float = 10.0,
        refresh_ms: float = 500.0,
        cascade: bool = False,
        cascade_min_ms: float = 300.0,
    ) -> None:
        self.dwell_ms = dwell_ms
        self.min_fix_s = min_fixation_ms / 1000
        self.hold_s = blink_hold_ms / 1000
        self.progress_s = 1.0 / progress_hz if progress_hz > 0 else math.inf
        self.refresh_s = refresh_ms / 1000 if refresh_ms > 0 else math.inf
        self.cascade = cascade
        self.cascade_min_ms = cascade_min_ms
        self.thresholds: dict[Key, float] = {}
        self.spent: Key | None = None  # the key confirmed last: not again until the focus has left it
        self.reset()

    def reset(self, probs: dict[Key, float] | None = None) -> None:
        """Start afresh (a new fork); ``probs`` are the keys' probabilities (candidates by index, and
        maybe keyboard keys by target id). A spent target other than a candidate stays spent."""
        self.focus: Key | None = None
        self.revisit = False  # the focus came back to the spent key without leaving it: no dwell
        if isinstance(self.spent, int):
            self.spent = None
        self.progress_s_acc = 0.0
        self.armed = True
        self.pending: tuple[Key | None, float] | None = None  # (key a fixation moved to, since when)
        self.prev_on_focus = False
        self.prev_t = math.nan
        self.last_fix_t = math.nan
        self.last_emit_t = -math.inf
        self.x: float | None = None
        self.y: float | None = None
        if probs is not None:
            self.thresholds = {
                i: dwell_for(p, self.dwell_ms, self.cascade, self.cascade_min_ms) for i, p in probs.items()
            }

    def threshold_ms(self, key: Key) -> float:
        return self.thresholds.get(key, self.dwell_ms)

    def progress(self) -> float | None:
        """Dwell progress 0..1 of the focused key (None: nothing focused or dwell off; 0 on a key
        that was just confirmed and waits for the gaze to leave it)."""
        if self.focus is None or self.threshold_ms(self.focus) <= 0:
            return None
        if not self.armed:
            return 0.0 if self.revisit else 1.0
        return min(1.0, self.progress_s_acc * 1000 / self.threshold_ms(self.focus))

    def _focus_event(self, t: float, confidence: float) -> FocusEvent:
        self.last_emit_t = t
        index, target = _split(self.focus)
        return FocusEvent(t, index, self.progress(), self.x, self.y, confidence, target)

    def drop(self, t: float) -> list[GazeEvent]:
        """Gaze is gone (stream lost, fork closed, a long blink or look-away): unfocus if focused."""
        was = self.focus
        self.focus, self.pending, self.progress_s_acc, self.armed = None, None, 0.0, True
        self.spent, self.revisit = None, False  # the gaze left whatever it confirmed
        self.prev_on_focus = False
        self.x = self.y = None
        return [self._focus_event(t, 1.0)] if was is not None else []

    def step(
        self,
        t: float,
        label: int,
        hit: Key | None,
        x: float | None = None,
        y: float | None = None,
        confidence: float = 1.0,
        fresh: bool = True,
    ) -> list[GazeEvent]:
        """One sample. ``hit`` matters only for FIXATION samples; x/y (screen px) go into the events.

        ``fresh`` False: the fixation began before this fork opened. It moves focus but adds no
        dwell, so a gaze resting where a new fork's word appears does not confirm it unbidden.
        """
        out: list[GazeEvent] = []
        if label != FIXATION:
            self.prev_on_focus = False
            self.pending = None
            gone_since = self.last_fix_t if not math.isnan(self.last_fix_t) else t
            if self.focus is not None and t - gone_since > self.hold_s:
                out += self.drop(t)
            elif self.focus is not None and t - self.last_emit_t >= self.refresh_s:
                out.append(self._focus_event(t, confidence))
            self.prev_t = t
            return out
        self.last_fix_t = t
        if x is not None:
            self.x, self.y = x, y
        if hit == self.focus:
            self.pending = None
            if self.prev_on_focus and self.focus is not None and fresh:
                self.progress_s_acc += min(t - self.prev_t, MAX_STEP_S)
            self.prev_on_focus = True
        else:
            self.prev_on_focus = False
            if self.pending is None or self.pending[0] != hit:
                self.pending = (hit, t)
            if t - self.pending[1] >= self.min_fix_s:
                # the fixation stayed long enough on another key (or on none): move focus at once
                if hit != self.spent:
                    self.spent = None  # the gaze left what it confirmed last
                spent = hit is not None and hit == self.spent
                credit = t - self.pending[1] if fresh and not spent else 0.0
                self.focus, self.pending = hit, None
                self.armed, self.revisit = not spent, spent
                self.progress_s_acc = credit if hit is not None else 0.0
                self.prev_on_focus = hit is not None
                out.append(self._focus_event(t, confidence))
                self.prev_t = t
                return out
        self.prev_t = t
        if self.focus is None:
            return out
        limit = self.threshold_ms(self.focus)
        if self.armed and limit > 0 and self.progress_s_acc * 1000 >= limit:
            self.armed = False
            self.spent = self.focus
            out.append(self._focus_event(t, confidence))
            index, target = _split(self.focus)
            out.append(ConfirmEvent(t, index, confidence, target))
        elif self.armed and limit > 0 and t - self.last_emit_t >= self.progress_s:
            out.append(self._focus_event(t, confidence))
        elif t - self.last_emit_t >= self.refresh_s:
            out.append(self._focus_event(t, confidence))
        return out
