"""The person's earlier writing, per document, that the model reads before a new document."""
from __future__ import annotations

from collections import OrderedDict

from razvilka.daemon.learn.estimator import Params


class Memory(Params):
    """``texts_``: what the person wrote, per document, oldest first; at most about ``max_chars``
    (0 or less: off, none of the person's text is kept). 8,000 characters is <= 1,800 tokens."""

    def __init__(self, max_chars: int = 8000) -> None:
        self.max_chars = max_chars
        self.reset()

    def reset(self) -> Memory:
        self.texts_: OrderedDict[str, str] = OrderedDict()
        return self

    def remember(self, document: str | None, text: str) -> None:
        if self.max_chars <= 0:  # the memory is off: keep none of the person's text
            self.texts_.clear()
            return
        doc = document or ""
        self.texts_[doc] = self.texts_.get(doc, "") + text
        self.texts_.move_to_end(doc)
        total = sum(len(t) + 1 for t in self.texts_.values())
        if total > self.max_chars:  # drop the oldest documents, down to half: one re-read per half-budget written
            while len(self.texts_) > 1 and total > self.max_chars // 2:
                _, old = self.texts_.popitem(last=False)
                total -= len(old) + 1
            if total > self.max_chars:  # one document longer than the budget: keep its end
                self.texts_[doc] = self.texts_[doc][-(self.max_chars // 2):]

    def forget(self, document: str | None, n_chars: int) -> None:
        """Take the last ``n_chars`` of a document back (an undone decision)."""
        doc = document or ""
        text = self.texts_.get(doc, "")
        if n_chars and text:
            self.texts_[doc] = text[: max(0, len(text) - n_chars)]

    def text(self, exclude: str | None = None, prompt: str = "") -> str:
        """One document per line, oldest first. Left out, since the model reads them anyway: ``exclude``
        (the document being written) and documents the ``prompt`` already holds. Read twice, once in
        the memory and again in the prompt, the model takes the repetition for a pattern and copies
        what followed in the memory, confidently and wrongly.

        It only grows at its end between trims, so the engine keeps its KV from one document to the next."""
        lines = [t.strip() for d, t in self.texts_.items() if (exclude is None or d != exclude) and t.strip()]
        lines = [t for t in lines if t not in prompt]
        return "\n".join(lines) + "\n" if lines else ""

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.texts_.values())
