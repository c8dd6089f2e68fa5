"""``razvilka input gaze``: an eye tracker over LSL -> focus, dwell progress and dwell confirms on the bus.

The process is thin: it keeps the current fork and its layout from the bus, drains the LSL
inlet every ``poll_ms``, runs the pure :class:`~razvilka.inputs.gaze.pipeline.GazeTracker`, and
publishes what it returns. Stream trouble is reported as SourceStatus and retried; bad layouts
and bad configuration are reported and never end the process.

Protocol 1.4: the layout's ``targets`` (commands, keyboard keys, look-ahead words, Resume) are
hit-tested with the candidate boxes, so a dwell reaches every action: a confirm names its target.
No valid gaze on the screen for ``rest_ms`` while a fork waits publishes ``input.command`` pause
(``text: "rest"``); the renderer then shows its Resume target, and a dwell on it resumes.

``razvilka input gaze --calibrate`` runs the calibration routine instead (full-screen targets).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import TYPE_CHECKING

import msgspec

from razvilka.inputs.gaze.calibration import Calibration, calibration_path
from razvilka.inputs.gaze.config import GazeConfig
from razvilka.inputs.gaze.dwell import ConfirmEvent, FocusEvent, GazeEvent, RestEvent
from razvilka.inputs.gaze.hittest import HitMap
from razvilka.inputs.gaze.pipeline import GazeTracker
from razvilka.inputs.gaze.stream import ChannelMap
from razvilka.protocol.client import BusClient, ForkTracker, cancel_and_wait
from razvilka.protocol.errors import ErrorCode, ProtocolError
from razvilka.protocol.messages import (
    Command,
    ConfigState,
    Confirm,
    DaemonStatus,
    Focus,
    Layout,
    Message,
    SourceState,
    SourceStatus,
)
from razvilka.runtime import stop_event

if TYPE_CHECKING:  # pragma: no cover
    from razvilka.config import Config
    from razvilka.inputs.gaze.stream import GazeStream

log = logging.getLogger("razvilka.gaze")

#: Forks (and text.undo, which ends one), the renderers' layouts, the daemon's state (paused or not), and
#: (1.5) the settings the person changes (dwell, rest).
SUBSCRIBE = ("fork.", "text.undo.", "render.layout.", "daemon.status.", "config.state.")
#: The settings of ``config.state`` (protocol 1.5) the adapter applies at once.
GAZE_SETTINGS = ("inputs.gaze.dwell_ms", "inputs.gaze.rest_ms")
#: Layouts kept for forks the adapter has not seen open yet (a late joiner, a reordering).
PENDING_LAYOUTS = 8


class GazeAdapter:
    """One gaze source on the bus. ``run(stop)`` until ``stop`` is set."""

    def __init__(self, cfg: GazeConfig, client: BusClient, calibration: Calibration | None = None, *,
                 lsl: bool = False) -> None:
        from razvilka.inputs.lslrecord import GazeRecord

        self.cfg = cfg
        self.record = GazeRecord(cfg, calibration) if lsl else None  # --lsl: samples and markers for LabRecorder
        self.client = client
        self.calibration = calibration
        self.tracker = GazeTracker(cfg, calibration)
        self.stream: GazeStream | None = None
        self.channel_map: ChannelMap | None = None
        self.pending: dict[str, Layout] = {}
        self.forks = ForkTracker()  # which fork is open (the pure tracker below knows only what it is told)
        self.state = "starting"
        self.last_detail = ""
        self.lost = False
        self.last_data = time.monotonic()
        self.errors: list[ProtocolError] = []  # every problem reported, newest last (for logs and tests)
        self.paused = False  # the daemon says it is paused (a rest is not asked for again)
        self.rests = 0       # pauses asked for by looking away

    # ------------------------------------------------------------------ status
    def status(self, state: SourceState, detail: str = "") -> None:
        """Publish SourceStatus when the state or its reason changes (no repeats while retrying)."""
        if (state, detail) == (self.state, self.last_detail):
            return
        self.state, self.last_detail = state, detail
        self.client.state = "ok" if state in ("ok", "recovered") else state
        level = logging.INFO if state in ("ok", "recovered", "stopped") else logging.WARNING
        log.log(level, "gaze %s: %s", state, detail)
        self.client.publish(SourceStatus(source=self.cfg.name, state=state, detail=detail),
                            subtopic=(self.cfg.name,))

    def problem(self, exc: ProtocolError, state: SourceState = "error") -> None:
        self.errors.append(exc)
        del self.errors[:-50]
        self.status(state, str(exc))

    # ------------------------------------------------------------------ publishing
    def publish(self, events: list[GazeEvent]) -> None:
        fork_id = self.tracker.fork_id
        if fork_id is None:
            return
        name = self.cfg.name
        body: Focus | Confirm
        for e in events:
            if isinstance(e, FocusEvent):
                body = Focus(index=e.index, source=name, confidence=round(e.confidence, 4),
                             dwell=None if e.dwell is None else round(e.dwell, 4), x=e.x, y=e.y, kind="gaze",
                             target=e.target)
            elif isinstance(e, ConfirmEvent):
                log.info("dwell confirmed %s of fork %s", e.target or f"candidate {e.index}", fork_id)
                # Without an index the daemon confirms this source's focus (just published, same
                # candidate) by its "dwell" rule; with one (confirm_index) it decides that candidate,
                # also by "dwell" (an index with no posterior is a decision, not EEG evidence).
                # Any other target is always named: a paused daemon takes only a confirm of cmd:resume.
                body = Confirm(source=name, confidence=round(e.confidence, 4),
                               index=e.index if self.cfg.confirm_index else None, kind="gaze", target=e.target)
            elif isinstance(e, RestEvent):
                if self.paused:
                    continue
                self.rests += 1
                log.info("no gaze on the screen for %.1f s: resting (pause)", e.away_s)
                self.client.publish(Command(command="pause", source=name, text="rest"), subtopic=(name,))
                continue
            else:  # pragma: no cover - GazeEvent has three kinds
                continue
            self.client.publish(body, fork_id=fork_id, subtopic=(name,))

    # ------------------------------------------------------------------ the bus side
    def on_message(self, msg: Message) -> None:
        body, fork_id = msg.body, msg.header.fork_id
        if isinstance(body, DaemonStatus):
            self.paused = body.state == "paused"
            return
        if isinstance(body, ConfigState):
            self.apply_settings(body)
            return
        what = self.forks.update(msg)
        fork = self.forks.fork
        if what in ("open", "reopen") and fork is not None:
            letters = {lt.ch: lt.prob for lt in fork.body.letters} if self.cfg.cascade else None
            self.tracker.open_fork(fork.fork_id, {c.index: c.prob for c in fork.candidates}, letters)
            layout = self.pending.pop(fork.fork_id, None)
            self.pending.clear()
            if layout is not None:
                self.on_layout(fork.fork_id, layout)
        elif what in ("decided", "undone"):
            self.tracker.close_fork(self.forks.ended)
        elif isinstance(body, Layout) and fork_id:
            if self.cfg.renderer and body.renderer != self.cfg.renderer:
                return
            if fork_id == self.tracker.fork_id:
                self.on_layout(fork_id, body)
            elif self.paused and self.tracker.fork_id is None and self.forks.is_stale(fork_id):
                # paused between forks (none is open): the renderer's Resume names the last fork, and
                # the daemon takes cmd:resume for any fork it opened, so a dwell there still resumes
                self.tracker.open_fork(fork_id)
                self.on_layout(fork_id, body)
            else:
                self.pending[fork_id] = body
                while len(self.pending) > PENDING_LAYOUTS:
                    self.pending.pop(next(iter(self.pending)))

    def apply_settings(self, state: ConfigState) -> None:
        """The person changed dwell or rest (protocol 1.5 ``config.state`` names it in ``changed``): it holds from
        now on, the dwell under way included (with cascading dwell, the open fork keeps its thresholds: the
        next fork has the new ones). Other settings, and a state that changed none of these, leave the
        adapter's own configuration as it started (the file the daemon saves changes to)."""
        if state.changed not in GAZE_SETTINGS:
            return
        name = state.changed.rsplit(".", 1)[1]
        value = state.values.get(state.changed)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return
        self.cfg = msgspec.structs.replace(self.cfg, **{name: type(getattr(self.cfg, name))(value)})
        self.tracker.cfg = self.cfg
        self.tracker.dwell.dwell_ms = self.cfg.dwell_ms
        if not self.cfg.cascade:
            self.tracker.dwell.thresholds = {}  # every target's dwell is dwell_ms
        log.info("gaze: %s = %s (changed by the person)", state.changed, value)

    def on_layout(self, fork_id: str, layout: Layout) -> None:
        try:
            hitmap = HitMap.from_layout(layout, self.cfg.fuzzy_radius_px, self.tracker.k)
        except ProtocolError as exc:
            self.problem(ProtocolError(exc.code, f"layout of fork {fork_id} from {layout.renderer!r}: {exc.detail}"))
            return
        self.tracker.set_layout(hitmap)
        if self.state == "error" and self.errors and self.errors[-1].code == ErrorCode.BAD_LAYOUT:
            self.status("ok", f"layout of fork {fork_id} from {layout.renderer!r} accepted")

    async def bus_loop(self, stop: asyncio.Event) -> None:
        try:
            for msg in await self.client.snapshot(timeout=1.0):
                self.on_message(msg)
        except ProtocolError as exc:
            log.info("no snapshot (%s); following live messages only", exc)
        while not stop.is_set():
            live = await self.client.recv(timeout=0.2)
            if live is not None:
                self.on_message(live)

    # ------------------------------------------------------------------ the stream side
    async def open_stream(self) -> bool:
        from razvilka.inputs.gaze.stream import GazeStream

        assert self.channel_map is not None
        try:
            self.stream = await asyncio.to_thread(GazeStream.open, self.cfg, self.channel_map)
        except ProtocolError as exc:
            self.problem(exc, "lost" if self.lost else "error")
            return False
        self.last_data = time.monotonic()
        cal = (f"calibrated ({self.calibration.user}, {self.calibration.summary()['mean_spread_px']} px spread)"
               if self.calibration is not None else "uncalibrated")
        self.status("recovered" if self.lost else "ok", f"{self.stream.describe()}; {cal}")
        self.lost = False
        return True

    def mark_lost(self, why: str) -> None:
        self.lost = True
        self.publish(self.tracker.drop())
        self.status("lost", f"{ErrorCode.DEVICE_LOST.name}: {why}")

    def drain(self) -> None:
        """Pull what the inlet holds, run the pipeline, publish; notice loss and recovery."""
        assert self.stream is not None
        now = time.monotonic()
        try:
            raw = self.stream.pull()
        except ProtocolError as exc:  # unrecoverable (no source_id): re-resolve
            self.stream.close()
            self.stream = None
            self.mark_lost(exc.detail)
            return
        if raw is None:
            if not self.lost and now - self.last_data > self.cfg.lost_after_ms / 1000:
                self.mark_lost(f"no samples for {self.cfg.lost_after_ms:.0f} ms")
            return
        self.last_data = now
        if self.lost:
            self.lost = False
            self.status("recovered", f"samples flow again from {self.stream.describe()}")
        if now - self.stream.clock_checked > self.cfg.clock_refresh_s:
            self.stream.refresh_clock(timeout=0.05)
        events = self.tracker.feed(raw)
        if self.record is not None:
            self.record.push(raw, events, self.tracker, self.stream.info.nominal_srate())
        self.publish(events)

    async def stream_loop(self, stop: asyncio.Event) -> None:
        try:
            self.channel_map = ChannelMap.from_config(self.cfg)
        except ProtocolError as exc:  # nothing can be read with this map: say so and stay up
            self.problem(exc)
            await stop.wait()
            return
        poll = self.cfg.poll_ms / 1000
        while not stop.is_set():
            if self.stream is None and not await self.open_stream():
                await _wait(stop, self.cfg.retry_s)
                continue
            self.drain()
            await _wait(stop, poll)

    # ------------------------------------------------------------------ life cycle
    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self.bus_loop(stop), name="gaze-bus"),
                 asyncio.create_task(self.stream_loop(stop), name="gaze-stream")]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                failure = task.exception() if task in done else None
                if failure is not None:
                    raise failure  # a bug: fail loudly, after cleaning up
        finally:
            stop.set()
            await cancel_and_wait((*tasks, waiter))
            self.publish(self.tracker.drop())
            if self.stream is not None:
                self.stream.close()
            if self.record is not None:
                self.record.close()
            self.status("stopped", "adapter stopped")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def load_calibration(cfg: GazeConfig) -> Calibration | None:
    """The user's stored calibration, or None (missing or unreadable files are logged, not fatal)."""
    try:
        path = calibration_path(cfg)
    except ProtocolError as exc:
        log.warning("%s", exc)
        return None
    if not path.is_file():
        log.info("no gaze calibration at %s; using default_spread_px = %g", path, cfg.default_spread_px)
        return None
    try:
        return Calibration.load(path)
    except ProtocolError as exc:
        log.warning("%s; running uncalibrated", exc)
        return None


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream-name", help="LSL stream name (default from config: Tobii)")
    parser.add_argument("--stream-type", help="LSL stream type (default from config: Eyetracker)")
    parser.add_argument("--source-id", help="LSL source_id of the tracker to use")
    parser.add_argument("--dwell-ms", type=int, help="dwell time that confirms (0 = focus only)")
    parser.add_argument("--cascade", action="store_true", default=None, help="shorter dwell for likely words")
    parser.add_argument("--rest-ms", type=float, help="no gaze on the screen this long pauses (0 = never)")
    parser.add_argument("--user", help="whose calibration to use or make (default: $USER)")
    parser.add_argument("--lsl", action="store_true",
                        help="also publish the gaze samples and fixation/dwell markers over LSL (docs/research.md)")
    parser.add_argument("--calibrate", action="store_true",
                        help="show calibration targets full screen, measure offset and spread, store them, exit")


def config_from_args(cfg: GazeConfig, args: argparse.Namespace) -> GazeConfig:
    changes = {key: getattr(args, attr) for key, attr in (
        ("stream_name", "stream_name"), ("stream_type", "stream_type"), ("source_id", "source_id"),
        ("dwell_ms", "dwell_ms"), ("cascade", "cascade"), ("rest_ms", "rest_ms"), ("user", "user"),
    ) if getattr(args, attr, None) is not None}
    return msgspec.structs.replace(cfg, **changes)


def run(config: Config, args: argparse.Namespace) -> int:
    cfg = config_from_args(config.inputs.gaze, args)
    if getattr(args, "calibrate", False):
        return calibrate(cfg)
    return asyncio.run(_main(config, cfg, lsl=bool(getattr(args, "lsl", False))))


async def _main(config: Config, cfg: GazeConfig, *, lsl: bool = False) -> int:
    stop = stop_event()
    try:
        client = BusClient.from_config(cfg.name, config.bus, role="input", subscribe=list(SUBSCRIBE))
    except (OSError, ProtocolError) as exc:
        log.error("cannot join the bus: %s (is the daemon or `razvilka bus` running?)", exc)
        return 1
    async with client:
        if not await client.wait_connected(5.0):  # PUB drops what it sends before the proxy subscribes
            log.warning("the bus did not answer within 5 s; going on (early events may be lost)")
        await GazeAdapter(cfg, client, load_calibration(cfg), lsl=lsl).run(stop)
    return 0


def calibrate(cfg: GazeConfig) -> int:
    """The calibration routine from the command line: prints a table, stores the result."""
    from razvilka.inputs.gaze.calibration import TkTargetDisplay, run_routine
    from razvilka.inputs.gaze.stream import GazeStream

    try:
        path = calibration_path(cfg)
        stream = GazeStream.open(cfg)
        print(f"gaze stream: {stream.describe()}")
        try:
            display = TkTargetDisplay()
            cal = run_routine(stream, display, cfg)
        finally:
            stream.close()
    except ProtocolError as exc:
        print(f"razvilka input gaze --calibrate: {exc}")
        return 1
    w, h = cal.screen_px
    print(f"{'target (px)':>16} {'offset (px)':>16} {'spread (px)':>12} {'samples':>8}")
    for r in cal.regions:
        print(f"{r.target[0] * w:7.0f},{r.target[1] * h:7.0f}  {r.offset[0] * w:+7.1f},{r.offset[1] * h:+7.1f}"
              f"  {r.spread_px:11.1f} {r.samples:8d}")
    print(f"summary: {cal.summary()}")
    print(f"stored in {cal.save(path)}")
    return 0
