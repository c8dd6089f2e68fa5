"""ViewState -> Rich text for each panel of the terminal view (Rich only, no Textual).

A terminal cannot change font size, so a candidate's probability is shown in bands:
padding, weight and colour grow with it, and the percentage is written beside it.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from rich.text import Text

from razvilka.renderers.tui import board
from razvilka.renderers.tui.board import Spot
from razvilka.renderers.tui.state import ViewState

#: Lower bounds of the probability bands, lowest first (band 0 is below the first bound).
BANDS = (0.05, 0.15, 0.35)
BAND_STYLES = ("#8a8a8a", "#d0d0d0", "bold #ffd75f", "bold #ffffff on #005f87")
BAND_PAD = ("", "", " ", "  ")
ORIGIN_STYLES = {"prompt": "italic #8a8a8a", "model": "#d0d0d0", "human": "bold underline #5fd7ff"}
FOCUS_STYLE = "bold reverse"
GROUP_STYLE = "underline on #3a3a00"        # a scanned row: its targets lit together
DWELL_STYLE = "not reverse bold #000000 on #5fd75f"  # the part of a focused target a dwell has filled
KEY_STYLE = "#d0d0d0 on #26323c"
#: Likeliest letters by band, as the candidates: the likelier, the heavier.
LETTER_STYLES = ("#8a8a8a on #26323c", "#d0d0d0 on #26323c", "bold #ffd75f on #26323c", "bold #ffffff on #005f87")
STATE_STYLES = {"alive": "bold green", "ok": "bold green", "recovered": "bold green", "silent": "bold red",
                "lost": "bold red", "error": "bold red", "stopped": "dim", "calibrating": "yellow"}


def band(prob: float) -> int:
    """0 (unlikely) .. 3 (likely)."""
    return sum(prob >= bound for bound in BANDS)


def text_view(state: ViewState) -> Text:
    """The document so far; the human's words stand apart from the model's and the prompt."""
    out = Text()
    for piece, origin in state.segments():
        body = piece.lstrip()
        out.append(piece[: len(piece) - len(body)])  # no underline under the space before a word
        out.append(body, style=ORIGIN_STYLES.get(origin, ""))
    if state.typed:
        out.append(" " if out.plain and not out.plain.endswith((" ", "\n")) else "")
        out.append(state.typed + "▏", style="bold #ffaf00")
    if not out.plain:
        out.append("(no text yet)", style="dim")
    return out


def legend() -> Text:
    out = Text("text: ", style="dim")
    for origin, label in (("human", "your words"), ("model", "the model's"), ("prompt", "prompt")):
        out.append(label, style=ORIGIN_STYLES[origin])
        out.append("  ")
    return out


def cloud(state: ViewState, show_probs: bool = True, width: int = 80) -> tuple[Text, list[Spot]]:
    """The candidates of the open fork in shown order, numbered for the number keys, centred in lines
    of ``width`` cells; with where each one landed (its ``cand:<i>`` target, for the layout)."""
    fork = state.fork
    if fork is None:
        out = Text(justify="center")
        if state.last_decision is not None:
            d = state.last_decision
            out.append("decided ", style="dim")
            out.append(" ".join(w.strip() for w in d.words) or "(typed)", style=ORIGIN_STYLES["human"])
            out.append(f"  by {', '.join(d.sources) or '?'} in {d.latency_ms:.0f} ms", style="dim")
            out.append("\nwaiting for the next fork…", style="dim")
        else:
            out.append("no fork open: the model is writing, or the daemon is not there", style="dim")
        return out, []
    row = board.candidate_row(state)
    chunks: list[board.Chunk] = []
    targets = [key.target for key in row.keys]
    for pos, (cand, key) in enumerate(zip(fork.candidates, row.keys)):
        look = state.highlighted(key.target, targets)
        focused = look == "focus"
        level = band(cand.prob)
        out = Text()
        number = str((pos + 1) % 10) if pos < 10 else " "
        out.append(number, style="bold #ffaf00" if focused else "#808080")
        out.append("▸" if focused else " ", style="bold #ffaf00")
        style = f"{BAND_STYLES[level]} {FOCUS_STYLE}" if focused else BAND_STYLES[level]
        if look == "group":
            style = f"{style} {GROUP_STYLE}"
        body_start = len(out)
        out.append(BAND_PAD[level], style=style)
        out.append(fork.stem(cand), style=f"{style} dim")
        out.append(f"{cand.word.strip()}{BAND_PAD[level]}", style=style)
        if show_probs:
            out.append(f" {cand.prob * 100:.0f}%", style="#808080")
        if focused:
            _dwell(out, state.dwell, body_start)
        chunks.append(board.Chunk(out, key))
    return board.pack([("candidates", chunks)], width, gap=3, center=True)


def _dwell(out: Text, dwell: float | None, start: int = 0) -> None:
    """Dwell progress on a focused target: its cells fill (green) from the left as the dwell grows."""
    if dwell is None or dwell <= 0:
        return
    cells = len(out.plain) - start
    fill = max(1, min(cells, round(cells * min(1.0, dwell))))
    out.stylize(DWELL_STYLE, start, start + fill)


def key_chunk(state: ViewState, key: board.Key, row: Collection[str], *, show_prob: bool = False) -> board.Chunk:
    """One keyboard or command key (in a row of ``row`` targets): its label in a box of spaces, drawn by
    how it is highlighted."""
    look = state.highlighted(key.target, row)
    style = KEY_STYLE
    if key.prob is not None:
        style = LETTER_STYLES[band(key.prob)]
    if look == "focus":
        style = f"{style} {FOCUS_STYLE}"
    elif look == "group":
        style = f"{style} {GROUP_STYLE}"
    out = Text(f" {key.label} ", style=style)
    if show_prob and key.prob is not None:
        out.append(f"{key.prob * 100:.0f}%", style="#808080" if look != "focus" else style)
    if look == "focus":
        _dwell(out, state.dwell)
    return board.Chunk(out, key)


def keyboard(state: ViewState, show_probs: bool = True, width: int = 80) -> tuple[Text, list[Spot]]:
    """The rows of the scan order after the candidates, each behind a caption: the likeliest next letters,
    the typed word with space/delete/accept, the commands, the alphabet (the fork's script, fixed order)
    and the quick phrases; while paused, Resume alone."""
    rows: list[tuple[str, list[board.Chunk]]] = []
    captions = {"letters": "likeliest", "edit": "typed", "commands": "commands", "abc-1": board.script_of(state),
                "phrases-1": "phrases", "rest": "resting" if state.resting else "paused"}
    for row in board.keyboard_rows(state):
        head = Text(captions.get(row.name, "").ljust(board.CAPTION_W), style="dim")
        chunks = [board.Chunk(head)]
        if row.name == "edit":
            typed = Text((state.typed or "") + "▏", style="bold #ffaf00" if state.typed else "dim")
            typed.append(" " * max(0, 12 - len(typed.plain)))
            chunks.append(board.Chunk(typed))
        targets = [key.target for key in row.keys]
        chunks += [key_chunk(state, key, targets, show_prob=show_probs and row.name == "letters") for key in row.keys]
        rows.append((row.name, chunks))
    return board.pack(rows, width, gap=1, indent=board.CAPTION_W + 1)


def keyboard_title(state: ViewState) -> Text:
    """The keyboard's title: what it types into, and the rest notice while paused."""
    out = Text("keyboard")
    if state.typed:
        out.append(f" · typing '{state.typed}'", style="bold #ffaf00")
    if state.resting:
        out.append(" · resting (looked away): Resume continues", style="bold yellow")
    elif state.paused:
        out.append(" · paused: Resume continues", style="bold yellow")
    return out


def cloud_title(state: ViewState) -> str:
    fork = state.fork
    if fork is None:
        return "fork"
    parts = [f"fork {fork.fork_id}"]
    if fork.body.page:
        parts.append(f"page {fork.body.page + 1}")
    if fork.body.compute_ms:
        parts.append(f"{fork.body.compute_ms:.0f} ms")
    if fork.body.pregenerated:
        parts.append("pre-generated")
    if fork.prefix:
        parts.append(f"prefix '{fork.prefix}'")
    return " · ".join(parts)


def lookaheads(state: ViewState) -> Text:
    """One line per candidate: its look-ahead phrase ("look into the future")."""
    fork = state.fork
    out = Text(no_wrap=True, overflow="ellipsis")
    if fork is None:
        return out
    for pos, cand in enumerate(fork.candidates):
        if pos:
            out.append("\n")
        focused = cand.index == state.focus
        out.append(f"{(pos + 1) % 10 if pos < 10 else ' '} ", style="#808080")
        style = "bold #ffaf00" if focused else BAND_STYLES[band(cand.prob)]
        out.append(fork.stem(cand), style=f"{style} dim")
        out.append(cand.word.strip(), style=style)
        phrases = fork.phrases(cand.index)
        out.append("  ")
        mark = state.phrase_mark() if focused else 0
        if phrases and mark:  # the words End will take, marked
            head = re.match(rf"(?:\s*\S+){{{mark}}}", phrases[0])
            cut = head.end() if head else len(phrases[0])
            out.append(one_line(phrases[0][:cut]), style="reverse bold #ffaf00")
            rest = one_line(phrases[0][cut:])
            if rest:
                out.append(" " + rest, style="#d0d0d0")
        else:
            out.append(one_line(phrases[0]) if phrases else "…", style="#d0d0d0" if phrases else "dim")
    return out


def focused_detail(state: ViewState, lines: int) -> Text:
    """The focused candidate with its longer look-ahead phrases; with nothing focused, the first one."""
    fork = state.fork
    out = Text()
    if fork is None or not fork.candidates:
        out.append("nothing focused", style="dim")
        return out
    focused = state.focused
    if focused is not None and not focused.candidate:  # a command or a key (a scan, a dwell)
        out.append(f"{focused.kind} {focused.value}", style="bold #ffaf00")
        if state.focus_source and state.focus_source != state.me:
            out.append(f"  (focus from {state.focus_source})", style="dim")
        out.append("\n")
    pos = fork.position_of(state.focus)
    cand = fork.candidates[0 if pos is None else pos]
    out.append(fork.stem(cand), style="bold #ffaf00 dim")
    out.append(cand.word.strip(), style="bold #ffaf00")
    out.append(f"  {cand.prob * 100:.1f}%", style="#808080")
    if pos is None:
        out.append("  (none focused)", style="dim")
    elif state.focus_source and state.focus_source != state.me:
        out.append(f"  (focus from {state.focus_source})", style="dim")
    phrases = fork.long_phrases(cand.index)[:lines]
    for phrase in phrases:
        out.append("\n→ ")
        out.append(continued(fork.stem(cand) + cand.word.strip(), phrase), style="#d0d0d0")
    if not phrases:
        out.append("\n→ (look-ahead not here yet)", style="dim")
    return out


def one_line(phrase: str) -> str:
    """A look-ahead on one line: a line break the model would write shows as ⏎."""
    return " ".join(phrase.replace("\n", " ⏎ ").split())


def continued(word: str, phrase: str) -> str:
    """The word and what may follow it; phrases may or may not repeat the word itself."""
    word, phrase = word.strip(), one_line(phrase)
    return phrase if not word or phrase.startswith(word) else f"{word} {phrase}"


def status_line(state: ViewState) -> Text:
    """Model, mode, daemon state and the latency of the last fork."""
    st = state.status
    out = Text(no_wrap=True, overflow="ellipsis")
    if st is None:
        out.append("daemon: no status yet", style="bold red")
    else:
        out.append("daemon ", style="dim")
        out.append(st.state, style=STATE_STYLES.get(st.state, "bold"))
        out.append("  model ", style="dim")
        out.append(st.model or "?", style="bold")
        out.append("  mode ", style="dim")
        out.append(st.mode or "?", style="bold")
        if st.k:
            out.append(f"  k {st.k}", style="dim")
        if st.state == "loading" and st.progress is not None:
            out.append(f"  loading {st.progress * 100:.0f}%", style="yellow")
    out.append("  last fork ", style="dim")
    out.append(f"{state.last_fork_ms:.0f} ms" if state.last_fork_ms is not None else "–", style="bold")
    if state.last_decision is not None:
        out.append("  last decision ", style="dim")
        out.append(f"{state.last_decision.latency_ms:.0f} ms", style="bold")
    if state.last_error is not None:
        out.append(f"  error {state.last_error.name}: {state.last_error.message}", style="bold red")
    return out


def sources_view(state: ViewState, alive: Mapping[str, str], roles: Mapping[str, str], keys_on: bool) -> Text:
    """Input sources and their liveness: heartbeats first, then what sources said of themselves."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("inputs ", style="dim")
    entries: dict[str, str] = {}
    if keys_on:
        entries[state.me] = "alive"
    for name, live in alive.items():
        if roles.get(name) == "input":
            entries[name] = live
    if state.status is not None:
        for name, st in state.status.sources.items():
            entries.setdefault(name, st)
    for name, status in state.sources.items():
        heard = entries.get(name)
        if heard in ("silent", "stopped"):
            continue  # the heartbeats' word wins: the process itself is gone
        if status.state in ("ok", "recovered"):
            entries.setdefault(name, status.state)
        else:
            entries[name] = status.state  # alive, but its device is lost, failing or calibrating
    if not entries:
        out.append("none", style="bold red")
    for i, (name, live) in enumerate(sorted(entries.items())):
        if i:
            out.append("  ")
        out.append("● ", style=STATE_STYLES.get(live, "yellow"))
        out.append(f"{name} ", style="bold")
        out.append(live, style=STATE_STYLES.get(live, "yellow"))
    others = [f"{n} {v}" for n, v in sorted(alive.items()) if roles.get(n) != "input"]
    if others:
        out.append("   peers ", style="dim")
        out.append(", ".join(others), style="#808080")
    return out


def help_line(state: ViewState, keys_on: bool) -> Text:
    if not keys_on:
        return Text("view only (keys off)   ctrl+q quit", style="dim")
    text = ("1-9 select  ←→ focus  enter/space confirm  end +phrase  shift+←→ mark phrase  ⌫ back  +/tab more  "
            "a-z type  esc pause  click: any word, key or command  ctrl+q quit")
    out = Text(text, style="dim", no_wrap=True, overflow="ellipsis")
    if state.typed:
        out = Text(f"typing '{state.typed}'  ⌫ deletes a letter  space/enter: this word  ", style="bold #ffaf00") + out
    return out

