"""pdist: forward and forward+backward vs torch (flax.linen has no pdist).

``python benchmarks/run.py distance [--quick]``.  Rows of standard normal points
(``p = 2`` then takes the GEMM form of ``jaxlayers._lowering.distance``), the
same points with one duplicated row (its pair patched from the exact difference),
a cluster of three equal rows (the exact reference behind the guard), ``p = 1``
(the reference), and a batch of point sets through ``vmap``.  Forward+backward is a jitted ``vjp`` of the
distances with a fixed cotangent; torch does ``autograd.grad`` with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from harness import Table, compile_seconds, time_row

from jaxlayers import functional as F


def _row(table: Table, name: str, x: np.ndarray, p: float, iters: int, batched: bool = False) -> None:
    """Forward and forward+backward rows of ``F.pdist`` on ``x`` ``(N, M)``, or with ``batched`` on
    a batch of point sets ``(B, N, M)`` through ``vmap`` against one ``torch.pdist`` per set (torch
    has no batched pdist)."""
    pairs = x.shape[-2] * (x.shape[-2] - 1) // 2
    ct = np.random.default_rng(1).normal(size=x.shape[:-2] + (pairs,)).astype(np.float32)
    xj, ctj = jnp.asarray(x), jnp.asarray(ct)
    fn = jax.vmap(lambda a: F.pdist(a, p)) if batched else (lambda a: F.pdist(a, p))
    fwd = jax.jit(fn)
    fb = jax.jit(lambda a, c: jax.vjp(fn, a)[1](c)[0])
    c_fwd, c_fb = compile_seconds(fwd, xj), compile_seconds(fb, xj, ctj)
    sets, cts = (x, ct) if batched else (x[None], ct[None])
    xts = [torch.from_numpy(a) for a in sets]
    xgs = [a.clone().requires_grad_(True) for a in xts]
    tcts = [torch.from_numpy(c) for c in cts]

    def torch_fb():
        return [torch.autograd.grad(torch.pdist(a, p), a, c) for a, c in zip(xgs, tcts)]

    note = "torch: one pdist per set" if batched else ""
    t = time_row(lambda: fwd(xj).block_until_ready(), None, lambda: [torch.pdist(a, p) for a in xts], iters=iters)
    table.add(f"{name} fwd", t[0], None, t[2], c_fwd, note=note)
    t = time_row(lambda: fb(xj, ctj).block_until_ready(), None, torch_fb, iters=iters)
    table.add(f"{name} fwd+bwd", t[0], None, t[2], c_fb, note=note)


def run(table: Table, quick: bool) -> None:
    sizes = [(512, 32)] if quick else [(1024, 64), (2048, 64)]
    iters = 3 if quick else 10
    rng = np.random.default_rng(0)
    for n, m in sizes:
        x = rng.normal(size=(n, m)).astype(np.float32)
        _row(table, f"pdist p=2 {n}x{m}", x, 2.0, iters)
        dup = x.copy()
        dup[-1] = dup[0]
        _row(table, f"pdist p=2 {n}x{m} (a duplicated row)", dup, 2.0, iters)
        dup[-2] = dup[0]
        _row(table, f"pdist p=2 {n}x{m} (three equal rows: exact form)", dup, 2.0, iters)
        _row(table, f"pdist p=1 {n}x{m}", x, 1.0, iters)
    sets = (4, 128, 32) if quick else (8, 512, 64)
    _row(table, "vmap(pdist) p=2 {}x{}x{}".format(*sets), rng.normal(size=sets).astype(np.float32), 2.0, iters,
         batched=True)
