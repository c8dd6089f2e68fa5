"""The generation daemon: hosts the bus, runs the engine on one thread, opens forks, fuses input.

Three asyncio tasks and one engine thread:

* the **writer** writes with the model while it is confident, opens a fork when it is not, then
  waits for an action (a decision or a command) and applies it;
* the **reader** takes input messages off the bus, checks them against the open fork, feeds the
  decider, and queues actions for the writer; bad requests get a ``daemon.error`` and change nothing;
* the **fork worker** streams look-aheads for the open fork, then pre-generates the fork that
  follows the focused candidate; focus changes cancel work for candidates no longer focused;
* the engine (llama.cpp) runs only on a single-thread executor, so it is never used concurrently.

Inputs may name targets (protocol 1.4, protocol/targets.py): a decided candidate or look-ahead word
decides the fork, a command runs, a keyboard key edits the typed word (``_act``); while paused only
``cmd:resume``/``cmd:pause`` get through. Each fork announces the next letters' probabilities and
the keyboard's script.

Protocol 1.5: the text leaves through the daemon, which holds it (daemon/output.py: speak, repeat,
stop speaking, copy, type out; quick phrases from daemon/phrases.py); a partner's turn frames the
person's reply as a dialogue (daemon/prose.py; the turns are stored, so a resumed document reads
the same); settings change by ``config.update`` (daemon/settings.py). In prose mode candidates that
are markup or code are left out, and an empty new document starts from a plain-prose framing.

Every decision is written to the store before it is acknowledged on the bus; a learner (the
person's profile, daemon/learner.py) takes part through one seam and learns only what the store
acknowledged. A failed store write is a ``STORE_ERROR`` and the fork opens again.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from razvilka.config import Config
from razvilka.config import config_file as default_config_file
from razvilka.daemon import settings
from razvilka.daemon.decider import Decider, Decision, guess_kind, source_kind
from razvilka.daemon.engine import Aborted, Engine, WordCandidate, WordDistribution, letters_of
from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.gating import should_fork
from razvilka.daemon.learner import Acknowledged, Learner
from razvilka.daemon.lslrecord import SessionRecorder
from razvilka.daemon.output import Output, what_to_say
from razvilka.daemon.phrases import PhraseBook, phrases_path
from razvilka.daemon.prose import MAX_TURN_CHARS, MAX_TURNS, framing, with_framing, without_markup
from razvilka.daemon.store import Document, Entry, Store, Turn
from razvilka.daemon.words import head_words, joins
from razvilka.protocol.bus import BusHost
from razvilka.protocol.client import BusClient, cancel_and_wait
from razvilka.protocol.clock import now_ns
from razvilka.protocol.errors import ErrorCode, RazvilkaError
from razvilka.protocol.messages import (
    Body,
    Candidate,
    Command,
    ConfigState,
    ConfigUpdate,
    Confirm,
    DaemonState,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Letter,
    Lookahead,
    Message,
    Select,
    Span,
    TextAuto,
    TextState,
    TextUndo,
    command_name,
)
from razvilka.protocol.messages import (
    DaemonError as DaemonErrorMsg,
)
from razvilka.protocol.targets import COMMAND_TEXT, OUTPUT_COMMANDS, Target, is_key_char, parse_target, text_script

log = logging.getLogger("razvilka.daemon")
T = TypeVar("T")

CONTEXT_CHARS = 200
PAUSE_TARGETS = ("cmd:pause", "cmd:resume")  # the only targets a paused daemon takes (a gaze user resumes by dwell)
SUBSCRIBE = ["input.", "heartbeat.", "source.status.", "config.update."]
DECLINED_KEEP = 256   # remembered auto-written words taken back (per document)


def _outside_fork(target: str | None) -> bool:
    """1.5: a target that needs no open fork: it speaks, sends the text, picks a phrase, or is a renderer's own."""
    if target is None:
        return False
    try:
        t = parse_target(target)
    except RazvilkaError:
        return False  # the decider refuses it, naming the id
    return t.output or t.renderer_own


@dataclass
class Action:
    """What resolves an open fork: a decision, or a command."""

    decision: Decision | None = None
    command: Command | None = None
    ts_ns: int = 0
    target: str = ""  # 1.5: the target that asked for it (phrase:<id> writes its phrase)


@dataclass
class OpenFork:
    id: str
    dist: WordDistribution
    position: int
    opened_ns: int
    prefix: str = ""
    page: int = 0
    reason: str = "uncertain"
    resolved: bool = False
    tasks: deque[tuple[str, int]] = field(default_factory=deque)
    running: tuple[str, int] | None = None
    abort: threading.Event = field(default_factory=threading.Event)
    after: dict[int, WordDistribution] = field(default_factory=dict)
    long_done: set[int] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Reopen:
    """How the next fork must open: forced (no auto-writing), with a prefix or a page of candidates."""

    reason: str
    prefix: str = ""
    page: int = 0


#: The same ``daemon.error`` (code and message) goes out at most once in this many seconds: while the model
#: server is down the writer retries twice a second, and each retry's refusal must not flood the bus.
ERROR_REPEAT_S = 10.0


class Repeats:
    """Holds back an error that repeats within ``window_s`` of the last one that went out, and counts it;
    the first of a kind goes out at once, and the next one let through says how many it stands for."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[Any, tuple[float, int]] = {}  # key -> (when it last went out, held back since)

    def admit(self, key: Any, now: float) -> int | None:
        """``now`` (seconds, monotonic): None to hold this one back, else how many were held back before it."""
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        # forget kinds quiet for a long time (their count, if any, is too old to matter)
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 6 * self.window_s}
        self._seen[key] = (now, 0)
        return 0 if last is None else last[1]


class Daemon:
    """One daemon: ``await daemon.start()``, ``await daemon.run_until(stop_event)``, ``await daemon.close()``."""

    def __init__(self, config: Config, *, engine: Engine | None = None, learner: Learner | None = None,
                 host_bus: bool = True, resume: bool = True, config_file: str | Path | None = None,
                 output_env: Mapping[str, str] | None = None) -> None:
        """``config_file``: where settings changed by ``config.update`` are saved (default: the file the
        configuration is read from, razvilka/config.py); ``output_env``: the environment speech and text-out
        programs run in (default: this process's)."""
        self.config = config
        self.config_file = Path(config_file) if config_file else default_config_file()
        self.output = Output(config, output_env)
        self.phrases: PhraseBook | None = None
        self.turns: list[Turn] = []    # the conversation the open document replies to (store table turns)
        self._sending: set[asyncio.Task[None]] = set()
        self._closed = False
        self._repeats = Repeats(ERROR_REPEAT_S)  # daemon.error throttling (_error)
        self.resume = resume
        self.engine = engine
        self.learner = learner     # the person's profile (daemon/cli.py builds the shipped daemon with one)
        self._own_engine = engine is None
        self.host_bus = host_bus
        self.bus: BusHost | None = None
        self.client: BusClient | None = None
        self.recorder: SessionRecorder | None = None  # [record] lsl: the session's LSL marker stream
        self.store = Store(config.store.path)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.decider = Decider(stale_focus_ms=config.daemon.stale_focus_ms)
        self.actions: asyncio.Queue[Action] = asyncio.Queue()
        self.doc: Document | None = None
        self.fork: OpenFork | None = None
        self.known_forks: set[str] = set()
        self.fork_counter = 0
        self.reopen: Reopen | None = None
        self.paused = asyncio.Event()
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        self.pause_detail = ""     # "rest": paused because the person looked away (daemon.status detail)
        self.state: DaemonState = "loading"
        self.last_fork_ms: float | None = None
        self.focus_index: int | None = None
        self.pregen_hits = 0
        self.decisions = 0
        self.stale_focus = 0       # focus messages for a fork already decided: dropped, counted (docs/daemon.md)
        self.paused_focus = 0      # focus messages while paused: dropped, counted (docs/daemon.md)
        self._tasks: list[asyncio.Task[Any]] = []
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.marks: list[int] = []
        self.prompt_mark = 0
        # auto-written words the person took back with ``back``, by the text they followed: the model
        # (greedy) would write the same run again, so there it forks instead (docs/daemon.md, "back")
        self.declined: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.fatal: BaseException | None = None

    # ================================================================== life cycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        if self.learner is not None:
            await self.learner.start(self.store.path, cfg.daemon.user)
            if self.learner.notice:
                log.warning("profile: %s", self.learner.notice)
        if self.host_bus:
            self.bus = BusHost(cfg.bus)
            endpoints = self.bus.start()
            self.client = BusClient(
                cfg.daemon.name, endpoints, role="daemon", subscribe=SUBSCRIBE,
                heartbeat_ms=cfg.bus.heartbeat_ms, missed_beats=cfg.bus.missed_beats,
                curve_secret_file=(cfg.bus.resolved_curve_dir() / "client.key_secret"
                                   if endpoints.curve_server_public else None),
                max_frame=cfg.bus.max_frame_bytes, on_reject=self._on_reject,
            )
        else:
            self.client = BusClient.from_config(cfg.daemon.name, cfg.bus, role="daemon",
                                                subscribe=SUBSCRIBE,
                                                on_reject=self._on_reject)
        await self.client.start()
        await self.client.wait_connected(5.0)
        if cfg.record.lsl:  # the research record (docs/research.md): a bus reader like any client
            self.recorder = SessionRecorder(cfg, self.client.endpoints, curve_secret_file=self.client.curve_secret_file)
            await self.recorder.start()
            self._tasks.append(asyncio.create_task(self.recorder.run(), name="daemon-lsl-record"))
        self._tasks.append(asyncio.create_task(self._read(), name="daemon-reader"))
        if self.engine is None:
            self._status("loading", progress=0.0, detail="loading model")
            self.engine = await self._load_engine()
        self._tasks.append(asyncio.create_task(self._status_loop(), name="daemon-status"))
        self._publish_settings()
        self._load_phrases()
        await self._open_document()
        self._tasks.append(asyncio.create_task(self._write(), name="daemon-writer"))
        self.ready.set()

    async def _load_engine(self) -> Engine:
        loop = asyncio.get_running_loop()

        shown = [-1]

        def progress(p: float) -> None:
            if int(p * 4) > shown[0]:  # a log line per quarter; every step goes to the bus
                shown[0] = int(p * 4)
                log.info("loading model: %d%%", round(p * 100))
            loop.call_soon_threadsafe(lambda: self._status("loading", progress=round(p, 3), detail="loading model"))

        from razvilka.daemon.backends.llama_server import ServerUnavailable

        while True:
            try:
                return await loop.run_in_executor(self.pool, lambda: Engine(self.config.model, progress=progress))
            except ServerUnavailable as exc:  # the model server is not up (yet): say so, and try again
                self._error(exc)
                self._status("loading", progress=0.0, detail=f"waiting for the model server: {exc.detail}")
                await asyncio.sleep(2.0)

    async def close(self) -> None:
        """Flush the store, save the learner, say goodbye on the bus, close the sockets (once: again is a no-op)."""
        if self._closed:
            return
        self._closed = True
        self._status("stopping")
        await self._stop_worker()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await cancel_and_wait(list(self._sending))
        self.output.close()
        if self.learner is not None:
            if self.doc is not None:  # words the model wrote after the last decision, kept
                self.learner.document_end(self._spans()[0], self.doc.id)
            await self.learner.close()
        self._status("stopped", detail="goodbye")
        if self.client is not None:
            await asyncio.sleep(0.05)  # let the goodbye leave before the socket closes
            await self.client.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        if self.bus is not None:
            self.bus.stop()

    async def run_until(self, stop: asyncio.Event) -> None:
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                self.fatal = task.exception()
                log.error("daemon task failed: %r", self.fatal)
        waiter.cancel()

    # ================================================================== helpers
    async def _eng(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn`` on the engine thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kw))

    def _publish(self, body: Body, fork_id: str | None = None) -> None:
        assert self.client is not None
        try:
            self.client.publish(body, fork_id=fork_id)
        except Exception as exc:  # the daemon keeps serving even if one publish fails
            log.error("publish %s failed: %s", type(body).__name__, exc)

    def _error(self, exc: RazvilkaError, ref_id: str | None = None) -> None:
        """Publish ``daemon.error``. An answer to a request (``ref_id``) always goes out; an error of the
        daemon's own that repeats (same code and message: a retry that fails again) goes out once per
        ``ERROR_REPEAT_S``, the next one saying "(repeated N times)" for those held back."""
        message = exc.detail
        if ref_id is None:
            held = self._repeats.admit((exc.code, exc.detail), time.monotonic())
            if held is None:
                return
            if held:
                message = f"{exc.detail} (repeated {held} times)"
        log.info("refused: %s: %s", exc.code.name, message)
        self._publish(DaemonErrorMsg(code=int(exc.code), name=exc.code.name, message=message, ref_id=ref_id))

    def _on_reject(self, exc: RazvilkaError, frames: Any) -> None:
        self._error(exc)

    def _standing_detail(self) -> str:
        """What ``daemon.status`` says when nothing else is going on: a profile that had to be put
        aside, and how many stale focus messages were dropped (docs/daemon.md, "daemon.status")."""
        if self.state == "paused" and self.pause_detail:
            return self.pause_detail  # "rest": renderers show the rest overlay with its Resume target
        parts = []
        if self.learner is not None and self.learner.notice:
            parts.append(f"profile reset: {self.learner.notice}")
        if self.stale_focus:
            parts.append(f"stale focus dropped: {self.stale_focus}")
        if self.paused_focus:
            parts.append(f"paused focus dropped: {self.paused_focus}")
        return "; ".join(parts)

    def _status(self, state: DaemonState | None = None, **kw: Any) -> None:
        if state is not None:
            self.state = state
        if self.client is None or self.client.pub is None:
            return
        sources = dict(self.client.alive())
        self._publish(DaemonStatus(
            state=self.state,
            model=getattr(self.engine, "model_name", "") or "",
            mode=f"{self.config.gating.mode}/{self.config.daemon.input_cost}",
            k=self.config.gating.k,
            last_fork_ms=self.last_fork_ms,
            sources=sources,
            **({"detail": self._standing_detail()} | kw),
        ))

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            self._status()

    # ================================================================== document
    async def _open_document(self) -> None:
        cfg = self.config.daemon
        assert self.engine is not None
        doc = self.store.open_document(cfg.user) if self.resume else None
        prompt = doc.prompt if doc is not None else cfg.prompt
        earlier = self.learner.memory(doc.id if doc is not None else None, prompt) if self.learner is not None else ""
        if earlier:  # read whole once, at start: seconds on a small CPU
            self._status("loading", progress=1.0, detail="reading the person's earlier writing (the profile's memory)")
        if doc is not None:
            entries = self.store.entries(doc.id)
            turns = self.store.turns(doc.id)
            await self._eng(self._replay, doc.prompt, entries, self._framed(earlier, doc.prompt, turns))
            self.doc, self.turns = doc, turns
            self.output.watch_from(self._spans()[0])
            log.info("resumed document %s at %d entries", doc.id, len(entries))
        else:
            await self._new_document(cfg.prompt, self._framed(earlier, cfg.prompt, ()))
        self._count_phrases()
        self._publish_text()

    def _framed(self, earlier: str, prompt: str, turns: Sequence[Turn]) -> str:
        """The learner's memory, then the framing (daemon/prose.py): the dialogue the document replies to,
        or the plain-prose preamble of an empty prompt."""
        frame = framing(prompt, turns, prose=self.config.gating.prose, script=self.config.keyboard.script)
        return with_framing(earlier, frame)

    def _memory_for(self, document: str | None, prompt: str, turns: Sequence[Turn] = ()) -> str:
        """Text the model reads before this document and that is not part of it: the learner's memory, then
        the framing."""
        earlier = self.learner.memory(document, prompt) if self.learner is not None else ""
        return self._framed(earlier, prompt, turns)

    def _replay(self, prompt: str, entries: list[Entry], memory: str = "") -> None:
        """Rebuild the engine state of a stored document (resume after a restart or crash)."""
        assert self.engine is not None
        self.engine.reset(prompt, memory)
        self.prompt_mark = self.engine.checkpoint()
        self.marks = []
        self.declined.clear()
        for e in entries:
            if e.tokens:
                self.engine.commit(WordCandidate(word=" ".join(e.words), text=e.text, tokens=list(e.tokens), prob=1.0))
            else:
                self.engine.commit(e.text)
            self.marks.append(self.engine.checkpoint())

    def _commit(self, item: WordCandidate | str) -> asyncio.Future[None]:
        """Append to the engine on its thread; record the token mark that ``back`` rewinds to."""
        assert self.engine is not None
        engine = self.engine

        def run() -> None:
            engine.commit(item)
            self.marks.append(engine.checkpoint())

        return asyncio.get_running_loop().run_in_executor(self.pool, run)

    async def _new_document(self, prompt: str, memory: str | None = None, turns: Sequence[Turn] = ()) -> None:
        """Start a new document; ``memory``: what ``_memory_for(None, prompt, turns)`` gives, if the caller has
        it already; ``turns``: the conversation it replies to (stored with it)."""
        assert self.engine is not None
        ended = self.doc is not None
        if self.learner is not None and self.doc is not None:
            self.learner.document_end(self._spans()[0], self.doc.id)
            memory = None  # the document just ended joins the memory: read it again
        await self._eng(self._replay, prompt, [], self._memory_for(None, prompt, turns) if memory is None else memory)
        self.doc = self.store.new_document(self.config.daemon.user, prompt, self.engine.model_name)
        self.turns = list(turns)
        if self.turns:
            self.store.add_turns(self.doc.id, self.turns)
        self.known_forks.clear()
        self.output.watch_from(prompt)
        if ended:
            self._count_phrases()  # the document that ended counts towards the frequent phrases

    def _spans(self) -> tuple[str, list[Span]]:
        assert self.doc is not None
        text = self.doc.prompt
        spans = [Span(start=0, end=len(text), origin="prompt")] if text else []
        for e in self.store.entries(self.doc.id):
            start = len(text)
            text += e.text
            origin: Literal["human", "model"] = "human" if e.kind == "human" else "model"
            if spans and spans[-1].origin == origin and spans[-1].end == start:
                spans[-1].end = len(text)
            else:
                spans.append(Span(start=start, end=len(text), origin=origin))
        return text, spans

    def _publish_text(self) -> None:
        text, spans = self._spans()
        assert self.doc is not None
        words = len(text[len(self.doc.prompt):].split())
        partner = next((t.text for t in reversed(self.turns) if t.who == "partner"), "")
        self._publish(TextState(text=text, spans=spans, document=self.doc.id, position=words, partner=partner))
        try:
            self.output.finished(text)  # speech.each_sentence: say each sentence once it is finished
        except RazvilkaError as exc:
            self._error(exc)

    def _position(self) -> int:
        assert self.doc is not None
        return sum(len(e.words) for e in self.store.entries(self.doc.id))

    # ================================================================== writer
    async def _write(self) -> None:
        while True:
            await self.unpaused.wait()
            if self.fork is None or self.fork.resolved:
                try:
                    await self._advance()
                except RazvilkaError as exc:
                    self._error(exc)
                    await asyncio.sleep(0.5)
                    continue
            action = await self.actions.get()
            try:
                await self._apply(action)
            except RazvilkaError as exc:
                self._error(exc)
                if exc.code == ErrorCode.STORE_ERROR:  # nothing was acknowledged: the person decides again
                    self.reopen = Reopen("error")
            except Exception as exc:  # keep serving: report and reopen the fork
                log.exception("applying %r failed", action)
                self._error(DaemonRefusal(ErrorCode.MODEL_ERROR, f"internal error: {exc}"))
                self.reopen = Reopen("error")

    async def _advance(self) -> None:
        """Write on while the model is confident, then open a fork."""
        assert self.engine is not None and self.doc is not None
        g = self.config.gating
        reopen = self.reopen  # kept until its fork is open: a store error on the way retries it
        auto: list[WordCandidate] = []
        self._status("generating")
        while True:
            started = time.perf_counter()
            dist = await self._eng(self._words, g.k, prefix=reopen.prefix if reopen else "",
                                   page=reopen.page if reopen else 0)
            compute_ms = (time.perf_counter() - started) * 1000
            if not dist.candidates and reopen is not None and reopen.prefix:
                dist = await self._eng(self._typed_only, reopen.prefix)  # no word starts so: offer the typed one
            if not dist.candidates:
                raise DaemonRefusal(ErrorCode.MODEL_ERROR, "the model offered no candidates here")
            if reopen is not None:
                reason = reopen.reason
                break
            fork, reason = should_fork(dist, g, self.config.daemon.input_cost, auto_words=len(auto))
            if fork:
                break
            top = dist.candidates[0]
            if self.declined.get(self.engine.text) == top.word:
                reason = "declined"  # the person took this very word back here: ask, don't write it again
                break
            if not self.unpaused.is_set():
                await self.unpaused.wait()
            self.store.add_entry(self.doc.id,
                                 Entry(uuid.uuid4().hex, 0, "model", top.text, list(top.tokens), [top.word]))
            await self._commit(top)
            auto.append(top)
            self._publish(TextAuto(text=top.text, words=[top.word], position=self._position()))
        if auto:
            self._publish_text()
        prefix, page = (reopen.prefix, reopen.page) if reopen else ("", 0)
        self._open_fork(dist, reason, compute_ms, pregenerated=False, prefix=prefix, page=page)
        self.reopen = None

    def _words(self, k: int, *, prefix: str = "", page: int = 0) -> WordDistribution:
        """The words at the end of the document (engine thread): the engine's, or, with a learner, the
        engine's ``widen`` x K ranked by the learner down to the K of this page; in prose mode without
        markup or code (daemon/prose.py)."""
        assert self.engine is not None
        engine = self.engine
        if self.learner is None and not self._prose_filter():
            return engine.words(k, prefix=prefix, page=page)
        n = k * (page + (self.learner.widen if self.learner is not None else 1))
        dist = self._without_markup(lambda ex: engine.words(n, prefix=prefix, page=0, exclude=ex), n, engine.text)
        if self.learner is not None:
            dist = self.learner.rerank(dist, engine.text, k * (page + 1))
        return replace(dist, candidates=dist.candidates[k * page: k * page + k])

    def _prose_filter(self) -> bool:
        """Candidates that are markup or code are left out (``gating.prose``, unless ``gating.keep_markup``)."""
        return self.config.gating.prose and not self.config.gating.keep_markup

    def _without_markup(self, search: Callable[[Collection[str]], WordDistribution], n: int,
                        before: str) -> WordDistribution:
        """``search(excluded)`` less markup (when the filter is on); searched again, the markup excluded, while
        fewer than ``n`` words are left (a few times at most: markup is rare past the start)."""
        dist = search(())
        if not self._prose_filter():
            return dist
        dist, removed = without_markup(dist, before)
        excluded = set(removed)
        for _ in range(3):
            if not removed or len(dist.candidates) >= n:
                break
            dist, removed = without_markup(search(excluded), before)
            excluded.update(removed)
        return replace(dist, candidates=dist.candidates[:n])

    def _script(self, text: str) -> str:
        """The keyboard to show: ``keyboard.script``, or (auto) the script of the text's letters."""
        script = self.config.keyboard.script
        return text_script(text) if script == "auto" else script

    def _after(self, cand: WordCandidate, k: int, abort: threading.Event) -> WordDistribution:
        """The fork that would follow ``cand`` (pre-generation, engine thread), ranked and filtered like a live one."""
        assert self.engine is not None
        engine = self.engine
        if self.learner is None and not self._prose_filter():
            return engine.after(cand, k, abort=abort)
        n = k * (self.learner.widen if self.learner is not None else 1)
        # after() takes no exclusions: a wider search stands in for them
        dist = self._without_markup(lambda ex: engine.after(cand, n + 2 * len(ex), abort=abort), n,
                                    engine.text + cand.text)
        if self.learner is None:
            return dist
        return self.learner.rerank(dist, engine.text + cand.text, k)

    def _typed_only(self, prefix: str) -> WordDistribution:
        """A fork offering just what the person typed, when the model knows no word that starts so."""
        assert self.engine is not None
        text = self.engine.text
        lead = "" if not text or text[-1].isspace() else " "
        cand = WordCandidate(word=prefix, text=lead + prefix, tokens=self.engine.tokenize(lead + prefix), prob=1.0)
        return WordDistribution(candidates=[cand], entropy_bits=0.0, margin=1.0, prefix=prefix)

    def _open_fork(self, dist: WordDistribution, reason: str, compute_ms: float, *, pregenerated: bool,
                   prefix: str, page: int) -> None:
        assert self.doc is not None and self.engine is not None
        self.fork_counter += 1
        fork_id = f"{self.doc.id}-{self.fork_counter}"
        text, _ = self._spans()
        position = self._position()
        cands = [Candidate(index=i, word=c.word, prob=min(1.0, max(0.0, float(c.prob))), lookahead=list(c.lookahead),
                           joins=joins(text, c.text))
                 for i, c in enumerate(dist.candidates)]
        self.store.add_fork(self.doc.id, fork_id, position=position, context=text, prefix=prefix, page=page,
                            reason=reason, entropy=dist.entropy_bits, margin=dist.margin,
                            candidates=[{"index": c.index, "word": c.word, "prob": c.prob, "lookahead": c.lookahead}
                                        for c in cands])
        fork = OpenFork(fork_id, dist, position, now_ns(), prefix, page, reason)
        self.fork = fork
        self.known_forks.add(fork_id)
        self.decider.open(fork_id, len(cands), fork.opened_ns)
        self.focus_index = None
        self.last_fork_ms = round(compute_ms, 2)
        # the next letters for a word that is none of these candidates, from the rows of the fork's own search
        # (pre-generated forks too): no decode here (docs/engine.md, "Letters")
        letters = letters_of(dist, text, is_key_char)
        self._publish(ForkOpen(candidates=cands, context=text[-CONTEXT_CHARS:], position=position, prefix=prefix,
                               reason=reason, entropy=dist.entropy_bits, margin=dist.margin, page=page,
                               pregenerated=pregenerated, compute_ms=round(compute_ms, 3),
                               letters=[Letter(ch=ch, prob=min(1.0, max(0.0, p))) for ch, p in letters.letters],
                               script=self._script(text), unseen=min(1.0, max(0.0, dist.unseen))), fork_id)
        self._status("paused" if not self.unpaused.is_set() else "waiting")
        fork.tasks.append(("short", -1))
        if self.config.daemon.pregenerate:
            fork.tasks.append(("after", 0))
        self._worker = asyncio.create_task(self._fork_worker(fork), name=f"fork-{fork_id}")

    # ================================================================== fork worker
    async def _fork_worker(self, fork: OpenFork) -> None:
        """Look-aheads for the open fork, then pre-generation for the focused candidate."""
        assert self.engine is not None
        g = self.config.gating
        loop = asyncio.get_running_loop()
        while not fork.resolved:
            if not fork.tasks:
                fork.wake.clear()
                await fork.wake.wait()
                continue
            kind, idx = fork.tasks.popleft()
            fork.running, fork.abort = (kind, idx), threading.Event()
            abort = fork.abort
            try:
                if kind == "short":
                    def on_step(step: int, phrases: list[str]) -> None:
                        loop.call_soon_threadsafe(self._publish_lookahead, fork, phrases, False, None, False)
                    started = time.perf_counter()
                    phrases = await self._eng(self.engine.lookahead, fork.dist.candidates, g.lookahead_tokens,
                                              abort=abort, on_step=on_step)
                    if not abort.is_set():
                        self._publish_lookahead(fork, phrases, False, None, True,
                                                (time.perf_counter() - started) * 1000)
                        self.store.update_fork_candidates(fork.id, [
                            {"index": i, "word": c.word, "prob": c.prob, "lookahead": list(c.lookahead)}
                            for i, c in enumerate(fork.dist.candidates)])
                elif kind == "long":
                    cand = fork.dist.candidates[idx]
                    saved = list(cand.lookahead), list(cand.lookahead_tokens)
                    started = time.perf_counter()
                    phrases = await self._eng(self.engine.lookahead, [cand], g.long_lookahead_tokens, abort=abort)
                    cand.lookahead, cand.lookahead_tokens = saved  # a phrase selection takes the short one it shows
                    if not abort.is_set() and phrases:
                        fork.long_done.add(idx)
                        self._publish_lookahead(fork, phrases, True, idx, True, (time.perf_counter() - started) * 1000)
                elif kind == "after" and idx not in fork.after:
                    dist = await self._eng(self._after, fork.dist.candidates[idx], g.k, abort)
                    if not abort.is_set():
                        fork.after[idx] = dist
            except Aborted:  # cancelled on purpose: the focus moved or the fork was decided
                pass
            except RazvilkaError as exc:  # a store that cannot write, a model error: report, keep serving
                self._error(exc)
            except Exception as exc:  # look-ahead failure must not take the daemon down
                log.exception("fork work %s failed", kind)
                self._error(DaemonRefusal(ErrorCode.MODEL_ERROR, f"{kind} look-ahead failed: {exc}"))
            finally:
                fork.running = None

    def _publish_lookahead(self, fork: OpenFork, phrases: list[str], long: bool, idx: int | None, done: bool,
                           compute_ms: float = 0.0) -> None:
        if fork.resolved:
            return
        if long and idx is not None:
            entries = [Lookahead(index=idx, phrases=[phrases[0]], long=True)]
        else:
            entries = [Lookahead(index=i, phrases=[p]) for i, p in enumerate(phrases)]
        self._publish(ForkLookahead(entries=entries, done=done, compute_ms=round(compute_ms, 3)), fork.id)

    def _refocus(self, fork: OpenFork, index: int | None) -> None:
        """Prepare the focused candidate first; cancel work for one no longer focused."""
        if index is None or fork.resolved:
            return
        fork.tasks = deque(t for t in fork.tasks if t[0] == "short")
        wanted: list[tuple[str, int]] = []
        if self.config.daemon.pregenerate and index not in fork.after:
            wanted.append(("after", index))
        if index not in fork.long_done:
            wanted.append(("long", index))
        running = fork.running
        if running is not None and running[0] != "short" and running[1] != index:
            fork.abort.set()
        for task in reversed(wanted):
            if task != running:
                fork.tasks.appendleft(task)
        fork.wake.set()

    async def _stop_worker(self) -> None:
        fork, worker = self.fork, self._worker
        if fork is not None:
            fork.resolved = True
            fork.abort.set()
            fork.tasks.clear()
            fork.wake.set()
        if worker is not None:
            try:
                await asyncio.wait_for(worker, timeout=30)
            except (TimeoutError, asyncio.CancelledError, Exception):
                pass
        self._worker = None

    # ================================================================== reader
    async def _read(self) -> None:
        assert self.client is not None
        while True:
            msg = await self.client.recv()
            if msg is None:
                continue
            try:
                self._handle(msg)
            except RazvilkaError as exc:
                self._error(exc, msg.header.id)
            except Exception as exc:
                log.exception("handling %s failed", msg.type)
                self._error(DaemonRefusal(ErrorCode.BAD_COMMAND, f"{msg.type}: {exc}"), msg.header.id)

    def _stale(self, fork_id: str | None) -> bool:
        """``fork_id`` names a fork this daemon opened that is decided or superseded."""
        fork = self.fork
        return fork_id in self.known_forks and not (fork is not None and fork.id == fork_id and not fork.resolved)

    def _check_fork(self, msg: Message) -> OpenFork:
        fid = msg.header.fork_id
        fork = self.fork
        if fork is not None and fid == fork.id and not fork.resolved:
            return fork
        if fid in self.known_forks:
            raise DaemonRefusal(ErrorCode.STALE_FORK, f"fork {fid} is already decided or superseded")
        raise DaemonRefusal(ErrorCode.UNKNOWN_FORK, f"no fork {fid!r} was opened by this daemon")

    def _handle(self, msg: Message) -> None:
        body = msg.body
        ts = msg.header.ts_ns
        if isinstance(body, Command):
            self._command(body, msg)
            return
        if isinstance(body, ConfigUpdate):
            self._config_update(body)
            return
        if not isinstance(body, (Focus, Confirm, Select)):
            return
        if not self.ready.is_set():
            raise DaemonRefusal(ErrorCode.NOT_READY, "the model is still loading")
        if isinstance(body, Focus) and self._stale(msg.header.fork_id):
            # a gaze stream (hundreds of samples a second) races every decision: where the eyes were
            # after the fork closed is no lost action, so it is counted, not answered (docs/daemon.md)
            self.stale_focus += 1
            return
        decision: Decision | None = None
        if isinstance(body, (Select, Confirm)) and body.target in PAUSE_TARGETS:
            # pause/resume need no open fork (one paused between forks has none): a fork this daemon opened will do
            if msg.header.fork_id not in self.known_forks:
                raise DaemonRefusal(ErrorCode.UNKNOWN_FORK, f"no fork {msg.header.fork_id!r} was opened by this daemon")
            decision = self._input_decision(body, ts)
            if decision.target is not None and str(decision.target) in PAUSE_TARGETS:
                self._pause(decision.target.value == "pause", body.source, rest=source_kind(body) == "gaze")
                return
        if isinstance(body, (Select, Confirm)) and _outside_fork(body.target):
            # 1.5: speaking, sending the text, a quick phrase need no open fork either (the person may ask
            # while the model writes), and they leave an open one open
            if msg.header.fork_id not in self.known_forks:
                raise DaemonRefusal(ErrorCode.UNKNOWN_FORK, f"no fork {msg.header.fork_id!r} was opened by this daemon")
            if not self.unpaused.is_set():
                raise DaemonRefusal(ErrorCode.NOT_READY, f"paused: {body.target} from {body.source} ignored "
                                    "(only cmd:resume or cmd:pause are taken while paused)")
            decision = self._input_decision(body, ts)
            if decision.target is not None and (decision.target.output or decision.target.renderer_own):
                self._run_target(decision.target, decision.sources[-1] if decision.sources else body.source, msg)
                return
        fork = self._check_fork(msg)
        if isinstance(body, Focus) and not self.unpaused.is_set():
            # a gaze stream goes on while paused (the eyes rest on the Resume target, or anywhere):
            # where they are is no lost action, so it is counted like a stale focus, not answered
            self.paused_focus += 1
            return
        if not self.unpaused.is_set():
            raise DaemonRefusal(ErrorCode.NOT_READY, f"paused: {msg.type} from {body.source} ignored "
                                "(only cmd:resume or cmd:pause are taken while paused)")
        if isinstance(body, Focus):
            index = self.decider.on_focus(body, ts)
            if index != self.focus_index:
                self.focus_index = index
                self._refocus(fork, index)
            return
        self._act(fork, decision or self._input_decision(body, ts), msg)

    def _input_decision(self, body: Select | Confirm, ts: int) -> Decision:
        return self.decider.on_select(body, ts) if isinstance(body, Select) else self.decider.on_confirm(body, ts)

    def _act(self, fork: OpenFork, decision: Decision, msg: Message) -> None:
        """Apply what the decider decided (protocol 1.4 targets): a candidate or look-ahead word decides the
        fork; a command runs as ``input.command``; a key edits the typed word (checked here, so a key that
        cannot apply is refused and the fork stays open)."""
        target = decision.target
        source = decision.sources[-1] if decision.sources else "input"
        if target is not None and (target.output or target.renderer_own):
            self._run_target(target, source, msg)  # the fork stays open (a phrase written into the text ends it)
            return
        if target is not None and target.kind == "cmd":
            name = command_name(target.value)
            if name is None:
                raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"target {target.value!r} names no command")
            self._command(Command(command=name, source=source), msg,
                          rest=target.value == "pause" and self._gaze_source(msg))
            return
        if target is not None and target.kind == "key":
            typed = fork.prefix
            if target.value in ("space", "delete") and not typed:
                raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"{target}: no letters typed in this fork")
            if target.value == "accept":
                index = self._completing(fork)
                if index is None:
                    raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"{target}: no candidate completes {typed!r}")
                decision = replace(decision, index=index)
        fork.resolved = True
        self.actions.put_nowait(Action(decision=decision, ts_ns=msg.header.ts_ns))

    @staticmethod
    def _gaze_source(msg: Message) -> bool:
        body = msg.body
        return isinstance(body, (Focus, Confirm, Select)) and source_kind(body) == "gaze"

    @staticmethod
    def _completing(fork: OpenFork) -> int | None:
        """``key:accept``: the likeliest candidate that completes the typed prefix (candidates come ranked)."""
        for i, cand in enumerate(fork.dist.candidates):
            if cand.word.startswith(fork.prefix):
                return i
        return None

    def _pause(self, pause: bool, source: str, *, rest: bool = False) -> None:
        """Pause or resume (idempotent: a second pause stays paused). ``rest``: the person looked away, or
        paused by gaze: ``daemon.status`` says ``detail: "rest"`` and renderers show a Resume target."""
        if pause:
            self.unpaused.clear()
            self.pause_detail = "rest" if rest else ""
        else:
            self.unpaused.set()
            self.pause_detail = ""
        log.info("%s by %s%s", "paused" if pause else "resumed", source, " (rest)" if pause and rest else "")
        self._status("paused" if pause else ("waiting" if self.fork and not self.fork.resolved else "generating"))

    def _command(self, cmd: Command, msg: Message, *, rest: bool = False) -> None:
        """``rest``: a pause by gaze (``cmd:pause`` from a gaze source; also ``input.command`` pause with
        ``text: "rest"`` or from a source named gaze)."""
        if msg.header.fork_id and msg.header.fork_id not in self.known_forks:
            raise DaemonRefusal(ErrorCode.UNKNOWN_FORK, f"no fork {msg.header.fork_id!r} was opened by this daemon")
        name = cmd.command
        if name in ("pause", "resume", "toggle_pause"):
            pause = name == "pause" or (name == "toggle_pause" and self.unpaused.is_set())
            rest = rest or cmd.text == "rest" or guess_kind(cmd.source) == "gaze"
            self._pause(pause, cmd.source, rest=rest)
            return
        if not self.ready.is_set():
            raise DaemonRefusal(ErrorCode.NOT_READY, "the model is still loading")
        if name in OUTPUT_COMMANDS:
            self._output(name, cmd.text, msg)
            return
        if name == "phrase":
            self._phrase(cmd.text.strip(), cmd.source, msg)
            return
        if name == "partner":
            turn = " ".join(cmd.text.split())
            if not turn:
                raise DaemonRefusal(ErrorCode.BAD_COMMAND, "partner needs the partner's turn in `text`")
            if len(turn) > MAX_TURN_CHARS:
                raise DaemonRefusal(ErrorCode.BAD_VALUE, f"partner: the turn is {len(turn)} characters, "
                                    f"at most {MAX_TURN_CHARS}")
            cmd = msgspec.structs.replace(cmd, text=turn)
        if name == "bias" and not cmd.text.strip():
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "bias needs the word in `text` and a value in `bias`")
        if name == "back" and not self.marks:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "back: nothing to undo")
        if self.fork is not None:
            self.fork.resolved = True
        self.actions.put_nowait(Action(command=cmd, ts_ns=msg.header.ts_ns))

    # ================================================================== saying and sending (protocol 1.5)
    def _run_target(self, target: Target, source: str, msg: Message) -> None:
        """A target that speaks, sends the text or picks a quick phrase; ``cmd:settings`` is the renderer's own."""
        if target.kind == "phrase":
            self._phrase(target.value, source, msg, target=str(target))
        elif target.kind == "cmd" and target.value in OUTPUT_COMMANDS:
            name, text = COMMAND_TEXT.get(target.value, (target.value, ""))  # cmd:speak_all: speak "all"
            self._output(name, text, msg)
        else:
            log.info("%s from %s: a renderer's own target, nothing to do here", target, source)

    def _output(self, name: str, text: str, msg: Message) -> None:
        """speak / repeat / stop_speaking at once; copy / typeout off the event loop. A failure (a missing
        program names its package; the text is kept) is a ``daemon.error``; the document is untouched."""
        assert self.doc is not None
        document = self._spans()[0]
        if name == "speak":
            said = self.output.speak(what_to_say(text, document))
            log.info("speaking %d characters", len(said))
        elif name == "repeat":
            self.output.repeat()
        elif name == "stop_speaking":
            self.output.stop()
        elif name in ("copy", "typeout"):
            if not document.strip():
                raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"{name}: there is no text to send")
            how: Literal["copy", "typeout"] = "copy" if name == "copy" else "typeout"
            task = asyncio.create_task(self._send(how, document.strip(), msg.header.id), name=f"daemon-{name}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        else:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"command {name!r} is no output command")

    async def _send(self, how: Literal["copy", "typeout"], text: str, ref_id: str | None) -> None:
        try:
            tool = await self.output.send(how, text)
            log.info("%s: %d characters with %s", how, len(text), tool)
        except RazvilkaError as exc:
            self._error(exc, ref_id)
        except Exception as exc:  # the daemon keeps serving whatever the program did
            log.exception("%s failed", how)
            self._error(DaemonRefusal(ErrorCode.DEVICE_LOST, f"{how} failed: {exc}"), ref_id)

    def _phrase(self, phrase_id: str, source: str, msg: Message, *, target: str = "") -> None:
        """A quick phrase: said, written into the text, or both (``phrases.action``)."""
        if self.phrases is None:
            self._load_phrases()
        if self.phrases is None:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, "there are no quick phrases: their file could not be read "
                                "(the error before this one says why)")
        try:
            if self.phrases.reread():
                self._publish_phrases()
        except RazvilkaError as exc:  # a bad edit of the file: the phrases read before stay
            self._error(exc)
        phrase = self.phrases.find(phrase_id)
        action = self.config.phrases.action
        if action in ("insert", "both"):
            if self.fork is not None:
                self.fork.resolved = True
            self.actions.put_nowait(Action(command=Command(command="phrase", text=phrase.text, source=source),
                                           ts_ns=msg.header.ts_ns, target=target or f"phrase:{phrase.id}"))
        if action in ("speak", "both"):
            self.output.speak(phrase.text)

    async def _partner(self, turn: str) -> None:
        """The partner's turn begins the person's reply. Text the person wrote since the last turn was their
        reply to it: it joins the conversation and the reply starts as a new document; an empty document
        takes the turn itself. Either way the model now reads the dialogue before the document."""
        assert self.doc is not None and self.engine is not None
        entries = self.store.entries(self.doc.id)
        if entries:
            written = " ".join("".join(e.text for e in entries).split())
            turns = [*self.turns, Turn("person", written), Turn("partner", turn)][-MAX_TURNS:]
            await self._new_document("", turns=turns)
        else:
            self.store.add_turns(self.doc.id, [Turn("partner", turn)])
            self.turns.append(Turn("partner", turn))
            memory = self._memory_for(self.doc.id, self.doc.prompt, self.turns)
            await self._eng(self._replay, self.doc.prompt, [], memory)
        log.info("partner's turn (%d characters): document %s replies to it", len(turn), self.doc.id)
        self._publish_text()

    # ================================================================== settings and phrases (protocol 1.5)
    def _config_update(self, body: ConfigUpdate) -> None:
        """Check, save, then apply one setting; refused, it changes nothing (``config.state`` says why)."""
        try:
            name, value = settings.check(self.config, body.section, body.key, body.value)
            settings.save(self.config_file, name, value)
        except RazvilkaError as exc:
            self._publish_settings(error=exc.detail)
            raise
        settings.apply(self.config, name, value)
        log.info("setting %s = %r (by %s), saved to %s", name, value, body.source, self.config_file)
        if name.startswith("gating.") and self.fork is not None:
            self.fork.after.clear()  # pre-generated forks have the old K or filter: the next fork is made afresh
        self._publish_settings(changed=name)
        self._status()

    def _publish_settings(self, *, changed: str = "", error: str = "") -> None:
        self._publish(ConfigState(values=settings.values(self.config), changed=changed, error=error))

    def _load_phrases(self) -> None:
        path = phrases_path(self.config.phrases, self.config_file)
        try:
            self.phrases = PhraseBook.load(path)
        except RazvilkaError as exc:
            self._error(exc)
            return
        self._publish_phrases()

    def _count_phrases(self) -> None:
        """Count the person's frequent sentences again (at start and when a document ends)."""
        if self.phrases is None:
            return
        if self.phrases.count(self.store.written(self.config.daemon.user), self.config.phrases):
            self._publish_phrases()

    def _publish_phrases(self) -> None:
        if self.phrases is not None:
            self._publish(self.phrases.state())

    # ================================================================== applying actions
    async def _apply(self, action: Action) -> None:
        assert self.engine is not None and self.doc is not None
        fork = self.fork
        await self._stop_worker()
        if action.decision is not None and fork is not None:
            target = action.decision.target
            if target is not None and target.kind == "key" and target.value != "accept":
                await self._key(fork, action.decision, target)
            else:
                await self._decide(fork, action.decision)
            return
        cmd = action.command
        assert cmd is not None
        name = cmd.command
        if name == "back":
            await self._back()
            self.reopen = Reopen("back")
        elif name == "more":
            self.reopen = Reopen("more", prefix=fork.prefix if fork else "", page=(fork.page + 1) if fork else 0)
        elif name == "type":
            text = cmd.text
            if text.strip() and text != text.rstrip():  # trailing space: the typed word is complete
                await self._commit_typed(fork, text.strip())
            else:
                self.reopen = Reopen("prefix" if text.strip() else "regenerate", prefix=text.strip())
        elif name == "regenerate":
            self.reopen = Reopen("regenerate")
        elif name == "bias":
            await self._eng(self.engine.set_bias, cmd.text.strip(), cmd.bias)
            self.reopen = Reopen("bias", prefix=fork.prefix if fork else "")
        elif name == "new":
            await self._new_document(cmd.text)
            self._publish_text()
        elif name == "phrase":  # a quick phrase written into the text (phrases.action insert or both)
            await self._commit_typed(fork, cmd.text, sources=[cmd.source], rule="phrase", target=action.target)
        elif name == "partner":
            await self._partner(cmd.text)
            self.reopen = Reopen("partner")  # the reply's first words are the person's to choose
        else:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"command {name!r} cannot be applied now")

    async def _key(self, fork: OpenFork, decision: Decision, target: Target) -> None:
        """A keyboard key: a letter narrows the fork to words that start with the typed prefix (as the
        ``type`` command does), delete takes the last letter back, space commits the typed word."""
        if target.value == "space":
            await self._commit_typed(fork, fork.prefix, decision)
        elif target.value == "delete":
            self.reopen = Reopen("prefix", prefix=fork.prefix[:-1])
        else:
            self.reopen = Reopen("prefix", prefix=fork.prefix + target.value)

    def _chosen(self, cand: WordCandidate, decision: Decision) -> tuple[WordCandidate, list[str]]:
        """What a decision commits, and its words: the candidate, plus its whole look-ahead
        (``phrase``) or the look-ahead's first ``phrase_words`` words, token for token."""
        assert self.engine is not None
        if not (decision.phrase or decision.phrase_words) or not cand.lookahead or not cand.lookahead_tokens:
            return cand, [cand.word]
        phrase, tokens = cand.lookahead[0], list(cand.lookahead_tokens)
        if decision.phrase_words:
            phrase, tokens = head_words(self.engine.vocab, tokens, decision.phrase_words)
        whole = WordCandidate(word=cand.word, text=cand.text + phrase,
                              tokens=list(cand.tokens) + tokens if tokens and cand.tokens else [], prob=cand.prob)
        return whole, [cand.word] + phrase.split()

    async def _decide(self, fork: OpenFork, decision: Decision) -> None:
        assert self.engine is not None and self.doc is not None
        if decision.index is None:  # the decider gives an index for every target that decides a fork
            raise DaemonRefusal(ErrorCode.OUT_OF_RANGE, f"{decision.target} names no candidate of fork {fork.id}")
        offered = fork.dist.candidates[decision.index]
        cand, words = self._chosen(offered, decision)
        phrase = cand is not offered  # look-ahead text went with it
        context = self._spans()[0] if self.learner is not None else ""
        entry = Entry(uuid.uuid4().hex, 0, "human", cand.text, list(cand.tokens), words,
                      fork_id=fork.id, idx=decision.index, sources=decision.sources, rule=decision.rule,
                      latency_ms=decision.latency_ms, phrase=phrase)
        self.store.add_entry(self.doc.id, entry)  # durable before it is acknowledged
        self.decisions += 1
        self._publish(ForkDecided(index=decision.index, words=words, sources=decision.sources, rule=decision.rule,
                                  latency_ms=round(decision.latency_ms, 3), decision_id=entry.id,
                                  phrase=phrase, phrase_words=len(words) - 1,
                                  target=str(decision.target) if decision.target is not None else ""), fork.id)
        if self.learner is not None:  # learned only once written: a failed write (above) teaches nothing
            self.learner.learn(Acknowledged(context, [c.word for c in fork.dist.candidates], cand.word, cand.text,
                                            self.doc.id, time.time_ns()))
        log.info("fork %s decided: %r by %s (%s, %.0f ms)", fork.id, " ".join(words), "+".join(decision.sources),
                 decision.rule, decision.latency_ms)
        pre = fork.after.get(decision.index) if not phrase else None
        opened = False
        if pre is not None:
            self.pregen_hits += 1
            fork_now, reason = should_fork(pre, self.config.gating, self.config.daemon.input_cost)
            if fork_now:  # pre-generation hit: the next fork goes out before the engine even commits
                committing = self._commit(cand)  # queued on the engine thread ahead of the new fork's work
                self._open_fork(pre, reason, 0.0, pregenerated=True, prefix="", page=0)
                opened = True
                await committing
        if not opened:
            await self._commit(cand)
        self._publish_text()

    async def _commit_typed(self, fork: OpenFork | None, word: str, decision: Decision | None = None, *,
                            sources: list[str] | None = None, rule: str = "typed", target: str = "") -> None:
        """Commit a word the person typed (``type`` with a trailing space, or ``key:space``: ``decision``), or
        (1.5) a quick phrase's words (``rule`` "phrase", ``target`` its ``phrase:<id>``)."""
        assert self.engine is not None and self.doc is not None
        if not word:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "type: empty word")
        if decision is not None:
            sources, rule = decision.sources, decision.rule
        sources = sources or ["typed"]
        text_before, _ = self._spans()
        lead = "" if not text_before or text_before[-1].isspace() else " "
        text = lead + word
        entry = Entry(uuid.uuid4().hex, 0, "human", text, [], word.split(), fork_id=fork.id if fork else None,
                      idx=None, sources=list(sources), rule=rule, typed=True,
                      latency_ms=(now_ns() - fork.opened_ns) / 1e6 if fork else 0.0)
        self.store.add_entry(self.doc.id, entry)
        if fork is not None:
            if decision is not None and decision.target is not None:
                target = str(decision.target)
            self._publish(ForkDecided(index=None, words=word.split(), sources=list(sources), rule=rule,
                                      latency_ms=round(entry.latency_ms, 3), decision_id=entry.id, typed=True,
                                      target=target), fork.id)
        if self.learner is not None:
            self.learner.learn(Acknowledged(text_before, [c.word for c in fork.dist.candidates] if fork else [],
                                            None, text, self.doc.id, time.time_ns()))
        await self._commit(text)
        self._publish_text()

    def _undo_last(self) -> Entry:
        """Take back the newest live entry; ``_back`` calls it only while the store has one."""
        assert self.doc is not None
        entry = self.store.undo_last(self.doc.id)
        if entry is None:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "back: nothing to undo")
        return entry

    async def _back(self) -> None:
        """Undo the model's trailing auto-text if any, else the last human decision; then fork there."""
        assert self.engine is not None and self.doc is not None
        entries = self.store.entries(self.doc.id)
        if not entries:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "back: nothing to undo")
        undone: list[Entry] = []
        if entries[-1].kind == "model":
            while entries and entries[-1].kind == "model":
                undone.append(self._undo_last())
                entries.pop()
        else:
            undone.append(self._undo_last())
            entries.pop()
        del self.marks[len(entries):]
        await self._eng(self.engine.rewind, self.marks[-1] if self.marks else self.prompt_mark)
        removed = "".join(e.text for e in reversed(undone))
        at = self.engine.text
        for e in reversed(undone):  # remember the model's words that were taken back, where they stood
            if e.kind == "model" and e.words:
                self.declined[at] = e.words[0]
                while len(self.declined) > DECLINED_KEEP:
                    del self.declined[next(iter(self.declined))]
            at += e.text
        self._publish(TextUndo(removed=removed, position=self._position(), decisions_undone=len(undone)))
        self._publish_text()

