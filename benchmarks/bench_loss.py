"""Losses: jaxlayers vs optax (in the ``flax`` column) vs torch, float32, jit forward+backward.

* CrossEntropy with integer targets, mean: ``F.cross_entropy`` vs
  ``optax.softmax_cross_entropy_with_integer_labels(...).mean()`` (same maths: logsumexp minus the
  target's logit); torch's ``F.cross_entropy``.  Target jl/optax <= 1.05.
* CTC: ``F.ctc_loss`` (mean over target lengths) vs ``optax.ctc_loss`` (padding masks, its
  ``log_epsilon`` instead of -inf), torch's ``F.ctc_loss``.
* LinearCrossEntropy: ``F.linear_cross_entropy`` (chunked, checkpointed) vs the unfused
  ``cross_entropy(x @ w.T, t)`` in the optax column; the note gives the compiled temp memory of both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from harness import Table, compile_seconds, time_interleaved

from jaxlayers import functional as F


def _rounds(quick: bool) -> tuple[int, int]:
    """(rounds, calls per round): many short rounds, each contender keeps its best (shared machine)."""
    return (10, 10) if quick else (20, 20)


def _cross_entropy(table: Table, quick: bool) -> None:
    rounds, iters = _rounds(quick)
    for n, c in ([(512, 1000)] if quick else [(512, 1000), (4096, 1000), (256, 32000)]):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((n, c)), jnp.float32)
        t = jnp.asarray(rng.integers(0, c, n), jnp.int32)
        jl = jax.jit(jax.value_and_grad(lambda x: F.cross_entropy(x, t)))
        ox = jax.jit(jax.value_and_grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(x, t).mean()))
        xt = torch.from_numpy(np.array(x)).requires_grad_()
        tt = torch.from_numpy(np.array(t)).long()

        def torch_bwd():
            xt.grad = None
            torch.nn.functional.cross_entropy(xt, tt).backward()

        cj, co = compile_seconds(jl, x), compile_seconds(ox, x)
        tm = time_interleaved({"jl": lambda: jl(x), "optax": lambda: ox(x), "torch": torch_bwd},
                              iters=iters * rounds, rounds=rounds, best_round=True)
        table.add(f"CrossEntropy {n}x{c} f32 fwd+bwd", tm["jl"], tm["optax"], tm["torch"], cj, co,
                  note="flax column: optax.softmax_cross_entropy_with_integer_labels")


def _ctc(table: Table, quick: bool) -> None:
    rounds, iters = _rounds(quick)
    T, N, C, S = (50, 8, 20, 10) if quick else (100, 16, 30, 20)
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.standard_normal((T, N, C)), jnp.float32)
    tl = rng.integers(S // 2, S + 1, N)
    il = rng.integers(T - 10, T + 1, N)
    targets = rng.integers(1, C, (N, S))
    j_il, j_tl, j_t = (jnp.asarray(a, jnp.int32) for a in (il, tl, targets))

    def ours(logits):
        return F.ctc_loss(jax.nn.log_softmax(logits, -1), j_t, j_il, j_tl)

    def theirs(logits):
        lg = jnp.transpose(logits, (1, 0, 2))  # optax: (N, T, C)
        lpad = (jnp.arange(T)[None] >= j_il[:, None]).astype(jnp.float32)
        tpad = (jnp.arange(S)[None] >= j_tl[:, None]).astype(jnp.float32)
        return jnp.mean(optax.ctc_loss(lg, lpad, j_t, tpad) / jnp.maximum(j_tl, 1))

    jl, ox = jax.jit(jax.value_and_grad(ours)), jax.jit(jax.value_and_grad(theirs))
    lt = torch.from_numpy(np.array(logits)).requires_grad_()
    args = [torch.from_numpy(a).long() for a in (targets, il, tl)]

    def torch_bwd():
        lt.grad = None
        torch.nn.functional.ctc_loss(lt.log_softmax(-1), *args).backward()

    cj, co = compile_seconds(jl, logits), compile_seconds(ox, logits)
    tm = time_interleaved({"jl": lambda: jl(logits), "optax": lambda: ox(logits), "torch": torch_bwd},
                          iters=iters * rounds, rounds=rounds, best_round=True)
    table.add(f"CTCLoss T{T} N{N} C{C} S{S} f32 fwd+bwd", tm["jl"], tm["optax"], tm["torch"], cj, co,
              note="flax column: optax.ctc_loss")


def _linear_cross_entropy(table: Table, quick: bool) -> None:
    rounds, iters = _rounds(quick)
    n, c, h = (1024, 8000, 64) if quick else (4096, 32000, 64)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((n, h)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((c, h)) * 0.1, jnp.float32)
    t = jnp.asarray(rng.integers(0, c, n), jnp.int32)
    fused = jax.jit(jax.value_and_grad(lambda x, w: F.linear_cross_entropy(x, w, t), argnums=(0, 1)))
    unfused = jax.jit(jax.value_and_grad(lambda x, w: F.cross_entropy(x @ w.T, t), argnums=(0, 1)))
    cj, cu = compile_seconds(fused, x, w), compile_seconds(unfused, x, w)
    mem = {k: f.lower(x, w).compile().memory_analysis().temp_size_in_bytes / 2**20
           for k, f in (("fused", fused), ("unfused", unfused))}
    tm = time_interleaved({"fused": lambda: fused(x, w), "unfused": lambda: unfused(x, w)},
                          iters=iters * rounds // 2, rounds=rounds, best_round=True)
    table.add(f"LinearCrossEntropy {n}x{h}->{c} f32 fwd+bwd", tm["fused"], tm["unfused"], None, cj, cu,
              note=f"flax column: unfused; temp MiB fused {mem['fused']:.0f} vs unfused {mem['unfused']:.0f}")


def run(table: Table, quick: bool) -> None:
    _cross_entropy(table, quick)
    _ctc(table, quick)
    _linear_cross_entropy(table, quick)
