"""Shared timing harness: medians of jit-compiled JAX calls and torch calls on the
same machine in one run, compile times, and a table of ratios.

Each ``benchmarks/bench_<family>.py`` defines ``run(table: Table, quick: bool)``
and adds rows; ``benchmarks/run.py`` runs the families asked for and prints the
table.  A row compares jaxlayers with flax.linen and torch:

    ratio jl/flax = median(jaxlayers) / median(flax.linen)   (< 1: jaxlayers faster)
    ratio jl/torch = median(jaxlayers) / median(torch)
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax


def machine() -> str:
    """The CPU model and its vector extensions (from /proc/cpuinfo, as ``lscpu`` shows them), so that
    every recorded figure names the machine it came from."""
    import os
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    vec = sorted(f for f in flags if f.startswith(("avx", "sse4", "fma", "amx")))
    return f"{model}, {os.cpu_count()} cores, {' '.join(vec) or 'no vector flags read'}"


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def time_interleaved(calls: dict[str, Callable[[], Any]], iters: int = 20, rounds: int = 5,
                     best_round: bool = False) -> dict[str, float]:
    """Median wall time (s) per call of each zero-argument callable, taking turns.

    Each of ``rounds`` rounds runs every callable ``max(1, iters // rounds)`` times
    in turn (after one warm-up call each), so that load drifting on a shared machine
    hits every contender alike; JAX results are blocked on.  The order reverses
    every round: on this machine whichever of two JAX programs reading the same
    input runs second measured up to 25 % faster.  Use it for the contenders of
    one row (jaxlayers, flax.linen, torch).  With ``best_round`` each contender
    reports its fastest round's median instead of the median of all its calls
    (damps load spikes that hit one round).
    """
    per_round = max(1, iters // rounds)
    for fn in calls.values():
        _block(fn())
    times: dict[str, list[list[float]]] = {k: [] for k in calls}
    for r in range(rounds):
        for k, fn in (list(calls.items()) if r % 2 == 0 else list(calls.items())[::-1]):
            times[k].append([])
            for _ in range(per_round):
                t0 = time.perf_counter()
                _block(fn())
                times[k][-1].append(time.perf_counter() - t0)
    if best_round:
        return {k: min(statistics.median(t) for t in v) for k, v in times.items()}
    return {k: statistics.median([t for rnd in v for t in rnd]) for k, v in times.items()}


class ChannelsLast:
    """A flax.linen module's ``init``/``apply`` traced in jaxlayers' channels-last mode
    (``config.memory_format("channels_last")``), for benchmarks that jit them."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from jaxlayers import config

        with config.memory_format("channels_last"):
            return getattr(self.module, method)(*args, **kwargs)

    def init(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("init", *args, **kwargs)

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("apply", *args, **kwargs)


def compile_seconds(fn: Callable, *args: Any) -> float:
    """Trace + lower + compile time (s) of a ``jax.jit``-wrapped ``fn`` for ``args``."""
    t0 = time.perf_counter()
    fn.lower(*args).compile()
    return time.perf_counter() - t0


def time_row(jaxlayers: Callable[[], Any], flax: Callable[[], Any] | None = None,
             torch: Callable[[], Any] | None = None, iters: int = 20,
             rounds: int = 5) -> tuple[float, float | None, float | None]:
    """(jaxlayers, flax, torch) median seconds of one row's zero-argument calls, taking turns
    (:func:`time_interleaved`); ``None`` for a contender not given."""
    calls = {k: fn for k, fn in (("jaxlayers", jaxlayers), ("flax", flax), ("torch", torch)) if fn is not None}
    t = time_interleaved(calls, iters=iters, rounds=min(rounds, iters))
    return t["jaxlayers"], t.get("flax"), t.get("torch")


@dataclasses.dataclass
class Row:
    name: str
    jaxlayers: float
    flax: float | None = None
    torch: float | None = None
    compile_s: float | None = None
    flax_compile_s: float | None = None
    note: str = ""


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, name: str, jaxlayers: float, flax: float | None = None, torch: float | None = None,
            compile_s: float | None = None, flax_compile_s: float | None = None, note: str = "") -> Row:
        row = Row(name, jaxlayers, flax, torch, compile_s, flax_compile_s, note)
        self.rows.append(row)
        print(self.format_row(row), flush=True)
        return row

    HEADER = (f"{'benchmark':<46} {'jaxlayers ms':>12} {'flax ms':>9} {'torch ms':>9} "
              f"{'jl/flax':>8} {'jl/torch':>9} {'compile s':>10} {'flax comp s':>11}  note")

    @staticmethod
    def format_row(r: Row) -> str:
        def ms(v):
            return f"{v * 1e3:.3f}" if v is not None else "-"

        def ratio(a, b):
            return f"{a / b:.3f}" if b else "-"

        def s(v):
            return f"{v:.2f}" if v is not None else "-"

        return (f"{r.name:<46} {ms(r.jaxlayers):>12} {ms(r.flax):>9} {ms(r.torch):>9} "
                f"{ratio(r.jaxlayers, r.flax):>8} {ratio(r.jaxlayers, r.torch):>9} "
                f"{s(r.compile_s):>10} {s(r.flax_compile_s):>11}  {r.note}")

    def render(self) -> str:
        return "\n".join([self.HEADER, "-" * len(self.HEADER)] + [self.format_row(r) for r in self.rows])
