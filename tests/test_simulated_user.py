"""The simulated-user benchmark: the person's policy and the cost accounting against hand-worked
examples, and one small end-to-end run of the person against the real daemon (real model)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from simuser.costs import (  # noqa: E402
    GAZE,
    KEY,
    P300,
    CostParams,
    PhraseResult,
    Step,
    count_actions,
    expected_cost,
    ksr,
    ksr_gain_ci,
    letters_steps,
    step_time,
    summarize,
    summarize_letters,
    wpm,
)
from simuser.driver import prompt_for  # noqa: E402
from simuser.policy import Action, ForkView, PolicyOptions, compare, decide, needs_lookahead, phrase_gain  # noqa: E402

T = "my watch fell in the water".split()
ON = PolicyOptions(phrases=True)
OFF = PolicyOptions(phrases=False)
WHOLE = PolicyOptions(phrases=True, partial_phrases=False)


# ---------------------------------------------------------------------------------------------- policy
@pytest.mark.parametrize("written, expected", [
    ("", ("ok", 0)),
    ("my watch", ("ok", 2)),
    (" my watch", ("ok", 2)),                       # a leading space is harmless
    ("my watch fell in the water", ("done", 6)),
    ("my watch fell in the water\n", ("done", 6)),  # the model ended the line: fine
    ("my watch fell", ("ok", 3)),
    ("my watch felt", ("wrong", 2)),
    ("my watch, fell", ("wrong", 1)),               # punctuation glued to a word is a wrong word
    ("my watch\nfell", ("wrong", 1)),               # a line break inside the phrase
    ("my watch fell in the water and", ("wrong", 6)),  # written past the end
])
def test_compare(written: str, expected: tuple[str, int]) -> None:
    assert compare(T, written) == expected


def test_phrase_gain_whole_needs_exactly_the_next_words() -> None:
    assert phrase_gain(T, 2, "fell", " in the", partial=False) == 2
    assert phrase_gain(T, 2, "fell", " in the water", partial=False) == 3          # reaches the end exactly
    assert phrase_gain(T, 2, "fell", " in the water and", partial=False) == 0      # past the end
    assert phrase_gain(T, 2, "fell", " in the wat", partial=False) == 0            # a wrong last word
    assert phrase_gain(T, 2, "fell", " into the", partial=False) == 0
    assert phrase_gain(T, 2, "fell", ", in the", partial=False) == 0               # punctuation first
    assert phrase_gain(T, 2, "fell", "in the", partial=False) == 0                 # would glue onto the word
    assert phrase_gain(T, 2, "fell", "", partial=False) == 0
    assert phrase_gain(T, 2, "felt", " in the", partial=False) == 0                # not the wanted word at all


def test_phrase_gain_partial_takes_the_look_aheads_right_head() -> None:
    assert phrase_gain(T, 2, "fell", " in the") == 2
    assert phrase_gain(T, 2, "fell", " in the water and") == 3      # up to the phrase's end
    assert phrase_gain(T, 2, "fell", " in the wat") == 2            # the right words before a wrong one
    assert phrase_gain(T, 2, "fell", " in their water") == 1
    assert phrase_gain(T, 2, "fell", " in, the water") == 0         # punctuation glued to the first word
    assert phrase_gain(T, 2, "fell", " in\nthe water") == 0         # a line break is no space
    assert phrase_gain(T, 2, "fell", " in  the water") == 1         # two spaces: the next word is not next
    assert phrase_gain(T, 2, "fell", " into the") == 0
    assert phrase_gain(T, 2, "fell", ", in the") == 0
    assert phrase_gain(T, 2, "fell", "in the") == 0
    assert phrase_gain(T, 2, "felt", " in the") == 0
    assert phrase_gain(T, 4, "water", " and") == 0                  # the phrase's last word: nothing after it


def test_select_the_word_when_offered() -> None:
    fork = ForkView(words=["phone", "watch", "cat"])
    assert decide(T, "my", fork, ON) == Action("select", index=1, words=1)


def test_select_the_phrase_when_its_lookahead_matches() -> None:
    fork = ForkView(words=["phone", "watch"], lookahead={0: " is", 1: " fell in"})
    assert decide(T, "my", fork, ON) == Action("phrase", index=1, words=3)
    assert decide(T, "my", fork, OFF) == Action("select", index=1, words=1)  # phrases off
    wrong_tail = ForkView(words=["phone", "watch"], lookahead={1: " fell into"})
    assert decide(T, "my", wrong_tail, ON) == Action("phrase", index=1, words=2)  # up to "fell"
    assert decide(T, "my", wrong_tail, WHOLE) == Action("select", index=1, words=1)
    wrong_first = ForkView(words=["phone", "watch"], lookahead={1: " is fell"})
    assert decide(T, "my", wrong_first, ON) == Action("select", index=1, words=1)


def test_type_letters_until_the_word_appears_then_commit() -> None:
    assert decide(T, "my watch", ForkView(words=["is", "was"]), ON) == Action("letter", text="f")
    assert decide(T, "my watch", ForkView(words=["fast", "face"], prefix="f"), ON) == Action("letter", text="fe")
    assert decide(T, "my watch", ForkView(words=["feel", "fell"], prefix="fe"), ON) == Action("select", index=1, words=1)
    assert decide(T, "my watch", ForkView(words=["feels"], prefix="fell"), ON) == Action("commit", text="fell ", words=1)


def test_wrong_letter_is_backspaced_to_the_common_prefix() -> None:
    assert decide(T, "my watch", ForkView(words=["fox"], prefix="fo"), ON) == Action("backspace", text="f", presses=1)
    assert decide(T, "my watch", ForkView(words=["xyz"], prefix="xy"), ON) == Action("backspace", text="", presses=2)


def test_back_when_the_model_wrote_a_wrong_word_or_past_the_end() -> None:
    fork = ForkView(words=["in"])
    assert decide(T, "my watch felt", fork, ON) == Action("back")
    assert decide(T, "my watch fell in the water and", fork, ON) == Action("back")


def test_done_and_more() -> None:
    assert decide(T, "my watch fell in the water", ForkView(words=["and"]), ON) is None
    more = PolicyOptions(more_pages=1)
    assert decide(T, "my", ForkView(words=["is"]), more) == Action("more")
    assert decide(T, "my", ForkView(words=["is"], page=1), more) == Action("letter", text="w")
    assert decide(T, "my", ForkView(words=["wet"], prefix="w"), more) == Action("letter", text="wa")  # not after a letter


def test_wait_for_lookahead_only_when_it_could_matter() -> None:
    assert needs_lookahead(T, "my", ForkView(words=["watch"]), ON)
    assert not needs_lookahead(T, "my", ForkView(words=["watch"]), OFF)
    assert not needs_lookahead(T, "my", ForkView(words=["phone"]), ON)
    assert not needs_lookahead(T, "my watch felt", ForkView(words=["watch"]), ON)


def test_prompt_is_the_phrases_before_cyclically() -> None:
    ph = ["a b", "c d", "e f", "g h"]
    assert prompt_for(ph, 2, 2) == "a b\nc d\n"
    assert prompt_for(ph, 0, 1) == "g h\n"
    assert prompt_for(ph, 1, 0) == ""


def test_driver_bookkeeping_of_auto_text_and_undo() -> None:
    """The person's view of the text: auto words judged right/wrong/wasted, right words lost to a back."""
    from razvilka.protocol.messages import Header, Message, TextAuto, TextState, TextUndo
    from simuser.driver import Person, PersonOptions

    def msg(body: object) -> Message:
        header = Header(version="1.0", type=type(body).TYPE, id="m", sender="daemon", session="s", seq=0, ts_ns=0)
        return Message(topic=type(body).TYPE + ".", header=header, body=body)  # type: ignore[arg-type]

    person = Person(client=None, options=PersonOptions())  # type: ignore[arg-type]
    person.target = list(T)
    person.pending_doc = person.prompt = "a b\n"
    person.result = result = PhraseResult(phrase=" ".join(T), chars=26, words=6, steps=[])
    person._on(msg(TextState(text="old text", document="old")))   # another document: ignored
    person._on(msg(TextState(text="a b\n", document="doc1")))
    assert person.doc == "doc1" and person.text == ""
    for text in ("my", " watch", " felt", " in"):
        person._on(msg(TextAuto(text=text, words=[text.strip()])))
    assert person.text == "my watch felt in"
    person._on(msg(TextUndo(removed="my watch felt in", decisions_undone=4)))
    assert person.entries == [] and result.undone_right == 2
    person._take_auto(result, decision=True)
    assert (result.auto_words, result.auto_wrong, result.auto_wasted) == (4, 1, 1)
    assert result.steps == [Step("read", words=4)] and result.decisions_followed_by_auto == 1


# ---------------------------------------------------------------------------------------------- costs
P = CostParams()
SEARCH8 = 0.2 + 0.15 * math.log2(9)  # Hick-Hyman over 8 candidates


def test_key_times() -> None:
    assert step_time(Step("select", n=8), KEY, P) == pytest.approx(SEARCH8 + 0.28)
    assert step_time(Step("letter", n=8), KEY, P) == pytest.approx(SEARCH8 + 0.28)
    assert step_time(Step("letter", n=0), KEY, P) == pytest.approx(0.28)      # no list: plain typing
    assert step_time(Step("back", n=8), KEY, P) == pytest.approx(0.28)        # no list scan for back
    assert step_time(Step("backspace", presses=3), KEY, P) == pytest.approx(3 * 0.28)
    assert step_time(Step("read", words=4), KEY, P) == pytest.approx(1.0)
    assert step_time(Step("phrase", n=8, words=2), KEY, P) == pytest.approx(SEARCH8 + 0.28 + 0.5)


def test_p300_flash_times() -> None:
    # 8 candidates flashed one by one for 4.34 rounds (34.7 flashes, the EEG benchmark's K=8 with the
    # LM prior) of 175 ms, then the 0.8 s epoch: 6.9 s
    assert P300.rounds_for(8) == pytest.approx(4.34)
    assert P300.rounds_for(5) == pytest.approx((3.55 + 3.98) / 2)
    assert P300.flash_time(8) == pytest.approx(4.34 * 8 * 0.175 + 0.8)
    # a 6x6 speller flashes 6 rows + 6 columns; rounds extrapolated to 12 groups: 5.06 -> 11.4 s a letter
    r12 = 4.34 + (4.34 - 3.98) / 2 * 4
    assert P300.rounds_for(12) == pytest.approx(r12)
    assert P300.flash_time(36) == pytest.approx(r12 * 12 * 0.175 + 0.8)
    assert step_time(Step("select", n=8), P300, P) == pytest.approx(SEARCH8 + 4.34 * 8 * 0.175 + 0.8)
    assert step_time(Step("letter", n=8), P300, P) == pytest.approx(SEARCH8 + r12 * 12 * 0.175 + 0.8)


def test_expected_cost_with_choice_errors_hand_worked() -> None:
    # gaze, p = 0.05: a selection takes 1/(1-p) attempts; each failure costs one back (0.8 s)
    steps = [Step("select", n=8)]
    actions, seconds = expected_cost(steps, GAZE, P, backs_per_wrong_word=1.0)
    t = SEARCH8 + 0.6
    assert seconds == pytest.approx(t / 0.95 + (0.05 / 0.95) * 0.8)
    assert actions == pytest.approx(1 / 0.95 + 0.05 / 0.95)
    # when the daemon writes on after a wrong word, two backs are needed
    a2, s2 = expected_cost(steps, GAZE, P, backs_per_wrong_word=2.0)
    assert a2 == pytest.approx(1 / 0.95 + 2 * 0.05 / 0.95)
    assert s2 == pytest.approx(t / 0.95 + (0.05 / 0.95) * 1.6)
    # back and read are not choices: no error overhead; the key modality has none at all
    assert expected_cost([Step("back"), Step("read", words=2)], GAZE, P) == pytest.approx((1.0, 0.8 + 0.5))
    assert expected_cost(steps, KEY, P) == pytest.approx((1.0, SEARCH8 + 0.28))


def test_a_wrong_word_after_typed_letters_costs_them_again() -> None:
    # after a back the fork has no prefix: the 3 letters typed before the wrong choice are typed again
    step = Step("select", n=8, typed=3)
    actions, seconds = expected_cost([step], GAZE, P, backs_per_wrong_word=1.0)
    fail = 0.05 / 0.95
    letter = SEARCH8 + 1.0
    assert actions == pytest.approx(1 / 0.95 + fail * (1 + 3))
    assert seconds == pytest.approx((SEARCH8 + 0.6) / 0.95 + fail * (0.8 + 3 * letter))


def test_phrase_result_round_trip_and_old_logs() -> None:
    r = PhraseResult(phrase="my watch", chars=8, words=2, steps=[Step("letter", n=8), Step("select", n=8, typed=1)],
                     log=["letter 'w' at d-1 (prefix '', page 0: 'a')", "select 1 at d-2 (prefix 'w', page 0: 'x')"])
    data = r.to_json()
    assert PhraseResult.from_json(data) == r
    # a run stored before ``typed`` existed: the prefixes are read off the action log (either quote style)
    data["steps"] = [s[:4] for s in data["steps"]]
    data["log"] = ["letter \"don'\" at d-1 (prefix \"don\", page 0: 'a')", "auto ' x'",
                   "select 1 at d-2 (prefix \"don'\", page 0: 'x')"]
    assert [s.typed for s in PhraseResult.from_json(data).steps] == [0, 4]


def test_cost_overrides() -> None:
    from simuser.costs import with_overrides

    q = with_overrides(P, ["search_b=0.1", "p300.error=0.16", "gaze.choose_s=0.5"])
    mods = {m.name: m for m in q.modalities}
    assert q.search_b == 0.1 and mods["p300"].error == 0.16 and mods["gaze"].choose_s == 0.5
    assert mods["key"] == KEY and P.search_b == 0.15  # the rest and the original are untouched
    for bad in ("nonsense=1", "gaze.nope=1", "search_b", "eeg.error=0.1"):
        with pytest.raises(ValueError):
            with_overrides(P, [bad])


def test_letters_baseline_and_rates() -> None:
    steps = letters_steps("my watch")
    assert count_actions(steps) == 8
    _, seconds = expected_cost(steps, KEY, P)
    assert seconds == pytest.approx(8 * 0.28)
    assert wpm(8, seconds) == pytest.approx((8 / 5) / (8 * 0.28 / 60))  # 42.9 WPM
    assert ksr(8, 8) == 0.0
    assert ksr(3, 12) == pytest.approx(0.75)
    letters = summarize_letters(["my watch"], P)
    assert letters["ksr"] == 0.0 and letters["actions"] == 8 and letters["wpm_key"] == pytest.approx(42.857, abs=1e-3)


def test_summarize_hand_worked_phrase() -> None:
    # "my watch fell" (13 chars, 3 words): the model wrote "my" (kept), the person selected "watch",
    # typed "f", then selected "fell": 3 actions
    steps = [Step("read", words=1), Step("select", n=8), Step("letter", n=8), Step("select", n=8)]
    r = PhraseResult(phrase="my watch fell", chars=13, words=3, steps=steps, auto_words=1, auto_wrong=0,
                     auto_kept=1, decisions=2, selects=2, pregen_hits=1)
    s = summarize([r], P)
    assert s["actions"] == 3
    assert s["ksr"] == pytest.approx(1 - 3 / 13)
    assert s["actions_per_word"] == pytest.approx(1.0)
    assert s["fork_rate"] == pytest.approx(2 / 3)
    assert s["auto_error_rate"] == 0.0
    assert s["pregen_hit_share"] == pytest.approx(0.5)
    key_s = 0.25 + 3 * (SEARCH8 + 0.28)
    assert s["wpm_key"] == pytest.approx((13 / 5) / (key_s / 60))


# ---------------------------------------------------------------------------------------------- end to end


SYSTEM = ({"mode": "auto", "k": 8, "lookahead_tokens": 3, "long_lookahead_tokens": 1}, {"pregenerate": True},
          dict(policy=PolicyOptions(phrases=True), think_s=0.5))
WORDPRED = ({"mode": "always", "k": 8, "lookahead_tokens": 0, "long_lookahead_tokens": 1}, {"pregenerate": False},
            dict(policy=PolicyOptions(phrases=False), focus=False))


@pytest.mark.model
@pytest.mark.parametrize("name, setup", [("system", SYSTEM), ("wordpred", WORDPRED)])
async def test_person_writes_phrases_through_the_real_daemon(start_daemon, name, setup) -> None:  # type: ignore[no-untyped-def]
    """2 short phrases through a real daemon: the exact text comes out, and the counts add up.

    One daemon per test: two daemons on the one shared model at once would use it from two threads.
    """
    from simuser.driver import Person, PersonOptions

    gating, daemon_section, opts = setup
    phrases = ["my watch fell in the water", "prevailing wind from the east"]
    rd = await start_daemon(gating=gating, daemon={"prompt": "", **daemon_section})
    client = await rd.client("simuser", subscribe=["fork.", "text.", "daemon.error."])
    person = Person(client, PersonOptions(timeout_s=120, **opts))
    results = []
    for i, phrase in enumerate(phrases):
        prompt = prompt_for(phrases, i, 1)
        res = await person.write(phrase, prompt)
        results.append(res)
        assert res.done, res.log
        # the daemon's own document is the prompt and then exactly the phrase
        text, _ = rd.daemon._spans()
        assert text.startswith(prompt) and text[len(prompt):].strip() == phrase
        # every action the person took is in its log, once, and counted
        acted = [ln for ln in res.log if ln.split()[0] in ("select", "phrase", "letter", "backspace",
                                                          "commit", "back", "more")]
        assert len(acted) == sum(1 for s in res.steps if s.kind != "read")
        assert res.actions >= res.decisions >= 1
        assert res.decisions == sum(1 for s in res.steps if s.kind in ("select", "phrase", "commit"))
        assert res.actions < res.chars, f"no savings at all on {phrase!r}: {res.log}"
        assert res.auto_words == sum(s.words for s in res.steps if s.kind == "read")
    s = summarize(results, CostParams())
    assert s["done"] == 2 and 0.0 < s["ksr"] < 1.0
    assert 0 < s["wpm_p300"] < s["wpm_gaze"] < s["wpm_key"]
    if name == "wordpred":
        assert s["auto_words"] == 0 and s["fork_rate"] == 1.0 and s["phrase_selections"] == 0
        assert s["pregen_hit_share"] == 0.0
    else:
        assert s["fork_compute_ms_mean"] is not None and s["lookahead_compute_ms_mean"] is not None


def test_ksr_gain_interval_is_paired_over_whole_phrases() -> None:
    same = [(40, 12), (30, 10), (25, 9)]
    assert ksr_gain_ci(same, same) == (0.0, 0.0, 0.0)
    # every phrase saves 2 actions of its 20 characters: 10 points, and no resample can say otherwise
    assert ksr_gain_ci([(20, 8)] * 5, [(20, 6)] * 5) == pytest.approx((10.0, 10.0, 10.0))
    # one phrase gains a lot, the rest nothing: the gain is real on these phrases but the interval is wide
    base = [(20, 8)] * 9 + [(20, 12)]
    g, lo, hi = ksr_gain_ci(base, [(20, 8)] * 9 + [(20, 2)])
    assert g == pytest.approx(5.0) and lo == 0.0 and hi > 10.0
    assert ksr_gain_ci(base, [(20, 8)] * 9 + [(20, 2)], seed=1) == ksr_gain_ci(base, [(20, 8)] * 9 + [(20, 2)], seed=1)
    with pytest.raises(ValueError, match="same"):
        ksr_gain_ci(base, base[:-1])
    with pytest.raises(ValueError, match="same phrases"):
        ksr_gain_ci([(20, 8)], [(21, 8)])
