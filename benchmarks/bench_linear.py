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
from harness import Table, compile_seconds, time_interleaved

from jaxlayers import nn


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
        rounds = 6
        for kind, fj, ff, ft in (("fwd", fwd_j, fwd_f, torch_fwd), ("fwd+bwd", bwd_j, bwd_f, torch_bwd)):
            cj, cf = compile_seconds(fj, vj, x), compile_seconds(ff, vf, x)
            t = time_interleaved({"jl": lambda fj=fj: fj(vj, x), "flax": lambda ff=ff: ff(vf, x),
                                  "torch": lambda ft=ft: ft(xt)}, iters=iters * rounds, rounds=rounds, best_round=True)
            table.add(f"{name} {kind}", t["jl"], t["flax"], t["torch"], cj, cf)
