"""Timing helpers shared by the benchmarks: best-of-N per-call cost, interleaved runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """Best (lowest) mean seconds per call over ``repeat`` batches of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def compare(
    subject: Callable[[], object], baseline: Callable[[], object], *, number: int, rounds: int = 5
) -> tuple[float, float]:
    """Per-call seconds of subject and baseline, measured alternately in the same run."""
    s = b = float("inf")
    for _ in range(rounds):
        s = min(s, per_call(subject, number=number, repeat=1))
        b = min(b, per_call(baseline, number=number, repeat=1))
    return s, b


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"
