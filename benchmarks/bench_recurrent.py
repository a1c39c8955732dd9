"""LSTM forward, and forward+backward: jaxlayers ``nn.LSTM`` vs flax.linen's own ``nn.RNN(nn.LSTMCell)``
(stacked) vs torch ``nn.LSTM`` (2 layers, hidden 256, sequence 128, batch 32, float32;
``--quick``: hidden 64, sequence 32, batch 8).  Loss = sum of squared outputs; gradients
w.r.t. every parameter and the input.  Compile time = trace + lower + compile of the step.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

from harness import Table, compile_seconds, time_row

from jaxlayers import nn


class FlaxLSTM(fnn.Module):
    """Stacked unidirectional LSTM from flax.linen's own pieces (batch-major input)."""

    hidden: int
    num_layers: int

    @fnn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = fnn.RNN(fnn.LSTMCell(self.hidden))(x)
        return x


def run(table: Table, quick: bool = False) -> None:
    import torch

    layers = 2
    hidden, seq, batch = (64, 32, 8) if quick else (256, 128, 32)
    feat = hidden
    iters = 10
    x = np.random.default_rng(0).normal(size=(batch, seq, feat)).astype(np.float32)
    xj = jnp.asarray(x)

    jl = nn.LSTM(feat, hidden, num_layers=layers, batch_first=True)
    vj = jax.jit(lambda k: jl.init(k, xj, train=False))(jax.random.key(0))

    def jl_loss(v, x):
        return jnp.sum(jl.apply(v, x, train=False)[0] ** 2)

    jl_step = jax.jit(jax.value_and_grad(jl_loss, argnums=(0, 1)))
    jl_c = compile_seconds(jl_step, vj, xj)

    fl = FlaxLSTM(hidden, layers)
    vf = jax.jit(lambda k: fl.init(k, xj))(jax.random.key(0))

    def fl_loss(v, x):
        return jnp.sum(fl.apply(v, x) ** 2)

    fl_step = jax.jit(jax.value_and_grad(fl_loss, argnums=(0, 1)))
    fl_c = compile_seconds(fl_step, vf, xj)

    tl = torch.nn.LSTM(feat, hidden, num_layers=layers, batch_first=True, dtype=torch.float32)
    xt = torch.tensor(x, requires_grad=True)

    def torch_step():
        tl.zero_grad(set_to_none=True)
        xt.grad = None
        loss = (tl(xt)[0] ** 2).sum()
        loss.backward()
        return loss

    jl_t, fl_t, tt = time_row(lambda: jl_step(vj, xj), lambda: fl_step(vf, xj), torch_step, iters=iters)
    table.add(f"LSTM {layers}x{hidden} L={seq} N={batch} fwd+bwd", jl_t, fl_t, tt, jl_c, fl_c,
              note="flax = nn.RNN(nn.LSTMCell) stacked")

    jl_fwd = jax.jit(lambda v, x: jl.apply(v, x, train=False)[0])
    fl_fwd = jax.jit(fl.apply)
    jl_c, fl_c = compile_seconds(jl_fwd, vj, xj), compile_seconds(fl_fwd, vf, xj)

    def torch_fwd():
        with torch.inference_mode():
            return tl(xt)[0]

    jl_t, fl_t, tt = time_row(lambda: jl_fwd(vj, xj), lambda: fl_fwd(vf, xj), torch_fwd, iters=iters)
    table.add(f"LSTM {layers}x{hidden} L={seq} N={batch} fwd", jl_t, fl_t, tt, jl_c, fl_c,
              note="flax = nn.RNN(nn.LSTMCell) stacked")
