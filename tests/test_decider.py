"""The fusion rules, one worked example each (the same examples docs/protocol.md walks through)."""
from __future__ import annotations

import pytest

from razvilka.daemon.decider import Decider
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Confirm, Focus, Select

MS = 1_000_000


def fresh(k: int = 5) -> Decider:
    d = Decider(stale_focus_ms=1500)
    d.open("f1", k, opened_ns=0)
    return d


def test_keys_only_arrows_then_enter() -> None:
    d = fresh()
    d.on_focus(Focus(index=0, source="keyboard"), 100 * MS)
    d.on_focus(Focus(index=1, source="keyboard"), 200 * MS)
    decision = d.on_confirm(Confirm(source="keyboard"), 300 * MS)
    assert (decision.index, decision.sources, decision.rule, decision.latency_ms) == (1, ["keyboard"], "focus+confirm", 300.0)


def test_number_key_selects_directly() -> None:
    decision = fresh().on_select(Select(index=4, source="keyboard"), 50 * MS)
    assert (decision.index, decision.rule) == (4, "select")


def test_gaze_plus_key_confirm() -> None:
    d = fresh()
    d.on_focus(Focus(index=2, source="gaze", confidence=0.7), 100 * MS)
    decision = d.on_confirm(Confirm(source="footswitch"), 400 * MS)
    assert (decision.index, decision.sources) == (2, ["gaze", "footswitch"])


def test_gaze_dwell() -> None:
    d = fresh()
    d.on_focus(Focus(index=3, source="gaze", dwell=1.0), 600 * MS)
    decision = d.on_confirm(Confirm(source="gaze"), 610 * MS)
    assert (decision.index, decision.rule, decision.sources) == (3, "dwell", ["gaze"])


def test_key_focus_wins_over_gaze_focus() -> None:
    d = fresh()
    d.on_focus(Focus(index=1, source="keyboard"), 100 * MS)
    d.on_focus(Focus(index=4, source="gaze"), 200 * MS)  # newer, but gaze
    assert d.on_confirm(Confirm(source="keyboard"), 300 * MS).index == 1


def test_stale_focus_does_not_count() -> None:
    d = fresh()
    d.on_focus(Focus(index=1, source="gaze"), 0)
    with pytest.raises(ProtocolError) as err:
        d.on_confirm(Confirm(source="footswitch"), 2000 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS and "older than 1500 ms" in str(err.value)


def test_confirm_without_focus_says_why() -> None:
    with pytest.raises(ProtocolError) as err:
        fresh().on_confirm(Confirm(source="footswitch"), 10 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS and "nothing is focused" in str(err.value)


def test_gaze_plus_eeg() -> None:
    d = fresh(4)
    d.on_focus(Focus(index=2, source="gaze", confidence=0.6), 100 * MS)
    decision = d.on_confirm(Confirm(source="eeg", index=2, confidence=0.55, posterior=[0.1, 0.1, 0.55, 0.25]), 900 * MS)
    assert (decision.index, decision.rule, decision.sources) == (2, "gaze+eeg", ["gaze", "eeg"])


def test_eeg_alone_needs_high_confidence() -> None:
    d = fresh(4)
    with pytest.raises(ProtocolError) as err:
        d.on_confirm(Confirm(source="eeg", index=1, posterior=[0.2, 0.5, 0.2, 0.1]), 100 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS
    decision = d.on_confirm(Confirm(source="eeg", index=1, posterior=[0.01, 0.95, 0.02, 0.02]), 100 * MS)
    assert (decision.index, decision.rule) == (1, "eeg")


def test_eeg_disagreeing_with_gaze_does_not_decide_for_weak_gaze_candidate() -> None:
    d = fresh(4)
    d.on_focus(Focus(index=0, source="gaze"), 100 * MS)
    with pytest.raises(ProtocolError):
        d.on_confirm(Confirm(source="eeg", index=3, posterior=[0.05, 0.05, 0.1, 0.8]), 200 * MS)


def test_out_of_range() -> None:
    d = fresh(3)
    with pytest.raises(ProtocolError) as err:
        d.on_select(Select(index=3, source="keyboard"), 0)
    assert err.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(ProtocolError):
        d.on_focus(Focus(index=7, source="gaze"), 0)


def test_dwell_confirm_that_names_its_candidate() -> None:
    d = fresh()
    decision = d.on_confirm(Confirm(source="gaze", index=2), 700 * MS)
    assert (decision.index, decision.rule, decision.sources) == (2, "dwell", ["gaze"])
