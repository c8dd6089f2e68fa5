"""No dead end when paused between forks (everything real: daemon and model, the browser view in
headless Chromium behind the real bridge, the real gaze adapter on a real LSL stream).

A keyboard pauses right after a decision, so the daemon holds the next fork back and none is open.
The page's rest layout then names the last fork it knew (a layout needs a fork id), the bridge lets
that Resume-only layout through, the gaze adapter hit-tests it, and a dwell on Resume resumes: the
next fork opens and is chosen from by gaze."""
from __future__ import annotations

from typing import Any

import pytest
from bus_helpers import body_of
from test_gaze_targets import Loop, browser, open_page  # noqa: F401 - the fixtures
from test_gaze_targets import loop as loop  # the fixture this test takes (re-exported: not unused)

from razvilka.protocol.messages import Command, DaemonStatus, ForkDecided, Layout, Select


@pytest.fixture
def start_daemon(start_daemon: Any) -> Any:
    """The shared daemon without pregenerated next forks: a decided fork's successor is then opened by the
    writer, which waits while paused, so a pause right after a choice leaves no fork open (as a pause
    while the model writes on its own does)."""
    async def start(**sections: dict[str, Any]) -> Any:
        sections["daemon"] = {**sections.get("daemon", {}), "pregenerate": False}
        return await start_daemon(**sections)
    return start


@pytest.mark.model
@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_paused_between_forks_a_dwell_on_resume_resumes(loop: Loop) -> None:
    fork_id, _ = await loop.fork(0, what="the first fork")
    await loop.layout_with(fork_id, 0)
    keys = await loop.daemon.client("keyboard", subscribe=["daemon.error."], role="input")
    mark = await loop.mark()
    # one sender's order is kept: the pause is read right after the choice, before any next fork opens
    keys.publish(Select(index=0, source="keyboard", kind="key"), fork_id=fork_id)
    keys.publish(Command(command="pause", source="keyboard"))
    await loop.wait(lambda m: isinstance(m.body, ForkDecided) and m.header.fork_id == fork_id, "the decision", mark)
    status = await loop.wait(lambda m: isinstance(m.body, DaemonStatus) and m.body.state == "paused", "paused", mark)
    await loop.page.locator("#rest").wait_for(state="visible")
    # no fork is open, and the page's rest layout names the decided one: Resume, nothing else
    rest = await loop.wait(lambda m: isinstance(m.body, Layout) and m.header.fork_id == fork_id
                           and [t.target for t in m.body.targets] == ["cmd:resume"], "the rest layout",
                           loop.log.index(status))
    assert isinstance(rest.body, Layout) and not rest.body.boxes
    assert not [m for m in loop.log[mark:] if m.type == "fork.open"], "a fork opened while paused"
    mark = await loop.dwell(fork_id, "cmd:resume", since=loop.log.index(status))
    await loop.wait(lambda m: isinstance(m.body, DaemonStatus) and m.body.state != "paused", "resumed", mark)
    await loop.page.locator("#rest").wait_for(state="hidden")
    # the held-back fork opens now, and gaze chooses from it
    nxt, _ = await loop.fork(mark, what="the fork after resuming")
    assert nxt != fork_id
    mark = await loop.dwell(nxt, 1, since=len(loop.log))
    dec = body_of(await loop.wait(lambda m: isinstance(m.body, ForkDecided) and m.header.fork_id == nxt, "a decision",
                                  mark), ForkDecided)
    assert dec.index == 1 and dec.sources == ["gaze"]
