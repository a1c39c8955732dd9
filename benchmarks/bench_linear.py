"""Linear: jaxlayers.nn.Linear vs flax.linen.Dense vs torch.nn.Linear.

jit forward and forward+backward (gradients w.r.t. input and parameters), plus
compile times.  The (out, in) weight layout is contracted with
``lax.dot_general`` on its last dim, so it should cost nothing against Dense's
(in, out) kernel: expect jl/flax ~ 1.0.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import torch
from harness import Table, compile_seconds, time_jax, time_torch

from jaxlayers import nn


def _interleaved(fns, args, iters: int, rounds: int = 6) -> list[float]:
    """Best-of-``rounds`` medians, interleaving the candidates (in alternating order) so that
    load bursts on a shared machine hit them alike."""
    best = [float("inf")] * len(fns)
    order = list(range(len(fns)))
    for _ in range(rounds):
        for i in order:  # the order flips every round: whoever runs first is not favoured
            best[i] = min(best[i], time_jax(fns[i], *args[i], iters=iters))
        order.reverse()
    return best


def _cases(quick: bool):
    return [(64, 256, 256)] if quick else [(256, 1024, 1024), (64, 256, 256)]


def run(table: Table, quick: bool) -> None:
    iters = 5 if quick else 10
    for batch, fin, fout in _cases(quick):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((batch, fin)), jnp.float32)
        jl, fl = nn.Linear(fin, fout), fnn.Dense(fout)
        vj = jl.init(jax.random.key(0), x)
        vf = fl.init(jax.random.key(0), x)

        def loss(model):
            return lambda v, x: jnp.sum(model.apply(v, x) ** 2)

        fwd_j, fwd_f = jax.jit(jl.apply), jax.jit(fl.apply)
        bwd_j = jax.jit(jax.grad(loss(jl), argnums=(0, 1)))
        bwd_f = jax.jit(jax.grad(loss(fl), argnums=(0, 1)))

        tm = torch.nn.Linear(fin, fout).float()
        xt = torch.from_numpy(np.array(x)).requires_grad_()

        def torch_fwd(x):
            with torch.no_grad():
                return tm(x)

        def torch_bwd(x):
            tm.zero_grad(set_to_none=True)
            x.grad = None
            (tm(x) ** 2).sum().backward()

        name = f"Linear {batch}x{fin}->{fout} f32"
        cj, cf = compile_seconds(fwd_j, vj, x), compile_seconds(fwd_f, vf, x)
        tj, tf = _interleaved([fwd_j, fwd_f], [(vj, x), (vf, x)], iters)
        table.add(f"{name} fwd", tj, tf, time_torch(torch_fwd, xt, iters=iters), cj, cf)
        cj, cf = compile_seconds(bwd_j, vj, x), compile_seconds(bwd_f, vf, x)
        tj, tf = _interleaved([bwd_j, bwd_f], [(vj, x), (vf, x)], iters)
        table.add(f"{name} fwd+bwd", tj, tf, time_torch(torch_bwd, xt, iters=iters), cj, cf)
