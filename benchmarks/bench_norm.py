"""Normalisation benchmarks: jaxlayers vs flax.linen vs torch, forward and
forward+backward (gradient of ``sum(y * g)`` for a fixed random cotangent ``g``, passed as an argument),
float32, one run.

flax.linen is run with its defaults (``use_fast_variance=True``: E[x²]−E[x]²,
which fails the large-offset check) and, for BatchNorm/LayerNorm, also with
``use_fast_variance=False`` (two-pass, stable like ours).  flax's GroupNorm and
RMSNorm normalise the last axis, so they get a channels-last copy of the input.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import torch
from harness import ChannelsLast, Table, compile_seconds, time_interleaved

from jaxlayers import nn


def _fwd_bwd_jax(module, variables, kw, mutable):
    """jitted forward, and gradient of ``sum(y * g)`` for a random cotangent ``g`` passed as an
    argument (closed over, it is a constant that XLA folds into whatever it can, differently
    for each program: flax's BatchNorm backward then skipped its sum over ``g``)."""

    def loss(params, x, g):
        out = module.apply({**variables, "params": params}, x, **kw, **({"mutable": mutable} if mutable else {}))
        y = out[0] if mutable else out
        return jnp.sum(y * g)

    fwd = jax.jit(lambda v, x: module.apply(v, x, **kw, **({"mutable": mutable} if mutable else {})))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return fwd, grad


def _bench_pair(table, name, jl, flax, torch_mod, x_jl, x_flax, x_torch, iters, rounds=4):
    """jaxlayers, flax and torch taking turns for ``rounds`` rounds of ``iters`` calls;
    each keeps its best round's median (the machine is shared: this damps load spikes)."""
    fwd, grad, comp = {}, {}, {}
    for tag, (module, kw, mutable, x) in {"jl": jl + (x_jl,), "flax": flax + (x_flax,)}.items():
        v = module.init(jax.random.PRNGKey(0), x, **kw)
        g = jnp.asarray(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
        f, gr = _fwd_bwd_jax(module, v, kw, mutable)
        comp[tag] = compile_seconds(f, v, x)
        fwd[tag] = lambda f=f, v=v, x=x: f(v, x)
        grad[tag] = lambda gr=gr, p=v.get("params", {}), x=x, g=g: gr(p, x, g)
    xt = x_torch if isinstance(x_torch, torch.Tensor) else torch.tensor(x_torch)
    xg = xt.clone().requires_grad_(True)
    gt = torch.tensor(np.random.default_rng(1).normal(size=tuple(x_torch.shape)).astype(np.float32))

    def torch_fwd():
        with torch.no_grad():
            return torch_mod(xt)

    def torch_fb():
        y = torch_mod(xg)
        (y * gt).sum().backward()

    t = time_interleaved({**fwd, "torch": torch_fwd}, iters=iters * rounds, rounds=rounds, best_round=True)
    table.add(f"{name} fwd", t["jl"], t["flax"], t["torch"], comp["jl"], comp["flax"])
    t = time_interleaved({**grad, "torch": torch_fb}, iters=iters * rounds, rounds=rounds, best_round=True)
    table.add(f"{name} fwd+bwd", t["jl"], t["flax"], t["torch"])


def run(table: Table, quick: bool = False) -> None:
    iters = 5 if quick else 20
    n, c, h = (8, 32, 16) if quick else (32, 64, 32)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, c, h, h)).astype(np.float32)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    train = {"train": True}
    for fast in (True, False):
        tag = "" if fast else " (flax two-pass)"
        _bench_pair(table, f"BatchNorm2d train {n}x{c}x{h}x{h}{tag}",
                    (nn.BatchNorm2d(c), train, ["batch_stats"]),
                    (fnn.BatchNorm(use_running_average=False, axis=1, momentum=0.9, epsilon=1e-5,
                                   use_fast_variance=fast), {}, ["batch_stats"]),
                    torch.nn.BatchNorm2d(c).float().train(), x, x, x, iters)
        _bench_pair(table, f"BatchNorm2d train {n}x{c}x{h}x{h}{tag} [channels_last]",
                    (ChannelsLast(nn.BatchNorm2d(c)), train, ["batch_stats"]),
                    (fnn.BatchNorm(use_running_average=False, axis=-1, momentum=0.9, epsilon=1e-5,
                                   use_fast_variance=fast), {}, ["batch_stats"]),
                    torch.nn.BatchNorm2d(c).float().train(), x_last, x_last,
                    torch.from_numpy(x).contiguous(memory_format=torch.channels_last), iters)
        _bench_pair(table, f"LayerNorm((C,H,W)) {n}x{c}x{h}x{h}{tag}",
                    (nn.LayerNorm((c, h, h)), {}, None),
                    (fnn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=(1, 2, 3), use_fast_variance=fast),
                     {}, None),
                    torch.nn.LayerNorm((c, h, h)).float(), x, x, x, iters)
    _bench_pair(table, f"GroupNorm(8, C) {n}x{c}x{h}x{h}",
                (nn.GroupNorm(8, c), {}, None), (fnn.GroupNorm(num_groups=8), {}, None),
                torch.nn.GroupNorm(8, c).float(), x, x_last, x, iters)
    _bench_pair(table, f"GroupNorm(8, C) {n}x{c}x{h}x{h} [channels_last]",
                (ChannelsLast(nn.GroupNorm(8, c)), {}, None), (fnn.GroupNorm(num_groups=8), {}, None),
                torch.nn.GroupNorm(8, c).float(), x_last, x_last,
                torch.from_numpy(x).contiguous(memory_format=torch.channels_last), iters)
    _bench_pair(table, f"RMSNorm(W) {n}x{c}x{h}x{h}",
                (nn.RMSNorm(h), {}, None), (fnn.RMSNorm(epsilon=float(np.finfo(np.float32).eps)), {}, None),
                torch.nn.RMSNorm(h).float(), x, x, x, iters)
