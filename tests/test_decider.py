"""The fusion rules, one worked example each (the same examples docs/protocol.md walks through)."""
from __future__ import annotations

import pytest

from razvilka.daemon.decider import Decider, guess_kind
from razvilka.daemon.errors import DaemonRefusal
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
    assert (decision.index, decision.sources, decision.rule, decision.latency_ms) == (
        1, ["keyboard"], "focus+confirm", 300.0)


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
    with pytest.raises(DaemonRefusal) as err:
        d.on_confirm(Confirm(source="footswitch"), 2000 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS and "older than 1500 ms" in str(err.value)


def test_confirm_without_focus_says_why() -> None:
    with pytest.raises(DaemonRefusal) as err:
        fresh().on_confirm(Confirm(source="footswitch"), 10 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS and "nothing is focused" in str(err.value)


def test_gaze_plus_eeg() -> None:
    d = fresh(4)
    d.on_focus(Focus(index=2, source="gaze", confidence=0.6), 100 * MS)
    decision = d.on_confirm(Confirm(source="eeg", index=2, confidence=0.55, posterior=[0.1, 0.1, 0.55, 0.25]), 900 * MS)
    assert (decision.index, decision.rule, decision.sources) == (2, "gaze+eeg", ["gaze", "eeg"])


def test_eeg_alone_needs_high_confidence() -> None:
    d = fresh(4)
    with pytest.raises(DaemonRefusal) as err:
        d.on_confirm(Confirm(source="eeg", index=1, posterior=[0.2, 0.5, 0.2, 0.1]), 100 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS
    decision = d.on_confirm(Confirm(source="eeg", index=1, posterior=[0.01, 0.95, 0.02, 0.02]), 100 * MS)
    assert (decision.index, decision.rule) == (1, "eeg")


def test_eeg_disagreeing_with_gaze_does_not_decide_for_weak_gaze_candidate() -> None:
    d = fresh(4)
    d.on_focus(Focus(index=0, source="gaze"), 100 * MS)
    with pytest.raises(DaemonRefusal):
        d.on_confirm(Confirm(source="eeg", index=3, posterior=[0.05, 0.05, 0.1, 0.8]), 200 * MS)


def test_out_of_range() -> None:
    d = fresh(3)
    with pytest.raises(DaemonRefusal) as err:
        d.on_select(Select(index=3, source="keyboard"), 0)
    assert err.value.code == ErrorCode.OUT_OF_RANGE
    with pytest.raises(DaemonRefusal):
        d.on_focus(Focus(index=7, source="gaze"), 0)


def test_dwell_confirm_that_names_its_candidate() -> None:
    d = fresh()
    decision = d.on_confirm(Confirm(source="gaze", index=2), 700 * MS)
    assert (decision.index, decision.rule, decision.sources) == (2, "dwell", ["gaze"])


def test_refusals_are_the_daemons_own_error_not_a_wire_error() -> None:
    with pytest.raises(DaemonRefusal) as err:
        fresh().on_confirm(Confirm(source="footswitch", kind="switch"), 10 * MS)
    assert not isinstance(err.value, ProtocolError)


# ---------------------------------------------------------------- 1.3: ranking by the kind a message carries
def test_gaze_named_otherwise_is_gaze_by_kind() -> None:
    """An adapter named gaze-tobii that says kind=gaze dwells like gaze (by name it was 'other')."""
    d = fresh()
    d.on_focus(Focus(index=3, source="gaze-tobii", kind="gaze", dwell=1.0), 600 * MS)
    decision = d.on_confirm(Confirm(source="gaze-tobii", kind="gaze"), 610 * MS)
    assert (decision.index, decision.rule, decision.sources) == (3, "dwell", ["gaze-tobii"])
    indexed = fresh().on_confirm(Confirm(source="gaze-tobii", kind="gaze", index=1), 700 * MS)
    assert (indexed.index, indexed.rule) == (1, "dwell")


def test_kind_ranks_focus_not_the_name() -> None:
    d = fresh()
    d.on_focus(Focus(index=1, source="pad-7", kind="switch"), 100 * MS)     # a switch, by kind
    d.on_focus(Focus(index=2, source="tobii", kind="gaze"), 200 * MS)        # gaze
    d.on_focus(Focus(index=4, source="keyboard", kind="other"), 300 * MS)    # named keyboard, says other
    assert d.on_confirm(Confirm(source="pad-7", kind="switch"), 400 * MS).index == 1
    d = fresh()
    d.on_focus(Focus(index=2, source="tobii", kind="gaze"), 100 * MS)
    d.on_focus(Focus(index=4, source="keyboard", kind="other"), 200 * MS)    # newer, but below gaze
    decision = d.on_confirm(Confirm(source="pedal", kind="switch"), 300 * MS)
    assert (decision.index, decision.sources) == (2, ["tobii", "pedal"])


def test_pointer_beats_gaze() -> None:
    d = fresh()
    d.on_focus(Focus(index=0, source="web", kind="pointer"), 100 * MS)
    d.on_focus(Focus(index=3, source="gaze", kind="gaze"), 200 * MS)
    assert d.on_confirm(Confirm(source="footswitch", kind="switch"), 300 * MS).index == 0


def test_unknown_kind_from_a_later_minor_counts_as_other() -> None:
    d = fresh()
    d.on_focus(Focus(index=2, source="tracker", kind="gaze"), 100 * MS)
    d.on_focus(Focus(index=4, source="mic", kind="voice"), 200 * MS)  # newer, unknown kind: below gaze
    assert d.on_confirm(Confirm(source="pedal", kind="switch"), 300 * MS).index == 2
    # an indexed confirm of an unknown kind decides, as "confirm" (not "dwell")
    assert fresh().on_confirm(Confirm(source="mic", kind="voice", index=3), 0).rule == "confirm"


def test_gaze_by_kind_is_fused_with_eeg() -> None:
    d = fresh(4)
    d.on_focus(Focus(index=2, source="tobii", kind="gaze"), 100 * MS)
    decision = d.on_confirm(Confirm(source="p300", kind="eeg", index=2, confidence=0.55,
                                    posterior=[0.1, 0.1, 0.55, 0.25]), 900 * MS)
    assert (decision.index, decision.rule, decision.sources) == (2, "gaze+eeg", ["tobii", "p300"])


def test_no_kind_falls_back_to_the_name_guess() -> None:
    """The 1.2 compatibility rule: only a message without a kind is ranked by its source's name."""
    names = ("keyboard", "tui", "web:1", "mouse", "footswitch.left", "gaze", "eeg", "tobii")
    assert [guess_kind(n) for n in names] == ["key", "key", "pointer", "pointer", "switch", "gaze", "eeg", "other"]
    d = fresh()
    d.on_focus(Focus(index=1, source="tobii"), 100 * MS)    # 1.2 sender, unknown name: other
    d.on_focus(Focus(index=3, source="gaze"), 50 * MS)      # 1.2 sender named gaze: gaze, older but ranks higher
    assert d.on_confirm(Confirm(source="footswitch"), 200 * MS).index == 3


# ---------------------------------------------------------------- 1.4: targets
def test_gaze_focus_on_a_command_and_a_switch_confirm_decide_the_command() -> None:
    d = fresh()
    d.on_focus(Focus(index=None, target="cmd:back", source="tobii", kind="gaze"), 100 * MS)
    decision = d.on_confirm(Confirm(source="pedal", kind="switch"), 400 * MS)
    assert (str(decision.target), decision.index, decision.sources, decision.rule) == (
        "cmd:back", None, ["tobii", "pedal"], "focus+confirm")


def test_physical_focus_on_a_key_beats_gaze_focus_on_a_candidate() -> None:
    d = fresh()
    assert d.on_focus(Focus(index=None, target="key:e", source="pad", kind="switch"), 100 * MS) is None
    assert d.on_focus(Focus(index=None, target="cand:2", source="tobii", kind="gaze"), 200 * MS) is None  # newer, gaze
    assert str(d.focused_target(250 * MS)) == "key:e"
    decision = d.on_confirm(Confirm(source="pad", kind="switch"), 300 * MS)
    assert (str(decision.target), decision.index, decision.rule) == ("key:e", None, "focus+confirm")


def test_stale_focus_on_a_target_does_not_count() -> None:
    d = fresh()
    d.on_focus(Focus(index=None, target="cmd:more", source="tobii", kind="gaze"), 0)
    with pytest.raises(DaemonRefusal) as err:
        d.on_confirm(Confirm(source="pedal", kind="switch"), 2000 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS
    assert "tobii on cmd:more" in str(err.value) and "older than 1500 ms" in str(err.value)


def test_a_candidate_target_is_its_index() -> None:
    """cand:i and index i are the same focus: a focus by index, a confirm by target agree, and back."""
    d = fresh()
    assert d.on_focus(Focus(index=None, target="cand:3", source="tobii", kind="gaze"), 100 * MS) == 3
    decision = d.on_confirm(Confirm(source="pedal", kind="switch"), 300 * MS)
    assert (decision.index, str(decision.target)) == (3, "cand:3")
    by_index = fresh().on_select(Select(index=1, source="keyboard", kind="key"), 0)
    by_target = fresh().on_select(Select(target="cand:1", source="keyboard", kind="key"), 0)
    assert (by_index.index, by_index.target) == (by_target.index, by_target.target) == (1, by_target.target)


def test_dwell_confirm_naming_a_target() -> None:
    decision = fresh().on_confirm(Confirm(source="tobii", kind="gaze", target="key:space"), 700 * MS)
    assert (str(decision.target), decision.rule, decision.sources) == ("key:space", "dwell", ["tobii"])
    switch = fresh().on_confirm(Confirm(source="pad", kind="switch", target="cmd:pause"), 700 * MS)
    assert (str(switch.target), switch.rule) == ("cmd:pause", "confirm")


def test_select_of_a_look_ahead_word_takes_that_many_words() -> None:
    decision = fresh().on_select(Select(target="word:2:3", source="web", kind="pointer"), 10 * MS)
    assert (decision.index, decision.phrase_words, str(decision.target)) == (2, 3, "word:2:3")
    # the 1.1 form (index + phrase_words) is the same word target
    old = fresh().on_select(Select(index=2, phrase_words=3, source="web", kind="pointer"), 10 * MS)
    assert (old.index, old.phrase_words, str(old.target)) == (2, 3, "word:2:3")


def test_target_outside_the_fork_and_bad_ids() -> None:
    d = fresh(3)
    for body in (Select(target="cand:3", source="k"), Select(target="word:5:1", source="k")):
        with pytest.raises(DaemonRefusal) as err:
            d.on_select(body, 0)
        assert err.value.code == ErrorCode.OUT_OF_RANGE and str(body.target) in str(err.value)
    with pytest.raises(DaemonRefusal):
        d.on_focus(Focus(index=None, target="cand:9", source="tobii", kind="gaze"), 0)
    with pytest.raises(ProtocolError) as bad:  # the wire's shape is right, the grammar is not: named in the error
        d.on_select(Select(target="cmd:fly", source="k"), 0)
    assert bad.value.code == ErrorCode.BAD_VALUE and "cmd:fly" in str(bad.value)


def test_a_scanned_row_alone_is_focus_on_nothing() -> None:
    d = fresh()
    d.on_focus(Focus(index=None, target="key:e", source="pad", kind="switch"), 100 * MS)
    d.on_focus(Focus(index=None, group=["key:e", "key:t"], source="pad", kind="switch"), 200 * MS)
    with pytest.raises(DaemonRefusal) as err:
        d.on_confirm(Confirm(source="pad", kind="switch"), 300 * MS)
    assert err.value.code == ErrorCode.NO_FOCUS


def test_p300_confirm_of_a_key_target() -> None:
    """A P300 confirm naming a key: its confidence decides alone above eeg_alone; gaze on the same key
    supports it; a posterior (over candidates) says nothing about keys."""
    d = fresh(4)
    with pytest.raises(DaemonRefusal):
        d.on_confirm(Confirm(source="eeg", kind="eeg", target="key:t", confidence=0.6), 100 * MS)
    alone = d.on_confirm(Confirm(source="eeg", kind="eeg", target="key:t", confidence=0.95), 100 * MS)
    assert (str(alone.target), alone.rule) == ("key:t", "eeg")
    d.on_focus(Focus(index=None, target="key:t", source="tobii", kind="gaze"), 200 * MS)
    fused = d.on_confirm(Confirm(source="eeg", kind="eeg", target="key:t", confidence=0.6,
                                 posterior=[0.1, 0.1, 0.1, 0.1]), 300 * MS)
    assert (str(fused.target), fused.rule, fused.sources) == ("key:t", "gaze+eeg", ["tobii", "eeg"])
