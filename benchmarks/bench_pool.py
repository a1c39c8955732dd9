"""Pooling benchmarks: jaxlayers vs flax.linen (NHWC) and torch, forward and
forward+backward, compile times; the flax-comparable rows also in channels-last
mode (``[channels_last]``: the NHWC input pooled in place).

Also:
* each CPU lowering (jaxlayers/_lowering/pooling.py) against the reference,
  the two settings taking turns (``lowering_vs_reference``);
* compile time of AdaptiveMaxPool2d(1) and (7, 7) forward+backward on
  8x64x224x224 (the reference's program does not grow with the input);

and the two ratios the pooling issue asks for:
* AdaptiveAvgPool2d((7, 7)) on 32x64x33x17 vs a fixed-window AvgPool2d with a
  similar (8x8) output, forward+backward (target: within 2x), compile < 2 s;
* MaxPool2d with return_indices vs without (target: within 2x).
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF

from harness import Table, compile_seconds, time_interleaved, time_row
from jaxlayers import config
from jaxlayers import functional as F


def _fwd(fn):
    return jax.jit(fn)


def _fb(fn, has_aux=False):
    """jit(forward + backward) with a given cotangent: returns (outputs, input gradient),
    so that neither half can be optimised away."""
    def f(a, ct):
        if has_aux:
            y, vjp, aux = jax.vjp(fn, a, has_aux=True)
            return y, aux, vjp(ct)[0]
        y, vjp = jax.vjp(fn, a)
        return y, vjp(ct)[0]
    return jax.jit(f)


def _torch_fb(fn):
    def run(t, ct):
        t.grad = None
        y = fn(t)
        y = y[0] if isinstance(y, tuple) else y
        y.backward(ct)
        return y, t.grad
    return run


def _jitted(jf, x, mode, rng):
    """``(jitted function, its arguments)``: the forward, or forward + backward
    with a random cotangent of the (first) output."""
    if mode == "fwd":
        return _fwd(jf), (x,)
    out = jax.eval_shape(jf, x)
    has_aux = isinstance(out, tuple)
    ct = jnp.asarray(rng.normal(size=(out[0] if has_aux else out).shape), x.dtype)
    return _fb(jf, has_aux), (x, ct)


def _prepare(jf, tf, x, tx, mode, rng):
    """(zero-argument jax call, its compile s, zero-argument torch call or None) for one function."""
    j, args = _jitted(jf, x, mode, rng)
    c = compile_seconds(j, *args)
    if tf is None:
        return (lambda: j(*args)), c, None
    if mode == "fwd":
        def torch_call():
            with torch.no_grad():
                return tf(tx)
    else:
        fb, tct = _torch_fb(tf), torch.tensor(np.asarray(args[1]))

        def torch_call():
            return fb(tx, tct)
    return (lambda: j(*args)), c, torch_call


def _channels_last(fn, a):
    """``fn(a)`` traced in channels-last mode (``a`` is NHWC)."""
    with config.memory_format("channels_last"):
        return fn(a)


def _interleaved_ratio(jf_a, jf_b, x, mode, iters, rng):
    """Median time of ``jf_a`` over ``jf_b`` (first outputs compared), the two
    taking turns so that load drifting on a shared machine hits both alike."""
    calls = {}
    for key, jf in (("a", jf_a), ("b", jf_b)):
        j, args = _jitted(jf, x, mode, rng)
        calls[key] = lambda j=j, args=args: j(*args)
    t = time_interleaved(calls, iters=4 * iters, rounds=2 * iters)
    return t["a"] / t["b"]


def lowering_vs_reference(iters: int, rng) -> dict:
    """Median ms of each lowered case under "reference" and "auto", taking turns
    (each call runs inside its setting: the setting is part of jit's cache key)."""
    x = jnp.asarray(rng.normal(size=(32, 64, 32, 32)), jnp.float32)
    cases = [
        ("MaxPool2d(3,2,1)", lambda a: F.max_pool2d(a, 3, 2, 1), x),
        ("MaxPool2d(3,2,1,return_indices)", lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True), x),
        ("AvgPool2d(3,2,1)", lambda a: F.avg_pool2d(a, 3, 2, 1), x),
    ]
    out = {}
    for name, jf, xx in cases:
        for mode in ("fwd", "fwd+bwd"):
            calls = {}
            for setting in ("reference", "auto"):
                with config.lowering(setting):
                    j, args = _jitted(jf, xx, mode, rng)

                def call(j=j, args=args, setting=setting):
                    with config.lowering(setting):
                        return j(*args)
                calls[setting] = call
            t = time_interleaved(calls, iters=4 * iters, rounds=2 * iters)
            out[(name, mode)] = t
            print(f"# lowering {name} {mode}: reference {t['reference'] * 1e3:.2f} ms, "
                  f"auto {t['auto'] * 1e3:.2f} ms ({t['auto'] / t['reference']:.2f}x)", flush=True)
    return out


def adaptive_compile_seconds() -> dict:
    """Trace + compile seconds of AdaptiveMaxPool2d(1) and (7, 7) forward+backward
    on 8x64x224x224, under the default setting (nothing is run)."""
    x = jax.ShapeDtypeStruct((8, 64, 224, 224), jnp.float32)
    out = {}
    for size in (1, (7, 7)):
        f = jax.jit(jax.grad(lambda a, size=size: jnp.sum(F.adaptive_max_pool2d(a, size))))
        out[size] = compile_seconds(f, x)
        print(f"# AdaptiveMaxPool2d({size}) fwd+bwd 8x64x224x224 compile {out[size]:.2f} s (target < 1)", flush=True)
    return out


def run(table: Table, quick: bool) -> None:
    iters = 5 if quick else 20
    rng = np.random.default_rng(0)
    shape = (8, 32, 32, 32) if quick else (32, 64, 32, 32)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    xh = jnp.transpose(x, (0, 2, 3, 1))
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    tag = "x".join(map(str, shape))

    cases = [
        ("MaxPool2d(3,2,1)", lambda a: F.max_pool2d(a, 3, 2, 1),
         lambda a: fnn.max_pool(a, (3, 3), (2, 2), ((1, 1), (1, 1))), lambda t: TF.max_pool2d(t, 3, 2, 1)),
        ("MaxPool2d(3,2,1,return_indices)", lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True),
         None, lambda t: TF.max_pool2d(t, 3, 2, 1, return_indices=True)),
        ("AvgPool2d(3,2,1)", lambda a: F.avg_pool2d(a, 3, 2, 1),
         lambda a: fnn.avg_pool(a, (3, 3), (2, 2), ((1, 1), (1, 1)), count_include_pad=True),
         lambda t: TF.avg_pool2d(t, 3, 2, 1)),
    ]
    results = {}
    for name, jf, ff, tf in cases:
        for mode in ("fwd", "fwd+bwd"):
            calls, comp = {}, {}
            calls["jl"], comp["jl"], calls["torch"] = _prepare(jf, tf, x, tx, mode, rng)
            if ff is not None:  # channels-last mode: the pool runs in place on the NHWC input
                calls["flax"], comp["flax"], _ = _prepare(ff, None, xh, None, mode, rng)
                calls["cl"], comp["cl"], _ = _prepare(lambda a, jf=jf: _channels_last(jf, a), None, xh, None,
                                                      mode, rng)
            t = time_interleaved({k: fn for k, fn in calls.items() if fn is not None}, iters=iters,
                                 rounds=min(5, iters))
            results[(name, mode)] = t["jl"]
            table.add(f"{name} {mode} {tag}", t["jl"], t.get("flax"), t.get("torch"), comp["jl"],
                      comp.get("flax"), note="flax NHWC")
            if ff is not None:
                table.add(f"{name} {mode} {tag} [channels_last]", t["cl"], t["flax"], t.get("torch"), comp["cl"],
                          comp["flax"], note="flax NHWC")
    for mode in ("fwd", "fwd+bwd"):
        r = results[("MaxPool2d(3,2,1,return_indices)", mode)] / results[("MaxPool2d(3,2,1)", mode)]
        ri = _interleaved_ratio(cases[1][1], cases[0][1], x, mode, iters, rng)
        print(f"# max pool with/without indices, {mode}: {r:.2f}x, taking turns {ri:.2f}x (target < 2)")

    ashape = (32, 64, 33, 17)
    xa = jnp.asarray(rng.normal(size=ashape), jnp.float32)
    txa = torch.tensor(np.asarray(xa), requires_grad=True)
    atag = "x".join(map(str, ashape))
    acases = [
        ("AdaptiveAvgPool2d((7,7))", lambda a: F.adaptive_avg_pool2d(a, (7, 7)),
         lambda t: TF.adaptive_avg_pool2d(t, (7, 7))),
        ("AvgPool2d((4,2)) -> 8x8 (reference)", lambda a: F.avg_pool2d(a, (4, 2)),
         lambda t: TF.avg_pool2d(t, (4, 2))),
        ("AdaptiveMaxPool2d((7,7))", lambda a: F.adaptive_max_pool2d(a, (7, 7)),
         lambda t: TF.adaptive_max_pool2d(t, (7, 7))),
        ("AdaptiveMaxPool2d((7,7),return_indices)", lambda a: F.adaptive_max_pool2d(a, (7, 7), True),
         lambda t: TF.adaptive_max_pool2d(t, (7, 7), True)),
    ]
    aresults = {}
    for name, jf, tf in acases:
        for mode in ("fwd", "fwd+bwd"):
            jcall, c, tcall = _prepare(jf, tf, xa, txa, mode, rng)
            tj, _, tt = time_row(jcall, torch=tcall, iters=iters)
            aresults[(name, mode)] = (tj, c)
            table.add(f"{name} {mode} {atag}", tj, None, tt, c)
    for mode in ("fwd", "fwd+bwd"):
        (ta, ca), (tr, _) = aresults[("AdaptiveAvgPool2d((7,7))", mode)], \
            aresults[("AvgPool2d((4,2)) -> 8x8 (reference)", mode)]
        ri = _interleaved_ratio(acases[0][1], acases[1][1], xa, mode, iters, rng)
        print(f"# adaptive avg (7,7) / fixed avg (8x8), {mode}: {ta / tr:.2f}x, taking turns {ri:.2f}x "
              f"(target < 2); compile {ca:.2f} s (target < 2)")

    adaptive_compile_seconds()
    lowering_vs_reference(iters, rng)
