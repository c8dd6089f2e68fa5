"""The profile at work in the daemon: an engine that reranks, a daemon that observes, a store replay.

``ProfiledEngine`` wraps the llama.cpp engine: ``words`` and ``after`` ask it for ``widen`` x K
words and let the profile rerank them down to K. Since the daemon gates forks and auto-writes
from those distributions, the profile acts at candidate ranking *and* at fork gating, for live
forks and pre-generated ones alike. ``ProfiledDaemon`` adds the ``observe`` calls after each
decision and saves the profile. Both are thin: the exact call sites are listed in
docs/learning.md ("Wiring into the daemon").
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from razvilka.daemon.engine import WordCandidate, WordDistribution
from razvilka.daemon.learn.history import documents, open_store
from razvilka.daemon.learn.profile import Profile, decision_key

log = logging.getLogger("razvilka.learn.live")

SAVE_DELAY_S = 0.5   # a decision's profile update reaches the disk within this (plus the write)


class ProfiledEngine:
    """The engine with the person's profile applied to every word distribution it returns."""

    def __init__(self, engine: Any, profile: Profile, widen: int = 2) -> None:
        self.engine = engine
        self.profile = profile
        self.widen = max(1, int(widen))
        self.rerank_ms: list[float] = []       # wall time per rerank
        self.rerank_cpu_ms: list[float] = []   # CPU time of the calling thread per rerank

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def _rerank(self, dist: WordDistribution, context: str, k: int) -> WordDistribution:
        out = self.profile.rerank(dist, context, k=k)
        self.rerank_ms.append(self.profile.last_rerank_ms)
        self.rerank_cpu_ms.append(self.profile.last_rerank_cpu_ms)
        return out

    def words(self, k: int, *, prefix: str = "", page: int = 0, exclude: Collection[str] = ()) -> WordDistribution:
        dist = self.engine.words(k * (page + self.widen), prefix=prefix, page=0, exclude=exclude)
        out = self._rerank(dist, self.engine.text, k * (page + 1))
        return replace(out, candidates=out.candidates[k * page: k * page + k])

    def after(self, cand: WordCandidate, k: int, *, abort: threading.Event | None = None) -> WordDistribution:
        dist = self.engine.after(cand, k * self.widen, abort=abort)
        return self._rerank(dist, self.engine.text + cand.text, k)


def _daemon_class() -> type:
    from razvilka.daemon.service import Daemon

    class ProfiledDaemon(Daemon):  # type: ignore[misc,valid-type]
        """The daemon with a profile: reranks through ``ProfiledEngine``, observes every decision."""

        def __init__(self, config: Any, *, profile: Profile, engine: Any = None, widen: int = 2, **kw: Any) -> None:
            super().__init__(config, engine=ProfiledEngine(engine, profile, widen) if engine is not None else None, **kw)
            self.profile = profile
            self.widen = widen
            profile.memory_chars = config.daemon.profile_memory_chars  # 0 or less: off
            self.save_ms: list[float] = []
            self._saving: asyncio.Task[None] | None = None

        async def start(self) -> None:
            # a crash (kill -9) can come between a decision's store write and the profile's next
            # save: learn what the store has and the profile lacks before the first fork
            try:
                learned = await asyncio.get_running_loop().run_in_executor(
                    None, catch_up, self.profile, self.store.path, self.config.daemon.user)
            except Exception as exc:  # the profile is an aid: a store it cannot read must not stop the daemon
                log.warning("the profile could not catch up with the store %s: %s", self.store.path, exc)
                learned = 0
            if learned or self.profile.path is None or not self.profile.path.exists():
                self._save_now()
            if learned:
                log.info("profile caught up with %d decision(s) from the store", learned)
            await super().start()

        async def _new_document(self, prompt: str, memory: str | None = None) -> None:
            if self.doc is not None:  # words the model wrote at the end of the last document were kept
                self.profile.sync(self._spans()[0], document=self.doc.id)
                memory = None         # they join the memory: read it again
            await super()._new_document(prompt, memory)

        def _memory_for(self, document: str | None, prompt: str) -> str:
            # the person's earlier documents, read by the model before this one (docs/learning.md, "Memory")
            text = self.profile.memory_text(exclude=document, prompt=prompt) if self.profile.memory_chars > 0 else ""
            self.profile.reading = bool(text)
            return text

        async def _load_engine(self) -> Any:
            return ProfiledEngine(await super()._load_engine(), self.profile, self.widen)

        def _save_now(self) -> None:
            started = time.perf_counter()
            try:
                self.profile.save()
            except OSError as exc:  # a full disk must not stop the daemon; the store still has everything
                log.error("could not save the profile: %s", exc)
            self.save_ms.append((time.perf_counter() - started) * 1000)

        def _save_profile(self) -> None:
            """Save soon, off the event loop, at most once per ``SAVE_DELAY_S`` (a burst of decisions
            is one write); ``close`` saves whatever is left. The store keeps every decision anyway."""
            if self._saving is not None and not self._saving.done():
                return
            loop = asyncio.get_running_loop()

            async def later() -> None:
                while True:  # decisions made while it was writing are written next
                    await asyncio.sleep(SAVE_DELAY_S)
                    await loop.run_in_executor(None, self._save_now)
                    if not self.profile.dirty:
                        return

            self._saving = loop.create_task(later())

        async def _decide(self, fork: Any, decision: Any) -> None:
            context, _ = self._spans()
            cand, _ = self._chosen(fork.dist.candidates[decision.index], decision)
            self.profile.observe(context, [c.word for c in fork.dist.candidates], cand.word, cand.text,
                                 document=self.doc.id)
            await super()._decide(fork, decision)
            self.profile.mark_store(time.time_ns())
            self._save_profile()

        async def _commit_typed(self, fork: Any, word: str) -> None:
            context, _ = self._spans()
            if word:
                lead = "" if not context or context[-1].isspace() else " "
                shown = [c.word for c in fork.dist.candidates] if fork is not None else []
                self.profile.observe(context, shown, None, lead + word, document=self.doc.id)
            await super()._commit_typed(fork, word)
            self.profile.mark_store(time.time_ns())
            self._save_profile()

        async def close(self) -> None:
            if self._saving is not None:
                self._saving.cancel()
            if self.doc is not None:
                self.profile.sync(self._spans()[0], document=self.doc.id)
            self._save_now()
            await super().close()

    return ProfiledDaemon


def profiled_daemon(config: Any, *, profile: Profile, engine: Any = None, widen: int = 2, **kw: Any) -> Any:
    """A daemon (razvilka.daemon.service.Daemon) that applies and updates ``profile``."""
    return _daemon_class()(config, profile=profile, engine=engine, widen=widen, **kw)


def replay_store(profile: Profile, store_path: str | Path, user: str | None = None) -> int:
    """Teach ``profile`` every live decision in the store (oldest first); returns how many.

    The same ``observe`` calls the daemon makes, with the LLM probabilities stored at each fork.
    """
    return _replay(profile, store_path, user, since_ns=0)


def catch_up(profile: Profile, store_path: str | Path, user: str | None = None) -> int:
    """Teach ``profile`` the store's live decisions written after its ``store_mark_ns`` (those a
    crash kept from its file); returns how many. The last decision it observed before the crash
    may be newer than its mark: its ``last_key`` names it, and it is not learned twice."""
    if not Path(store_path).is_file():
        return 0
    return _replay(profile, store_path, user, since_ns=profile.store_mark_ns)


def _replay(profile: Profile, store_path: str | Path, user: str | None, *, since_ns: int) -> int:
    db = open_store(store_path)
    n, newest = 0, since_ns
    try:
        for doc in documents(db, user, since_ns=since_ns):
            fresh = [d for d in doc.decisions if d.created_ns > since_ns]
            for d in fresh:
                newest = max(newest, d.created_ns)
                if d.undone or (since_ns and decision_key(doc.id, d.context, d.text) == profile.last_key):
                    continue
                profile.observe(d.context, [s.word for s in d.shown], d.word if d.kind == "chosen" else None,
                                d.text, probs=d.probs, document=doc.id)
                n += 1
            profile.sync(doc.prompt + doc.text, document=doc.id)
    finally:
        db.close()
    profile.mark_store(newest)
    return n
