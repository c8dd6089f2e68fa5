"""How processes stop (one signal helper for all of them) and the CLI's refusal of a count of 0."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

import razvilka.cli as razvilka_cli
from razvilka.runtime import STOP_SIGNALS, serve_until_signal, stop_event


@pytest.mark.parametrize("sig", STOP_SIGNALS)
async def test_a_stop_signal_sets_the_event_and_calls_then(sig: signal.Signals) -> None:
    called: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        stop = stop_event(then=lambda: called.append("then"))
        assert not stop.is_set()
        os.kill(os.getpid(), sig)  # a real signal to this process
        await asyncio.wait_for(stop.wait(), 5)
        assert called == ["then"]
    finally:
        for s in STOP_SIGNALS:
            loop.remove_signal_handler(s)


async def test_serve_until_signal_returns_the_exit_status() -> None:
    loop = asyncio.get_running_loop()

    async def main(stop: asyncio.Event) -> int:
        loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
        return 3

    try:
        assert await serve_until_signal(main) == 3
    finally:
        for s in STOP_SIGNALS:
            loop.remove_signal_handler(s)


def test_stop_event_off_the_main_thread_is_unwired_not_an_error() -> None:
    async def in_thread() -> bool:
        return stop_event().is_set()

    def run() -> bool:
        return asyncio.run(in_thread())

    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(run).result(timeout=10) is False


@pytest.mark.parametrize(("value", "why"), [("0", "must be 1 or more, got 0"), ("-3", "must be 1 or more, got -3"),
                                        ("many", "expected a whole number, got 'many'")])
def test_daemon_k_below_one_is_an_error_not_ignored(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], value: str, why: str) -> None:
    monkeypatch.setattr(razvilka_cli, "AREAS", ("razvilka.daemon.cli",))
    with pytest.raises(SystemExit) as exit_:
        razvilka_cli.build_parser().parse_args(["daemon", "--k", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--k" in err and why in err
    args = razvilka_cli.build_parser().parse_args(["daemon", "--k", "3"])
    assert args.k == 3
