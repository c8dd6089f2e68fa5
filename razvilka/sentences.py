"""Where a sentence ends, so that speech can say each sentence as soon as it is finished and pick
its voice by the sentence's own language.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (and any closing quotes or brackets right after)
followed by white space or the end of the text: the text grows a whole word at a time, so a word
that ends in a full stop finishes its sentence. Not ends: an abbreviation (``Dr.``, ``т.е.``), a
single-letter initial (``J.``), a full stop inside a token (``3.5``, ``example.com``).
"""
from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "SentenceWatcher", "sentence_ends", "split_sentences"]

_END = re.compile(r"[.!?…]+[\"'»”’)\]]*(?=\s|$)")
_WORD_BEFORE = re.compile(r"([\w.]+)$")

#: words (lower case, without their final full stop) after which a full stop does not end a sentence
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "approx", "no", "fig",
    "т.е", "т.д", "т.п", "т.к", "т.н", "и.о", "др", "пр", "см", "стр", "им", "ул", "д", "г", "гг", "проф", "акад",
})


def _is_end(text: str, match: re.Match[str]) -> bool:
    marks = match.group(0)
    if not marks.startswith(".") or marks.startswith(".."):
        return True  # ! ? … and an ellipsis written as dots always end
    word = _WORD_BEFORE.search(text, 0, match.start())
    if word is None:
        return True
    token = word.group(1).lower()
    if token in ABBREVIATIONS:
        return False
    return not (len(token) == 1 and token.isalpha())  # an initial: "J. K. Rowling"


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each finished sentence's closing punctuation, in order."""
    return [m.end() for m in _END.finditer(text) if _is_end(text, m)]


def split_sentences(text: str) -> list[str]:
    """The finished sentences, then the unfinished rest (if any), each stripped; empty ones dropped."""
    out: list[str] = []
    start = 0
    for end in sentence_ends(text):
        out.append(text[start:end].strip())
        start = end
    out.append(text[start:].strip())
    return [s for s in out if s]


class SentenceWatcher:
    """Fed the whole text each time it changes; returns the sentences finished since the last call.

    When the person goes back and changes text that was already handed out, the sentences from the
    change on are handed out again once they are finished.
    """

    def __init__(self) -> None:
        self._text = ""
        self._done = 0  # offset just past the last sentence handed out

    def feed(self, text: str) -> list[str]:
        same = 0
        limit = min(len(text), len(self._text))
        while same < limit and text[same] == self._text[same]:
            same += 1
        if same < self._done:  # an edit reached back into handed-out text
            ends = [e for e in sentence_ends(text) if e <= same]
            self._done = ends[-1] if ends else 0
        self._text = text
        out: list[str] = []
        for end in sentence_ends(text):
            if end > self._done:
                sentence = text[self._done:end].strip()
                if sentence:
                    out.append(sentence)
                self._done = end
        return out
