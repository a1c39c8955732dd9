"""Resampling benchmarks: F.interpolate (bilinear x2, a x8 segmentation head,
bicubic x2; forward, and forward+backward) against torch and
jax.image.resize, F.grid_sample (bilinear and bicubic, zeros; forward, and
forward+backward) against torch and jax.scipy.ndimage.map_coordinates (bicubic:
jaxlayers' reference setting), contenders taking turns
(``harness.time_interleaved``).  The "flax" column holds the JAX alternative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF
from jax.scipy.ndimage import map_coordinates

from harness import Table, compile_seconds, time_interleaved
from jaxlayers import config
from jaxlayers import functional as F


def _fb(fn):
    """jit(forward + backward w.r.t. every argument) with a given cotangent."""
    def f(args, ct):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(ct)
    return jax.jit(f)


def _torch_fb(fn, tensors, ct):
    def run():
        for t in tensors:
            t.grad = None
        y = fn(*tensors)
        y.backward(ct)
        return y
    return run


def _row(table, name, jf, af, tf, args, tag, iters, rng, note, backward=True):
    out = jax.eval_shape(jf, *args)
    ct = jnp.asarray(rng.normal(size=out.shape), out.dtype)
    if backward:
        j, a = _fb(jf), _fb(af)
        comp = compile_seconds(j, args, ct)
        tts = [torch.tensor(np.asarray(v), requires_grad=True) for v in args]
        calls = {"jl": lambda: j(args, ct), "alt": lambda: a(args, ct),
                 "torch": _torch_fb(tf, tts, torch.tensor(np.asarray(ct)))}
    else:
        j, a = jax.jit(jf), jax.jit(af)
        comp = compile_seconds(j, *args)
        tts = [torch.tensor(np.asarray(v)) for v in args]
        calls = {"jl": lambda: j(*args), "alt": lambda: a(*args), "torch": lambda: tf(*tts)}
    t = time_interleaved(calls, iters=iters, rounds=max(2, iters // 4))
    table.add(f"{name} {'fwd+bwd' if backward else 'fwd'} {tag}", t["jl"], t["alt"], t["torch"], comp, note=note)


def run(table: Table, quick: bool) -> None:
    iters = 8 if quick else 20
    rng = np.random.default_rng(0)

    shape = (32, 64, 32, 32)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    for backward in (False, True):
        _row(table, "interpolate bilinear x2",
             lambda a: F.interpolate(a, scale_factor=2, mode="bilinear"),
             lambda a: jax.image.resize(a, (a.shape[0], a.shape[1], 2 * a.shape[2], 2 * a.shape[3]), "bilinear"),
             lambda t: TF.interpolate(t, scale_factor=2, mode="bilinear"),
             (x,), "x".join(map(str, shape)), iters, rng, "alt: jax.image.resize", backward)
    # a segmentation head: class scores at stride 8 up to the 224x224 input, and a bicubic x2
    for mode, sshape, size in (("bilinear", (8, 21, 28, 28), 224), ("bicubic", (4, 3, 224, 224), 448)):
        xs = jnp.asarray(rng.normal(size=sshape), jnp.float32)
        for backward in (False, True):
            _row(table, f"interpolate {mode} to {size}",
                 lambda a, mode=mode, size=size: F.interpolate(a, size=size, mode=mode),
                 lambda a, mode=mode, size=size: jax.image.resize(a, a.shape[:2] + (size, size), mode),
                 lambda t, mode=mode, size=size: TF.interpolate(t, size=size, mode=mode),
                 (xs,), "x".join(map(str, sshape)), iters, rng,
                 "alt: jax.image.resize" + (" (Keys a=-0.5, not torch's -0.75)" if mode == "bicubic" else ""),
                 backward)

    gshape = (8, 16, 64, 64)
    xg = jnp.asarray(rng.normal(size=gshape), jnp.float32)
    grid = jnp.asarray(rng.uniform(-1.1, 1.1, size=(gshape[0], 64, 64, 2)), jnp.float32)

    def mapc(a, g):
        # pixel coordinates as grid_sample(align_corners=False) computes them
        hh, ww = a.shape[2:]
        cy = ((g[..., 1] + 1) * hh - 1) / 2
        cx = ((g[..., 0] + 1) * ww - 1) / 2
        one = lambda img, yy, xx: map_coordinates(img, [yy, xx], order=1, mode="constant", cval=0.0)  # noqa
        return jax.vmap(jax.vmap(one, (0, None, None)), (0, 0, 0))(a, cy, cx)

    def reference_bicubic(a, g):  # map_coordinates has no cubic order: jaxlayers' reference setting instead
        with config.lowering("reference"):
            return F.grid_sample(a, g, mode="bicubic", align_corners=False)

    for mode, alt, note in (("bilinear", mapc, "alt: vmap(map_coordinates)"),
                            ("bicubic", reference_bicubic, "alt: jaxlayers, lowering 'reference'")):
        for backward in (False, True):
            _row(table, f"grid_sample {mode} zeros",
                 lambda a, g, mode=mode: F.grid_sample(a, g, mode=mode, align_corners=False), alt,
                 lambda t, g, mode=mode: TF.grid_sample(t, g, mode=mode, align_corners=False),
                 (xg, grid), "x".join(map(str, gshape)) + " grid 64x64", iters, rng, note, backward)
