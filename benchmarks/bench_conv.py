"""Conv1d/Conv2d (3x3, 1x1, depthwise)/ConvTranspose2d: jaxlayers (NCHW) vs flax.linen (NHWC, its natural layout) vs torch.

Forward and forward+backward (grad w.r.t. parameters and input), all jit-compiled, float32.
The backward pulls back a fixed random cotangent ``g`` of the output's shape (``jax.vjp`` /
``y.backward(g)``), as training does: a constant all-ones cotangent (``sum(y)``) is not
representative and lets XLA special-case it.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import torch

from harness import ChannelsLast, Table, compile_seconds, time_interleaved
from jaxlayers import nn


def _jax_pair(model, x):
    """Jitted forward and forward+backward (vjp of a cotangent w.r.t. params and input) of a linen module."""
    variables = jax.jit(model.init)(jax.random.key(0), x)

    fwd = jax.jit(lambda v, x: model.apply(v, x))

    @jax.jit
    def bwd(v, x, g):
        y, vjp = jax.vjp(model.apply, v, x)
        return vjp(g)

    return variables, fwd, bwd


def _cotangent(shape, seed: int = 1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _torch_pair(module, x, g):
    xt = torch.from_numpy(np.array(x)).requires_grad_()
    gt = torch.from_numpy(np.array(g))

    def fwd():
        with torch.no_grad():
            return module(xt)

    def bwd():
        module.zero_grad(set_to_none=True)
        xt.grad = None
        module(xt).backward(gt)

    return fwd, bwd


def _case(table: Table, label: str, ours, flax_model, torch_module, x_nc, x_nhwc, iters: int) -> None:
    """jaxlayers in torch's layout and in channels-last mode (NHWC input, the same module),
    flax (NHWC) and torch taking turns; a row for each jaxlayers contender."""
    v, f, b = _jax_pair(ours, x_nc)
    _, fl, bl = _jax_pair(ChannelsLast(ours), x_nhwc)
    fv, ff, fb = _jax_pair(flax_model, x_nhwc)
    # one random cotangent, the same numbers in both layouts
    g_nc = _cotangent(jax.eval_shape(f, v, x_nc).shape)
    g_nhwc = jnp.moveaxis(g_nc, 1, -1)
    tf, tb = _torch_pair(torch_module, x_nc, g_nc)
    # compile first: the timed calls then hit jit's cache
    comp = {"jl": compile_seconds(f, v, x_nc), "cl": compile_seconds(fl, v, x_nhwc),
            "flax": compile_seconds(ff, fv, x_nhwc)}
    comp_b = {"jl": compile_seconds(b, v, x_nc, g_nc), "cl": compile_seconds(bl, v, x_nhwc, g_nhwc),
              "flax": compile_seconds(fb, fv, x_nhwc, g_nhwc)}
    t = time_interleaved({"jl": lambda: f(v, x_nc), "cl": lambda: fl(v, x_nhwc), "flax": lambda: ff(fv, x_nhwc),
                          "torch": tf}, iters=iters)
    tb_ = time_interleaved({"jl": lambda: b(v, x_nc, g_nc), "cl": lambda: bl(v, x_nhwc, g_nhwc),
                            "flax": lambda: fb(fv, x_nhwc, g_nhwc), "torch": tb}, iters=iters)
    for k, suffix in (("jl", ""), ("cl", " [channels_last]")):
        table.add(f"{label} fwd{suffix}", t[k], t["flax"], t["torch"], comp[k], comp["flax"], note="flax NHWC")
        table.add(f"{label} fwd+bwd{suffix}", tb_[k], tb_["flax"], tb_["torch"], comp_b[k], comp_b["flax"],
                  note="vjp(random g): params+input")


def run(table: Table, quick: bool) -> None:
    batch = 8 if quick else 32
    iters = 5 if quick else 20
    rng = np.random.default_rng(0)

    x = jnp.asarray(rng.standard_normal((batch, 64, 32, 32)), jnp.float32)
    _case(table, f"Conv2d 3x3 64->64 32x32 b{batch}",
          nn.Conv2d(64, 64, 3, padding=1), fnn.Conv(64, (3, 3), padding=1),
          torch.nn.Conv2d(64, 64, 3, padding=1), x, jnp.transpose(x, (0, 2, 3, 1)), iters)

    xp = jnp.asarray(rng.standard_normal((batch // 4, 256, 28, 28)), jnp.float32)
    _case(table, f"Conv2d 1x1 256->64 28x28 b{batch // 4}",
          nn.Conv2d(256, 64, 1), fnn.Conv(64, (1, 1)),
          torch.nn.Conv2d(256, 64, 1), xp, jnp.transpose(xp, (0, 2, 3, 1)), iters)

    xd = jnp.asarray(rng.standard_normal((batch // 4, 96, 56, 56)), jnp.float32)
    _case(table, f"Conv2d 3x3 depthwise 96 56x56 b{batch // 4}",
          nn.Conv2d(96, 96, 3, padding=1, groups=96), fnn.Conv(96, (3, 3), padding=1, feature_group_count=96),
          torch.nn.Conv2d(96, 96, 3, padding=1, groups=96), xd, jnp.transpose(xd, (0, 2, 3, 1)), iters)

    x1 = jnp.asarray(rng.standard_normal((batch, 64, 256)), jnp.float32)
    _case(table, f"Conv1d k3 64->64 L256 b{batch}",
          nn.Conv1d(64, 64, 3, padding=1), fnn.Conv(64, (3,), padding=1),
          torch.nn.Conv1d(64, 64, 3, padding=1), x1, jnp.transpose(x1, (0, 2, 1)), iters)

    xt = jnp.asarray(rng.standard_normal((batch, 64, 16, 16)), jnp.float32)
    _case(table, f"ConvTranspose2d 4x4 s2 64->32 16x16 b{batch}",
          nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), fnn.ConvTranspose(32, (4, 4), strides=(2, 2), padding="SAME"),
          torch.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), xt, jnp.transpose(xt, (0, 2, 3, 1)), iters)
