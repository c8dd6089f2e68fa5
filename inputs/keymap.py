"""Key presses in, protocol bodies out: the one place for the key rules.

The keyboard and foot-switch adapters and the terminal view all use :class:`KeyInterpreter`,
so a key does the same wherever it is pressed. Pure and device-free: the X11 (pynput) and
evdev sources turn their events into :class:`KeyEvent` (a canonical key name, down or up, a
bus-clock time), the terminal view turns Textual's key names into canonical ones, and
:class:`KeyInterpreter` turns those into Focus / Confirm / Select / Command bodies, using the
fork it has seen on the bus. Nothing here imports pynput, evdev or Textual.

Canonical key names are pynput's ``Key`` names (``enter``, ``esc``, ``f12``, ``page_up``,
...), single characters (``a``, ``1``, ``+``; letters lower-case), ``shift+NAME`` for a
named key pressed with Shift (``shift+right``) and, for evdev devices only, the lower-cased
kernel names of keys and buttons without another name (``btn_0``, ``key_playpause``).
Config files may also use the aliases in :data:`ALIASES`.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from razvilka.protocol.client import ForkTracker, TrackedFork
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import Body, Command, CommandName, Confirm, Focus, Message, Select, SourceState

#: pynput's ``Key`` names that the X11 backend reports (aliases such as ``ctrl_l`` fold
#: into ``ctrl``: pynput reports the left modifier under the plain name).
NAMED_KEYS: tuple[str, ...] = (
    "alt", "alt_r", "alt_gr", "backspace", "caps_lock", "cmd", "cmd_r", "ctrl", "ctrl_r",
    "delete", "down", "end", "enter", "esc", *(f"f{i}" for i in range(1, 21)), "home", "left",
    "page_down", "page_up", "right", "shift", "shift_r", "space", "tab", "up",
    "media_play_pause", "media_volume_mute", "media_volume_down", "media_volume_up",
    "media_previous", "media_next", "insert", "menu", "num_lock", "pause", "print_screen",
    "scroll_lock",
)

#: Friendlier spellings accepted in the configuration.
ALIASES: dict[str, str] = {
    "return": "enter", "escape": "esc", "bksp": "backspace", "del": "delete", "spacebar": "space",
    "shift_l": "shift", "ctrl_l": "ctrl", "control": "ctrl", "alt_l": "alt", "cmd_l": "cmd",
    "super": "cmd", "meta": "cmd", "win": "cmd", "pageup": "page_up", "pagedown": "page_down",
    "arrow_up": "up", "arrow_down": "down", "arrow_left": "left", "arrow_right": "right",
    "plus": "+", "minus": "-", "equal": "=", "comma": ",", "period": ".", "slash": "/",
}

#: Held modifiers that mean "this key press is a shortcut for another program".
SHORTCUT_MODIFIERS = frozenset({"ctrl", "ctrl_r", "alt", "alt_r", "cmd", "cmd_r"})
SHIFTS = frozenset({"shift", "shift_r"})
MODIFIERS = SHORTCUT_MODIFIERS | SHIFTS | {"alt_gr", "caps_lock", "num_lock"}

#: Plain actions; ``select:N`` (N >= 1) selects candidate N directly; ``phrase:N`` takes the focused
#: candidate with the first N words of its look-ahead (protocol 1.1 ``phrase_words``);
#: ``mark_more``/``mark_fewer`` set how many look-ahead words a plain ``phrase`` takes.
ACTIONS: tuple[str, ...] = (
    "confirm", "phrase", "back", "more", "toggle_pause", "pause", "resume", "regenerate",
    "focus_next", "focus_prev", "mark_more", "mark_fewer", "none",
)
#: The actions that are commands, sent as they are (``back`` deletes a typed letter first).
COMMAND_ACTIONS: tuple[CommandName, ...] = ("back", "more", "toggle_pause", "pause", "resume", "regenerate")
_SELECT_RE = re.compile(r"^select:([1-9][0-9]{0,2})$")
_PHRASE_RE = re.compile(r"^phrase:([1-9]|[1-5][0-9]|6[0-4])$")
_VK_RE = re.compile(r"^vk_[0-9]+$")

#: The keyboard's defaults; ``inputs.keyboard.keys`` entries override them one by one.
DEFAULT_KEYBOARD_KEYS: dict[str, str] = {
    **{str(n): f"select:{n}" for n in range(1, 10)}, "0": "select:10",
    "up": "focus_prev", "left": "focus_prev", "down": "focus_next", "right": "focus_next",
    "enter": "confirm", "space": "confirm",
    "end": "phrase", "shift+right": "mark_more", "shift+left": "mark_fewer",
    "backspace": "back",
    "tab": "more", "+": "more",
    "esc": "toggle_pause", "f12": "toggle_pause",
}

#: Three-pedal VEC/Infinity default: left = back, middle = confirm, right = more.
DEFAULT_PEDALS: dict[str, str] = {"btn_0": "back", "btn_1": "confirm", "btn_2": "more"}


def _natural(name: str) -> tuple[object, ...]:
    """f2 before f10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def is_char_name(name: str) -> bool:
    return len(name) == 1 and name.isprintable() and not name.isspace()


@dataclass(frozen=True)
class KeyNames:
    """The key names one backend can report, for validating a configured map."""

    backend: str
    named: frozenset[str]
    chars: bool = True
    vk: bool = False  # X11 only: ``vk_N`` for keysyms without a name
    aliases: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, name: str) -> str | None:
        """The canonical form of a configured name, or None if this backend never reports it."""
        raw = name if is_char_name(name) else name.strip().lower()
        if raw.startswith("shift+") and len(raw) > len("shift+"):  # a chord: Shift with a named key
            key = self.canonical(raw[len("shift+"):])
            return f"shift+{key}" if key is not None and not is_char_name(key) and key not in MODIFIERS else None
        key = self.aliases.get(raw, ALIASES.get(raw, raw))
        if key in self.named or (self.chars and is_char_name(key)) or (self.vk and _VK_RE.match(key)):
            return key.lower() if is_char_name(key) else key
        return None

    def describe(self) -> str:
        listed = ", ".join(sorted((n for n in self.named if not n.startswith(("key_", "btn_"))), key=_natural))
        parts = [f"named keys: {listed}"]
        if self.chars:
            parts.append("any single character (a, 7, +, ...)")
        if self.vk:
            parts.append("vk_N for an X keysym without a name")
        evdev_only = sorted((n for n in self.named if n.startswith(("key_", "btn_"))), key=_natural)
        if evdev_only:
            sample = ", ".join(evdev_only[:12])
            parts.append(f"kernel key/button names ({len(evdev_only)}: {sample}, ...; "
                         "`razvilka input footswitch --list-keys` prints them all)")
        return "; ".join(parts)

    def suggest(self, name: str) -> str:
        pool = list(self.named) + list(ALIASES) + list(self.aliases)
        close = difflib.get_close_matches(name.lower(), pool, n=3, cutoff=0.6)
        return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


X11_NAMES = KeyNames("x11", frozenset(NAMED_KEYS), chars=True, vk=True)


def _action_ok(action: str) -> bool:
    return action in ACTIONS or _SELECT_RE.match(action) is not None or _PHRASE_RE.match(action) is not None


@dataclass(frozen=True)
class KeyMap:
    """Canonical key name -> action, plus actions for long presses."""

    actions: Mapping[str, str]
    long: Mapping[str, str] = field(default_factory=dict)
    long_press_ms: float = 600.0

    @classmethod
    def build(
        cls,
        keys: Mapping[str, str],
        names: KeyNames,
        *,
        where: str,
        defaults: Mapping[str, str] | None = None,
        long: Mapping[str, str] | None = None,
        long_press_ms: float = 600.0,
    ) -> KeyMap:
        """Validate a configured map; raise ``ProtocolError(BAD_CONFIG)`` naming every bad entry.

        ``defaults`` are laid under ``keys``; map a key to ``"none"`` to switch a default off.
        """
        problems: list[str] = []

        def convert(table: Mapping[str, str], label: str, skip_bad_names: bool) -> dict[str, str]:
            out: dict[str, str] = {}
            for raw, action in table.items():
                key = names.canonical(str(raw))
                if key is None:
                    if not skip_bad_names:
                        problems.append(f"{label}: unknown key name {raw!r}{names.suggest(str(raw))}")
                    continue
                action = str(action).strip().lower()
                if not _action_ok(action):
                    close = difflib.get_close_matches(action, ACTIONS, n=2)
                    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                    problems.append(f"{label}.{raw}: unknown action {action!r}{hint}")
                    continue
                out[key] = action
            return out

        # A default the backend cannot report (e.g. no f12 on some evdev pads) is just dropped.
        merged = convert(defaults or {}, where, skip_bad_names=True)
        merged.update(convert(keys, where, skip_bad_names=False))
        long_map = convert(long or {}, f"{where}_long", skip_bad_names=False)
        if long_press_ms <= 0:
            problems.append(f"long_press_ms must be > 0, got {long_press_ms}")
        if problems:
            raise ProtocolError(
                ErrorCode.BAD_CONFIG,
                "; ".join(problems)
                + f". Valid key names for the {names.backend} backend: {names.describe()}."
                + f" Valid actions: {', '.join(ACTIONS)}, select:N (N = 1, 2, ...), phrase:N (N = 1..64).",
            )
        return cls(
            actions={k: v for k, v in merged.items() if v != "none"},
            long={k: v for k, v in long_map.items() if v != "none"},
            long_press_ms=float(long_press_ms),
        )

    def keys(self) -> set[str]:
        """Every key name this map reacts to (the evdev source uses it to pick a device)."""
        return set(self.actions) | set(self.long)


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class KeyEvent:
    """One key going down or up; ``t_ns`` is bus-clock time; ``char`` is the text it types."""

    name: str
    down: bool
    t_ns: int
    char: str | None = None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A source's health change, published as SourceStatus."""

    state: SourceState
    detail: str = ""


class Debouncer:
    """Drops key repeat, double reports and switch bounce.

    * a press of a key that is already down is a repeat (X autorepeat, pynput's double
      report of one press) and is dropped;
    * a press within ``window_ms`` of the last accepted press of the same key is a
      duplicate or a bouncing contact, and is dropped with its release.
    """

    def __init__(self, window_ms: float) -> None:
        self.window_ns = int(window_ms * 1e6)
        self.down: dict[str, int] = {}
        self.last_press: dict[str, int] = {}

    def accept(self, ev: KeyEvent) -> bool:
        if ev.down:
            if ev.name in self.down:
                return False
            last = self.last_press.get(ev.name)
            if last is not None and 0 <= ev.t_ns - last < self.window_ns:
                return False
            self.down[ev.name] = ev.t_ns
            self.last_press[ev.name] = ev.t_ns
            return True
        return self.down.pop(ev.name, None) is not None

    def held(self, names: Iterable[str]) -> bool:
        return any(n in self.down for n in names)

    def reset(self) -> None:
        self.down.clear()


# ---------------------------------------------------------------- intent
@dataclass(frozen=True, slots=True)
class Emit:
    body: Body
    fork_id: str | None


@dataclass(slots=True)
class Reaction:
    """What one key event did: bodies to publish, or a note saying why nothing was sent."""

    emits: list[Emit] = field(default_factory=list)
    note: str = ""
    action: str = ""


def typable(char: str | None, typed: str) -> bool:
    """Letters start or grow a word; an apostrophe or hyphen may continue one."""
    if not char or len(char) != 1:
        return False
    return char.isalpha() or (bool(typed) and char in "'-")


class KeyInterpreter:
    """The key rules: key presses in, Focus / Confirm / Select / Command bodies out.

    Every key source uses it: the keyboard and foot-switch adapters (through :meth:`feed`,
    with debouncing and long presses) and the terminal view (through :meth:`press`), so a key
    does the same wherever it is pressed. It follows the open fork, the focus (its own, or
    another source's) and the typed prefix:

    * ``select:N`` selects the N-th candidate as sent; ``focus_next``/``focus_prev`` move the
      focus from the latest focus of any source, wrapping.
    * ``confirm`` names the candidate only when the focus is this source's own (its arrows
      put it there). Otherwise the confirm carries no index and the daemon's decider fuses it
      with the freshest focus (a key or pointer beats gaze).
    * ``phrase`` takes the focused candidate with its look-ahead: the words marked with
      ``mark_more``/``mark_fewer`` (a mark stays with its candidate), else all of it;
      ``phrase:N`` takes its first N words.
    * "My own word": with ``typing`` on, an unmapped letter appends to the typed prefix and
      sends ``Command(command="type", text=prefix)`` so the daemon narrows the candidates.
      ``back`` deletes a letter while a prefix is typed (sending the shorter prefix; ``""``
      ends typing). ``confirm`` with a prefix and no focus commits the typed word: a
      ``Select`` of the candidate that is exactly that word when the fork has one, otherwise
      ``Command(command="type", text=word + " ")`` -- a trailing space ends the word.
    """

    def __init__(
        self,
        keymap: KeyMap,
        *,
        source: str,
        debounce_ms: float = 60.0,
        typing: bool = False,
        kind: str = "key",
    ) -> None:
        self.keymap = keymap
        self.source = source
        self.kind = kind  # protocol 1.3 ``kind`` of the focus, confirm and select it sends
        self.typing = typing
        self.debounce = Debouncer(debounce_ms)
        self.forks = ForkTracker()
        self.focus: int | None = None
        self.focus_source = ""
        self.focus_own = False
        self.typed = ""
        self.marked: tuple[str, int, int] | None = None  # (fork, candidate, N): look-ahead words marked
        self._sent_prefixes: set[str] = set()
        self._pressed_at: dict[str, int] = {}
        # A modifier the map names is a key like any other (a pedal programmed to send Super).
        self._modifiers = MODIFIERS - keymap.keys()
        self._shortcut_modifiers = SHORTCUT_MODIFIERS - keymap.keys()

    @property
    def fork(self) -> TrackedFork | None:
        """The open fork, or None."""
        return self.forks.fork

    def phrase_mark(self) -> int:
        """Look-ahead words marked on the focused candidate (0 when the mark is on another one)."""
        fork = self.forks.fork
        if self.marked and fork and self.marked[:2] == (fork.fork_id, self.focus):
            return self.marked[2]
        return 0

    # ------------------------------------------------------------ bus side
    def observe(self, msg: Message) -> bool:
        """Follow forks and other sources' focus (call for every received message).

        True when the fork, its look-aheads, the focus or the typed prefix changed."""
        what = self.forks.update(msg)
        body, fork = msg.body, self.forks.fork
        if what in ("open", "reopen") and fork is not None:
            self._set_focus(None, "")
            if fork.prefix != self.typed and fork.prefix not in self._sent_prefixes:
                # Someone else (another adapter, the daemon) set the prefix: continue from it.
                self.typed = fork.prefix
                self._sent_prefixes.clear()
            return True
        if what in ("decided", "undone"):
            self._set_focus(None, "")
            self.typed = ""
            self._sent_prefixes.clear()
            return True
        if isinstance(body, Focus) and fork is not None and msg.header.fork_id == fork.fork_id:
            if body.source == self.source or (body.index is not None and fork.position_of(body.index) is None):
                return False  # our own echo (already applied), or a candidate this fork lacks
            self._set_focus(body.index, body.source if body.index is not None else "")
            return True
        return what != ""

    def _set_focus(self, index: int | None, source: str) -> None:
        self.focus, self.focus_source, self.focus_own = index, source, source == self.source

    def release_all(self) -> None:
        """Forget held keys (the device went away mid-press)."""
        self.debounce.reset()
        self._pressed_at.clear()

    # ------------------------------------------------------------ key side
    def feed(self, ev: KeyEvent) -> Reaction:
        """One key going down or up from a device: debounced, modifiers and long presses applied."""
        if not self.debounce.accept(ev):
            return Reaction()  # a repeat, a double report or a bounce: silently dropped
        if ev.name in self._modifiers:
            return Reaction()
        long_action = self.keymap.long.get(ev.name)
        if long_action is not None:
            return self._long_capable(ev, long_action)
        if not ev.down:
            return Reaction()
        if self.debounce.held(self._shortcut_modifiers):
            return Reaction(note=f"{ev.name}: a ctrl/alt/cmd shortcut, not for us")
        name = ev.name
        if self.debounce.held(SHIFTS) and f"shift+{name}" in self.keymap.actions:
            name = f"shift+{name}"
        return self.press(name, ev.char)

    def press(self, name: str, char: str | None = None) -> Reaction:
        """One key press by canonical name (``shift+right`` for a chord), ``char`` the text it types."""
        action = self.keymap.actions.get(name)
        if action is None:
            if self.typing and typable(char, self.typed):
                return self._type(char or "")
            return Reaction()
        return self.perform(action)

    def _long_capable(self, ev: KeyEvent, long_action: str) -> Reaction:
        """Keys with a long-press action decide on release, by how long they were held."""
        if ev.down:
            self._pressed_at[ev.name] = ev.t_ns
            return Reaction()
        start = self._pressed_at.pop(ev.name, None)
        if start is None:
            return Reaction()
        held_ms = (ev.t_ns - start) / 1e6
        if held_ms >= self.keymap.long_press_ms:
            reaction = self.perform(long_action)
            reaction.note = (reaction.note + f" (long press {held_ms:.0f} ms)").strip()
            return reaction
        short = self.keymap.actions.get(ev.name)
        if short is None:
            return Reaction(note=f"short press ({held_ms:.0f} ms) has no action")
        reaction = self.perform(short)
        reaction.note = (reaction.note + f" (short press {held_ms:.0f} ms)").strip()
        return reaction

    def perform(self, action: str) -> Reaction:
        fork = self.forks.fork
        fid = fork.fork_id if fork else None
        src = self.source
        if action == "none":
            return Reaction(action=action)
        command = next((c for c in COMMAND_ACTIONS if c == action), None)
        if command is not None:
            if command == "back" and self.typed:
                self.typed = self.typed[:-1]
                return self._send_prefix("delete")
            return Reaction([Emit(Command(command=command, source=src), fid)], action=action)
        if fork is None:
            return Reaction(note=f"{action}: no open fork", action=action)
        match = _SELECT_RE.match(action)
        if match:
            n = int(match.group(1))
            if n > fork.k:
                return Reaction(note=f"select {n}: the fork has only {fork.k} candidates", action=action)
            return Reaction([Emit(Select(index=fork.indices[n - 1], source=src, kind=self.kind), fid)],
                            action=action)
        if action in ("focus_next", "focus_prev"):
            if fork.k == 0:
                return Reaction(note=f"{action}: the fork has no candidates", action=action)
            step = 1 if action == "focus_next" else -1
            pos = fork.position_of(self.focus)
            pos = (0 if step == 1 else fork.k - 1) if pos is None else (pos + step) % fork.k
            self._set_focus(fork.indices[pos], src)
            return Reaction([Emit(Focus(index=self.focus, source=src, kind=self.kind), fid)], action=action)
        if action in ("mark_more", "mark_fewer"):  # local: which look-ahead words `phrase` will take
            if self.focus is None:
                return Reaction(note=f"{action}: no candidate is focused (move to one first)", action=action)
            most = len(fork.lookahead_words(self.focus))
            n = self.phrase_mark() + (1 if action == "mark_more" else -1)
            self.marked = (fork.fork_id, self.focus, max(0, min(most, n)))
            return Reaction(note=f"{self.marked[2]} look-ahead word(s) marked", action=action)
        words = _PHRASE_RE.match(action)
        if action == "phrase" or words:  # the focused candidate and (the head of) its look-ahead: one key
            if self.focus is None:
                return Reaction(note=f"{action}: no candidate is focused (move to one first)", action=action)
            n = int(words.group(1)) if words else self.phrase_mark()
            return Reaction([Emit(Select(index=self.focus, source=src, phrase=not n, phrase_words=n,
                                         kind=self.kind), fid)], action=action)
        if action == "confirm":
            if self.typed and self.focus is None:
                return self._commit(fork)
            index = self.focus if self.focus_own else None
            return Reaction([Emit(Confirm(source=src, index=index, kind=self.kind), fid)], action=action)
        return Reaction(note=f"unknown action {action!r}", action=action)  # pragma: no cover - validated

    def _type(self, char: str) -> Reaction:
        if self.forks.fork is None:
            return Reaction(note=f"typed {char!r}: no open fork to narrow", action="type")
        self.typed += char
        return self._send_prefix("type")

    def _send_prefix(self, action: str) -> Reaction:
        self._set_focus(None, "")
        self._sent_prefixes.add(self.typed)
        fid = self.forks.fork_id
        return Reaction([Emit(Command(command="type", source=self.source, text=self.typed), fid)], action=action)

    def _commit(self, fork: TrackedFork) -> Reaction:
        word = self.typed
        self.typed = ""
        self._sent_prefixes.clear()
        if word in fork.words:
            index = fork.indices[fork.words.index(word)]
            return Reaction([Emit(Select(index=index, source=self.source, kind=self.kind), fork.fork_id)],
                            action="commit")
        return Reaction([Emit(Command(command="type", source=self.source, text=word + " "), fork.fork_id)],
                        action="commit")
