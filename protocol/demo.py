"""``razvilka bus demo``: a scripted fork sequence, so the bus can be shown without the model.

It plays the daemon's part (status, auto text, forks, look-ahead, decisions, text state) and
a person's (focus, confirm) with made-up but plausible numbers.
"""
from __future__ import annotations

import asyncio
import itertools
import logging

from razvilka.protocol.client import BusClient
from razvilka.protocol.config import BusConfig
from razvilka.protocol.messages import (
    Candidate,
    Confirm,
    DaemonStatus,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Lookahead,
    Span,
    TextAuto,
    TextState,
)

log = logging.getLogger("razvilka.demo")

PROMPT = "The"
#: (words written automatically before the fork, candidates with probabilities and look-aheads, chosen index)
SCRIPT: list[tuple[list[str], list[tuple[str, float, str]], int]] = [
    ([], [("old", 0.34, "old ferry crossed"), ("small", 0.22, "small boat drifted"),
          ("last", 0.18, "last train left"), ("night", 0.09, "night was cold")], 0),
    (["ferry", "crossed", "the"], [("river", 0.41, "river at dawn"), ("bay", 0.2, "bay in silence"),
                                   ("lake", 0.16, "lake once more"), ("channel", 0.08, "channel slowly")], 0),
    (["at"], [("dawn", 0.38, "dawn, and the"), ("dusk", 0.3, "dusk as the lights"),
              ("noon", 0.12, "noon under a grey sky")], 1),
    ([",", "and", "the"], [("village", 0.33, "village woke to"), ("town", 0.27, "town fell quiet"),
                           ("harbor", 0.21, "harbor lights came on")], 2),
    (["lights", "came", "on", "to", "the", "sound", "of", "its"],
     [("horn", 0.44, "horn ."), ("bell", 0.25, "bell ringing twice"), ("engine", 0.15, "engine fading")], 0),
]


def _join(text: str, word: str) -> str:
    return text + word if word in {",", "."} else f"{text} {word}"


async def play(config: BusConfig, *, forks: int = 0, interval: float = 0.6,
               loop_forever: bool = False, leave_open: bool = False) -> int:
    """Publish the script; returns 0. Stops early (cleanly) on SIGINT/SIGTERM."""
    from razvilka.runtime import stop_event

    stop = stop_event()
    async with BusClient.from_config("demo", config, role="tool") as bus:
        if not await bus.wait_connected(5.0):
            log.warning("demo: the bus did not echo our probe; publishing anyway")
        steps = itertools.cycle(SCRIPT) if loop_forever else iter(SCRIPT[: forks or None])
        total = len(SCRIPT[: forks or None])
        text, spans = PROMPT, [Span(start=0, end=len(PROMPT), origin="prompt")]
        bus.publish(DaemonStatus(state="ready", model="demo-script", mode="demo", k=4))
        bus.publish(TextState(text=text, spans=spans))

        async def pause(seconds: float) -> bool:
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                return False
            return True

        for n, (auto, cands, chosen) in enumerate(steps, start=1):
            fork_id = f"demo-{n}"
            if auto:
                bus.publish(DaemonStatus(state="generating", model="demo-script", mode="demo", k=4))
                start = len(text)
                for word in auto:
                    text = _join(text, word)
                spans.append(Span(start=start, end=len(text), origin="model"))
                bus.publish(TextAuto(text=text[start:], words=auto, position=n))
            bus.publish(ForkOpen(
                candidates=[Candidate(index=i, word=w, prob=p) for i, (w, p, _) in enumerate(cands)],
                context=text, position=n, entropy=1.6, margin=round(cands[0][1] - cands[1][1], 3),
            ), fork_id=fork_id)
            bus.publish(DaemonStatus(state="waiting", model="demo-script", mode="demo", k=4))
            if await pause(interval / 2):
                break
            bus.publish(ForkLookahead(entries=[Lookahead(index=i, phrases=[la]) for i, (_, _, la) in enumerate(cands)],
                                      done=True), fork_id=fork_id)
            if leave_open and not loop_forever and n == total:
                break
            if await pause(interval / 2):
                break
            bus.publish(Focus(index=chosen, source="demo", confidence=0.9, kind="other"), fork_id=fork_id)
            bus.publish(Confirm(source="demo", index=chosen, kind="other"), fork_id=fork_id)
            word = cands[chosen][0]
            start = len(text)
            text = _join(text, word)
            spans.append(Span(start=start, end=len(text), origin="human"))
            bus.publish(ForkDecided(index=chosen, words=[word], sources=["demo"], rule="focus+confirm",
                                    latency_ms=interval * 1000, decision_id=f"demo-d{n}"), fork_id=fork_id)
            bus.publish(TextState(text=text, spans=list(spans), position=n))
            if await pause(interval):
                break
        else:
            if not leave_open:
                bus.publish(DaemonStatus(state="stopped", model="demo-script", mode="demo", k=4))
        await asyncio.sleep(0.3)  # let the last frames leave: close() uses linger=0
    return 0
