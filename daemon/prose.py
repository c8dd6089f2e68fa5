"""What the model reads before the document, and which candidates a person writing prose never wants.

Two rules, each in one place:

* **Framing** (:func:`framing`): text the model reads before the document that is not part of it, as the
  profile's memory is. A document that replies to the conversation partner is framed as the dialogue
  (earlier turns, then the partner's last turn, then the person's label: the document is the reply so
  far); a new document with an empty prompt, in prose mode, begins after a short plain-prose preamble.
  The framing is rebuilt from what the store keeps (the document's prompt and turns), so a resumed
  document reads exactly what it read before the restart.
* **Markup filter** (:func:`is_markup`, :func:`without_markup`): in prose mode (``gating.prose``, unless
  ``gating.keep_markup``) a candidate that is markup or code (``<h1>``, ``</``, ``{``, backticks,
  ``#include``, ``**``, ``import`` at the start of a line) is never offered: an empty document otherwise
  opens with them (the model has read a lot of HTML and code).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from razvilka.daemon.engine import WordDistribution
from razvilka.daemon.store import Turn
from razvilka.protocol.targets import text_script

__all__ = ["CODE_KEYWORDS", "LABELS", "MAX_TURNS", "MAX_TURN_CHARS", "PREAMBLES", "Turn", "dialogue", "framing",
           "is_markup", "with_framing", "without_markup"]

#: The preamble of a new empty-prompt document, by the keyboard's script (``keyboard.script``; auto: latin).
PREAMBLES = {
    "latin": "A short note, written in plain words.\n\n",
    "cyrillic": "Короткая запись простыми словами.\n\n",
}
#: The dialogue's labels (partner, person), by the script of the partner's last turn.
LABELS = {"latin": ("Partner", "Me"), "cyrillic": ("Собеседник", "Я")}
MAX_TURNS = 8            # turns of the dialogue the model reads (the last ones)
MAX_TURN_CHARS = 2000    # one turn's text at most (a longer partner turn is refused)


def dialogue(turns: Sequence[Turn]) -> str:
    """The dialogue the person's reply continues: each turn on its own line, then the person's label.
    Ends in ``"Me:"`` (no space): the model offers the reply's first word with its leading space."""
    turns = list(turns)[-MAX_TURNS:]
    last_partner = next((t.text for t in reversed(turns) if t.who == "partner"), "")
    partner, me = LABELS[text_script(last_partner or "".join(t.text for t in turns))]
    lines = [f"{partner if t.who == 'partner' else me}: {' '.join(t.text.split())}" for t in turns]
    return "\n".join([*lines, f"{me}:"])


def framing(prompt: str, turns: Sequence[Turn], *, prose: bool, script: str = "auto") -> str:
    """What the model reads right before the document: the dialogue when the document replies to the
    partner; the plain-prose preamble for an empty prompt in prose mode; else nothing."""
    if turns:
        return dialogue(turns) + ("\n" if prompt and not prompt[0].isspace() else "")
    if prose and not prompt.strip():
        return PREAMBLES["cyrillic" if script == "cyrillic" else "latin"]
    return ""


def with_framing(memory: str, frame: str) -> str:
    """The profile's memory (the person's earlier writing), then the framing; either may be empty."""
    if not memory or not frame:
        return memory or frame
    return memory.rstrip() + "\n\n" + frame


# ------------------------------------------------------------------------------------------- markup
#: Characters that make a word markup or code wherever they are (HTML, Markdown, braces, backticks, templates).
_MARKUP_CHARS = re.compile(r"[<>{}\[\]`|\\=^~_*@#]")
#: A call or an operator glued to a word: print(, foo(), a.b(, ->, ::, //, /*, &&, ;;, $var, &amp;
_CODE_SHAPES = re.compile(r"\w\(|\(\)|->|::|//|/\*|&&|;;|\$[A-Za-z_]|&\w+;|\.\w+\(")
#: Lower-case keywords that begin a line of code; in prose they begin a line only capitalised.
CODE_KEYWORDS = frozenset({
    "import", "def", "elif", "namespace", "struct", "fn", "func", "const", "var", "void", "include", "package",
    "static", "public", "private", "function",
})
#: Punctuation a prose word may carry or be.
_PROSE_PUNCT = set(".,!?;:…'’\"“”«»()-–—%&/$€£+")


def is_markup(word: str, before: str) -> bool:
    """Whether the candidate ``word`` (stripped text) is markup or code where the text is ``before``."""
    w = word.strip()
    if not w:
        return False  # a line break or a space: prose has those
    if _MARKUP_CHARS.search(w) or _CODE_SHAPES.search(w):
        return True
    if not any(ch.isalnum() for ch in w):
        return not all(ch in _PROSE_PUNCT for ch in w) or len(w) > 3  # "{", "//", "----"
    line_start = not before.strip() or before.rstrip(" \t").endswith("\n")
    return line_start and w in CODE_KEYWORDS


def without_markup(dist: WordDistribution, before: str) -> tuple[WordDistribution, list[str]]:
    """``dist`` less its markup candidates (order kept; the margin recomputed from what is left), and the
    words left out."""
    kept = [c for c in dist.candidates if not is_markup(c.word, before)]
    removed = [c.word for c in dist.candidates if is_markup(c.word, before)]
    if not removed:
        return dist, []
    probs = [c.prob for c in kept]
    margin = (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 0.0)
    return replace(dist, candidates=kept, margin=margin, top_prob=probs[0] if probs else 0.0), removed
