"""The bus clock: Lab Streaming Layer's ``local_clock`` in integer nanoseconds.

On Linux ``pylsl.local_clock()`` is CLOCK_MONOTONIC, so ``time.monotonic_ns()``
gives the same value without a ctypes call per message. Elsewhere we ask liblsl.
"""
from __future__ import annotations

import sys
import time

if sys.platform.startswith("linux"):
    def now_ns() -> int:
        """Bus time in ns (== pylsl.local_clock() * 1e9 on Linux)."""
        return time.monotonic_ns()
else:  # pragma: no cover - exercised only off Linux
    import pylsl

    def now_ns() -> int:
        return int(pylsl.local_clock() * 1e9)


def now_s() -> float:
    """Bus time in seconds, as pylsl reports it."""
    return now_ns() / 1e9


def unix_to_bus_offset_s() -> float:
    """Seconds to add to a Unix timestamp (BrainFlow's clock) to land on the bus clock."""
    return now_ns() / 1e9 - time.time()
