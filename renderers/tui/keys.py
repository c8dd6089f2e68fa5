"""Keys inside the terminal view -> input messages on the bus (no Textual here).

The TUI is an input source like any adapter: it publishes intent (focus, confirm,
select, commands) and never decides; the daemon's decider does.

=================  ==========================================================
key                message
=================  ==========================================================
1..9, 0            ``input.select`` of the 1st..9th, 10th candidate shown
arrows             ``input.focus`` on the previous (left/up) or next candidate
Enter              ``input.confirm`` of the focused candidate; while typing with
                   no candidate picked by arrows, commits the typed word (as Space)
Backspace          ``input.command`` back (or, while typing, drop a letter)
``+`` / Tab        ``input.command`` more
letters            ``input.command`` type, ``text`` = the prefix typed so far
                   (the daemon narrows the candidates to it)
Space (typing)     the typed word as it is: ``input.select`` of the candidate that
                   is exactly that word, else ``input.command`` type ``text="word "``
                   (a trailing space ends the word)
Escape             ``input.command`` toggle_pause
End                ``input.select`` of the focused candidate with its look-ahead
                   (``phrase``), or with the words marked (``phrase_words``)
Shift+→ / Shift+←  mark one more / one fewer word of the focused candidate's
                   look-ahead (nothing is sent until End)
=================  ==========================================================

The same rules as the global keyboard adapter (``inputs/keymap.py``), so a person
gets the same behaviour from either.
"""
from __future__ import annotations

from dataclasses import dataclass

from razvilka.protocol.messages import Body, Command, Confirm, Focus, Select
from razvilka.renderers.tui.state import ViewState

#: Key names (as Textual reports them) that move the focus, and by how much.
FOCUS_STEPS = {"left": -1, "up": -1, "right": 1, "down": 1}
MARK_STEPS = {"shift+right": 1, "shift+left": -1}
MORE_KEYS = {"plus", "tab"}
WORD_CHARS = {"'", "-"}


@dataclass(frozen=True)
class Outgoing:
    """One message to publish, with the fork it refers to."""

    body: Body
    fork_id: str | None = None


def messages_for_key(state: ViewState, key: str, character: str | None, source: str) -> list[Outgoing]:
    """What pressing ``key`` sends. Updates the local focus and typed prefix at once,
    so the screen answers before the echo comes back through the bus."""
    fork = state.fork
    fork_id = fork.fork_id if fork else None
    if character and character.isdigit() and len(character) == 1:
        pos = (int(character) - 1) % 10
        if fork is None or pos >= len(fork.candidates):
            return []
        return [Outgoing(Select(index=fork.candidates[pos].index, source=source), fork_id)]
    if key in FOCUS_STEPS:
        index = state.moved_focus(FOCUS_STEPS[key])
        if index is None or fork_id is None:
            return []
        state.focus, state.focus_source, state.focus_own = index, source, True
        state.version += 1
        return [Outgoing(Focus(index=index, source=source), fork_id)]
    if key == "enter" or (key == "space" and state.typed):
        if fork is None or fork_id is None:
            return []
        if state.typed and (key == "space" or not state.focus_own):
            return [_commit_typed(state, source)]
        if state.focus is None:
            return []
        return [Outgoing(Confirm(source=source, index=state.focus), fork_id)]
    if key in MARK_STEPS:  # local only: which words End will take
        if fork_id is None or state.focus is None:
            return []
        most = len(state.look_words(state.focus))
        state.marked = (fork_id, state.focus, max(0, min(most, state.phrase_mark() + MARK_STEPS[key])))
        state.version += 1
        return []
    if key == "end":  # the focused candidate with its look-ahead (or its marked words): several words, one key
        if fork_id is None or state.focus is None:
            return []
        n = state.phrase_mark()
        return [Outgoing(Select(index=state.focus, source=source, phrase=not n, phrase_words=n), fork_id)]
    if key == "backspace":
        if state.typed:
            return [_send_prefix(state, state.typed[:-1], source)]
        return [Outgoing(Command(command="back", source=source), fork_id)]
    if key in MORE_KEYS or character == "+":
        return [Outgoing(Command(command="more", source=source), fork_id)]
    if key == "escape":
        return [Outgoing(Command(command="toggle_pause", source=source), fork_id)]
    if character and len(character) == 1 and (character.isalpha() or (character in WORD_CHARS and state.typed)):
        if fork_id is None:
            return []
        return [_send_prefix(state, state.typed + character, source)]
    return []


def _send_prefix(state: ViewState, prefix: str, source: str) -> Outgoing:
    """Narrow the candidates to ``prefix`` (``""`` ends typing)."""
    state.typed = prefix
    state.sent_prefixes.add(prefix)
    state.version += 1
    return Outgoing(Command(command="type", source=source, text=prefix), state.fork.fork_id if state.fork else None)


def _commit_typed(state: ViewState, source: str) -> Outgoing:
    """The typed word as it is: the candidate that is exactly it, else the word itself."""
    assert state.fork is not None
    word = state.typed
    for cand in state.fork.candidates:
        if cand.word.strip() == word:
            return Outgoing(Select(index=cand.index, source=source), state.fork.fork_id)
    return Outgoing(Command(command="type", source=source, text=word + " "), state.fork.fork_id)
