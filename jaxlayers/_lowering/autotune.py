"""Measure candidate lowerings on the running machine and keep the fastest (private).

A lowering that wins on some machines and loses on others is never a fixed
rule: :func:`choose` times every candidate (compiled forward + backward on
random inputs of the traced shapes) the first time a key is seen, picks the
fastest, and caches the choice per process and, when
``jaxlayers.config.autotune_cache_file()`` names a file, on disk (JSON, keyed by
machine and JAX version).  Measuring happens at trace time, outside the trace
(``jax.ensure_compile_time_eval``), as ``torch.backends.cudnn.benchmark`` does
on a layer's first call.  With autotuning off (the default; ``JAXLAYERS_AUTOTUNE=1``
turns it on) the first candidate (the reference) is chosen without measuring.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import config

_cache: dict[str, str] = {}
_lock = threading.Lock()
_disk_loaded: set[str] = set()


def _cpu() -> str:
    """The CPU's model name and a digest of its feature flags (``/proc/cpuinfo``; the platform's
    processor string elsewhere): an AVX2 and an AVX-512 machine must not share timings."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        flags = info.get("flags") or info.get("Features") or ""
        return f"{info.get('model name', '')}|{hashlib.sha1(flags.encode()).hexdigest()[:10]}"
    except (OSError, ValueError):
        return platform.processor()


@functools.lru_cache(maxsize=1)
def _machine() -> str:
    return (f"{platform.machine()}|{_cpu()}|{jax.default_backend()}|{jax.devices()[0].device_kind}"
            f"|jax{jax.__version__}")


def _load(path: str) -> None:
    if path in _disk_loaded:
        return
    _disk_loaded.add(path)
    try:
        with open(path) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return
    if isinstance(stored, dict):
        _cache.update({k: v for k, v in stored.items() if isinstance(v, str)})


def _save(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(_cache, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:  # a read-only cache location only loses the on-disk copy
        try:
            os.remove(tmp)
        except OSError:
            pass


def _time(fn: Callable, args: Sequence[Any], repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _fwd_bwd(fn: Callable) -> Callable:
    def run(*args):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(jnp.ones_like(y))

    return jax.jit(run)


def choose(key: Sequence[Any], candidates: dict[str, Callable], shapes: Sequence[tuple[tuple[int, ...], Any]],
           repeats: int = 5, forward_only: bool = False) -> str:
    """The name of the fastest of ``candidates`` (each ``fn(*arrays) -> array``) on
    inputs of ``shapes`` (``(shape, dtype)`` pairs), timed forward + backward, or with
    ``forward_only`` the forward alone (for a custom JVP's primal, which runs only when
    not differentiated).

    The first candidate is the default (the reference, except where the lowering is the
    default, such as the norms' forward): it is chosen without measuring when autotuning
    is off, and it wins ties (another must be at least 10 % faster).
    """
    names = list(candidates)
    if not config.get_autotune() or len(names) == 1:
        return names[0]
    full_key = json.dumps([_machine(), *[str(k) for k in key]])
    path = config.autotune_cache_file()
    with _lock:
        if path:
            _load(path)
        if full_key in _cache and _cache[full_key] in candidates:
            return _cache[full_key]
    rng = np.random.default_rng(0)
    with jax.ensure_compile_time_eval():
        args = [jnp.asarray(rng.standard_normal(s), d) for s, d in shapes]
        times = {name: _time(jax.jit(fn) if forward_only else _fwd_bwd(fn), args, repeats)
                 for name, fn in candidates.items()}
    best = names[0]
    for name in names[1:]:
        if times[name] < 0.9 * times[best]:
            best = name
    with _lock:
        _cache[full_key] = best
        if path:
            _save(path)
    return best


def clear() -> None:
    """Forget every decision made in this process (the disk cache is kept)."""
    with _lock:
        _cache.clear()
        _disk_loaded.clear()
