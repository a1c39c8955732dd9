"""Each CPU lowering that is on by default, against its own reference, on the running machine.

``python benchmarks/run.py lowering [--quick]``.  A lowering stays on by default only where it
wins on any x86-64 CPU (docs/engine.md), so this family re-checks the claim wherever it runs: one
row per lowering at a real size, forward and (where the lowering has a derivative of its own)
forward+backward.  The ``jaxlayers`` column is the setting ``"auto"``; the note gives the
reference setting's time and ``auto/ref`` (below 1: the lowering wins); ``torch`` is torch's
time for the same call.  Both JAX programs are compiled ahead of time under their setting and
timed taking turns with torch (``harness.time_interleaved``).  Forward+backward is the gradient
of ``sum(f(x) * ct)`` with respect to every array argument.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF

from harness import Table, time_interleaved

from jaxlayers import config
from jaxlayers import functional as F


def _jax_calls(fn: Callable, arrays: list, backward: bool) -> tuple[dict, dict]:
    """``{setting: zero-argument call}`` and ``{setting: compile seconds}`` of ``fn`` (or of its
    gradient against a fixed cotangent) compiled under ``"auto"`` and ``"reference"``."""
    import time

    args = [jnp.asarray(a) for a in arrays]
    out = jax.eval_shape(fn, *args)
    ct = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32))
    if backward:  # the cotangent an argument: a constant one is folded through by XLA while compiling
        args.append(ct)

        def run(*a):
            return jax.grad(lambda *b: jnp.sum(fn(*b) * a[-1]), argnums=tuple(range(len(a) - 1)))(*a[:-1])
    else:
        run = fn
    calls, seconds = {}, {}
    for setting in ("auto", "reference"):
        with config.lowering(setting):
            t0 = time.perf_counter()
            exe = jax.jit(run).lower(*args).compile()
            seconds[setting] = time.perf_counter() - t0
        calls[setting] = lambda exe=exe: exe(*args)
    return calls, seconds


def _torch_call(fn: Callable, arrays: list, backward: bool) -> Callable:
    ts = [torch.from_numpy(a) for a in arrays]
    if not backward:
        return lambda: fn(*ts)
    ts = [t.clone().requires_grad_(True) for t in ts]
    ct = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(fn(*ts).shape)).astype(np.float32))
    return lambda: torch.autograd.grad((fn(*ts) * ct).sum(), ts)


def _row(table: Table, name: str, jfn: Callable, tfn: Callable, arrays: list, iters: int,
         backward: bool = True) -> None:
    for bwd in ((False, True) if backward else (False,)):
        calls, seconds = _jax_calls(jfn, arrays, bwd)
        calls["torch"] = _torch_call(tfn, arrays, bwd)
        t = time_interleaved(calls, iters=iters, rounds=min(5, iters))
        ratio = t["auto"] / t["reference"]
        table.add(f"lowering: {name} {'fwd+bwd' if bwd else 'fwd'}", t["auto"], None, t["torch"], seconds["auto"],
                  note=f"reference {t['reference'] * 1e3:.3f} ms, auto/ref {ratio:.3f}, "
                       f"ref compile {seconds['reference']:.2f} s")


def _cases(rng: Any, quick: bool) -> list[tuple[str, Callable, Callable, list, bool]]:
    def a(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n = 2 if quick else 8
    s = 28 if quick else 56
    norm_bn = lambda F_: (lambda x, w, b: F_.batch_norm(x, None, None, w, b, training=True)[0]
                          if F_ is F else F_.batch_norm(x, None, None, w, b, training=True))
    return [
        ("conv_transpose2d 64->32 k4 s2", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
         lambda x, w: TF.conv_transpose2d(x, w, stride=2, padding=1), [a(n, 64, s // 2, s // 2), a(64, 32, 4, 4, scale=0.05)],
         True),
        ("conv_transpose1d 64->64 k4 s2", lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1),
         lambda x, w: TF.conv_transpose1d(x, w, stride=2, padding=1), [a(n, 64, 4 * s), a(64, 64, 4, scale=0.05)], True),
        ("depthwise conv2d 3x3 C=96", lambda x, w: F.conv2d(x, w, padding=1, groups=96),
         lambda x, w: TF.conv2d(x, w, padding=1, groups=96), [a(n, 96, s, s), a(96, 1, 3, 3, scale=0.3)], True),
        ("pointwise conv2d 256->64", lambda x, w: F.conv2d(x, w), lambda x, w: TF.conv2d(x, w),
         [a(n, 256, s, s), a(64, 256, 1, 1, scale=0.05)], True),
        ("conv2d 3x3 512->512 on 2x2 maps", lambda x, w: F.conv2d(x, w, padding=1),
         lambda x, w: TF.conv2d(x, w, padding=1), [a(n, 512, 2, 2), a(512, 512, 3, 3, scale=0.02)], True),
        ("layer_norm 512", lambda x, w, b: F.layer_norm(x, 512, w, b), lambda x, w, b: TF.layer_norm(x, (512,), w, b),
         [a(n, 128, 512), a(512), a(512)], True),
        ("group_norm 8 groups", lambda x, w, b: F.group_norm(x, 8, w, b), lambda x, w, b: TF.group_norm(x, 8, w, b),
         [a(n, 64, s // 2, s // 2), a(64), a(64)], True),
        ("batch_norm training", norm_bn(F), norm_bn(TF), [a(4 * n, 64, s // 2, s // 2), a(64), a(64)], True),
        ("rms_norm 64 over many rows", lambda x, w: F.rms_norm(x, 64, w), lambda x, w: TF.rms_norm(x, (64,), w),
         [a(4096 * n, 64), a(64)], True),
        ("interpolate bilinear x2", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
         lambda x: TF.interpolate(x, scale_factor=2, mode="bilinear"), [a(n, 64, s, s)], False),
        ("grid_sample bilinear", lambda x, g: F.grid_sample(x, g, align_corners=False),
         lambda x, g: TF.grid_sample(x, g, align_corners=False), [a(n, 16, 64, 64), a(n, 64, 64, 2, scale=0.6)],
         False),
        ("pdist p=2 1024x64" if not quick else "pdist p=2 256x64", lambda x: F.pdist(x), lambda x: torch.pdist(x),
         [a(256 if quick else 1024, 64)], True),
        ("max_pool2d 3x3 s2 p1", lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1),
         [a(n, 64, 2 * s, 2 * s)], True),
        ("avg_pool2d 3x3 s2 p1", lambda x: F.avg_pool2d(x, 3, 2, 1), lambda x: TF.avg_pool2d(x, 3, 2, 1),
         [a(n, 64, 2 * s, 2 * s)], True),
        ("adaptive_max_pool2d 7x7", lambda x: F.adaptive_max_pool2d(x, 7), lambda x: TF.adaptive_max_pool2d(x, 7),
         [a(n, 64, s, s)], True),
        ("adaptive_avg_pool2d 100->3", lambda x: F.adaptive_avg_pool2d(x, 3), lambda x: TF.adaptive_avg_pool2d(x, 3),
         [a(n, 64, 100, 100)], True),
        (f"lstm 1 layer H=256 T=128 N={n // 2}", lambda x, wi, wh, b: F.lstm(x, None, [wi, wh, b, b])[0],
         lambda x, wi, wh, b: torch._VF.lstm(x, (torch.zeros(1, n // 2, 256), torch.zeros(1, n // 2, 256)),
                                             [wi, wh, b, b], True, 1, 0.0, False, False, False)[0],
         [a(128, n // 2, 256), a(1024, 256, scale=0.06), a(1024, 256, scale=0.06), a(1024, scale=0.1)], True),
    ]


def run(table: Table, quick: bool) -> None:
    iters = 4 if quick else 10
    rng = np.random.default_rng(0)
    for name, jfn, tfn, arrays, backward in _cases(rng, quick):
        _row(table, name, jfn, tfn, arrays, iters, backward)
