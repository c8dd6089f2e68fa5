"""Switch scanning (inputs/scan.py): hand-worked timelines for automatic and step scanning."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from razvilka.config import ConfigError, load_config
from razvilka.inputs.scan import (
    NOTHING,
    WAIT_MS,
    Placed,
    ScanConfig,
    ScanCost,
    ScanFocus,
    Scanner,
    ScanRest,
    ScanSelect,
    ScanWake,
    cost_to_select,
    layout_rows,
    scan_rows,
)
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Box, Layout, TargetBox

CANDS = ("cand:0", "cand:1", "cand:2")
CMDS = ("cmd:back", "cmd:more")
LIKELY = ("key:e",)
ABC = ("key:a", "key:b", "key:c")
ROWS = (CANDS, CMDS, LIKELY, ABC)


def auto(loops: int = 2, exit_item: bool = False) -> Scanner:
    return Scanner(ScanConfig(mode="auto", interval_ms=1000, loops=loops, exit_item=exit_item))


def step(loops: int = 2) -> Scanner:
    return Scanner(ScanConfig(mode="step", loops=loops))


def row(targets: tuple[str, ...]) -> ScanFocus:
    return ScanFocus(group=targets)


def item(target: str) -> ScanFocus:
    return ScanFocus(target=target)


def test_auto_rows_then_items_then_select() -> None:
    s = auto()
    assert s.load(ROWS, 0, "f1") == [row(CANDS)]
    assert s.deadline == 1000
    assert s.tick(999) == []  # not yet
    assert s.tick(1000) == [row(CMDS)]
    assert s.tick(2000) == [row(LIKELY)]
    assert s.tick(3000) == [row(ABC)]
    assert s.press(3100) == [item("key:a")]  # entering a row: its first item, for a whole interval
    assert s.deadline == 4100
    assert s.tick(4100) == [item("key:b")]
    assert s.press(4200) == [ScanSelect("key:b"), NOTHING]
    assert s.highlight == NOTHING
    # the fork the letter reopened arrives with its layout: the first row again
    assert s.load(((("cand:0", "cand:1"),) + ROWS[1:]), 4300, "f2") == [row(("cand:0", "cand:1"))]
    assert s.deadline == 5300


def test_a_late_tick_moves_one_step_and_the_next_highlight_gets_a_full_interval() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    assert s.tick(2500) == [row(CMDS)]  # the loop woke late: one step, not two
    assert s.deadline == 3500


def test_a_one_item_row_selects_on_entering() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    s.tick(1000)
    s.tick(2000)
    assert s.press(2500) == [ScanSelect("key:e"), NOTHING]


def test_rest_after_loops_passes_over_the_rows_and_a_press_wakes_without_selecting() -> None:
    s = auto(loops=2)
    s.load(ROWS, 0, "f1")
    seen = [s.tick(t)[0] for t in range(1000, 8000, 1000)]  # highlights 2..8: two passes over 4 rows
    assert seen == [row(CMDS), row(LIKELY), row(ABC), row(CANDS), row(CMDS), row(LIKELY), row(ABC)]
    assert s.tick(8000) == [ScanRest(), NOTHING]
    assert s.deadline is None and s.resting
    assert s.tick(100_000) == []  # resting: nothing moves
    assert s.press(100_000) == [ScanWake(), row(CANDS)]  # woken at the first row, nothing selected
    assert s.deadline == 101_000
    assert s.press(100_500) == [item("cand:0")]


def test_after_loops_passes_over_a_rows_items_back_to_the_rows_on_the_next_row() -> None:
    s = auto(loops=2)
    s.load(ROWS, 0, "f1")
    assert s.press(500) == [item("cand:0")]
    items = [s.tick(t)[0] for t in range(1500, 6500, 1000)]
    assert items == [item("cand:1"), item("cand:2"), item("cand:0"), item("cand:1"), item("cand:2")]
    assert s.tick(6500) == [row(CMDS)]  # two passes and no press: out of the row, on the next one
    # the rows' rest count starts again: eight row highlights from here, then rest
    rows = [s.tick(t)[0] for t in range(7500, 14500, 1000)]
    assert rows == [row(LIKELY), row(ABC), row(CANDS), row(CMDS), row(LIKELY), row(ABC), row(CANDS)]
    assert s.tick(14_500) == [ScanRest(), NOTHING]


def test_exit_item_highlights_the_row_again_and_a_press_there_leaves_it() -> None:
    s = auto(loops=1, exit_item=True)
    s.load(ROWS, 0, "f1")
    for t in (1000, 2000, 3000):
        s.tick(t)
    assert s.press(3000) == [item("key:a")]
    assert [s.tick(t)[0] for t in (4000, 5000, 6000)] == [item("key:b"), item("key:c"), row(ABC)]
    assert s.press(6200) == [row(CANDS)]  # the exit step: back to the rows, on the row after (wrapping)
    # without a press on the exit step, one pass (3 items + exit) and back to the rows
    s.tick(7200)
    assert s.press(7300) == [item("cmd:back")]
    assert [s.tick(t)[0] for t in (8300, 9300, 10_300)] == [item("cmd:more"), row(CMDS), row(LIKELY)]


def test_one_row_scans_its_items_at_once_and_rests_after_loops() -> None:
    s = auto(loops=2)
    assert s.load([["cand:0", "cand:1"]], 0, "f1") == [item("cand:0")]
    assert [s.tick(t)[0] for t in (1000, 2000, 3000)] == [item("cand:1"), item("cand:0"), item("cand:1")]
    assert s.tick(4000) == [ScanRest(), NOTHING]
    assert s.press(9000) == [ScanWake(), item("cand:0")]
    assert s.press(9100) == [ScanSelect("cand:0"), NOTHING]


def test_after_a_select_with_no_new_layout_auto_goes_on_after_one_interval() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    s.press(100)
    assert s.press(200) == [ScanSelect("cand:0"), NOTHING]
    assert s.deadline == 200 + WAIT_MS == 2200
    assert s.tick(2199) == []
    assert s.tick(2200) == [row(CANDS)]  # refused, or a command that opened no fork: scan on
    slow = Scanner(ScanConfig(mode="auto", interval_ms=5000))
    slow.load([["cand:0"]], 0, "f1")
    slow.press(10)
    assert slow.deadline == 5010  # at least one interval
    # the same rows again after a select still restart (the wait ends)
    s.press(2300)
    s.press(2400)
    assert s.load(ROWS, 2500, "f1") == [row(CANDS)]


def test_step_mode_advance_and_select_without_a_timer() -> None:
    s = step(loops=2)
    assert s.load(ROWS, 0, "f1") == [row(CANDS)]
    assert s.deadline is None
    assert s.tick(10_000_000) == []  # no timer, no rest
    moves = [s.press(t, "advance")[0] for t in range(1, 13)]  # three passes over the rows: never rests
    assert moves == [row(CMDS), row(LIKELY), row(ABC), row(CANDS)] * 3
    for t in (13, 14, 15):
        s.press(t, "advance")
    assert s.highlight == row(ABC)
    assert s.press(16, "select") == [item("key:a")]
    assert s.press(17, "advance") == [item("key:b")]
    assert s.press(18, "select") == [ScanSelect("key:b"), NOTHING]
    assert s.press(19, "advance") == [row(CANDS)]  # no new layout yet: any press starts again, selects nothing


def test_step_mode_leaves_a_row_after_loops_passes_over_its_items() -> None:
    s = step(loops=2)
    s.load(ROWS, 0, "f1")
    for t in (1, 2, 3):
        s.press(t, "advance")
    s.press(4, "select")
    moves = [s.press(t, "advance")[0] for t in range(5, 11)]
    assert moves == [item("key:b"), item("key:c"), item("key:a"), item("key:b"), item("key:c"), row(CANDS)]


def test_a_press_stamped_before_the_last_move_acts_on_the_highlight_it_saw() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    assert s.tick(1000) == [row(CMDS)]
    assert s.tick(2000) == [row(LIKELY)]
    # the switch went down at 1990 (CMDS was lit); the adapter handles it after the 2000 move
    assert s.press(1990) == [item("cmd:back")]
    assert s.deadline == 2990
    assert s.tick(2990) == [item("cmd:more")]
    # a press older than the highlight before that is not taken back further
    assert s.tick(3990) == [item("cmd:back")]
    assert s.press(1000) == [ScanSelect("cmd:back"), NOTHING]
    # the same across a rest: the press beat the move to rest
    s = auto(loops=1)
    s.load([["cand:0", "cand:1"]], 0, "f1")
    s.tick(1000)
    assert s.tick(2000) == [ScanRest(), NOTHING]
    assert s.press(1999) == [ScanSelect("cand:1"), NOTHING]
    assert not s.resting


def test_auto_mode_advance_moves_now_and_restarts_the_interval() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    assert s.press(300, "advance") == [row(CMDS)]
    assert s.deadline == 1300


def test_a_new_fork_restarts_at_the_first_row_and_the_same_layout_again_changes_nothing() -> None:
    s = auto()
    s.load(ROWS, 0, "f1")
    for t in (1000, 2000, 3000):
        s.tick(t)
    s.press(3100)
    assert s.highlight == item("key:a")
    assert s.load(ROWS, 3200, "f1") == []  # republished layout of the same fork: keep scanning
    assert s.highlight == item("key:a") and s.deadline == 4100
    assert s.load(ROWS, 3300, "f2") == [row(CANDS)]  # a new fork: from the top
    s.tick(4300)
    changed = (CANDS, *ROWS[2:])
    assert s.load(changed, 4400, "f2") == [row(CANDS)]  # same fork, the highlighted row gone: from the top
    s.press(4500)
    assert s.highlight == item("cand:0") and s.deadline == 5500
    # the highlighted candidate's look-ahead drawn as a row after it (the browser does): the scan stays
    looks = (CANDS, ("word:0:1", "word:0:2"), *ROWS[2:])
    assert s.load(looks, 4600, "f2") == []
    assert s.highlight == item("cand:0") and s.deadline == 5500
    assert s.tick(5500) == [item("cand:1")]
    assert s.load((CANDS, ("word:1:1",), *ROWS[2:]), 5600, "f2") == []  # the next one's look-ahead
    assert s.load(changed, 5700, "f2") == []  # and none
    assert s.press(5800) == [ScanSelect("cand:1"), NOTHING]
    # rows level: a row added before the highlighted one keeps the highlight on that row
    s.load(ROWS, 6000, "f3")
    s.press(6100, "advance")
    assert s.highlight == row(CMDS)
    assert s.load((CANDS, ("word:2:1",), *ROWS[1:]), 6200, "f3") == []
    assert s.press(6300, "advance") == [row(LIKELY)]
    # one row (its items at the top level) becoming several: from the top
    s.load([CANDS], 7000, "f4")
    assert s.load((CANDS, CMDS), 7100, "f4") == [row(CANDS)]


def test_a_new_fork_during_rest_stays_at_rest() -> None:
    s = auto(loops=1)
    s.load([["cand:0", "cand:1"]], 0, "f1")
    s.tick(1000)
    assert s.tick(2000) == [ScanRest(), NOTHING]
    assert s.load(ROWS, 2500, "f2") == []  # another input moved on; the person still rests
    assert s.press(3000) == [ScanWake(), row(CANDS)]


def test_an_empty_layout_highlights_nothing_and_presses_do_nothing() -> None:
    s = auto()
    assert s.load([], 0, "f1") == [NOTHING]
    assert s.load([[]], 0, "f2") == [NOTHING]  # an empty row is no row
    assert s.press(10) == [] and s.tick(5000) == []
    assert s.load(ROWS, 20, "f2") == [row(CANDS)]


def test_off_is_not_a_scanner_and_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="auto or step"):
        Scanner(ScanConfig())
    with pytest.raises(msgspec.ValidationError, match="interval_ms"):
        msgspec.convert({"mode": "auto", "interval_ms": 50}, ScanConfig)
    with pytest.raises(msgspec.ValidationError, match="loops"):
        msgspec.convert({"mode": "auto", "loops": 0}, ScanConfig)
    with pytest.raises(msgspec.ValidationError, match="mode"):
        msgspec.convert({"mode": "sweep"}, ScanConfig)
    # as the configuration reads it: [scan], RAZVILKA_SCAN__*, --set scan.*
    toml = tmp_path / "config.toml"
    toml.write_text("[scan]\nmode = \"auto\"\ninterval_ms = 700\n")
    assert load_config(toml, overrides=["scan.loops=2"], env={}).scan == ScanConfig(mode="auto", interval_ms=700,
                                                                                     loops=2)
    with pytest.raises(ConfigError, match=r"scan\.interval_ms"):
        load_config(toml, overrides=["scan.interval_ms=50"], env={})


# ---------------------------------------------------------------- the cost of reaching a target
KEYBOARD = (
    ("cand:0", "cand:1", "cand:2", "cand:3"),
    ("cmd:back", "cmd:more", "cmd:pause", "cmd:new"),
    ("key:e", "key:t", "key:a", "key:o", "key:space"),   # the likeliest letters, first
    tuple(f"key:{c}" for c in "abcdefghi"),
    tuple(f"key:{c}" for c in "jklmnopqr"),
    tuple(f"key:{c}" for c in "stuvwxyz'"),
    ("key:delete", "key:accept"),
)


@pytest.mark.parametrize("k", range(26))
def test_steps_to_the_kth_letter_of_the_alphabet(k: int) -> None:
    letter = f"key:{'abcdefghijklmnopqrstuvwxyz'[k]}"
    if letter in KEYBOARD[2]:  # shown again among the likeliest: found there first
        r, c = 2, KEYBOARD[2].index(letter)
    else:  # its row (after candidates, commands, likeliest) and column in the alphabet
        r, c = 3 + k // 9, k % 9
    # auto: r row steps, a press, c item steps, a press; each step is one interval
    assert cost_to_select(KEYBOARD, letter, ScanConfig(mode="auto", interval_ms=800)) == \
        ScanCost(steps=r + c, presses=2, time_ms=(r + c) * 800)
    # step: every move is an advance press, plus enter and select
    assert cost_to_select(KEYBOARD, letter, ScanConfig(mode="step")) == \
        ScanCost(steps=r + c, presses=r + c + 2, time_ms=0)


def test_likely_letters_and_one_item_rows_cost_less() -> None:
    cfg = ScanConfig(mode="auto", interval_ms=1000)
    assert cost_to_select(KEYBOARD, "key:e", cfg) == ScanCost(steps=2, presses=2, time_ms=2000)
    assert cost_to_select(KEYBOARD, "key:e", cfg).steps < cost_to_select(KEYBOARD, "key:w", cfg).steps == 5 + 4
    assert cost_to_select(KEYBOARD, "cand:0", cfg) == ScanCost(steps=0, presses=2, time_ms=0)
    rows = (("cand:0", "cand:1"), ("cmd:back",))
    assert cost_to_select(rows, "cmd:back", cfg) == ScanCost(steps=1, presses=1, time_ms=1000)
    assert cost_to_select((("cand:0", "cand:1", "cand:2"),), "cand:2", cfg) == ScanCost(2, 1, 2000)
    with pytest.raises(ValueError, match="not in the rows"):
        cost_to_select(rows, "cmd:new", cfg)


# ---------------------------------------------------------------- the order scanned
def test_rows_and_cols_from_the_layout_give_the_order() -> None:
    items = [
        Placed("key:b", row=2, col=1), Placed("cand:1", row=0, col=1), Placed("key:e", row=2, col=0),
        Placed("cand:0", row=0, col=0), Placed("cmd:back", row=1, col=0), Placed("cand:0", row=0, col=0),
        Placed("key:e", row=3, col=4), Placed("key:a", row=3, col=0),
    ]
    # a candidate in both boxes and targets: once; a likely letter again in the alphabet: in both rows
    assert scan_rows(items) == (("cand:0", "cand:1"), ("cmd:back",), ("key:e", "key:b"), ("key:a", "key:e"))


def test_without_rows_boxes_group_by_height_and_candidates_go_by_index() -> None:
    items = [
        Placed("cand:2", x=0, y=100, w=80, h=40),
        Placed("cand:0", x=200, y=110, w=80, h=40),     # 10 px lower: the same row (within h/2)
        Placed("cand:1", x=100, y=95, w=80, h=40),
        Placed("word:0:1", x=300, y=100, w=80, h=40),
        Placed("cmd:more", x=200, y=300, w=80, h=40),
        Placed("cmd:back", x=0, y=300, w=80, h=40),
        Placed("key:a", x=0, y=145, w=80, h=40),        # 45 px lower: a row of its own
    ]
    assert scan_rows(items) == (
        ("cand:0", "word:0:1", "cand:1", "cand:2"),  # a candidate's look-ahead words right after it
        ("key:a",),
        ("cmd:back", "cmd:more"),
    )
    assert scan_rows([]) == ()


def test_rows_of_a_render_layout() -> None:
    layout = Layout(
        boxes=[Box(index=1, x=100, y=0, w=90, h=40, row=0, col=1), Box(index=0, x=0, y=0, w=90, h=40, row=0, col=0)],
        targets=[TargetBox(target="cmd:back", x=0, y=50, w=90, h=40, row=1, col=0, label="Back"),
                 TargetBox(target="key:e", x=0, y=100, w=40, h=40, row=2, col=0),
                 TargetBox(target="key:space", x=50, y=100, w=90, h=40, row=2, col=1)],
        screen_w=1024, screen_h=768, renderer="test")
    assert layout_rows(layout) == ((("cand:0", "cand:1"), ("cmd:back",), ("key:e", "key:space")), ())
    # a 1.3 layout: candidate boxes without rows, grouped by height, by index
    old = Layout(boxes=[Box(index=2, x=0, y=0, w=90, h=40), Box(index=0, x=200, y=0, w=90, h=40),
                        Box(index=1, x=0, y=60, w=90, h=40)], screen_w=1024, screen_h=768, renderer="old")
    assert layout_rows(old) == ((("cand:0", "cand:2"), ("cand:1",)), ())
    # a later minor's command is left out (and named), not a reason to stop scanning
    newer = Layout(boxes=[], targets=[TargetBox(target="cmd:juggle", x=0, y=0, w=9, h=9, row=0, col=0),
                                      TargetBox(target="cmd:back", x=0, y=0, w=9, h=9, row=0, col=1)],
                   screen_w=1024, screen_h=768, renderer="newer")
    assert layout_rows(newer) == ((("cmd:back",),), ("cmd:juggle",))


def test_a_bad_target_id_is_named() -> None:
    with pytest.raises(ProtocolError) as err:
        scan_rows([Placed("cand:0"), Placed("key:Enter")])
    assert err.value.code == ErrorCode.BAD_VALUE and "key:Enter" in err.value.detail
