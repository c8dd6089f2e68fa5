"""The simulated-user benchmark: the person's policy and the cost accounting against hand-worked
examples, and one small end-to-end run of the person against the real daemon (real model)."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

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

T = ["my", "watch", "fell", "in", "the", "water"]
ON = PolicyOptions(phrases=True)
OFF = PolicyOptions(phrases=False)
WHOLE = PolicyOptions(phrases=True, partial_phrases=False)


# ---------------------------------------------------------------------------------------------- policy
@pytest.mark.parametrize(("written", "expected"), [
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
    fe = ForkView(words=["feel", "fell"], prefix="fe")
    assert decide(T, "my watch", fe, ON) == Action("select", index=1, words=1)
    fell = ForkView(words=["feels"], prefix="fell")
    assert decide(T, "my watch", fell, ON) == Action("commit", text="fell ", words=1)


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
    # not after a letter
    assert decide(T, "my", ForkView(words=["wet"], prefix="w"), more) == Action("letter", text="wa")


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
    from simuser.driver import Person, PersonOptions

    from razvilka.protocol.messages import Header, Message, TextAuto, TextState, TextUndo

    def msg(body: Any) -> Message:
        header = Header(version="1.0", type=type(body).TYPE, id="m", sender="daemon", session="s", seq=0, ts_ns=0)
        return Message(topic=type(body).TYPE + ".", header=header, body=body)

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
        with pytest.raises(ValueError, match="--cost"):
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
@pytest.mark.parametrize(("name", "setup"), [("system", SYSTEM), ("wordpred", WORDPRED)])
async def test_person_writes_phrases_through_the_real_daemon(start_daemon: Any, name: str, setup: Any) -> None:
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


# ---------------------------------------------------------------------------------------------- single input
# gaze-only, switch-scan, p300-only: the screen they choose from, what reaching a target costs, and one
# real run (docs/simulated_user.md, "Single-input people").
from dataclasses import replace  # noqa: E402

from simuser.costs import P300_SCREEN, SWITCH  # noqa: E402
from simuser.driver import OpenForkState, action_target, target_message  # noqa: E402
from simuser.screen import (  # noqa: E402
    Screen,
    key_target,
    letters_scan_rows,
    p300_items,
    p300_letters_steps,
    p300_path,
    scan_rows,
    scan_units,
    switch_letters_steps,
    target_prior,
)

from razvilka.renderers.screen import COMMANDS as SCREEN_COMMANDS  # noqa: E402

COMMAND_ROW = tuple(f"cmd:{c}" for c in SCREEN_COMMANDS)
SCREEN = Screen(candidates=3, letters=[("e", 0.5), (" ", 0.3), ("a", 0.2)], cand_probs={0: 0.4, 1: 0.2, 2: 0.1},
                prefix="th")


def test_scan_order_candidates_likely_letters_keys_commands_alphabet() -> None:
    """The product's order (renderers/screen.py), as the renderers lay it out."""
    rows = scan_rows(SCREEN)
    assert rows[0] == ("cand:0", "cand:1", "cand:2")
    assert rows[1] == ("key:e", "key:space", "key:a")        # the likeliest letters, " " is space
    assert rows[2] == ("key:space", "key:delete", "key:accept")  # a letter is typed: the edit keys
    assert rows[3] == COMMAND_ROW and COMMAND_ROW[:4] == ("cmd:back", "cmd:more", "cmd:pause", "cmd:new")
    assert rows[4] == ("key:a", "key:b", "key:c", "key:d", "key:e", "key:f", "key:g")  # the alphabet, fixed order
    assert len(rows) == 4 + 4  # 28 keys in 4 rows of 7
    every = {t for r in rows for t in r}
    assert {f"key:{c}" for c in "abcdefghijklmnopqrstuvwxyz'-"} <= every   # every letter is reachable
    # nothing typed: no space (it would end no word), no edit row
    fresh = scan_rows(Screen(candidates=3, letters=SCREEN.letters, cand_probs=SCREEN.cand_probs))
    assert fresh[1] == ("key:e", "key:a") and fresh[2] == COMMAND_ROW
    # no candidates and no letters (an older daemon): the keyboard and the commands still are
    bare = scan_rows(Screen(candidates=0))
    assert bare[0] == COMMAND_ROW and len(bare) == 1 + 4


@pytest.mark.parametrize(("target", "units"), [
    ("cand:0", 2),      # row 0 is highlighted first: press (enter), press (select)
    ("cand:2", 4),      # + 2 item steps
    ("key:e", 3),       # 1 row step, enter, select
    ("key:space", 4),   # the likeliest row's second item (not the edit row after it)
    ("key:a", 5),       # in the likeliest row, third
    ("key:delete", 5),  # 2 row steps, enter, 1 item step, select
    ("cmd:back", 5),    # 3 row steps, enter, select
    ("key:b", 7),       # 4 row steps to the alphabet's first row, enter, 1 item step, select
    ("key:z", 7 + 2 + 4),  # the alphabet's 4th row (7 row steps), enter, 4 item steps, select
])
def test_scan_units_hand_worked(target: str, units: int) -> None:
    """Scan steps as MacKenzie counts them: every highlight waited through or pressed on is one."""
    assert scan_units(scan_rows(SCREEN), target) == units


def test_switch_letters_baseline_keyboard() -> None:
    rows = letters_scan_rows()
    assert rows[0] == ("key:space", "key:e", "key:t", "key:a", "key:o", "key:i")  # space, then by frequency
    assert [scan_units(rows, t) for t in ("key:space", "key:e", "key:n", "key:z")] == [2, 3, 3, 4 + 2 + 2]
    steps = switch_letters_steps("Ten 9")  # upper case by its key; a digit (no key) costs the farthest key
    farthest = max(scan_units(rows, t) for r in rows for t in r)
    assert [s.scan for s in steps] == [4, 3, 3, 2, farthest]
    assert all(s.kind == "letter" for s in steps)


def test_switch_costs_are_scan_steps_times_the_interval() -> None:
    assert SWITCH.scan_s == 1.0  # the product's default scan.interval_ms
    assert step_time(Step("select", n=8, scan=4), SWITCH, P) == pytest.approx(4.0)   # no list search: the scan paces
    assert step_time(Step("phrase", n=8, scan=3, words=2), SWITCH, P) == pytest.approx(3.0 + 0.5)
    assert step_time(Step("backspace", scan=5, presses=2), SWITCH, P) == pytest.approx(10.0)
    assert step_time(Step("read", words=2), SWITCH, P) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scan steps"):
        step_time(Step("select", n=8), SWITCH, P)  # a step with no scan recorded cannot be costed
    # the switch-letters baseline on "ten": t 4 + e 3 + n 3 steps of 1 s
    row = summarize_letters(["ten"], P, switch_letters_steps, [SWITCH])
    assert row["wpm_switch"] == pytest.approx(wpm(3, 10.0)) and "wpm_key" not in row


def test_p300_rounds_follow_the_prior_and_fit_the_eeg_benchmark() -> None:
    # one rate (rounds per nat of evidence needed), fitted to the uniform-prior rows of bench/eeg_bench.py
    c = P300_SCREEN.rounds_per_nat()
    assert c == pytest.approx(1.1233, abs=1e-3)
    assert P300_SCREEN.rounds_for_prior(1 / 8) == pytest.approx(38.0 / 8, rel=0.02)
    # ... predicts the LM-prior rows (Zipf 1/r over K, floor 0.02) within 2 %: 14.2 / 23.9 / 34.7 flashes
    for k, flashes in ((4, 14.2), (6, 23.9), (8, 34.7)):
        zipf = [1 / r for r in range(1, k + 1)]
        prior = [0.98 * z / sum(zipf) + 0.02 / k for z in zipf]
        predicted = sum(p * P300_SCREEN.rounds_for_prior(p) for p in prior)
        assert predicted == pytest.approx(flashes / k, rel=0.02)
    # a likelier target needs fewer rounds; at least one, at most the decoder's cap
    assert P300_SCREEN.rounds_for_prior(0.6) < P300_SCREEN.rounds_for_prior(0.1) < P300_SCREEN.rounds_for_prior(0.01)
    assert P300_SCREEN.rounds_for_prior(0.9999) == 1.0
    assert P300_SCREEN.max_rounds == 30  # the EEG adapter's max_repetitions
    assert replace(P300_SCREEN, max_rounds=10).rounds_for_prior(1e-12) == 10.0
    # the 6x6 speller, uniform prior: 12 row/column groups; hand-worked logit(0.9) - logit(0.95/36)
    need = math.log(9) - math.log((0.95 / 36) / (1 - 0.95 / 36))
    speller = c * need * 12 * 0.175 + 0.8
    assert P300_SCREEN.prior_flash_time(1 / 36, 36) == pytest.approx(speller)
    assert step_time(p300_letters_steps("a")[0], P300_SCREEN, P) == pytest.approx(speller)
    # 43 targets flash as a 7-wide grid's 7 rows and 7 columns: 14 groups; the list is still searched
    t = step_time(Step("select", n=8, prior=0.3, items=43), P300_SCREEN, P)
    assert t == pytest.approx(SEARCH8 + P300_SCREEN.rounds_for_prior(0.3) * 14 * 0.175 + 0.8)
    # 20 (the words level: 8 candidates, 11 commands, ui:spell): 5 wide, 4 rows + 5 columns = 9 groups;
    # a level step (ui:spell) is one such selection, with no list search of its own
    t = step_time(Step("level", n=8, prior=0.3, items=20), P300_SCREEN, P)
    assert t == pytest.approx(P300_SCREEN.rounds_for_prior(0.3) * 9 * 0.175 + 0.8)
    with pytest.raises(ValueError, match="prior"):
        step_time(Step("select", n=8), P300_SCREEN, P)


def test_p300_prior_of_a_target_is_the_eeg_adapters() -> None:
    """The P300 screen's levels (renderers/screen.py p300_targets) and the adapter's prior over what flashes."""
    screen = Screen(candidates=2, letters=[("a", 0.7), ("b", 0.1), ("c", 0.1), ("d", 0.05), ("e", 0.02),
                                           ("f", 0.01), ("g", 0.01), ("h", 0.01)], cand_probs={0: 0.6, 1: 0.2})
    items = p300_items(screen)
    n, cmds = len(items), len(SCREEN_COMMANDS)
    # nothing typed: the words level: the candidates, Back, More, ui:spell (the keyboard), ui:menu (the rest)
    assert items == ["cand:0", "cand:1", "cmd:back", "cmd:more", "ui:spell", "ui:menu"]
    # raw: cand:0 0.9*0.6, cand:1 0.9*0.2, ui:spell 0.9*(1-0.8) (what every key together would get), Back and
    # More 0.1/7 each (5 commands + 2 keys the grammar knows share it), ui:menu 0.1/7 for each of the other
    # (cmds - 2) commands; floor 0.02
    total = 0.54 + 0.18 + 0.18 + cmds * 0.1 / 7
    assert target_prior(screen, "cand:0") == pytest.approx(0.98 * 0.54 / total + 0.02 / n)
    assert target_prior(screen, "ui:spell") == pytest.approx(0.98 * 0.18 / total + 0.02 / n)
    assert target_prior(screen, "ui:menu") == pytest.approx(0.98 * (cmds - 2) * 0.1 / 7 / total + 0.02 / n)
    assert target_prior(screen, "word:0:2") == target_prior(screen, "cand:0")  # a look-ahead word: its candidate
    # a likely letter is one level down (ui:spell), another letter two (ui:abc), a command behind ui:menu
    assert p300_path(screen, "cand:1") == [("words", "cand:1")]
    assert p300_path(screen, "key:a") == [("words", "ui:spell"), ("keys", "key:a")]
    assert p300_path(screen, "key:z") == [("words", "ui:spell"), ("keys", "ui:abc"), ("abc", "key:z")]
    assert p300_path(screen, "cmd:new") == [("words", "ui:menu"), ("menu", "cmd:new")]
    keys = p300_items(screen, "keys")   # the 7 likeliest letters, ui:abc, ui:words: no candidate
    assert keys == [f"key:{c}" for c in "abcdefg"] + ["ui:abc", "ui:words"]
    k_total = 0.18 + 0.1 / 7
    assert target_prior(screen, "key:a", "keys") == pytest.approx(0.98 * 0.18 * 0.7 / k_total + 0.02 / 9)
    assert target_prior(screen, "ui:abc", "keys") == pytest.approx(0.98 * 0.18 * 0.01 / k_total + 0.02 / 9)
    abc = p300_items(screen, "abc")
    assert len(abc) == 28 + 1 and abc[-1] == "ui:words"
    assert target_prior(screen, "key:z", "abc") == pytest.approx(0.02 / 29, rel=1e-4)  # no LM mass: the floor
    assert len(p300_items(screen, "menu")) == cmds - 2 + 1
    # a letter typed: the fork opens on the keys level, with the candidates narrowing live and
    # space/delete/accept; a command is reached through ui:words
    typed = Screen(candidates=2, letters=[("a", 1.0)], cand_probs={0: 0.6, 1: 0.2}, prefix="z")
    assert p300_items(typed) == ["cand:0", "cand:1", "key:a", "key:space", "key:delete", "key:accept",
                                 "ui:abc", "ui:words"]
    assert p300_path(typed, "cmd:back") == [("keys", "ui:words"), ("words", "cmd:back")]
    assert p300_path(typed, "key:delete") == [("keys", "key:delete")]


def test_actions_become_targets_and_their_13_equivalents() -> None:
    from razvilka.protocol.messages import Command, Select

    assert action_target(Action("select", index=2), "") == "cand:2"
    assert action_target(Action("phrase", index=1, words=3), "") == "word:1:2"
    assert action_target(Action("letter", text="wa"), "w") == "key:a"
    assert action_target(Action("commit", text="zorb "), "zorb") == "key:space"
    assert action_target(Action("backspace", text="w", presses=1), "wx") == "key:delete"
    assert action_target(Action("back"), "") == "cmd:back"
    with pytest.raises(ValueError, match="no key"):
        action_target(Action("letter", text="a3"), "a")
    assert key_target(" ") == "key:space"
    with pytest.raises(ValueError, match="no key"):
        key_target("A")
    sel = target_message("key:a", "w", "switch", targets=True)
    assert isinstance(sel, Select) and (sel.target, sel.index, sel.kind) == ("key:a", None, "switch")
    # the protocol 1.3 messages that do the same
    for target, prefix, expected in (("key:a", "w", Command(command="type", source="simuser", text="wa")),
                                     ("key:space", "zorb", Command(command="type", source="simuser", text="zorb ")),
                                     ("key:delete", "wx", Command(command="type", source="simuser", text="w")),
                                     ("cmd:more", "", Command(command="more", source="simuser")),
                                     ("word:1:2", "", Select(index=1, phrase_words=2, source="simuser", kind="eeg"))):
        assert target_message(target, prefix, "eeg", targets=False) == expected


def test_single_input_person_reads_in_lower_case() -> None:
    """The on-screen keyboard has no shift key: a single-input person takes "I" for "i" and spells "i"."""
    from razvilka.protocol.messages import Candidate, ForkOpen, Letter

    body = ForkOpen(candidates=[Candidate(index=0, word="I", prob=0.5), Candidate(index=1, word="We", prob=0.2)],
                    letters=[Letter(ch="i", prob=0.6)])
    fork = OpenForkState("d-1", body, 0.0)
    assert fork.view(fold=True).words == ["i", "we"] and fork.view().words == ["I", "We"]
    target = ["i", "am", "here"]
    assert decide(target, "", fork.view(fold=True), OFF) == Action("select", index=0, words=1)
    screen = fork.screen()
    assert screen.candidates == 2 and screen.rows()[1] == ("key:i",) and screen.cand_probs == {0: 0.5, 1: 0.2}


def test_summarize_counts_spelled_words_and_costs_one_modality() -> None:
    # "zorb it": z-o-r-b typed then committed with space (spelled out), "it" chosen after typing "i"
    steps = [Step("letter", n=8, scan=5), Step("letter", n=8, scan=4), Step("letter", n=8, scan=4),
             Step("letter", n=8, scan=6), Step("commit", n=8, scan=4, typed=4),
             Step("letter", n=8, scan=3), Step("select", n=8, scan=2, typed=1)]
    r = PhraseResult(phrase="zorb it", chars=7, words=2, steps=steps, decisions=2, selects=1)
    s = summarize([r], P, [SWITCH])
    assert (s["spelled_words"], s["typed_words"]) == (1, 2)
    assert s["actions"] == 7 and s["wpm_switch"] == pytest.approx(wpm(7, 5 + 4 + 4 + 6 + 4 + 3 + 2))
    assert "wpm_gaze" not in s and "wpm_key" not in s


@pytest.mark.model
async def test_single_input_person_finishes_a_word_no_fork_lists(start_daemon: Any) -> None:
    """A switch-scanning person writes 2 phrases on the real daemon with targets only; the second has a
    made-up word, which they spell on the on-screen keyboard's keys and end with key:space."""
    from simuser import driver
    from simuser.driver import Person, PersonOptions

    from razvilka.protocol.messages import Command

    phrases = ["my watch fell in the water", "the vrobblix is here"]
    rd = await start_daemon(gating={"mode": "auto", "k": 8, "lookahead_tokens": 0, "long_lookahead_tokens": 1},
                            daemon={"prompt": "", "pregenerate": True})
    client = await rd.client("simuser", subscribe=["fork.", "text.", "daemon.error."])
    sent: list[object] = []
    publish = client.publish

    def spy(body: Any, **kw: Any) -> Any:
        sent.append(body)
        return publish(body, **kw)

    client.publish = spy
    person = Person(client, PersonOptions(timeout_s=120, single="switch", policy=PolicyOptions(phrases=False)))
    results = []
    for i, phrase in enumerate(phrases):
        res = await person.write(phrase, prompt_for(phrases, i, 1))
        results.append(res)
        assert res.done, res.log
        text, _ = rd.daemon._spans()
        assert text.rstrip().endswith(phrase)
        assert all(s.scan > 0 and s.items > 0 and 0 < s.prior <= 1 for s in res.steps if s.kind != "read")
    made_up = results[1]
    assert sum(1 for s in made_up.steps if s.kind == "letter") >= 3, made_up.log  # spelled on the keyboard
    person_sent = [b for b in sent if not (isinstance(b, Command) and b.command == "new")]
    if driver.SEND_TARGETS:  # only targets on screen: no typed text at all
        assert all(getattr(b, "target", None) for b in person_sent if type(b).__name__ == "Select"), person_sent
        assert not [b for b in person_sent if isinstance(b, Command)], person_sent
    s = summarize(results, CostParams(), [SWITCH])
    assert s["done"] == 2 and s["wpm_switch"] > 0 and s["typed_words"] >= 1


# ---------------------------------------------------------------------------------------------- dialogue
# The --dialogue mode (docs/simulated_user.md, "Dialogue"): the pairs reader, the person who leaves
# punctuation to the model, the gain and its interval, and both conditions through the real daemon.
from simuser.dialogue import DialogueFileError, Pair, read_pairs, reply_words, tidy  # noqa: E402
from simuser.policy import loose_words  # noqa: E402

DIALOGUE = ROOT / "tests" / "data" / "dialogue" / "dailydialog-3-pairs.txt"
LOOSE = PolicyOptions(phrases=True, loose=True)


@pytest.mark.parametrize(("raw", "tidied"), [
    ("Yes , please .", "Yes, please."),
    ("I don ’ t know , that ’ s all .", "I don't know, that's all."),
    ("I think you ’ Ve done it", "I think you've done it"),
    ("Well , that's too far.Can you change some money ?", "Well, that's too far. Can you change some money?"),
    ("  a  plain ( sentence )  ", "a plain (sentence)"),
    ("Ordinary text, as a person writes it: no change.", "Ordinary text, as a person writes it: no change."),
])
def test_tidy_glues_dailydialogs_tokens_and_leaves_ordinary_text(raw: str, tidied: str) -> None:
    assert tidy(raw) == tidied


def test_reply_words_leave_punctuation_out() -> None:
    assert reply_words("Yes , quite sure .") == ["Yes", "quite", "sure"]
    assert reply_words("I don ’ t know ... (really) !") == ["I", "don't", "know", "really"]
    assert reply_words("fast-track, 5 p.m.") == ["fast-track", "5", "p.m"]
    assert reply_words("?!") == []


def test_read_pairs_of_the_dailydialog_file() -> None:
    pairs = read_pairs(DIALOGUE)
    assert [p.line for p in pairs] == [1, 2, 3]
    assert pairs[0] == Pair("Do you want to ensure the contents, Miss?", "Yes, please.", 1)
    assert pairs[0].phrase == "Yes please" and pairs[2].words == ["Yes", "quite", "sure"]


def test_read_pairs_jsonl_comments_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "pairs.jsonl"
    f.write_text('# a comment\n\n{"turn": "Are you sure ?", "reply": "Yes , quite sure .", "id": 7}\n'
                 '{"turn": "Where?", "reply": "On the floor."}\n', encoding="utf-8")
    pairs = read_pairs(f)
    assert [(p.turn, p.reply, p.line) for p in pairs] == [("Are you sure?", "Yes, quite sure.", 3),
                                                          ("Where?", "On the floor.", 4)]
    g = tmp_path / "pairs.txt"  # JSONL by its content, whatever the name
    g.write_text('{"turn": "Where?", "reply": "Here."}\n', encoding="utf-8")
    assert read_pairs(g)[0].reply == "Here."


@pytest.mark.parametrize(("name", "content", "message"), [
    ("p.tsv", "a turn\ta reply\nno tab here\n", "p.tsv:2: expected the partner's turn, one TAB, the reply; found 0"),
    ("p.tsv", "a\tb\tc\n", "p.tsv:1: expected the partner's turn, one TAB, the reply; found 2"),
    ("p.tsv", "a turn\t . ?\n", "p.tsv:1: the reply has no word to write"),
    ("p.tsv", " \ta reply\n", "p.tsv:1: the partner's turn is empty"),
    ("p.tsv", "# only a comment\n\n", "p.tsv: holds no pairs"),
    ("p.jsonl", '{"turn": "hi", "reply": "hello"}\n{"turn": "hi"\n', "p.jsonl:2: not a JSON object"),
    ("p.jsonl", '["hi", "hello"]\n', "p.jsonl:1: expected an object"),
    ("p.jsonl", '{"turn": "hi", "reply": 3}\n', "p.jsonl:1: 'reply' missing or not a string"),
    ("p.jsonl", '{"text": "hi"}\n', "p.jsonl:1: 'turn' and 'reply' missing or not a string"),
])
def test_read_pairs_errors_name_the_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DialogueFileError) as err:
        read_pairs(f)
    assert str(err.value).startswith(f"{tmp_path}/{message}"), str(err.value)


def test_read_pairs_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DialogueFileError, match="no such pairs file"):
        read_pairs(tmp_path / "absent.tsv")
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("caf\xe9\tyes\n".encode("latin-1"))
    with pytest.raises(DialogueFileError, match="latin1.tsv: not UTF-8 text"):
        read_pairs(bad)


def test_pick_pairs_consecutive_or_spread() -> None:
    from simulated_user import dialogue_jobs, pick_pairs

    pairs = [Pair(f"turn {i}", f"reply {i}", i + 1) for i in range(10)]
    assert [p.line for p in pick_pairs(pairs, 2, 3, spread=False)] == [3, 4, 5]
    assert [p.line for p in pick_pairs(pairs, 0, 4, spread=True)] == [1, 3, 6, 8]
    assert [p.line for p in pick_pairs(pairs, 8, 5, spread=True)] == [9, 10]
    assert dialogue_jobs(pairs[:1], partner=True) == [(1, "reply 0", "", "turn 0")]
    assert dialogue_jobs(pairs[:1], partner=False) == [(1, "reply 0", "", "")]


R = ["Yes", "quite", "sure"]


@pytest.mark.parametrize(("written", "expected"), [
    ("", ("ok", 0)),
    (" Yes,", ("ok", 1)),                      # punctuation the model wrote is accepted
    (" Yes , quite", ("ok", 2)),               # ... spaced too
    (" Yes, quite sure.", ("done", 3)),
    (" Yes, quite sure.\n", ("done", 3)),      # a trailing line break, as in strict mode
    (" Yes, quite sure.\nPartner:", ("wrong", 3)),  # the model wrote the partner's next turn: back
    (" Yes\n", ("wrong", 1)),                  # a line break inside
    (" Yes, quiet", ("wrong", 1)),
    (" Yes, qui", ("wrong", 1)),               # a glued piece is no word yet
    (" Yes quite sure indeed", ("wrong", 3)),  # past the end
])
def test_compare_loose(written: str, expected: tuple[str, int]) -> None:
    assert compare(R, written, loose=True) == expected


def test_loose_words_and_strict_mode_unchanged() -> None:
    assert loose_words("Yes , quite sure .") == ["Yes", "quite", "sure"]
    assert loose_words("Yes\nno") is None
    assert compare(R, " Yes,") == ("wrong", 0)  # strict (the phrase mode): punctuation is a wrong word


def test_loose_person_selects_words_and_phrases_around_punctuation() -> None:
    # the model offers "Yes" with the look-ahead ", quite sure." : one phrase selection writes it all
    fork = ForkView(words=["No", "Yes"], lookahead={1: ", quite sure."})
    assert phrase_gain(R, 0, "Yes", ", quite sure.", loose=True) == 0  # starts glued: no whole words
    fork = ForkView(words=["No", "Yes"], lookahead={1: " quite, sure."})
    assert decide(R, "", fork, LOOSE) == Action("phrase", index=1, words=3)
    assert decide(R, "", fork, ON) == Action("select", index=1, words=1)  # strict: "quite," is no word
    fork = ForkView(words=["Yes", ","], lookahead={0: " . quite"})   # a part that is only punctuation ends it
    assert decide(R, "", fork, LOOSE) == Action("select", index=0, words=1)
    # after "Yes," the next word is "quite", whatever punctuation is around
    assert decide(R, " Yes,", ForkView(words=["quite", "sure"]), LOOSE) == Action("select", index=0, words=1)
    assert decide(R, " Yes, quite sure!", ForkView(words=["I"]), LOOSE) is None
    assert decide(R, " Yes, quite\nsure", ForkView(words=["I"]), LOOSE) == Action("back")


def test_dialogue_gain_and_interval_hand_worked() -> None:
    from simulated_user import dialogue_gains

    def res(phrase: str, actions: int) -> PhraseResult:
        return PhraseResult(phrase=phrase, chars=len(phrase), words=len(phrase.split()),
                            steps=[Step("letter") for _ in range(actions)])

    base = [res("yes please", 6), res("yes quite sure", 8)]     # 24 characters, 14 actions
    other = [res("yes please", 3), res("yes quite sure", 8)]    # 24 characters, 11 actions
    g = dialogue_gains({"auto-k8": base, "auto-k8+partner": other}, ["auto-k8"])["auto-k8"]
    assert g["ksr_without"] == pytest.approx(1 - 14 / 24) and g["ksr_with"] == pytest.approx(1 - 11 / 24)
    assert g["gain_points"] == pytest.approx(100 * 3 / 24)
    low, high = g["ci95"]
    assert 0.0 <= low <= g["gain_points"] <= high <= 100 * 3 / 10  # a resample of only the first reply: 30 points
    assert g["met"] and g["target_points"] == 3.0 and g["replies"] == 2


@pytest.mark.model
async def test_dialogue_replies_with_and_without_the_partners_turn(start_daemon: Any) -> None:
    """2 DailyDialog replies through the real daemon, each without and then with the partner's turn: with
    it, the text.state carries the turn and the model's context (what it read before the fork) holds it;
    without, neither does. Both come out as the reply's words."""
    from simulated_user import dialogue_jobs
    from simuser.driver import Person, PersonOptions

    pairs = read_pairs(DIALOGUE)[::2]  # lines 1 and 3: short replies
    rd = await start_daemon(gating={"mode": "auto", "k": 8, "lookahead_tokens": 3, "long_lookahead_tokens": 1},
                            daemon={"prompt": "", "pregenerate": True})
    client = await rd.client("simuser", subscribe=["fork.", "text.", "daemon.error."])
    person = Person(client, PersonOptions(timeout_s=120, think_s=0.3, policy=LOOSE))
    engine = rd.daemon.engine
    for partner in (False, True):
        for (_, phrase, prompt, turn), pair in zip(dialogue_jobs(pairs, partner), pairs):
            res = await person.write(phrase, prompt, turn)
            assert res.done, res.log
            context = engine.detokenize(engine.tokens)  # what the model read, memory and framing included
            text, _ = rd.daemon._spans()
            assert loose_words(text.strip()) == pair.words, text
            if partner:
                assert person.partner == pair.turn and res.log[0] == f"partner {pair.turn!r}"
                assert f"Partner: {pair.turn}\nMe:" in context, context
            else:
                assert person.partner == "" and pair.turn not in context, context
            assert res.actions < res.chars, res.log
