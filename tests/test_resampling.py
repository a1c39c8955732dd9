"""Resampling (F.interpolate, Upsample*) against torch (float64): outputs and input
gradients for every mode and option, the output-size rule, errors, compile size."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import check_grads_through_hessian, close, jax_fwd_bwd, torch_fwd_bwd

from jaxlayers import config
from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers._lowering import resampling as LR
from jaxlayers.functional import resampling

RNG = np.random.default_rng(0)
X3 = RNG.normal(size=(2, 2, 7))
X4 = RNG.normal(size=(2, 2, 5, 6))
X5 = RNG.normal(size=(1, 2, 3, 4, 5))
INPUT = {3: X3, 4: X4, 5: X5}


def _parity_many(cases, rtol=1e-10, atol=1e-12):
    """``[(jfn, tfn, x), ...]``: outputs and input gradients against torch float64,
    all cases in ONE jitted forward + backward (one compile)."""
    xs, cts, want = [], [], []
    for _, tfn, x in cases:
        shape = tuple(tfn(torch.from_numpy(x)).shape)
        xs.append(jnp.asarray(x))
        cts.append(RNG.normal(size=shape))
        want.append(torch_fwd_bwd(tfn, cts[-1], x))

    @jax.jit
    def run(xs, cts):
        return [jax_fwd_bwd(c[0], ct, a) for c, a, ct in zip(cases, xs, cts)]

    for i, ((j_out, (j_g,)), (t_out, (t_g,))) in enumerate(zip(run(xs, cts), want)):
        assert j_out.shape == t_out.shape
        close(j_out, t_out, rtol, atol, f"output of case {i}")
        close(j_g, t_g, rtol, atol, f"input gradient of case {i}")


MODE_RANKS = {"nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "area": (3, 4, 5), "linear": (3,),
              "bilinear": (4,), "bicubic": (4,), "trilinear": (5,)}
SIZES = [dict(size=11), dict(size=3), dict(scale_factor=1.7), dict(scale_factor=0.6),
         dict(scale_factor=2.5, recompute_scale_factor=True), dict(scale_factor=2), dict(scale_factor=0.5)]
SIZES_2D = [dict(size=(2, 9)), dict(scale_factor=(0.5, 2.0))]


def _interp_case(kw, x):
    return (lambda a: F.interpolate(a, **kw), lambda t: TF.interpolate(t, **kw), x)


@pytest.mark.both_settings
@pytest.mark.parametrize("mode", list(MODE_RANKS))
def test_interpolate_matches_torch(mode):
    """Up, down, given and recomputed scales (per-dim in 2-d), every rank and align_corners."""
    acs = (False, True) if mode in ("linear", "bilinear", "bicubic", "trilinear") else (None,)
    full = {3: SIZES, 4: SIZES + SIZES_2D, 5: SIZES}
    few = {3: SIZES, 4: SIZES[:3] + SIZES_2D, 5: SIZES[2:4]}  # the nearest modes and area: 3 ranks
    kws = few if len(MODE_RANKS[mode]) > 1 else full
    _parity_many([_interp_case(dict(kw, mode=mode, align_corners=ac), INPUT[r])
                  for r in MODE_RANKS[mode] for ac in acs for kw in kws[r]])


def test_antialias_matches_torch():
    x = RNG.normal(size=(1, 2, 9, 11))
    _parity_many([_interp_case(dict(kw, mode=mode, antialias=True), x) for mode in ("bilinear", "bicubic") for kw in (
        dict(size=(2, 3)), dict(size=(4, 17)), dict(scale_factor=0.3), dict(size=(9, 5)),
        dict(scale_factor=(0.77, 1.5)), dict(size=(3, 4), align_corners=True))])


def test_nearest_float32_index_maths():
    """torch's 2-d nearest kernels use a float scale and special-case out == in and
    out == 2 in; the 1-d/3-d ones use the input's opmath type: bit-exact indices
    (an arange input gives the source index of every output position)."""
    n = 16
    for rank in (3, 4, 5):
        x = torch.arange(float(n)).reshape((1,) * (rank - 1) + (n,))
        for mode in ("nearest", "nearest-exact"):
            for sf in (1.01, 2.1, 2.3, 2.7):
                for dt, ot in ((torch.float32, np.float32), (torch.float64, np.float64)):
                    want = TF.interpolate(x.to(dt), scale_factor=(1.0,) * (rank - 3) + (sf,), mode=mode)
                    kind, idx = resampling._axis_operator(mode, n, int(n * sf), sf, False, False, ot, rank == 4)
                    assert kind == "take"
                    np.testing.assert_array_equal(idx, want.flatten().numpy().astype(np.int64))


class TestVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_float32(self):
        x = RNG.normal(size=(2, 3, 6, 5)).astype(np.float32)
        kw = dict(size=(4, 9), mode="bicubic", align_corners=True)
        y = self.variant(lambda a: F.interpolate(a, **kw))(jnp.asarray(x))
        assert y.dtype == jnp.float32
        close(y, TF.interpolate(torch.from_numpy(x), **kw), rtol=1e-5, atol=1e-6)


def test_integer_and_bfloat16_inputs():
    xi = np.arange(12, dtype=np.int32).reshape(1, 1, 3, 4)
    y = F.interpolate(xi, scale_factor=2)
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(y, TF.interpolate(torch.from_numpy(xi).float(), scale_factor=2).numpy())
    with pytest.raises(TypeError, match="interpolate: mode 'bilinear' needs a floating-point input"):
        F.interpolate(xi, size=3, mode="bilinear")
    yb = F.interpolate(jnp.asarray(X4, jnp.bfloat16), size=(7, 8), mode="bilinear")
    assert yb.dtype == jnp.bfloat16
    close(yb.astype(jnp.float32), TF.interpolate(torch.from_numpy(X4), size=(7, 8), mode="bilinear"),
          rtol=2e-2, atol=2e-2)


def test_vmap_grad_of_grad_and_check_grads():
    x = jnp.asarray(X4)
    f = lambda a: F.interpolate(a, size=(4, 8), mode="bicubic")  # noqa: E731
    close(jax.vmap(f)(jnp.stack([x, 2 * x])), jnp.stack([f(x), f(2 * x)]))
    g = lambda a: F.interpolate(a, size=6, mode="linear") ** 2  # noqa: E731
    check_grads_through_hessian(g, (jnp.asarray(X3[:1, :1, :4]),))


def _torch_size(shape, kw):
    return tuple(TF.interpolate(torch.zeros(shape), **kw).shape)


@settings(max_examples=20)
@given(st.integers(1, 40), st.integers(1, 40),
       st.floats(0.05, 4.0, allow_nan=False), st.floats(0.05, 4.0, allow_nan=False),
       st.sampled_from([None, False, True]), st.sampled_from(["nearest", "bilinear", "area"]))
def test_output_size_rule_matches_torch(h, w, sh, sw, recompute, mode):
    shape = (1, 1, h, w)
    kw = dict(scale_factor=(sh, sw), mode=mode, recompute_scale_factor=recompute)
    if min(int(np.floor(h * sh)), int(np.floor(w * sw))) < 1 and mode != "area":  # area: torch gives empty
        with pytest.raises(ValueError, match="interpolate: input and output sizes should be greater than 0"):
            jax.eval_shape(lambda a: F.interpolate(a, **kw), jnp.zeros(shape))
        return
    assert jax.eval_shape(lambda a: F.interpolate(a, **kw), jnp.zeros(shape)).shape == _torch_size(shape, kw)


def test_given_scale_is_used_unless_recomputed():
    """scale_factor=1.7 on 5 -> 8: torch's kernel uses 1/1.7, not 5/8."""
    x = np.arange(5.0).reshape(1, 1, 5)
    a = F.interpolate(x, scale_factor=1.7, mode="linear")
    b = F.interpolate(x, scale_factor=1.7, mode="linear", recompute_scale_factor=True)
    close(a, TF.interpolate(torch.from_numpy(x), scale_factor=1.7, mode="linear"))
    close(b, F.interpolate(x, size=8, mode="linear"))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.interpolate(X4), ValueError, "interpolate: either size or scale_factor"),
    (lambda: F.interpolate(X4, size=3, scale_factor=2), ValueError, "only one of size or scale_factor"),
    (lambda: F.interpolate(X4, size=(3,)), ValueError, r"same number of spatial dimensions.*\(2, 2, 5, 6\)"),
    (lambda: F.interpolate(X4, scale_factor=(2, 3, 4)), ValueError, "scale_factor=\\(2, 3, 4\\)"),
    (lambda: F.interpolate(X4, size=2.5), TypeError, "interpolate: size must be"),
    (lambda: F.interpolate(X4, scale_factor="2"), TypeError, "interpolate: scale_factor must be"),
    (lambda: F.interpolate(X4, size=3, mode="nearest", align_corners=True), ValueError,
     "align_corners can only be set with the interpolating modes"),
    (lambda: F.interpolate(X4, size=3, mode="area", align_corners=False), ValueError, "align_corners"),
    (lambda: F.interpolate(X4, size=3, mode="lanczos"), ValueError, "interpolate: unknown mode 'lanczos'"),
    (lambda: F.interpolate(X3, size=3, mode="bilinear"), ValueError, "mode 'bilinear' needs 4-D input, got 3-D"),
    (lambda: F.interpolate(X4, size=3, mode="linear"), ValueError, "mode 'linear' needs 3-D input"),
    (lambda: F.interpolate(X4, size=3, mode="trilinear"), ValueError, "mode 'trilinear' needs 5-D input"),
    (lambda: F.interpolate(X5, size=3, mode="bicubic"), ValueError, "mode 'bicubic' needs 4-D input"),
    (lambda: F.interpolate(np.ones((2, 3)), size=3), ValueError,
     r"interpolate: expected 3-D, 4-D or 5-D input.*got 2-D input of shape \(2, 3\)"),
    (lambda: F.interpolate(X3, size=3, mode="linear", antialias=True), ValueError, "antialias is restricted"),
    (lambda: F.interpolate(X4, size=3, recompute_scale_factor=True), ValueError,
     "not meaningful with an explicit size"),
    (lambda: F.interpolate(X4, size=0), ValueError, "sizes should be greater than 0"),
    (lambda: F.interpolate(X4[:, :, :0], size=2, mode="area"), ValueError, "sizes should be greater than 0"),
    (lambda: F.interpolate(X4, scale_factor=-1.0), ValueError, "sizes should be greater than 0"),
    (lambda: nn.Upsample(size=3, mode="bogus"), ValueError, "Upsample: unknown mode 'bogus'"),
    (lambda: nn.Upsample(size=3, mode="bilinear").apply({}, X3), ValueError, "Upsample: mode 'bilinear' needs 4-D"),
    (lambda: nn.UpsamplingBilinear2d().apply({}, X4), ValueError, "UpsamplingBilinear2d: either size or scale_factor"),
    (lambda: F.interpolate(X4, scale_factor=float("nan")), ValueError, "interpolate: scale_factor must be finite"),
], ids=range(23))
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("make,tmake", [
    (lambda: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
     lambda: torch.nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True)),
    (lambda: nn.Upsample(size=(3, 8), mode="nearest-exact"),
     lambda: torch.nn.Upsample(size=(3, 8), mode="nearest-exact")),
    (lambda: nn.Upsample(scale_factor=2.5, mode="bicubic", recompute_scale_factor=True),
     lambda: torch.nn.Upsample(scale_factor=2.5, mode="bicubic", recompute_scale_factor=True)),
    (lambda: nn.UpsamplingNearest2d(scale_factor=2), lambda: torch.nn.UpsamplingNearest2d(scale_factor=2)),
    (lambda: nn.UpsamplingBilinear2d(size=(7, 4)), lambda: torch.nn.UpsamplingBilinear2d(size=(7, 4))),
], ids=range(5))
def test_modules_match_torch(make, tmake):
    m = make()
    close(m.apply({}, X4), tmake()(torch.from_numpy(X4)))


def test_upsample_aliases():
    close(F.upsample(X4, scale_factor=2, mode="bilinear"), TF.interpolate(torch.from_numpy(X4), scale_factor=2,
                                                                           mode="bilinear"))
    close(F.upsample_nearest(X4, size=(3, 9)), TF.interpolate(torch.from_numpy(X4), size=(3, 9)))
    close(F.upsample_bilinear(X4, size=(3, 9)),
          TF.interpolate(torch.from_numpy(X4), size=(3, 9), mode="bilinear", align_corners=True))


def test_lowered_size_does_not_grow_with_input():
    def lines(s):
        f = lambda a: F.interpolate(a, scale_factor=2, mode="bilinear")  # noqa: E731
        return len(jax.jit(f).lower(jax.ShapeDtypeStruct((1, 3, s, s), jnp.float32)).as_text().splitlines())

    small, big = lines(16), lines(224)
    assert abs(big - small) <= 3, (small, big)


def test_area_to_zero_size_is_empty_like_torch():
    for shape, kw in (((1, 1, 5), dict(size=0)), ((1, 1, 2, 3, 1), dict(scale_factor=0.3))):
        ours = F.interpolate(jnp.zeros(shape), mode="area", **kw)
        assert ours.shape == tuple(TF.interpolate(torch.zeros(shape), mode="area", **kw).shape) and ours.size == 0


def test_nearest_gradient_of_a_sum_is_not_constant_folded():
    # grad(sum(interpolate(x))) is a constant; XLA folded its scatter at compile time (13-22 s
    # at 224 -> 299): the indices sit behind an optimization barrier, the scatter stays a scatter
    x = jnp.zeros((8, 3, 64, 64))
    fn = jax.jit(jax.grad(lambda a: jnp.sum(F.interpolate(a, size=(85, 83), mode="nearest-exact"))))
    folded = re.findall(r"= \S+\[8,3,64,64\]\S* constant\(", fn.lower(x).compile().as_text())
    assert not folded, folded  # the gradient as a constant array


# ------------------------------------------ the phased lowering (jaxlayers._lowering.resampling)

PHASE_PLANS = [  # mode, in, out, align_corners, antialias -> (period, stride, slices) or None
    ("bilinear", 56, 112, False, False, (2, 1, 4)),
    ("bilinear", 224, 112, False, False, (1, 2, 2)),
    ("bicubic", 224, 448, False, False, (2, 1, 8)),
    ("bilinear", 28, 224, False, False, (8, 1, 16)),
    ("bilinear", 56, 111, True, False, (2, 1, 3)),  # align_corners: the (in - 1) / (out - 1) period
    ("bilinear", 112, 56, False, True, (1, 2, 4)),
    ("bicubic", 112, 28, False, True, (1, 4, 16)),
    ("linear", 5, 13, True, False, (3, 1, 5)),
    ("bilinear", 224, 299, False, False, None),  # no short period: the matrix
    ("bilinear", 224, 7, False, True, None),  # a filter 64 taps wide: the matrix
    ("bicubic", 3, 6, True, False, None),  # more slices than the matrix has columns
]


def _matrix(mode, n_in, n_out, align, aa, ot=np.float64):
    kind, m = resampling._axis_operator(mode, n_in, n_out, None, align, aa, ot, True)
    assert kind == "matrix"
    return m


@pytest.mark.parametrize("mode,n_in,n_out,align,aa,want", PHASE_PLANS)
def test_phase_plan_rebuilds_the_interpolation_matrix(mode, n_in, n_out, align, aa, want):
    m = _matrix(mode, n_in, n_out, align, aa, np.float32)
    plan = LR.phase_plan(m)
    if want is None:
        assert plan is None
        return
    slices = sum(ph.weights.shape[0] for ph in plan.phases)
    assert (plan.period, plan.stride, slices) == want and slices <= LR.MAX_TAPS
    rebuilt = np.zeros((n_out + plan.period, n_in + 64))  # room for taps in the zero padding
    for r, ph in enumerate(plan.phases):
        for k, w in enumerate(ph.weights):
            for j, v in enumerate(w):
                rebuilt[r + plan.period * j, 32 + ph.start + plan.stride * j + k] += v
    np.testing.assert_array_equal(rebuilt[:n_out, 32:32 + n_in], m)  # the same float32 weights, bit for bit
    assert not rebuilt[:, :32].any() and not rebuilt[:, 32 + n_in:].any() and not rebuilt[n_out:].any()


PHASED_CASES = [  # mode, input shape, axis, out, align_corners, antialias
    ("bilinear", (2, 3, 6), 2, 12, False, False),
    ("bicubic", (2, 8, 3), 1, 16, False, False),
    ("bilinear", (2, 3, 12), 2, 6, False, True),
    ("bicubic", (1, 16, 2), 1, 8, False, True),
    ("linear", (2, 2, 5), 2, 13, True, False),
]


@pytest.mark.parametrize("variant", ["reference derivative", "taps value", "taps value and derivative"])
@pytest.mark.parametrize("mode,shape,axis,out,align,aa", PHASED_CASES)
def test_taps_resize_matches_the_matrix(mode, shape, axis, out, align, aa, variant, rng):
    """Values, vjp, jvp, grad of grad, vmap(grad) and jacfwd(grad) of the taps form equal
    the reference's contraction, in each variant autotuning chooses from."""
    m = _matrix(mode, shape[axis], out, align, aa)
    plan, plan_t = LR.phase_plan(m), LR.phase_plan(np.ascontiguousarray(m.T))
    assert plan is not None and plan_t is not None

    def ref(v):
        return resampling._contract(v, axis, m)

    derivative = {"reference derivative": None, "taps value": ref,
                  "taps value and derivative": lambda t: LR._transposed_phases(t, axis, out, plan_t)}[variant]

    def new(v):
        return LR._taps_resize(v, axis=axis, n_out=out, plan=plan, reference=ref, derivative=derivative)

    def bundle(fn):
        def run(x, g, t):
            loss = lambda v: jnp.sum(jnp.sin(fn(v)))  # noqa: E731
            second = jax.grad(lambda v: jnp.sum(jax.grad(loss)(v) ** 2))(x)
            return (fn(x), jax.vjp(fn, x)[1](g), jax.jvp(fn, (x,), (t,)), second,
                    jax.vmap(jax.grad(loss))(jnp.stack([x, 2 * x])), jax.jacfwd(jax.grad(loss))(x))
        return jax.jit(run)

    x = jnp.asarray(rng.standard_normal(shape))
    y_shape = shape[:axis] + (out,) + shape[axis + 1:]
    g, t = jnp.asarray(rng.standard_normal(y_shape)), jnp.asarray(rng.standard_normal(shape))
    close(bundle(new)(x, g, t), bundle(ref)(x, g, t), rtol=1e-12, atol=1e-12)


def test_interpolate_reads_the_taps_for_values_under_auto_on_cpu(monkeypatch):
    """Values from the taps; differentiated, the reference's program; with autotuning on,
    its choice (which is part of the compiled cache key of eager calls too)."""
    x = jax.ShapeDtypeStruct((1, 3, 16, 16), jnp.float32)

    def f(a):
        return F.interpolate(a, scale_factor=2, mode="bilinear")

    def program(setting, fn):
        with config.lowering(setting):
            return jax.jit(fn).lower(x).as_text()

    def grad(a):
        return jax.grad(lambda a: jnp.sum(jnp.sin(f(a))))(a)

    assert "dot_general" in program("reference", f) and "dot_general" not in program("auto", f)
    ops = lambda text: sorted(re.findall(r"stablehlo\.\w+", text))  # noqa: E731
    assert ops(program("auto", grad)) == ops(program("reference", grad))  # the reference's program
    seen = []

    def choose(key, candidates, shapes):
        seen.append(list(candidates))
        return "taps value and derivative"

    monkeypatch.setattr(LR.autotune, "choose", choose)
    monkeypatch.setattr(config, "get_autotune", lambda: True)
    # a new function of the same shape: interpolate's compiled core was traced with autotuning off
    assert "dot_general" not in program("auto", lambda a: grad(a))
    assert seen and all(c == ["reference derivative", "taps value", "taps value and derivative"] for c in seen)


def test_non_finite_input_stays_in_its_taps_like_torch():
    """torch reads 2 (4) taps per output, so an interior inf reaches only its neighbours;
    the taps form does the same (the reference's matrix multiplies it by zero weights)."""
    x = RNG.normal(size=(1, 1, 10, 12))
    x[0, 0, 4, 5] = np.inf
    for kw in (dict(scale_factor=2, mode="bilinear"), dict(size=(5, 6), mode="bilinear", antialias=True),
               dict(scale_factor=2, mode="bicubic")):
        with config.lowering("auto"):
            ours = np.asarray(F.interpolate(jnp.asarray(x), **kw))
        want = TF.interpolate(torch.from_numpy(x), **kw).numpy()
        assert np.isfinite(want).sum() > want.size // 2
        np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)  # inf and NaN where torch has them


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_half_precision_gradient_sums_in_float32(mode):
    """Upsampling 8 -> 4000 repeats each input 500 times; the gradient sums those repeats, in float32
    for bfloat16 input as torch (summed in bfloat16 it was 4x torch's error). Values stay exact."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 2, 8)), jnp.bfloat16)
    g = jnp.asarray(rng.standard_normal((1, 2, 4000)), jnp.bfloat16)
    y, vjp = jax.vjp(lambda x: F.interpolate(x, size=4000, mode=mode), x)
    xt = torch.tensor(np.asarray(x, np.float32)).to(torch.bfloat16).requires_grad_()
    yt = torch.nn.functional.interpolate(xt, size=4000, mode=mode)
    yt.backward(torch.tensor(np.asarray(g, np.float32)).to(torch.bfloat16))
    np.testing.assert_array_equal(np.asarray(y, np.float32), yt.detach().float().numpy())
    xd = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    torch.nn.functional.interpolate(xd, size=4000, mode=mode).backward(torch.tensor(np.asarray(g, np.float64)))
    ours = np.asarray(vjp(g)[0], np.float64)
    err = lambda a: np.linalg.norm(a - xd.grad.numpy()) / np.linalg.norm(xd.grad.numpy())  # noqa: E731
    assert vjp(g)[0].dtype == jnp.bfloat16 and err(ours) <= err(xt.grad.double().numpy())
