"""The simulated person's policy: what they do at a fork, given the phrase they want to write.

Pure functions, no bus and no model, so every rule is unit-tested against hand-worked cases.
The rules (docs/simulated_user.md, "The person"):

1. Read the text. If it is the whole phrase (trailing whitespace allowed), stop. If any word in it
   is wrong (or the model wrote past the end), press **back**.
2. Otherwise let ``w`` be the next word of the phrase. If ``w`` is among the candidates:
   select the **phrase** (``w`` and its look-ahead) when the look-ahead starts with the next words
   of the phrase (one action then commits several words: with ``partial_phrases`` a click on the
   last right word of the look-ahead, ``input.select`` ``phrase_words``; without it only a
   look-ahead that is exactly the next words counts), else **select** ``w``.
3. If ``w`` is not offered: optionally ask for **more** candidates (``more_pages`` times, only
   before the first letter), else **type** the next letter of ``w`` (candidates narrow to the
   prefix). Once every letter is typed and ``w`` still is not offered, **commit** it with a space.
4. A typed prefix that is not a prefix of ``w`` (a wrong letter) is corrected with backspaces.

With ``loose`` (the dialogue benchmark: replies to a partner) the person writes the words and leaves the
punctuation to the model: punctuation the model writes around or between words is accepted, never
asked for (:func:`loose_words`); a line break inside the text is still wrong.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ActionKind = Literal["select", "phrase", "letter", "backspace", "commit", "back", "more"]
Status = Literal["ok", "wrong", "done"]


@dataclass(frozen=True)
class Action:
    """One thing the person does. ``presses`` is how many physical actions it costs."""

    kind: ActionKind
    index: int | None = None   # select / phrase: the candidate
    text: str = ""             # letter / backspace / commit: the typed text sent with the "type" command
    presses: int = 1
    words: int = 0             # select / phrase / commit: words the person expects it to write


@dataclass(frozen=True)
class PolicyOptions:
    phrases: bool = True       # select a look-ahead phrase when it matches
    partial_phrases: bool = True  # ... up to its last right word (protocol 1.1 phrase_words); else only whole
    more_pages: int = 0        # "more" presses per word before typing its first letter (0: never)
    loose: bool = False        # punctuation around words is the model's: accepted, never written (dialogue)


@dataclass(frozen=True)
class ForkView:
    """What the person sees of an open fork."""

    words: Sequence[str]                                  # candidate words, in index order
    lookahead: Mapping[int, str] = field(default_factory=dict)  # index -> the short look-ahead phrase
    prefix: str = ""                                      # the typed prefix the candidates were narrowed to
    page: int = 0                                         # which page of candidates ("more")


def target_words(phrase: str) -> list[str]:
    return phrase.split()


#: Punctuation before and after a word (what is not a letter, digit or underscore).
_AROUND = re.compile(r"^[^\w]+|[^\w]+$")


def loose_words(text: str) -> list[str] | None:
    """The words of ``text`` as a person who leaves punctuation to the model reads them: split at spaces,
    the punctuation around each word left out, parts that are only punctuation dropped; None when a
    line break or tab is inside (the model wrote past the reply)."""
    if any(ch.isspace() and ch != " " for ch in text):
        return None
    return [w for w in (_AROUND.sub("", part) for part in text.split(" ")) if w]


def compare(target: Sequence[str], written: str, loose: bool = False) -> tuple[Status, int]:
    """Is the written text (after the prompt) on the way to ``target``? Returns (status, words right).

    "ok": the text is exactly the first n words of the phrase, single spaces between them.
    "done": it is the whole phrase (leading spaces and trailing whitespace, e.g. a line break, allowed).
    "wrong": anything else: a wrong word, punctuation, a line break inside, words past the end.
    ``loose``: punctuation around and between the words is accepted (:func:`loose_words`).
    """
    text = written.lstrip(" ")
    if loose:
        done = loose_words(text.rstrip())
        if done is not None and done == list(target):
            return "done", len(target)
        words = loose_words(text.rstrip(" "))
        if words is None:
            head = loose_words(re.split(r"[^\S ]", text, maxsplit=1)[0]) or []
            return "wrong", _right(target, head)
        n = _right(target, words)
        return ("ok" if n == len(words) else "wrong"), n
    if text.rstrip() == " ".join(target):
        return "done", len(target)
    text = text.rstrip(" ")
    parts = text.split(" ") if text else []
    if len(parts) > len(target):
        return "wrong", _right(target, parts)
    for i, part in enumerate(parts):
        if part != target[i]:
            return "wrong", i
    return "ok", len(parts)


def _right(target: Sequence[str], parts: Sequence[str]) -> int:
    n = 0
    while n < len(parts) and n < len(target) and parts[n] == target[n]:
        n += 1
    return n


def phrase_gain(target: Sequence[str], n: int, word: str, lookahead: str, partial: bool = True,
                loose: bool = False) -> int:
    """Extra words that selecting ``word`` + (the head of) ``lookahead`` commits correctly at word ``n``.

    The daemon writes the candidate then the look-ahead text as it is, so the words taken must be
    exactly the next words of the phrase: no punctuation, not past the end. ``partial``: the head of
    the look-ahead up to its last right word (words split at spaces, as the person reads them);
    else the whole look-ahead or nothing. ``loose``: a look-ahead word with punctuation around it counts
    as the word (a part that is only punctuation still ends the run: the daemon counts it as a word).
    """
    if loose:
        word = _AROUND.sub("", word)
    if not lookahead.strip() or n >= len(target) or word != target[n]:
        return 0
    if not lookahead.startswith(" "):
        return 0
    parts = lookahead.split(" ")[1:]  # a line break, a tab or punctuation makes a part no word equals
    if loose:
        parts = [_AROUND.sub("", p) if loose_words(p) else "\n" for p in parts]
    right = 0
    while right < len(parts) and n + 1 + right < len(target) and parts[right] == target[n + 1 + right]:
        right += 1
    return right if partial or right == len(parts) else 0


def next_word(target: Sequence[str], written: str, loose: bool = False) -> str | None:
    status, n = compare(target, written, loose)
    return target[n] if status == "ok" else None


def needs_lookahead(target: Sequence[str], written: str, fork: ForkView, opts: PolicyOptions) -> bool:
    """Whether the person waits for the look-ahead before acting: only when it could change the action."""
    w = next_word(target, written, opts.loose)
    return opts.phrases and w is not None and w in fork.words


def decide(target: Sequence[str], written: str, fork: ForkView, opts: PolicyOptions) -> Action | None:
    """The person's next action at ``fork``; None when the phrase is complete."""
    status, n = compare(target, written, opts.loose)
    if status == "done":
        return None
    if status == "wrong":
        return Action("back")
    w = target[n]
    prefix = fork.prefix
    if not w.startswith(prefix):  # a wrong letter in the typed prefix: backspace to the common part
        keep = 0
        while keep < min(len(prefix), len(w)) and prefix[keep] == w[keep]:
            keep += 1
        return Action("backspace", text=prefix[:keep], presses=len(prefix) - keep)
    if w in fork.words:
        index = list(fork.words).index(w)
        if opts.phrases:
            gain = phrase_gain(target, n, w, fork.lookahead.get(index, ""), opts.partial_phrases, opts.loose)
            if gain > 0:
                return Action("phrase", index=index, words=1 + gain)
        return Action("select", index=index, words=1)
    if not prefix and fork.page < opts.more_pages:
        return Action("more")
    if len(prefix) < len(w):
        return Action("letter", text=w[: len(prefix) + 1])
    return Action("commit", text=w + " ", words=1)
