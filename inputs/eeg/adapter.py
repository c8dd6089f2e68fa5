"""``razvilka input eeg``: P300 selection. Flashes in, Select/Confirm with a posterior out.

The adapter follows forks (``fork.``) for their candidates, LM probabilities and (protocol 1.4)
next-letter probabilities, and the renderer's flashes (``render.stimulus.``) for which items lit
up when: candidates (``indices``) and any other target (``targets``: commands, keyboard keys),
one at a time or a row or column at once. It epochs the board's EEG after each flash once the
whole window is in, scores the epoch, and updates the fork's posterior over every item flashed so
far. A renderer that flashes a new screen of the same fork (a P300 level: ``ui:spell`` opened the
keyboard, renderers/screen.py ``p300_targets``) numbers its flashes from 0 again; a flash numbered
no higher than that renderer's last one starts the fork over, the items it flashes from then on
being the hypotheses. It publishes ``input.select`` (``index`` for a candidate, ``target`` otherwise) when the
posterior passes ``threshold`` and ``input.confirm`` (with the candidates' posterior, for
gaze+EEG fusion) when it passes ``confirm_threshold``. Board health goes out as
``source.status``. Bad input (a flash for an unknown fork or naming a bad target, a corrupt or
foreign calibration, a missing board) is logged, reported, and survived.

With ``--calibrate`` the adapter learns instead: the target of each fork is the candidate in
focus (``input.focus.``, e.g. the highlighted word or key the person is asked to attend to), and
after ``calibration_targets`` target epochs it trains, saves the user's model and switches
to selecting. ``--calibrate-from`` trains from recordings instead (see docs/eeg.md).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy modules load inside functions: the CLI imports this module for --help
    import numpy as np

    from razvilka.config import Config
    from razvilka.inputs.eeg.acquisition import BoardLink
    from razvilka.inputs.eeg.bayes import Accumulator
    from razvilka.inputs.eeg.classifier import Montage, P300Model
    from razvilka.inputs.eeg.config import EegConfig
    from razvilka.inputs.eeg.epochs import EpochBuffer, EpochSpec
    from razvilka.inputs.eeg.lsl import LslOutlets
    from razvilka.protocol.client import BusClient
    from razvilka.protocol.messages import Message, SourceState

log = logging.getLogger("razvilka.eeg")

#: ``--calibrate-from`` made a model marked unusable (saved, and refused by the adapter): the exit status.
UNUSABLE_EXIT = 3
#: Flashes whose onset is this far ahead of the bus clock are refused (clock confusion).
MAX_FUTURE_S = 5.0
#: Forks (text.undo ends one), the renderers' flashes, and focus (the calibration target).
SUBSCRIBE = ("fork.", "text.undo.", "render.stimulus.", "input.focus.")
#: Flashes kept while waiting for their data (about 30 min of flashing at 175 ms).
MAX_PENDING = 10_000


@dataclass
class ForkState:
    """One fork's items (target ids, the accumulator's order), their prior's inputs, and the evidence."""

    fork_id: str
    acc: Accumulator
    items: list[str] = field(default_factory=list)        # the targets flashed on this screen, as first flashed
    where: dict[str, int] = field(default_factory=dict)   # target id -> position in ``items``
    k: int = 0                                             # candidates of the fork
    probs: dict[int, float] = field(default_factory=dict)  # candidate index -> LM probability
    letters: dict[str, float] = field(default_factory=dict)  # next character -> LM probability
    first_flash: float | None = None     # monotonic time of the first flash
    done: str = ""                       # "", "selected", "confirmed", "timeout", "decided"
    confirmed: set[str] = field(default_factory=set)
    target: str | None = None            # calibration: the target in focus
    warned_no_model: bool = False
    last_flash: dict[str, int] = field(default_factory=dict)   # renderer -> the number of its last flash

    def candidate_posterior(self) -> list[float]:
        """P(candidate i) for i in 0..K-1: what ``posterior`` carries (the daemon indexes it by candidate);
        0 for a candidate this screen does not flash (a P300 keyboard level)."""
        post = self.acc.posterior
        return [round(float(post[self.where[f"cand:{i}"]]), 6) if f"cand:{i}" in self.where else 0.0
                for i in range(self.k)]


@dataclass
class Flash:
    fork_id: str
    items: list[int]     # positions in the fork's ``items``
    onset_s: float
    flash: int
    ids: list[str] = field(default_factory=list)   # the same, as target ids (markers, calibration)


@dataclass
class AdapterStats:
    stimuli: int = 0
    scored: int = 0
    skipped: Counter = field(default_factory=Counter)   # artefact / gap / expired
    ignored: Counter = field(default_factory=Counter)   # ErrorCode name -> count
    selects: int = 0
    confirms: int = 0
    timeouts: int = 0
    lost: int = 0
    recovered: int = 0


class EegAdapter:
    """One adapter on one bus client. ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, cfg: EegConfig, client: BusClient, *, model: P300Model | None = None,
                 calibrate: bool = False, load_model: bool = True) -> None:
        from razvilka.protocol.client import ForkTracker

        self.cfg = cfg
        self.client = client
        self.model = model
        self.calibrating = calibrate
        self.load_model = load_model and model is None and not calibrate
        self.tracker = ForkTracker()      # which fork is open
        self.forks: dict[str, ForkState] = {}   # the evidence gathered per fork
        self.pending: list[Flash] = []
        self.link: BoardLink | None = None
        self.buffer: EpochBuffer | None = None
        self.montage: Montage | None = None
        self.lsl: LslOutlets | None = None
        self.stats = AdapterStats()
        self.status: tuple[str, str] = ("", "")
        #: Why this adapter will select nothing (its model refused: missing, corrupt, marked unusable, made
        #: for another montage); while set, every status it publishes is an error naming it (:meth:`_report`).
        self.refusal = ""
        self.state = "starting"          # board: starting, ok, error, lost
        self.calib_epochs: list[np.ndarray] = []
        self.calib_labels: list[int] = []
        self._training = False

    # ------------------------------------------------------------------ life cycle
    async def run(self, stop: asyncio.Event) -> None:
        self._report("calibrating" if self.calibrating else "ok", "starting")
        if self.load_model:
            self._load_model()
        await self._catch_up()
        tasks = [asyncio.create_task(self._bus_loop(stop), name="eeg-bus"),
                 asyncio.create_task(self._board_loop(stop), name="eeg-board")]
        try:
            await stop.wait()
        finally:
            from razvilka.protocol.client import cancel_and_wait

            await cancel_and_wait(tasks)
            if self.link is not None:
                await asyncio.to_thread(self.link.close)
            if self.lsl is not None:
                self.lsl.close()
            self._report("stopped", "adapter stopped")

    def _load_model(self) -> None:
        from razvilka.inputs.eeg.classifier import P300Model
        from razvilka.protocol.errors import RazvilkaError

        try:  # a model marked unusable (AUC below min_auc) is refused with its advice, in source.status
            self.model = P300Model.load(self.cfg.model_path()).require_usable()
            log.info("loaded calibration of %r: %s", self.model.user, self.model.report.line())
        except RazvilkaError as exc:
            self._refuse(str(exc))

    def _refuse(self, why: str) -> None:
        """The model cannot be used: select nothing, and say why (with its advice) for as long as this runs."""
        log.error("%s", why)
        self.model, self.refusal = None, why
        self._report("error", "")

    async def _catch_up(self) -> None:
        """A late joiner asks the bus for the open fork."""
        from razvilka.protocol.errors import ProtocolError

        try:
            for msg in await self.client.snapshot(timeout=1.0):
                self._on_message(msg)
        except ProtocolError as exc:
            log.info("no snapshot (%s); waiting for the next fork", exc)

    def _report(self, state: SourceState, detail: str) -> None:
        """Publish ``source.status`` when it changes. While the model is refused, the refusal leads every
        status and a good one ("ok", "recovered") is an error: the board streaming must not hide that
        nothing will be selected. "lost" stays lost (the headset first), "stopped" stays stopped."""
        from razvilka.protocol.messages import SourceStatus

        if self.refusal and state != "stopped":
            detail = f"{self.refusal}; {detail}" if detail and detail != self.refusal else self.refusal
            state = "lost" if state == "lost" else "error"
        if (state, detail) == self.status:
            return
        self.status = (state, detail)
        log.info("status %s: %s", state, detail)
        self.client.publish(SourceStatus(source=self.cfg.name, state=state, detail=detail),
                            subtopic=(self.cfg.name,))

    # ------------------------------------------------------------------ bus side
    async def _bus_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            msg = await self.client.recv(timeout=0.25)
            if msg is not None:
                try:
                    self._on_message(msg)
                except Exception:  # one bad message must never stop the adapter
                    log.exception("failed to handle %s", msg.type)

    def _on_message(self, msg: Message) -> None:
        from razvilka.protocol.messages import Focus, ForkDecided, Stimulus

        body, fork_id = msg.body, msg.header.fork_id
        what = self.tracker.update(msg)
        for ended in (self.tracker.ended, fork_id if isinstance(body, ForkDecided) else None):
            state = self.forks.get(ended or "")
            if state is not None and not state.done:
                state.done = "decided"  # decided, superseded or undone: its evidence can change nothing
        if what in ("open", "reopen") and self.tracker.fork is not None:
            self._open_fork(self.tracker.fork.fork_id, self.tracker.fork.body)
        elif isinstance(body, ForkDecided) and fork_id:
            self._marker({"event": "fork.decided", "fork": fork_id, "index": body.index, "sources": body.sources},
                         msg.header.ts_ns / 1e9)
        elif isinstance(body, Stimulus):
            self._on_stimulus(fork_id, body)
        elif isinstance(body, Focus) and fork_id and fork_id in self.forks and self.calibrating:
            self.forks[fork_id].target = body.target or (f"cand:{body.index}" if body.index is not None else None)

    def _open_fork(self, fork_id: str, body: Any) -> None:
        import numpy as np

        from razvilka.inputs.eeg.bayes import Accumulator

        k = max(c.index for c in body.candidates) + 1 if body.candidates else 0
        probs = dict.fromkeys(range(k), 0.0) | {c.index: float(c.prob) for c in body.candidates}
        letters = {lt.ch: float(lt.prob) for lt in getattr(body, "letters", [])}
        state = ForkState(fork_id, Accumulator(np.zeros(0), self.cfg.threshold, self.cfg.min_repetitions,
                                               self.cfg.max_repetitions, self.cfg.null_prior),
                          k=k, probs=probs, letters=letters)
        self.pending = [f for f in self.pending if f.fork_id != fork_id]   # a re-opened fork starts afresh
        self.forks[fork_id] = state
        while len(self.forks) > 64:  # forget old forks
            self.forks.pop(next(iter(self.forks)))
        self._marker({"event": "fork.open", "fork": fork_id, "words": [c.word for c in body.candidates]},
                     None)

    def _add_items(self, state: ForkState, new: list[str]) -> None:
        """Items flashed for the first time join the hypotheses, and the prior is taken again over all
        of them (:func:`~razvilka.inputs.eeg.bayes.item_prior`; the evidence so far stays)."""
        from razvilka.inputs.eeg.bayes import item_prior

        fresh = [t for t in dict.fromkeys(new) if t not in state.where]
        if not fresh:
            return
        for t in fresh:
            state.where[t] = len(state.items)
            state.items.append(t)
        c = self.cfg
        state.acc.extend(item_prior(state.items, state.probs, state.letters, weight=c.prior_weight,
                                    floor=c.prior_floor, command_share=c.command_prior))

    def _ignore(self, code: Any, message: str) -> None:
        from razvilka.protocol.errors import ProtocolError

        self.stats.ignored[code.name] += 1
        n = self.stats.ignored[code.name]
        if n <= 10 or n % 100 == 0:
            log.warning("ignored (%d so far): %s", n, ProtocolError(code, message))

    def _on_stimulus(self, fork_id: str | None, body: Any) -> None:
        from razvilka.protocol.clock import now_ns
        from razvilka.protocol.errors import ErrorCode

        self.stats.stimuli += 1
        state = self.forks.get(fork_id or "")
        if state is None:
            self._ignore(ErrorCode.UNKNOWN_FORK, f"flash {body.flash} of {body.renderer or 'a renderer'} is for fork "
                         f"{fork_id!r}, which this adapter never saw open")
            return
        ids = self._flashed(state, fork_id, body)
        if ids is None:
            return
        last = state.last_flash.get(body.renderer)
        state.last_flash[body.renderer] = body.flash
        if last is not None and body.flash <= last and state.done != "decided":
            # the renderer numbered its flashes afresh: it flashes a new screen of this fork (a P300
            # keyboard level opened or closed, renderers/screen.py), so the hypotheses are what it flashes now
            self._start_over(state, fresh=True)
        elif state.done == "timeout":
            self._start_over(state)
        if state.done:
            return
        onset = body.onset_ns / 1e9
        if onset - now_ns() / 1e9 > MAX_FUTURE_S:
            self._ignore(ErrorCode.BAD_VALUE, f"flash {body.flash} of fork {fork_id} has its onset "
                         f"{onset - now_ns() / 1e9:.1f} s in the future: is the renderer on the bus clock?")
            return
        if self.model is None and not self.calibrating:
            if not state.warned_no_model:
                state.warned_no_model = True
                log.warning("fork %s flashes, but no calibration is loaded: nothing can be selected "
                            "(razvilka input eeg --calibrate)", fork_id)
            return
        if state.first_flash is None:
            state.first_flash = time.monotonic()
        self._add_items(state, ids)
        self.pending.append(Flash(fork_id or "", [state.where[t] for t in ids], onset, body.flash, ids))
        del self.pending[:-MAX_PENDING]   # no board for a long time: keep only the newest
        self._marker({"event": "flash", "fork": fork_id, "indices": list(body.indices),
                      "targets": list(getattr(body, "targets", [])), "flash": body.flash}, onset)
        self._process()

    def _start_over(self, state: ForkState, *, fresh: bool = False) -> None:
        """A timed-out fork that still flashes starts over with a fresh posterior from the same prior:
        a person on P300 alone is never left on a fork that listens no more. ``fresh``: the renderer
        flashes a new screen of the fork (it numbered its flashes afresh, e.g. after a ``ui:spell`` this
        adapter selected opened the keyboard): the evidence and the items start from nothing, and the
        items it flashes from now on are the hypotheses."""
        import numpy as np

        from razvilka.inputs.eeg.bayes import Accumulator

        acc = state.acc
        state.acc = Accumulator(np.zeros(0) if fresh else acc.prior, acc.threshold, acc.min_repetitions,
                                acc.max_repetitions, acc.null_prior)
        if fresh:
            state.items, state.where = [], {}
        state.done, state.first_flash = "", None
        state.confirmed.clear()
        self.pending = [f for f in self.pending if f.fork_id != state.fork_id]
        log.info("fork %s %s: starting over", state.fork_id,
                 "flashes a new screen" if fresh else "flashes on after its time-out")

    def _flashed(self, state: ForkState, fork_id: str | None, body: Any) -> list[str] | None:
        """The target ids one flash lit (candidates as ``cand:i``), or None (ignored, saying why) when
        it names a candidate outside the fork, an id the grammar refuses, or nothing."""
        from razvilka.protocol.errors import ErrorCode, ProtocolError
        from razvilka.protocol.targets import parse_target

        targets = list(getattr(body, "targets", []))
        ids = [f"cand:{i}" for i in body.indices]
        try:
            parsed = [parse_target(t) for t in targets]
        except ProtocolError as exc:
            self._ignore(ErrorCode.BAD_VALUE, f"flash {body.flash} of fork {fork_id}: {exc.detail}")
            return None
        ids += [t.id for t in parsed]
        bad = [i for i in body.indices if i >= state.k] + [t.id for t in parsed if t.index is not None
                                                           and t.index >= state.k]
        if bad or not ids:
            self._ignore(ErrorCode.OUT_OF_RANGE, f"flash {body.flash} of fork {fork_id} lights "
                         f"{body.indices}{' and ' + str(targets) if targets else ''}; "
                         f"the fork has candidates 0..{state.k - 1}")
            return None
        return list(dict.fromkeys(ids))

    # ------------------------------------------------------------------ board side
    async def _board_loop(self, stop: asyncio.Event) -> None:
        from razvilka.inputs.eeg.acquisition import BoardLink
        from razvilka.protocol.errors import ErrorCode, ProtocolError

        while not stop.is_set():
            try:
                if self.link is None:
                    self.link = BoardLink(self.cfg)
                if not self.link.connected:
                    await asyncio.to_thread(self.link.connect)
                    self._on_connected()
                chunk = self.link.read()
                if chunk is not None:
                    self._on_samples(chunk)
                elif self.link.silent_for() > self.cfg.lost_after_s:
                    raise ProtocolError(ErrorCode.DEVICE_LOST, f"{self.link.info.name} sent nothing for "
                                        f"{self.link.silent_for():.1f} s")
                self._check_timeouts()
                await asyncio.sleep(self.cfg.poll_ms / 1000)
            except asyncio.CancelledError:
                raise
            except ProtocolError as exc:
                await self._on_board_error(exc)
                await asyncio.sleep(self.cfg.reconnect_s)

    async def _on_board_error(self, exc: Any) -> None:
        from razvilka.protocol.errors import ErrorCode

        if exc.code == ErrorCode.DEVICE_LOST or (self.state in ("ok", "lost") and exc.code == ErrorCode.DEVICE_MISSING):
            if self.state != "lost":
                self.stats.lost += 1
            self.state = "lost"
            self._report("lost", str(exc))
        else:
            self.state = "error"
            self._report("error", str(exc))
        if self.link is not None:
            await asyncio.to_thread(self.link.close)

    def _on_connected(self) -> None:
        from razvilka.inputs.eeg.classifier import Montage
        from razvilka.protocol.errors import ProtocolError

        assert self.link is not None
        info = self.link.info
        self.montage = Montage(info.name, self.link.channels, info.sampling_rate)
        if self.model is not None:
            try:
                self.model.check(self.montage)
            except ProtocolError as exc:
                self._refuse(str(exc))
        self._ensure_buffer()
        if self.cfg.lsl and self.lsl is None:
            from razvilka.inputs.eeg.lsl import LslOutlets

            self.lsl = LslOutlets(self.cfg.lsl_eeg_name, self.cfg.lsl_marker_name, info.name, self.link.channels,
                                  info.sampling_rate)
        was = self.state
        self.state = "ok"
        if was in ("lost", "error"):
            self.stats.recovered += 1
            self._report("recovered", f"{info.name} streaming again")
        else:
            self._report("calibrating" if self.calibrating else "ok",
                         f"{info.name}: {','.join(self.link.channels)} at {info.sampling_rate} Hz")

    def _spec(self) -> EpochSpec:
        from razvilka.inputs.eeg.epochs import EpochSpec

        if self.model is not None:
            return self.model.spec
        assert self.montage is not None
        c = self.cfg
        return EpochSpec(self.montage.sampling_rate, c.low_hz, c.high_hz, c.filter_order, c.epoch_start_ms,
                         c.epoch_end_ms, c.reject_uv)

    def _ensure_buffer(self) -> None:
        from razvilka.inputs.eeg.epochs import EpochBuffer

        assert self.montage is not None
        spec = self._spec()
        if self.buffer is None or self.buffer.spec != spec or self.buffer.n_channels != len(self.montage.channels):
            self.buffer = EpochBuffer(spec, len(self.montage.channels), buffer_s=self.cfg.buffer_s,
                                      gap_tolerance_s=self.cfg.gap_tolerance_ms / 1000)

    def _on_samples(self, chunk: Any) -> None:
        assert self.buffer is not None
        self.buffer.add(chunk.eeg, chunk.ts)
        if self.lsl is not None:
            self.lsl.push_eeg(chunk.eeg, chunk.ts)
        self._process()

    # ------------------------------------------------------------------ epochs -> evidence
    def _process(self) -> None:
        """Cut every flash whose window is complete, score them, and update their forks in onset order."""
        import numpy as np

        if self.buffer is None or not self.pending:
            return
        self.pending.sort(key=lambda f: f.onset_s)
        waiting: list[Flash] = []
        done: list[tuple[Flash, Any]] = []
        for fl in self.pending:
            state = self.forks.get(fl.fork_id)
            if state is None or state.done:
                continue
            cut = self.buffer.cut(fl.onset_s)
            if cut.status == "wait":
                waiting.append(fl)
            else:
                done.append((fl, cut))
        self.pending = waiting
        if not done:
            return
        ready = [i for i, (_, cut) in enumerate(done) if cut.status == "ready"]
        llrs: dict[int, float] = {}
        if ready and self.model is not None and not self.calibrating:
            scores = self.model.score(np.stack([done[i][1].epoch for i in ready]))
            llrs = {i: float(v) for i, v in zip(ready, self.model.scores.llr(scores))}
        for i, (fl, cut) in enumerate(done):
            state = self.forks[fl.fork_id]
            if state.done:
                continue
            if cut.status != "ready":
                self.stats.skipped[cut.status] += 1
                level = logging.WARNING if cut.status == "expired" else logging.DEBUG
                log.log(level, "flash %d of fork %s gives no evidence: %s", fl.flash, fl.fork_id,
                        {"expired": "its onset is older than the buffer (a very late stimulus event)",
                         "gap": "samples were dropped in its window",
                         "artefact": f"peak-to-peak over {self.buffer.spec.reject_uv} µV"}[cut.status])
            if self.calibrating:
                self._collect(state, fl, cut)
                continue
            if cut.status == "ready":
                self.stats.scored += 1
            state.acc.add(fl.items, llrs.get(i))
            self._decide(state)

    def _decide(self, state: ForkState) -> None:
        from razvilka.protocol.messages import Confirm, Select

        acc = state.acc
        verdict = acc.state()
        post = acc.posterior
        best = acc.best
        chosen = state.items[best]
        # a candidate goes out as ``index`` (a 1.3 daemon understands it), anything else as ``target``
        index = int(chosen[5:]) if chosen.startswith("cand:") else None
        named = {"index": index} if index is not None else {"target": chosen}
        posterior = state.candidate_posterior()
        conf = min(1.0, float(post[best]))
        if verdict == "confident" and self.cfg.mode in ("select", "both"):
            state.done = "selected"
            self.stats.selects += 1
            self.client.publish(Select(**named, source=self.cfg.name, confidence=conf, posterior=posterior,
                                       kind="eeg"),
                                fork_id=state.fork_id, subtopic=(self.cfg.name,))
            log.info("fork %s: select %s (posterior %.3f after %d flashes, %d scored)", state.fork_id, chosen,
                     conf, acc.shown, acc.scored)
            self._marker({"event": "select", "fork": state.fork_id, "target": chosen, "posterior": posterior}, None)
            return
        if (self.cfg.mode in ("confirm", "both") and conf >= self.cfg.confirm_threshold
                and chosen not in state.confirmed):
            state.confirmed.add(chosen)
            self.stats.confirms += 1
            self.client.publish(Confirm(**named, source=self.cfg.name, confidence=conf, posterior=posterior,
                                        kind="eeg"),
                                fork_id=state.fork_id, subtopic=(self.cfg.name,))
            log.info("fork %s: confirm %s (posterior %.3f)", state.fork_id, chosen, conf)
        if verdict == "confident":
            state.done = "confirmed"
        elif verdict == "timeout":
            self._time_out(state, f"{acc.repetitions} rounds")

    def _timeout_s(self, state: ForkState) -> float:
        c = self.cfg
        if c.fork_timeout_s > 0:
            return c.fork_timeout_s
        return c.max_repetitions * state.acc.k * (c.flash_on_ms + c.flash_off_ms) / 1000 + c.epoch_end_ms / 1000 + 2.0

    def _check_timeouts(self) -> None:
        if self.calibrating:   # calibration forks are not choices: they end when the targets are in
            return
        now = time.monotonic()
        for state in self.forks.values():
            if not state.done and state.first_flash is not None and now - state.first_flash > self._timeout_s(state):
                self._time_out(state, f"{self._timeout_s(state):.1f} s")

    def _time_out(self, state: ForkState, after: str) -> None:
        state.done = "timeout"
        self.stats.timeouts += 1
        post = state.acc.posterior
        detail = (f"fork {state.fork_id}: no confident choice after {after} ({state.acc.shown} flashes); "
                  f"best {state.items[state.acc.best]} at {post.max():.2f}, none of them {state.acc.none:.2f}, "
                  f"threshold {self.cfg.threshold}")
        log.info("timed out: %s", detail)
        self._report("ok", detail)

    # ------------------------------------------------------------------ calibration
    def _collect(self, state: ForkState, fl: Flash, cut: Any) -> None:
        if state.target is None or cut.status not in ("ready", "artefact"):
            return
        self.calib_epochs.append(cut.epoch)
        self.calib_labels.append(int(state.target in fl.ids))
        n_target = sum(self.calib_labels)
        if self.calib_labels[-1]:
            self._report("calibrating", f"{n_target}/{self.cfg.calibration_targets} target epochs")
        if n_target >= self.cfg.calibration_targets and not self._training:
            self._training = True
            asyncio.get_running_loop().create_task(self._train())

    async def _train(self) -> None:
        import numpy as np

        from razvilka.inputs.eeg.classifier import calibrate
        from razvilka.protocol.errors import RazvilkaError

        assert self.montage is not None and self.buffer is not None
        spec = self.buffer.spec
        epochs = np.stack(self.calib_epochs)
        kept = None if self.cfg.reject_mad > 0 else np.array([not spec.artefact(e) for e in epochs])
        try:
            model = await asyncio.to_thread(calibrate, epochs, np.array(self.calib_labels), montage=self.montage,
                                            spec=spec, kept=kept, user=self.cfg.user, llr_clip=self.cfg.llr_clip,
                                            reject_mad=self.cfg.reject_mad, min_auc=self.cfg.min_auc)
            path = model.save(self.cfg.model_path())
            model.require_usable()   # saved marked unusable: keep calibrating, saying what to try
        except RazvilkaError as exc:
            self._training = False
            self._want_more_targets()
            self._report("calibrating", f"{exc}; collecting more")
            return
        self.model, self.calibrating = model, False
        self.calib_epochs.clear()
        self.calib_labels.clear()
        for state in self.forks.values():
            state.done = state.done or "decided"   # calibration forks are not choices
        self._report("ok", f"calibrated user {self.cfg.user!r}: {model.report.line()}; saved {path}")

    def _want_more_targets(self) -> None:
        """After a failed fit, wait for another half batch of targets before trying again."""
        import msgspec

        self.cfg = msgspec.structs.replace(self.cfg, calibration_targets=self.cfg.calibration_targets
                                           + max(4, self.cfg.calibration_targets // 2))

    # ------------------------------------------------------------------ LSL markers
    def _marker(self, event: dict[str, Any], ts: float | None) -> None:
        if self.lsl is not None:
            from razvilka.protocol.clock import now_s

            self.lsl.push_marker(event, ts if ts is not None else now_s())


# ---------------------------------------------------------------------- offline calibration
def calibrate_from_files(cfg: EegConfig, files: list[str], *, board_id: int | None = None) -> P300Model:
    """Train the user's model from recordings with target/non-target markers, in any format
    :func:`~razvilka.inputs.eeg.readers.read_recording` reads (:mod:`~razvilka.inputs.eeg.calibrate`)."""
    from razvilka.inputs.eeg.calibrate import calibrate_files

    return calibrate_files(cfg, files, board_id=board_id)


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board-id", type=int, help="BrainFlow board id (default inputs.eeg.board_id; -1 synthetic)")
    parser.add_argument("--serial-port", help="serial port of the dongle (Cyton, Ganglion, BLED112)")
    parser.add_argument("--mac-address", help="Bluetooth address of the headset")
    parser.add_argument("--playback-file", help="replay this BrainFlow file (with --board-id -3 --master-board ID)")
    parser.add_argument("--master-board", type=int, help="the board that recorded --playback-file")
    parser.add_argument("--user", help="whose calibration to use/make (default inputs.eeg.user)")
    parser.add_argument("--calibrate", action="store_true",
                        help="learn from this session: the focused candidate of each fork is the target")
    parser.add_argument("--calibrate-from", nargs="+", metavar="FILE",
                        help="train from recordings with target(2)/non-target(1) markers, save, and exit")
    parser.add_argument("--lsl", action="store_true", help="also publish raw EEG and markers over LSL")


def _apply_flags(cfg: EegConfig, args: argparse.Namespace) -> EegConfig:
    import msgspec

    changes: dict[str, Any] = {}
    for flag, key in (("board_id", "board_id"), ("serial_port", "serial_port"), ("mac_address", "mac_address"),
                      ("playback_file", "playback_file"), ("master_board", "master_board"), ("user", "user")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[key] = value
    if getattr(args, "lsl", False):
        changes["lsl"] = True
    return msgspec.structs.replace(cfg, **changes) if changes else cfg


def run(config: Config, args: argparse.Namespace) -> int:
    import sys

    from razvilka.protocol.errors import RazvilkaError

    cfg = _apply_flags(config.inputs.eeg, args)
    if getattr(args, "calibrate_from", None):
        try:
            model = calibrate_from_files(cfg, args.calibrate_from)
            path = model.save(cfg.model_path())
        except (RazvilkaError, OSError) as exc:
            print(f"razvilka input eeg: {exc}", file=sys.stderr)
            return 2
        print(f"calibrated user {cfg.user!r} on {model.montage.describe()}: {model.report.line()}\nsaved {path}")
        try:
            model.require_usable()
        except RazvilkaError as exc:  # saved marked unusable: the adapter will refuse it; say so, and fail
            print(f"razvilka input eeg: {exc}", file=sys.stderr)
            return UNUSABLE_EXIT
        return 0
    return asyncio.run(_serve(config, cfg, calibrate=bool(getattr(args, "calibrate", False))))


async def _serve(config: Config, cfg: EegConfig, *, calibrate: bool) -> int:
    from razvilka.protocol.client import BusClient
    from razvilka.runtime import stop_event

    stop = stop_event()
    client = BusClient.from_config(cfg.name, config.bus, role="input", subscribe=list(SUBSCRIBE))
    async with client:
        await client.wait_connected()
        await EegAdapter(cfg, client, calibrate=calibrate).run(stop)
    return 0


__all__ = ["EegAdapter", "add_arguments", "run", "calibrate_from_files"]
