"""Shared timing and table helpers for the benchmark scripts (not part of the package).

Usage from a script in benchmarks/::

    from _timing import Timer, table, machine
    t = Timer(repeat=7)
    ms = t(lambda: fn(x))          # median wall time in milliseconds (after warm-up)
    print(table(["method", "ms", "img/s", "vs blurkit"], rows))
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch


class Timer:
    """Median wall-clock time of a callable, in milliseconds, after ``warmup`` untimed calls.

    On CUDA tensors pass ``sync=True`` so that each call is synchronised before the clock stops.
    """

    def __init__(self, repeat: int = 7, warmup: int = 2, sync: bool = False) -> None:
        self.repeat, self.warmup, self.sync = repeat, warmup, sync

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        if self.sync:
            torch.cuda.synchronize()
        times = []
        for _ in range(self.repeat):
            t0 = time.perf_counter()
            fn()
            if self.sync:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3


def bandwidth_bound_ms(x: torch.Tensor, timer: Timer | None = None) -> float:
    """Time to read ``x`` once and write a same-sized, preallocated buffer (a copy), in ms."""
    out = torch.empty_like(x)
    return (timer or Timer())(lambda: out.copy_(x))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as a GitHub-markdown table (floats with 3 significant digits)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def machine() -> str:
    """One line describing where the benchmark ran."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, {dev}")
