"""A paused daemon and a gaze stream (real model, real bus): the eyes go on moving while paused, so
focus samples are dropped and counted, not answered with an error several times a second; an
action that is not resume (a select, a confirm) is still refused, naming itself."""
from __future__ import annotations

import pytest
from daemon_fixtures import RunningDaemon, current_fork, next_of

from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import Confirm, DaemonError, DaemonStatus, Focus, ForkDecided, Select

pytestmark = pytest.mark.model


async def test_focus_while_paused_is_counted_quietly_other_inputs_are_refused(daemon: RunningDaemon) -> None:
    bus = await daemon.client("t", ["fork.", "daemon."])
    fork = await current_fork(bus)
    fid = fork.header.fork_id
    # a switch's pause (no rest), so daemon.status shows the counts in its detail
    bus.publish(Select(target="cmd:pause", source="pedal", kind="switch"), fork_id=fid)
    await next_of(bus, "daemon.status", where=lambda m: isinstance(m.body, DaemonStatus) and m.body.state == "paused")
    focus = [Focus(index=i % 3, source="gaze", kind="gaze", confidence=0.9) for i in range(20)]
    focus += [Focus(index=None, target=t, source="gaze", kind="gaze") for t in ("key:e", "cmd:more", "cmd:resume")] * 10
    for f in focus:  # 50 samples: a tenth of a second of a 500 Hz tracker
        bus.publish(f, fork_id=fid)
    refused = [bus.publish(Select(target="key:a", source="gaze", kind="gaze"), fork_id=fid),
               bus.publish(Confirm(target="cand:0", source="gaze", kind="gaze"), fork_id=fid)]
    errors: list[DaemonError] = []
    while len(errors) < 2:  # one sender's order is kept: an error for any focus would come first
        msg = await next_of(bus, "daemon.error", 20)
        assert isinstance(msg.body, DaemonError)
        errors.append(msg.body)
    assert [(e.code, e.ref_id) for e in errors] == [(int(ErrorCode.NOT_READY), m.id) for m in refused], errors
    assert all("paused" in e.message for e in errors)
    assert daemon.daemon.paused_focus == 50
    counted = "paused focus dropped: 50"
    status = await next_of(bus, "daemon.status", 10,
                           where=lambda m: isinstance(m.body, DaemonStatus) and counted in m.body.detail)
    assert isinstance(status.body, DaemonStatus) and status.body.state == "paused"
    # resume by a dwell: the fork takes focus and choices again, and no focus was counted since
    bus.publish(Confirm(target="cmd:resume", source="gaze", kind="gaze"), fork_id=fid)
    await next_of(bus, "daemon.status", where=lambda m: isinstance(m.body, DaemonStatus) and m.body.state != "paused")
    bus.publish(Focus(index=1, source="gaze", kind="gaze"), fork_id=fid)
    bus.publish(Select(index=1, source="pedal", kind="switch"), fork_id=fid)
    done = await next_of(bus, ForkDecided, 20, where=lambda m: m.header.fork_id == fid)
    assert done.body.index == 1
    assert daemon.daemon.paused_focus == 50
