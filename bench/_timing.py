"""Timing helpers shared by the benchmarks: best-of-N per-call cost, interleaved runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call(
    fn: Callable[[], object],
    *,
    number: int,
    repeat: int = 7,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best (lowest) mean seconds per call over ``repeat`` batches of ``number`` calls.

    ``clock=time.process_time`` counts this process's CPU time only, which other
    processes on a shared machine disturb far less than wall time.
    """
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - start) / number)
    return best


def compare(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    *,
    number: int,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Per-call seconds of subject and baseline, measured alternately in the same run."""
    s = b = float("inf")
    for _ in range(rounds):
        s = min(s, per_call(subject, number=number, repeat=1, clock=clock))
        b = min(b, per_call(baseline, number=number, repeat=1, clock=clock))
    return s, b


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def paired(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    *,
    pairs: int,
    batch: int = 1,
    clock: Callable[[], float] = time.thread_time,
) -> tuple[float, float]:
    """Median per-call seconds of subject and baseline, timed in alternation.

    Each pair times ``batch`` calls of one, then of the other (the order flips every
    pair), so load from other processes hits both sides alike; medians ignore the
    batches that a context switch or a GC pass landed in.
    """
    s: list[float] = []
    b: list[float] = []
    for i in range(pairs):
        for fn, out in ((subject, s), (baseline, b)) if i % 2 else ((baseline, b), (subject, s)):
            start = clock()
            for _ in range(batch):
                fn()
            out.append((clock() - start) / batch)
    s.sort()
    b.sort()
    return s[len(s) // 2], b[len(b) // 2]
