"""P300 over every target (issue 16): commands and keyboard keys flash beside the candidates.

* The prior over all flashed items (one function, ``bayes.item_prior``) and the accumulator that
  takes in items first flashed late, exactly.
* Group flashing (a layout's rows and columns) against one item at a time, simulated with the
  real Muse recording's held-out epochs: far fewer flashes per selection among ~40 items.
* Synthetic ERPs on a playback board, flashed in rows and columns: the adapter selects a
  keyboard key by ``target``, and ignores flashes that name bad targets, saying why.
* The real thing: Muse run 6 replayed through BrainFlow's playback board into the real adapter,
  against a real daemon (real model) on its bus. The recorded target responses fall on the
  flashes that hold ``cmd:back``; the adapter selects ``cmd:back`` and the daemon undoes the
  last word.
"""
from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import test_eeg
import test_web
from daemon_fixtures import StartDaemon, current_fork, next_of
from test_eeg import SYN_CH, SYN_RATE, erp, start, synth_config
from test_web import WORDS as WEB_WORDS
from test_web import next_msg as web_next

from razvilka.daemon.engine import Engine, letters_of
from razvilka.inputs.eeg.adapter import SUBSCRIBE, EegAdapter
from razvilka.inputs.eeg.bayes import Accumulator, item_prior, lm_prior
from razvilka.inputs.eeg.classifier import P300Model
from razvilka.inputs.eeg.config import EegConfig
from razvilka.inputs.eeg.recording import NON_TARGET, TARGET, Recording, load_muse_csv, write_playback_file
from razvilka.inputs.eeg.simulate import Summary, row_column_sets, simulate, summarise
from razvilka.protocol.clock import now_s, unix_to_bus_offset_s
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Body,
    Box,
    Candidate,
    ForkDecided,
    ForkOpen,
    Layout,
    Letter,
    Message,
    Select,
    Stimulus,
    TargetBox,
    TextUndo,
)
from razvilka.protocol.targets import ALPHABETS, SCRIPTS, is_key_char

# The EEG suite's fixtures (the Muse recording, models calibrated on it and on synthetic ERPs) and the
# browser suite's (headless Chromium, a page on a bridge), used here by name.
muse_runs, muse_model, held_out, synth_model = (test_eeg.muse_runs, test_eeg.muse_model, test_eeg.held_out,
                                                test_eeg.synth_model)
browser, rig, open_page = test_web.browser, test_web.rig, test_web.open_page

COMMANDS = ["cmd:back", "cmd:more", "cmd:pause", "cmd:new"]


def screen(k: int, script: str = "latin", per_row: int = 8) -> tuple[list[str], list[tuple[int, int]]]:
    """The items of a P300 screen and their (row, col): candidates, the command row, the alphabet
    ``per_row`` letters a row, then space, delete and accept."""
    items = [f"cand:{i}" for i in range(k)] + COMMANDS
    cells = [(0, i) for i in range(k)] + [(1, i) for i in range(len(COMMANDS))]
    assert script in SCRIPTS, f"no alphabet for script {script!r}"
    letters = ALPHABETS[script]
    items += [f"key:{ch}" for ch in letters]
    cells += [(2 + n // per_row, n % per_row) for n in range(len(letters))]
    last = 3 + (len(letters) - 1) // per_row
    items += ["key:space", "key:delete", "key:accept"]
    cells += [(last, 0), (last, 1), (last, 2)]
    return items, cells


B = TypeVar("B", bound=Body)


def body_of(msg: Message, cls: type[B]) -> B:
    """A received message's body, checked to be ``cls``."""
    assert isinstance(msg.body, cls), f"{msg.type}: {msg.body!r}"
    return msg.body


def stimulus(items: list[str], group: list[int], onset_s: float, flash: int) -> Stimulus:
    """One flash of a group: candidates as ``indices``, the rest as ``targets``."""
    ids = [items[i] for i in group]
    return Stimulus(indices=[int(t[5:]) for t in ids if t.startswith("cand:")], onset_ns=int(onset_s * 1e9),
                    flash=flash, renderer="test", targets=[t for t in ids if not t.startswith("cand:")])


# ---------------------------------------------------------------------------- the prior
def test_one_prior_over_candidates_letters_and_commands() -> None:
    probs = {0: 0.3, 1: 0.2, 2: 0.1}                       # 0.4 of the mass is not shown: spelling
    letters = {"t": 0.5, "a": 0.25, " ": 0.25}
    items = ["cand:0", "cand:1", "cand:2", "cmd:back", "key:delete", "key:t", "key:a", "key:z", "key:space"]
    p = item_prior(items, probs, letters, weight=1.0, floor=0.0, command_share=0.1)
    raw = np.array([0.27, 0.18, 0.09, 0.1 / 7, 0.1 / 7, 0.9 * 0.4 * 0.5, 0.9 * 0.4 * 0.25, 0.0, 0.9 * 0.4 * 0.25])
    assert np.allclose(p, np.clip(raw, 1e-9, None) / np.clip(raw, 1e-9, None).sum(), atol=1e-6)
    assert p[items.index("cmd:back")] == pytest.approx(p[items.index("key:delete")])
    # with candidates alone it is the candidates' LM prior, as before targets existed
    assert np.allclose(item_prior(["cand:0", "cand:1", "cand:2"], probs), lm_prior([0.3, 0.2, 0.1]))
    # the floor keeps an item the model gives nothing reachable; weight 0 is uniform
    assert item_prior(items, probs, letters)[items.index("key:z")] >= 0.02 / len(items)
    assert np.allclose(item_prior(items, probs, letters, weight=0.0), 1 / len(items))
    with pytest.raises(ProtocolError) as err:
        item_prior(["cand:0", "cmd:fly"], probs)
    assert err.value.code == ErrorCode.BAD_VALUE and "cmd:fly" in str(err.value)


@pytest.mark.model
def test_under_a_typed_prefix_the_keys_keep_the_share_the_candidates_leave(engine: Engine) -> None:
    """The real model's fork after "... weekend is" + "s": its candidates hold their share of all the mass
    the model gives "s", so the letter keys get the rest, P(not shown) x P(letter | not shown), far above
    the floor; with the candidates renormalised over the words the search found (a 1.4 daemon's numbers)
    the keys got about the floor alone."""
    engine.reset("My favourite thing about the weekend is")
    fork = engine.words(8, prefix="s")
    letters = dict(letters_of(fork, engine.text, is_key_char).letters)
    probs = {i: c.prob for i, c in enumerate(fork.candidates)}
    items, _ = screen(len(probs))
    keys = [n for n, t in enumerate(items) if t.startswith("key:") and t[4:] not in ("delete", "accept")]
    c = EegConfig()
    spell = 1 - sum(probs.values())
    assert 0.02 < spell < 0.7, probs

    def key_share(cand_probs: dict[int, float]) -> float:
        prior = item_prior(items, cand_probs, letters, weight=1.0, floor=c.prior_floor, command_share=c.command_prior)
        return float(prior[keys].sum())

    floor_only = c.prior_floor * len(keys) / len(items)
    share = key_share(probs)
    assert share == pytest.approx((1 - c.prior_floor) * (1 - c.command_prior) * spell * sum(letters.values())
                                  + floor_only, rel=0.05)
    assert share > 3 * floor_only
    old = {i: p / sum(probs.values()) for i, p in probs.items()}  # summing to 1, as a 1.4 daemon's did
    assert key_share(old) == pytest.approx(floor_only, rel=0.05)


def test_an_item_first_flashed_late_counts_as_if_there_from_the_start() -> None:
    prior3 = np.array([0.5, 0.3, 0.2])
    late = Accumulator(prior3[:2] / prior3[:2].sum())
    whole = Accumulator(prior3)
    late.add([0], 1.5)
    whole.add([0], 1.5)
    late.extend(prior3)                # item 2 appears in the second flash
    for acc in (late, whole):
        acc.add([1, 2], -0.7)
        acc.add([2], 2.0)
    assert np.allclose(late.posterior, whole.posterior) and late.none == pytest.approx(whole.none)
    assert list(late.flashes) == [1, 1, 2] and late.shown == 3
    with pytest.raises(ValueError, match="already has 3"):
        late.extend(prior3[:2])


# ---------------------------------------------------------------------------- group flashing, simulated
def test_rows_and_columns_need_far_fewer_flashes_than_one_item_at_a_time(muse_model: P300Model, held_out) -> None:
    """41 items (8 candidates, 4 commands, 26 letters, 3 keys) with the Muse subject's held-out epochs."""
    scores, labels = held_out
    items, cells = screen(8)
    zipf = np.array([1 / (i + 1) for i in range(8)])
    probs = dict(enumerate(0.6 * zipf / zipf.sum()))       # the model covers 60%: 40% is spelled
    letters = dict.fromkeys(ALPHABETS["latin"] + " ", 1 / 27)
    prior = item_prior(items, probs, letters)
    groups = row_column_sets(cells)
    assert len(groups) == 15 and all(sum(i in g for g in groups) == 2 for i in range(len(items)))
    # the same flash budget (~410 flashes) for both: 10 rounds of 41 single flashes, 27 of 15 groups
    def run(max_repetitions: int, flash_sets: list[list[int]] | None) -> Summary:
        return summarise(simulate(scores[labels == 1], scores[labels == 0], muse_model.scores, prior, trials=200,
                                  threshold=0.9, null_prior=0.05, seed=5, max_repetitions=max_repetitions,
                                  flash_sets=flash_sets), len(items), 0.175)

    single, grouped = run(10, None), run(54, groups)
    for name, s in (("one at a time", single), ("rows + columns", grouped)):
        print(f"\n{len(items)} items, {name}: accuracy {s.accuracy:.3f}, {s.flashes:.1f} flashes/selection, "
              f"{s.seconds_per_selection:.1f} s/selection, timeouts {s.timeout_rate:.3f}, "
              f"ITR {s.itr_bits_per_min:.1f} bits/min")
    assert grouped.accuracy > 0.85 and grouped.timeout_rate < 0.05     # chance is 1/41
    assert grouped.seconds_per_selection < single.seconds_per_selection / 2
    assert grouped.flashes < single.flashes / 2


def test_flash_groups_single_out_every_target_in_few_flashes() -> None:
    """renderers/screen.py flash_groups (what the browser view flashes, and the benchmark charges): the rows
    and the columns of a grid ceil(sqrt(n)) wide; each target is in exactly one row and one column, and no
    two targets share both, so two flashes a round single each out."""
    from razvilka.renderers.screen import flash_group_count, flash_groups

    for n in range(1, 60):
        items = [f"key:{i}" for i in range(n)]
        groups = flash_groups(items)
        cols = math.ceil(math.sqrt(n))
        assert len(groups) == flash_group_count(n) == (n if n <= cols else math.ceil(n / cols) + cols)
        member = {t: frozenset(i for i, g in enumerate(groups) if t in g) for t in items}
        assert all(len(m) == (1 if n <= cols else 2) for m in member.values())
        assert len(set(member.values())) == n          # every target has its own pair of groups
    assert [flash_group_count(n) for n in (9, 12, 20, 29, 36, 47)] == [6, 7, 9, 11, 12, 14]


# ---------------------------------------------------------------------------- synthetic ERPs, grouped flashes
def synth_groups(groups: list[list[int]], target: int, rounds: int, *, soa: float = 0.2, lead: float = 0.5,
                 tail: float = 1.5, seed: int = 0) -> tuple[Recording, list[tuple[float, int]]]:
    """Synthetic-board EEG with a P300 after every flash whose group holds ``target``; each round
    flashes every group once in a fresh random order. Returns the recording and (onset s, group)."""
    rng = np.random.default_rng(seed)
    order = [int(g) for _ in range(rounds) for g in rng.permutation(len(groups))]
    flashes = [(lead + n * soa, g) for n, g in enumerate(order)]
    n = int((lead + len(order) * soa + tail) * SYN_RATE)
    t = np.arange(n) / SYN_RATE
    eeg = rng.normal(0, 6.0, (n, len(SYN_CH))) + 20.0 * np.sin(2 * np.pi * 0.2 * t[:, None])
    markers = np.zeros(n, dtype=int)
    w = int(0.8 * SYN_RATE)
    for onset, g in flashes:
        i = int(round(onset * SYN_RATE))
        hit = target in groups[g]
        markers[i] = TARGET if hit else NON_TARGET
        if hit:
            m = min(w, n - i)
            eeg[i:i + m] += erp(w, 10.0)[:, :m].T
    return Recording(eeg, 1_700_000_000.0 + t, markers, SYN_CH, SYN_RATE, "synthetic"), flashes


async def test_grouped_flashes_select_a_keyboard_key_by_target(ipc_clients, synth_model, tmp_path) -> None:
    k = 4
    items, cells = screen(k)
    groups = row_column_sets(cells)
    want = items.index("key:e")
    rec, flashes = synth_groups(groups, want, rounds=8, seed=21)
    start_unix = time.time() + 0.3
    path = write_playback_file(tmp_path / "groups.csv", rec, -1, start_unix=start_unix)
    cfg = synth_config(path, tmp_path, max_repetitions=16, fork_timeout_s=60)
    session = await start(ipc_clients, cfg, synth_model)
    peer = session.peer
    cands = [Candidate(index=i, word=f"w{i}", prob=p) for i, p in enumerate([0.3, 0.2, 0.1, 0.05])]
    letters = [Letter(ch="e", prob=0.1), Letter(ch="t", prob=0.3), Letter(ch=" ", prob=0.2)]
    peer.publish(ForkOpen(candidates=cands, letters=letters), fork_id="kb")
    offset = unix_to_bus_offset_s()
    # bad flashes first (after the fork.open from the same sender, so the adapter knows the fork),
    # each ignored with its reason: an unknown command, a candidate the fork lacks
    now = now_s()
    for flash, (indices, targets) in enumerate((([], ["cmd:fly"]), ([0], ["cand:9"]))):
        bad = Stimulus(indices=indices, onset_ns=int(now * 1e9), targets=targets, flash=900 + flash)
        peer.publish(bad, fork_id="kb")
    for n, (t, g) in enumerate(flashes):
        onset = start_unix + t + offset
        if onset - now_s() > 0:
            await session.pump(onset - now_s())
        peer.publish(stimulus(items, groups[g], onset, n), fork_id="kb")
        if session.of(Select):
            break
    await session.pump(3.0, until=lambda m: isinstance(m.body, Select))
    await session.close()
    stats = session.adapter.stats
    assert stats.ignored["BAD_VALUE"] == 1 and stats.ignored["OUT_OF_RANGE"] == 1, stats
    selects = session.of(Select)
    assert len(selects) == 1, f"no select; {stats}"
    sel = selects[0]
    state = session.adapter.forks["kb"]
    print(f"\nkey:e selected with posterior {sel.confidence:.3f} after {state.acc.shown} grouped flashes "
          f"over {len(state.items)} items")
    assert (sel.target, sel.index, sel.kind, sel.source) == ("key:e", None, "eeg", "eeg")
    assert sel.confidence >= 0.9 and sel.posterior is not None and len(sel.posterior) == k
    assert sorted(state.items) == sorted(items)              # every flashed item became a hypothesis


def synth_levels(levels: list[tuple[list[list[int]], int, int]], *, soa: float = 0.2, lead: float = 0.5,
                 tail: float = 1.5, seed: int = 0) -> tuple[Recording, list[list[tuple[float, int]]]]:
    """:func:`synth_groups` for screens flashed one after the other: ``levels`` is (groups, target, rounds)
    each; returns the recording and, per level, its (onset s, group)."""
    rng = np.random.default_rng(seed)
    plan: list[tuple[int, int]] = []   # (level, group)
    for n, (groups, _, rounds) in enumerate(levels):
        plan += [(n, int(g)) for _ in range(rounds) for g in rng.permutation(len(groups))]
    total = int((lead + len(plan) * soa + tail) * SYN_RATE)
    t = np.arange(total) / SYN_RATE
    eeg = rng.normal(0, 6.0, (total, len(SYN_CH))) + 20.0 * np.sin(2 * np.pi * 0.2 * t[:, None])
    markers = np.zeros(total, dtype=int)
    w = int(0.8 * SYN_RATE)
    out: list[list[tuple[float, int]]] = [[] for _ in levels]
    for i, (level, g) in enumerate(plan):
        onset = lead + i * soa
        out[level].append((onset, g))
        k = int(round(onset * SYN_RATE))
        hit = levels[level][1] in levels[level][0][g]
        markers[k] = TARGET if hit else NON_TARGET
        if hit:
            m = min(w, total - k)
            eeg[k:k + m] += erp(w, 10.0)[:, :m].T
    return Recording(eeg, 1_700_000_000.0 + t, markers, SYN_CH, SYN_RATE, "synthetic"), out


async def test_spell_opens_the_keys_level_and_the_adapter_starts_over_on_it(ipc_clients, synth_model,
                                                                            tmp_path) -> None:
    """P300 levels (renderers/screen.py p300_targets): the words level flashes the candidates, Back, More,
    ui:spell and ui:menu; the adapter selects ui:spell (the keyboard: its prior is the mass the candidates
    leave uncovered). The renderer then flashes the keys level, its flashes numbered from 0 again: the adapter
    starts over with those items alone as its hypotheses (the candidates, passed over, no longer compete) and
    selects the letter key."""
    from razvilka.renderers.screen import flash_groups, p300_targets, screen_rows

    cands = [Candidate(index=i, word=f"w{i}", prob=p) for i, p in enumerate([0.2, 0.1, 0.05, 0.05])]
    letters = [Letter(ch="e", prob=0.1), Letter(ch="t", prob=0.3), Letter(ch=" ", prob=0.2)]
    rows = screen_rows([(c.index, c.prob) for c in cands], [(x.ch, x.prob) for x in letters])
    words, keys = list(p300_targets(rows, "words")), list(p300_targets(rows, "keys"))
    assert words == ["cand:0", "cand:1", "cand:2", "cand:3", "cmd:back", "cmd:more", "ui:spell", "ui:menu"]
    assert keys == ["key:t", "key:e", "ui:abc", "ui:words"]

    def index_groups(items: list[str]) -> list[list[int]]:
        return [[items.index(t) for t in g] for g in flash_groups(items)]

    levels = [(index_groups(words), words.index("ui:spell"), 8), (index_groups(keys), keys.index("key:e"), 8)]
    rec, flashes = synth_levels(levels, seed=4)
    start_unix = time.time() + 0.3
    path = write_playback_file(tmp_path / "levels.csv", rec, -1, start_unix=start_unix)
    cfg = synth_config(path, tmp_path, max_repetitions=16, fork_timeout_s=60)
    session = await start(ipc_clients, cfg, synth_model)
    session.peer.publish(ForkOpen(candidates=cands, letters=letters), fork_id="lv")
    offset = unix_to_bus_offset_s()
    for items, (groups, _, _), plan in zip((words, keys), levels, flashes):
        before = len(session.of(Select))
        for n, (t, g) in enumerate(plan):   # numbered from 0 on each level, as the browser does
            onset = start_unix + t + offset
            if onset - now_s() > 0:
                await session.pump(onset - now_s())
            session.peer.publish(stimulus(items, groups[g], onset, n), fork_id="lv")
            if len(session.of(Select)) > before:
                break
        await session.pump(3.0, until=lambda m: isinstance(m.body, Select) and len(session.of(Select)) > before)  # noqa: B023
    await session.close()
    selects = session.of(Select)
    assert [s.target for s in selects] == ["ui:spell", "key:e"], (selects, session.adapter.stats)
    assert all(s.confidence >= 0.9 and s.index is None for s in selects)
    state = session.adapter.forks["lv"]
    assert state.items == keys or sorted(state.items) == sorted(keys)   # the keys level alone
    assert selects[1].posterior == [0.0] * 4     # no candidate flashed on the keys level


# ---------------------------------------------------------------------------- the browser's flashes
@pytest.mark.browser
@pytest.mark.timeout(120)
async def test_browser_flashes_its_words_level_in_grid_groups(rig: test_web.Rig,
                                                              open_page: test_web.OpenPage) -> None:
    """The page (headless Chromium) flashes the words level of its own layout (renderers/screen.py
    p300_targets: the candidates, Back, More, then its ui:spell and ui:menu targets) in flash_groups' grid:
    each round, every one of them lights exactly twice; nothing else flashes (the keys rest)."""
    from razvilka.renderers.screen import ScreenRow, flash_groups, p300_targets

    rounds = 2
    url = await rig.start_bridge()
    await open_page(url + f"?p300=1&rounds={rounds}")
    letters = [Letter(ch=ch, prob=p) for ch, p in (("t", 0.4), ("a", 0.3), (" ", 0.2))]
    cands = [Candidate(index=i, word=w, prob=p) for i, (w, p) in enumerate(WEB_WORDS)]
    rig.daemon.publish(ForkOpen(candidates=cands, context="Dear Anna,", letters=letters), fork_id="f1")
    layout = body_of(await web_next(rig.observer, "render.layout",
                                    lambda m: isinstance(m.body, Layout) and bool(m.body.targets)), Layout)
    places = sorted([(b.row, b.col, f"cand:{b.index}") for b in layout.boxes]
                    + [(t.row, t.col, t.target) for t in layout.targets])
    by_row: dict[int, list[str]] = {}
    for r, _, t in places:
        by_row.setdefault(r, []).append(t)
    rows = []   # the layout's rows, named as screen_rows names them: candidates, letters, commands, abc-N
    for r in sorted(by_row):
        ts = tuple(dict.fromkeys(by_row[r]))
        kind = ("candidates" if ts[0].startswith("cand:") else "commands" if ts[0].startswith("cmd:")
                else "letters" if r == 1 else f"abc-{r}")
        rows.append(ScreenRow(kind, ts))
    ids = p300_targets(rows, "words")
    assert ids[-4:] == ("cmd:back", "cmd:more", "ui:spell", "ui:menu"), ids
    want = {frozenset(g) for g in flash_groups(list(ids))}
    got: list[tuple[frozenset[str], Stimulus]] = []
    while len(got) < rounds * len(want):
        body = body_of(await web_next(rig.observer, "render.stimulus"), Stimulus)
        got.append((frozenset([f"cand:{i}" for i in body.indices] + list(body.targets)), body))
    for r in range(rounds):
        groups = [g for g, _ in got[r * len(want):(r + 1) * len(want)]]
        assert set(groups) == want and len(groups) == len(want), f"round {r}: {sorted(map(sorted, groups))}"
        for t in ids:
            assert sum(t in g for g in groups) == 2, f"{t} did not flash twice in round {r}"
    assert all(not any(t.startswith("cand:") for t in b.targets) for _, b in got)   # candidates go in indices
    assert [b.flash for _, b in got] == list(range(len(got)))


# ---------------------------------------------------------------------------- the real thing
def layout_for(fork: ForkOpen, items: list[str], cells: list[tuple[int, int]]) -> Layout:
    """The screen the test stands for: cells 80x40 px, rows and columns as drawn."""
    boxes, targets = [], []
    for item, (r, c) in zip(items, cells):
        x, y = 20.0 + 90 * c, 20.0 + 50 * r
        if item.startswith("cand:"):
            boxes.append(Box(index=int(item[5:]), x=x, y=y, w=80, h=40, row=r, col=c))
        else:
            targets.append(TargetBox(target=item, x=x, y=y, w=80, h=40, row=r, col=c, label=item.split(":")[1]))
    return Layout(boxes=boxes, screen_w=1920, screen_h=1080, renderer="test", targets=targets)


@pytest.mark.model
async def test_playback_board_selects_back_and_the_daemon_undoes(start_daemon: StartDaemon, muse_model: P300Model,
                                                                muse_runs: list[Path], tmp_path: Path) -> None:
    """Muse run 6 (never trained on) through BrainFlow's playback board, flashed as rows and columns of a
    screen with candidates, commands and the keyboard: every recorded target stimulus becomes a flash of
    a group that holds ``cmd:back`` (its row, then its column, in turn), every other stimulus a flash of
    a group without it. The adapter must select ``cmd:back``; the daemon must take the last word back."""
    d = await start_daemon()
    bus = await d.client("t", ["fork.", "text.", "input.", "daemon.error."])
    first = await current_fork(bus)
    bus.publish(Select(index=0, source="keyboard", kind="key"), fork_id=first.header.fork_id)
    decided = await next_of(bus, "fork.decided", 60, where=lambda m: m.header.fork_id == first.header.fork_id)
    fork = await next_of(bus, "fork.open", 60)
    fork_id, body = fork.header.fork_id, fork.body
    assert isinstance(body, ForkOpen)

    rec = load_muse_csv(muse_runs[5])
    start_unix = time.time() + 2.0
    path = write_playback_file(tmp_path / "run6.csv", rec, 41, start_unix=start_unix)
    cfg = EegConfig(board_id=-3, master_board=41, playback_file=str(path), board_config=["old_timestamps"],
                    model_dir=str(tmp_path), fork_timeout_s=120, max_repetitions=60)
    client = await d.client("eeg", list(SUBSCRIBE), role="input")
    adapter = EegAdapter(cfg, client, model=muse_model)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        # the fork opened before the adapter joined: it takes it from the bus snapshot, before any flash
        items, cells = screen(len(body.candidates), body.script)
        bus.publish(layout_for(body, items, cells), fork_id=fork_id)
        groups = row_column_sets(cells)
        back = items.index("cmd:back")
        with_back = [g for g in groups if back in g]
        without = [g for g in groups if back not in g]
        assert len(with_back) == 2
        offset = unix_to_bus_offset_s()
        t0, hits, misses, n = rec.timestamps[0], 0, 0, 0
        select = None
        for n, e in enumerate(rec.events):
            if rec.markers[e] == TARGET:
                group, hits = with_back[hits % 2], hits + 1
            else:
                group, misses = without[misses % len(without)], misses + 1
            onset = start_unix + (rec.timestamps[e] - t0) + offset
            while select is None and now_s() < onset:
                msg = await bus.recv(timeout=max(0.0, min(0.1, onset - now_s())))
                if msg is not None and isinstance(msg.body, Select) and msg.header.sender == "eeg":
                    select = msg
            if select is not None:
                break
            bus.publish(stimulus(items, group, onset, n), fork_id=fork_id)
        if select is None:
            select = await next_of(bus, "input.select", 5, where=lambda m: m.header.sender == "eeg")
        undo = await next_of(bus, "text.undo", 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert fork_id in adapter.forks, "the adapter never saw the open fork"
    sel = body_of(select, Select)
    acc = adapter.forks[fork_id].acc
    print(f"\nreplayed run 6 over {len(items)} items in {len(groups)} groups: select {sel.target} with posterior "
          f"{sel.confidence:.3f} after {acc.shown} flashes ({hits} on a group with cmd:back, {acc.scored} scored)")
    assert select.header.fork_id == fork_id
    assert (sel.target, sel.index, sel.kind) == ("cmd:back", None, "eeg")
    assert sel.confidence >= cfg.threshold and sel.posterior is not None and len(sel.posterior) == len(body.candidates)
    assert body_of(undo, TextUndo).removed.strip() == " ".join(body_of(decided, ForkDecided).words).strip()
