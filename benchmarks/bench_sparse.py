"""Embedding / EmbeddingBag: forward+backward vs flax.linen.Embed and torch.

``python benchmarks/run.py sparse [--quick]``.  Every JAX row is a jitted
``value_and_grad`` w.r.t. the table of ``sum(out * cotangent)``; torch does the same
with ``backward``.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import torch

from harness import Table, compile_seconds, time_row

from jaxlayers import nn


def _jax_step(module, variables, *args, **kwargs):
    def loss(v, *a):
        out = module.apply(v, *a, **kwargs)
        return jnp.sum(out * jnp.cos(out))

    fn = jax.jit(jax.value_and_grad(loss))
    return fn, (variables, *args)


def _torch_step(module, *args, **kwargs):
    def step(*a):
        module.zero_grad(set_to_none=True)
        out = module(*a, **kwargs)
        (out * torch.cos(out)).sum().backward()
        return module.weight.grad

    return step


def run(table: Table, quick: bool) -> None:
    num, dim = (10_000, 64) if quick else (50_000, 128)
    batch, seq = (32, 64) if quick else (64, 128)
    iters = 5 if quick else 20
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(num, dim)).astype(np.float32)
    idx = rng.integers(0, num, size=(batch, seq)).astype(np.int32)

    # ---- Embedding, padding_idx=None
    ours = nn.Embedding(num, dim)
    v_ours = {"params": {"weight": jnp.asarray(weight)}}
    flax_m = linen.Embed(num, dim)
    v_flax = {"params": {"embedding": jnp.asarray(weight)}}
    f_ours, a_ours = _jax_step(ours, v_ours, jnp.asarray(idx))
    f_flax, a_flax = _jax_step(flax_m, v_flax, jnp.asarray(idx))
    c_ours, c_flax = compile_seconds(f_ours, *a_ours), compile_seconds(f_flax, *a_flax)
    tm = torch.nn.Embedding(num, dim)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(weight))
    t_idx = torch.from_numpy(idx.astype(np.int64))
    step = _torch_step(tm, t_idx)
    table.add(f"Embedding {num}x{dim} idx {batch}x{seq} fwd+bwd",
              *time_row(lambda: f_ours(*a_ours), lambda: f_flax(*a_flax), lambda: step(t_idx), iters=iters),
              c_ours, c_flax)

    # ---- Embedding with padding_idx and scale_grad_by_freq (no flax equivalent)
    ours = nn.Embedding(num, dim, padding_idx=0, scale_grad_by_freq=True)
    f_ours, a_ours = _jax_step(ours, v_ours, jnp.asarray(idx))
    c_ours = compile_seconds(f_ours, *a_ours)
    tm = torch.nn.Embedding(num, dim, padding_idx=0, scale_grad_by_freq=True)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(weight))
    step = _torch_step(tm, t_idx)
    table.add("Embedding padding_idx+scale_grad_by_freq fwd+bwd",
              *time_row(lambda: f_ours(*a_ours), torch=lambda: step(t_idx), iters=iters), c_ours,
              note="no flax equivalent")

    # ---- EmbeddingBag with offsets (variable bag sizes)
    lengths = rng.integers(0, 2 * seq, size=batch)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    flat = rng.integers(0, num, size=int(lengths.sum())).astype(np.int32)
    t_flat, t_off = torch.from_numpy(flat.astype(np.int64)), torch.from_numpy(offsets.astype(np.int64))
    for mode in ("sum", "mean", "max"):
        ours = nn.EmbeddingBag(num, dim, mode=mode)
        f_ours, a_ours = _jax_step(ours, v_ours, jnp.asarray(flat), jnp.asarray(offsets))
        c_ours = compile_seconds(f_ours, *a_ours)
        tm = torch.nn.EmbeddingBag(num, dim, mode=mode)
        with torch.no_grad():
            tm.weight.copy_(torch.from_numpy(weight))
        step = _torch_step(tm, t_flat, t_off)
        table.add(f"EmbeddingBag {mode} {batch} bags ({flat.size} idx) fwd+bwd",
                  *time_row(lambda: f_ours(*a_ours), torch=lambda: step(t_flat, t_off), iters=iters), c_ours,
                  note="offsets; no flax equivalent")
