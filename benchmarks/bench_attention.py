"""TransformerEncoderLayer forward+backward: jaxlayers vs a flax.linen layer built on
``nn.MultiHeadDotProductAttention`` vs torch (d_model 256, 4 heads, sequence 128, batch 32;
``--quick``: sequence 32, batch 8). Dropout off (eval numerics, gradients on)."""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

from harness import Table, compile_seconds, time_row

from jaxlayers import nn


class FlaxEncoderLayer(fnn.Module):
    """Post-norm encoder layer in plain flax.linen (same maths as torch's default)."""

    d_model: int
    nhead: int
    dim_feedforward: int

    @fnn.compact
    def __call__(self, x):
        y = fnn.MultiHeadDotProductAttention(self.nhead, qkv_features=self.d_model, deterministic=True)(x, x)
        x = fnn.LayerNorm(epsilon=1e-5)(x + y)
        h = fnn.Dense(self.d_model)(jax.nn.relu(fnn.Dense(self.dim_feedforward)(x)))
        return fnn.LayerNorm(epsilon=1e-5)(x + h)


def run(table: Table, quick: bool = False) -> None:
    import torch

    d, h, ff = 256, 4, 1024
    seq, batch = (32, 8) if quick else (128, 32)
    iters = 10
    x = np.random.default_rng(0).normal(size=(batch, seq, d)).astype(np.float32)
    xj = jnp.asarray(x)

    jl = nn.TransformerEncoderLayer(d, h, ff, dropout=0.0, batch_first=True)
    vj = jl.init(jax.random.key(0), xj, train=False)

    def jl_loss(v, x):
        return jnp.sum(jl.apply(v, x, train=False) ** 2)

    jl_step = jax.jit(jax.value_and_grad(jl_loss, argnums=(0, 1)))
    jl_c = compile_seconds(jl_step, vj, xj)

    fl = FlaxEncoderLayer(d, h, ff)
    vf = fl.init(jax.random.key(0), xj)

    def fl_loss(v, x):
        return jnp.sum(fl.apply(v, x) ** 2)

    fl_step = jax.jit(jax.value_and_grad(fl_loss, argnums=(0, 1)))
    fl_c = compile_seconds(fl_step, vf, xj)

    tl = torch.nn.TransformerEncoderLayer(d, h, ff, dropout=0.0, batch_first=True, dtype=torch.float32)
    xt = torch.tensor(x, requires_grad=True)

    def torch_step():
        tl.zero_grad()
        out = tl(xt)
        (out ** 2).sum().backward()
        return out

    t_jl, t_fl, t_t = time_row(lambda: jl_step(vj, xj), lambda: fl_step(vf, xj), torch_step, iters=iters)
    table.add(f"TransformerEncoderLayer fwd+bwd E{d} H{h} L{seq} N{batch}", t_jl, t_fl, t_t, jl_c, fl_c,
              note="float32, dropout 0")
