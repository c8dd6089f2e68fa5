"""The profile at work in the daemon: ``ProfileLearner`` (the daemon's :class:`~razvilka.daemon.learner.Learner`)
and the store replays that teach a profile the decisions a store holds.

The daemon asks the engine for ``widen`` x K words and hands them to ``rerank``; since it gates
forks and auto-writes from the reranked distributions, the profile acts at candidate ranking
*and* at fork gating, for live forks and pre-generated ones alike. ``learn`` runs after the
store wrote a decision; the profile is saved off the event loop soon after (a burst of decisions
is one write) and at ``close``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from razvilka.daemon.engine import WordDistribution
from razvilka.daemon.learn.history import documents, open_store
from razvilka.daemon.learn.persist import save_profile
from razvilka.daemon.learn.profile import Profile
from razvilka.daemon.learn.text import decision_key
from razvilka.daemon.learner import Acknowledged

log = logging.getLogger("razvilka.learn.live")

SAVE_DELAY_S = 0.5   # a decision's profile update reaches the disk within this (plus the write)


class ProfileLearner:
    """The person's profile as the daemon's learner (structurally a ``Learner``)."""

    def __init__(self, profile: Profile, *, widen: int = 2, memory_chars: int | None = None) -> None:
        self.profile = profile
        self._widen = max(1, int(widen))
        if memory_chars is not None:
            profile.set_params(memory__max_chars=memory_chars)  # 0 or less: off
        self.rerank_ms: list[float] = []       # wall time per rerank
        self.rerank_cpu_ms: list[float] = []   # CPU time of the calling thread per rerank
        self.save_ms: list[float] = []
        self.caught_up = 0                     # decisions learned from the store at start
        self._saving: asyncio.Task[None] | None = None

    @property
    def widen(self) -> int:
        return self._widen

    @property
    def notice(self) -> str:
        return self.profile.notice_

    async def start(self, store_path: Path, user: str) -> None:
        # a crash (kill -9) can come between a decision's store write and the profile's next
        # save: learn what the store has and the profile lacks before the first fork
        try:
            self.caught_up = await asyncio.get_running_loop().run_in_executor(
                None, catch_up, self.profile, store_path, user)
        except Exception as exc:  # the profile is an aid: a store it cannot read must not stop the daemon
            log.warning("the profile could not catch up with the store %s: %s", store_path, exc)
            self.caught_up = 0
        file = self.profile.file
        if self.caught_up or file is None or not file.exists():
            self._save_now()
        if self.caught_up:
            log.info("profile caught up with %d decision(s) from the store", self.caught_up)

    def memory(self, document: str | None, prompt: str) -> str:
        # the person's earlier documents, read by the model before this one (docs/learning.md, "Memory")
        text = self.profile.memory_text(exclude=document, prompt=prompt) if self.profile.memory.max_chars > 0 else ""
        self.profile.reading_ = bool(text)
        return text

    def rerank(self, dist: WordDistribution, context: str, k: int) -> WordDistribution:
        t0, c0 = time.perf_counter(), time.thread_time()
        out = self.profile.rerank(dist, context, k=k)
        self.rerank_ms.append((time.perf_counter() - t0) * 1000)     # wall: includes waiting for the GIL
        self.rerank_cpu_ms.append((time.thread_time() - c0) * 1000)  # what it cost this thread
        return out

    def learn(self, decision: Acknowledged) -> None:
        self.profile.observe(decision.context, decision.shown, decision.chosen, decision.committed,
                             document=decision.document)
        self.profile.mark_store(decision.written_ns)
        self._save_soon()

    def document_end(self, text: str, document: str) -> None:
        self.profile.sync(text, document=document)
        self.profile.settle()

    async def close(self) -> None:
        if self._saving is not None:
            self._saving.cancel()
        self._save_now()

    def _save_now(self) -> None:
        started = time.perf_counter()
        try:
            save_profile(self.profile)
        except OSError as exc:  # a full disk must not stop the daemon; the store still has everything
            log.error("could not save the profile: %s", exc)
        self.save_ms.append((time.perf_counter() - started) * 1000)

    def _save_soon(self) -> None:
        """Save soon, off the event loop, at most once per ``SAVE_DELAY_S`` (a burst of decisions
        is one write); ``close`` saves whatever is left. The store keeps every decision anyway."""
        if self._saving is not None and not self._saving.done():
            return
        loop = asyncio.get_running_loop()

        async def later() -> None:
            while True:  # decisions made while it was writing are written next
                await asyncio.sleep(SAVE_DELAY_S)
                await loop.run_in_executor(None, self._save_now)
                if not self.profile.dirty_:
                    return

        self._saving = loop.create_task(later())


def replay_store(profile: Profile, store_path: str | Path, user: str | None = None) -> int:
    """Teach ``profile`` every live decision in the store (oldest first); returns how many.

    The same ``observe`` calls the daemon makes, with the LLM probabilities stored at each fork.
    """
    return _replay(profile, store_path, user, since_ns=0)


def catch_up(profile: Profile, store_path: str | Path, user: str | None = None) -> int:
    """Teach ``profile`` the store's live decisions written after its ``store_mark_ns_`` (those a
    crash kept from its file); returns how many. The last decision it observed before the crash
    may be newer than its mark: its ``last_key_`` names it, and it is not learned twice."""
    if not Path(store_path).is_file():
        return 0
    return _replay(profile, store_path, user, since_ns=profile.store_mark_ns_)


def _replay(profile: Profile, store_path: str | Path, user: str | None, *, since_ns: int) -> int:
    db = open_store(store_path)
    n, newest = 0, since_ns
    try:
        for doc in documents(db, user, since_ns=since_ns):
            fresh = [d for d in doc.decisions if d.created_ns > since_ns]
            for d in fresh:
                newest = max(newest, d.created_ns)
                if d.undone or (since_ns and decision_key(doc.id, d.context, d.text) == profile.last_key_):
                    continue
                profile.observe(d.context, [s.word for s in d.shown], d.word if d.kind == "chosen" else None,
                                d.text, probs=d.probs, document=doc.id)
                n += 1
            profile.sync(doc.prompt + doc.text, document=doc.id)
    finally:
        db.close()
    profile.mark_store(newest)
    return n
