"""The one seam through which a learner (the person's profile) takes part in the daemon.

The daemon (daemon/service.py) calls a :class:`Learner`, when it has one, at five points and
nowhere else (docs/learning.md, "The seam"):

* ``start``: before the first fork, to catch up with decisions the store has and the learner
  lacks (a ``kill -9`` between a store write and the learner's save);
* ``memory``: when a document opens, the text the model reads before it;
* ``rerank``: every word distribution the daemon forks or auto-writes from, live
  (``Engine.words``) and pre-generated (``Engine.after``), on the engine thread; the engine is
  asked for ``widen`` x K words and the learner ranks them down to K;
* ``learn``: after a decision or a typed word is *acknowledged*, i.e. written to the store;
  never before (a failed write teaches nothing), and ``document_end`` when a document ends;
* ``close``: at shutdown, to save.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from razvilka.daemon.engine import WordDistribution


@dataclass(frozen=True)
class Acknowledged:
    """One decision the store has written: what was on screen, what the person took, where."""

    context: str            # the document text at the fork (prompt included)
    shown: list[str]        # the candidate words on screen ([] for a word typed with no fork open)
    chosen: str | None      # the candidate picked; None when the person typed a word
    committed: str          # the exact text appended (with a look-ahead phrase, or the typed word)
    document: str           # the document's id
    written_ns: int         # when the store wrote it


@runtime_checkable
class Learner(Protocol):
    """What the daemon needs from a learner; daemon/learn/live.py's ``ProfileLearner`` is the one shipped."""

    @property
    def widen(self) -> int:
        """Ask the engine for this many times K words at a fork, so that ``rerank`` can pick K of them."""
        ...

    @property
    def notice(self) -> str:
        """Something the person should know (a profile file that had to be put aside); "" if nothing."""
        ...

    async def start(self, store_path: Path, user: str) -> None:
        """Catch up with the store's decisions (on the event loop; run slow work off it)."""
        ...

    def memory(self, document: str | None, prompt: str) -> str:
        """Text the model reads before this document and that is not part of it."""
        ...

    def rerank(self, dist: WordDistribution, context: str, k: int) -> WordDistribution:
        """The engine's ``dist`` (about ``widen`` x k words) at ``context``, ranked for the person, cut to ``k``."""
        ...

    def learn(self, decision: Acknowledged) -> None:
        """Learn one acknowledged decision (on the event loop: quick)."""
        ...

    def document_end(self, text: str, document: str) -> None:
        """A document ends with this text (words the model wrote after the last decision and were kept)."""
        ...

    async def close(self) -> None:
        """Save what was learned."""
        ...
