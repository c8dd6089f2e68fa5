"""``daemon.error`` throttling (daemon/service.py ``Daemon._error``): an error the daemon repeats by itself
(a retry that fails again, as while the model server is down) goes out at once, then at most once per
``ERROR_REPEAT_S`` saying how many it stands for; an answer to a request always goes out."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from daemon_fixtures import daemon_config

from razvilka.daemon.service import ERROR_REPEAT_S, Repeats
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import DaemonError, Select


def test_the_first_goes_out_repeats_are_counted_and_told_with_the_next() -> None:
    r = Repeats(10.0)
    down, other = (ErrorCode.MODEL_ERROR, "server down"), (ErrorCode.BAD_CONFIG, "bad file")
    assert r.admit(down, 0.0) == 0                                   # the first: at once
    assert [r.admit(down, t) for t in (0.5, 1.0, 9.9)] == [None] * 3  # the same within 10 s: held back
    assert r.admit(other, 1.0) == 0                                  # another error is not held by it
    assert r.admit(down, 10.0) == 3                                  # 10 s on: out, standing for 3
    assert r.admit(down, 12.0) is None
    assert r.admit(down, 25.0) == 1                                  # a quiet spell: out again at once
    assert r.admit(down, 200.0) == 0                                 # long forgotten: a first again
    assert r.admit(other, 200.0) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_daemon_whose_model_server_is_down_says_so_at_once_then_every_ten_seconds(
        ipc_bus: Any, ipc_clients: Any, runtime_dir: Path) -> None:
    """A real daemon on the llama-server backend, its server not running: it retries every 2 s, and the
    bus gets the refusal at once, then once more after 10 s saying how often it failed meanwhile. Two
    identical bad requests in between each get their answer."""
    from razvilka.daemon.cli import build_daemon

    watch = await ipc_clients("watch", subscribe=["daemon.error."])
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    config = daemon_config(runtime_dir, model={"backend": "llama-server", "url": url, "timeout_s": 5.0},
                           daemon={"profile": False})
    d = build_daemon(config, host_bus=False, resume=False)  # on the test's bus, which the watcher joined first
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    starting = asyncio.create_task(d.start())
    seen: list[tuple[float, DaemonError]] = []
    try:
        async def errors_until(n: int, timeout: float) -> None:
            deadline = loop.time() + timeout
            while sum(e.ref_id is None for _, e in seen) < n:
                assert not starting.done(), starting
                msg = await watch.recv(max(0.0, deadline - loop.time()))
                assert msg is not None, f"the daemon said {len(seen)} errors, not {n}: {[e for _, e in seen]}"
                if isinstance(msg.body, DaemonError):  # heartbeats come too
                    seen.append((loop.time(), msg.body))

        await errors_until(1, 30)
        at, first = seen[0]
        assert at - t0 < 10 and first.code == ErrorCode.MODEL_ERROR and url in first.message
        assert "repeated" not in first.message
        # identical bad requests are each answered (ref_id), however often they come
        asks = [watch.publish(Select(index=0, source="keyboard"), fork_id="no-such-fork") for _ in range(2)]
        await errors_until(2, ERROR_REPEAT_S + 15)
        answers = [e for _, e in seen if e.ref_id is not None]
        assert [e.ref_id for e in answers] == [h.id for h in asks] and answers[0].message == answers[1].message
        at2, second = next((t, e) for t, e in seen[1:] if e.ref_id is None)
        assert second.code == first.code and second.message.startswith(f"{first.message} (repeated ")
        held = int(second.message.removeprefix(f"{first.message} (repeated ").removesuffix(" times)"))
        assert held >= 3  # retries 2 s apart, held back for 10 s
        assert at2 - at >= ERROR_REPEAT_S - 0.5, (at2 - at)
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await asyncio.wait_for(d.close(), timeout=60)
