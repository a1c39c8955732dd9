"""grid_sample / affine_grid against torch (float64): outputs and gradients with
respect to input AND grid for every mode, padding mode and align_corners, 4-D and 5-D."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from jax.test_util import check_grads
from oracle import close, jax_fwd_bwd, torch_fwd_bwd

from jaxlayers import config
from jaxlayers import functional as F

RNG = np.random.default_rng(0)
X4 = RNG.normal(size=(2, 3, 4, 5))
X5 = RNG.normal(size=(2, 2, 3, 4, 5))


def _grid(shape):
    """Points inside and outside [-1, 1], plus the corners, the centre and exact
    half-pixel positions (nearest's ties, which round half to even)."""
    g = RNG.uniform(-1.3, 1.3, size=shape)
    flat = g.reshape(-1)
    flat[:6] = [-1.0, 1.0, 0.0, 1.0, -1.0, 0.25]
    return g


G4 = _grid((2, 3, 4, 2))
G5 = _grid((2, 2, 3, 4, 3))


def _cases():
    out = []
    for nd, mode in [(4, "bilinear"), (4, "nearest"), (4, "bicubic"), (5, "bilinear"), (5, "nearest")]:
        out.append((nd, mode))
    return out


@pytest.mark.parametrize("nd,mode", _cases())
def test_grid_sample_matches_torch(nd, mode):
    """Padding modes and align_corners (all pairs for 4-D bilinear), one jitted forward + backward."""
    x, g = (X4, G4) if nd == 4 else (X5, G5)
    opts = list(itertools.product(("zeros", "border", "reflection"), (False, True)))
    if (nd, mode) != (4, "bilinear"):  # the coordinate maths is shared: each option once per mode
        opts = [("zeros", False), ("border", True), ("reflection", False), ("reflection", True)]
    cts, want = [], []
    for pm, ac in opts:
        tfn = lambda a, b, pm=pm, ac=ac: TF.grid_sample(a, b, mode=mode, padding_mode=pm, align_corners=ac)  # noqa
        cts.append(RNG.normal(size=(x.shape[0], x.shape[1]) + g.shape[1:-1]))
        want.append(torch_fwd_bwd(tfn, cts[-1], x, g))

    @jax.jit
    def run(a, b, cts):
        return [jax_fwd_bwd(lambda u, v, pm=pm, ac=ac: F.grid_sample(u, v, mode, pm, ac), ct, a, b)
                for (pm, ac), ct in zip(opts, cts)]

    for (pm, ac), (j_out, j_g), (t_out, t_g) in zip(opts, run(jnp.asarray(x), jnp.asarray(g), cts), want):
        close(j_out, t_out, err_msg=f"output {pm} {ac}")
        close(j_g[0], t_g[0], err_msg=f"input gradient {pm} {ac}")
        if mode == "nearest":
            assert not np.any(np.asarray(j_g[1]))  # torch: zero grid gradient
        close(j_g[1], t_g[1], rtol=1e-9, atol=1e-10, err_msg=f"grid gradient {pm} {ac}")


def test_nearest_rounds_half_to_even():
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    # align_corners=True: x = -1 + 2 k / 4; pixel 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
    gx = np.array([-0.75, -0.25, 0.25, 0.75])
    grid = np.stack([gx, np.zeros(4)], -1).reshape(1, 1, 4, 2)
    y = jax.jit(lambda a, g: F.grid_sample(a, g, mode="nearest", align_corners=True))(x, grid)
    np.testing.assert_array_equal(np.asarray(y).ravel(), [0, 2, 2, 4])
    close(y, TF.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode="nearest", align_corners=True))


@pytest.mark.parametrize("mode,order,modes", [("bilinear", 2, ("rev",)), ("bicubic", 1, ("fwd", "rev"))])
def test_check_grads(mode, order, modes):
    x = jnp.asarray(X4[:1, :1, :3, :3])
    pix = np.array([0.3, 1.4])  # pixel coordinates away from the integer kinks
    g = jnp.asarray(((2 * pix + 1) / 3 - 1).reshape(1, 1, 1, 2))
    f = jax.jit(lambda a, b: F.grid_sample(a, b, mode, "zeros", False) ** 2)
    check_grads(f, (x, g), order=order, modes=modes)


def test_float32():
    x, g = X4.astype(np.float32), G4.astype(np.float32)
    y = jax.jit(lambda a, b: F.grid_sample(a, b, "bilinear", "reflection", False))(x, g)
    assert y.dtype == jnp.float32
    close(y, TF.grid_sample(torch.from_numpy(x), torch.from_numpy(g), padding_mode="reflection",
                            align_corners=False), rtol=1e-5, atol=1e-5)


def test_vmap_over_grids():
    f = jax.jit(jax.vmap(lambda b: F.grid_sample(X4, b, "bicubic", "border", True)))
    yv = f(jnp.stack([G4, -G4]))
    close(yv[1], TF.grid_sample(torch.from_numpy(X4), torch.from_numpy(-G4), mode="bicubic", padding_mode="border",
                                align_corners=True))


@pytest.mark.parametrize("size", [(2, 3, 4, 5), (2, 1, 1, 3), (2, 1, 3, 2, 4), (2, 2, 1, 1, 1)], ids=str)
def test_affine_grid_matches_torch(size):
    n = len(size) - 2
    theta = RNG.normal(size=(2, n, n + 1))
    for ac in (False, True):
        out_shape = (2,) + size[2:] + (n,)
        ct = RNG.normal(size=out_shape)
        t_out, (t_g,) = torch_fwd_bwd(lambda t: TF.affine_grid(t, size, align_corners=ac), ct, theta)
        j_out, (j_g,) = jax_fwd_bwd(lambda t: F.affine_grid(t, size, align_corners=ac), ct, jnp.asarray(theta))
        close(j_out, t_out, err_msg=f"align_corners={ac}")
        close(j_g, t_g, err_msg=f"theta gradient, align_corners={ac}")


def test_affine_grid_then_grid_sample_identity():
    theta = np.array([[[1.0, 0, 0], [0, 1.0, 0]]] * 2)
    f = jax.jit(lambda t, a: F.grid_sample(a, F.affine_grid(t, a.shape, align_corners=False), align_corners=False))
    close(f(theta, X4), X4)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.grid_sample(X4, G4, mode="bogus"), ValueError, "grid_sample: expected mode to be"),
    (lambda: F.grid_sample(X4, G4, padding_mode="bogus"), ValueError, "grid_sample: expected padding_mode"),
    (lambda: F.grid_sample(X4, np.zeros((2, 3, 3, 3))), ValueError,
     r"grid_sample: expected grid to have size 2 in its last dimension.*\(2, 3, 3, 3\)"),
    (lambda: F.grid_sample(X4, np.zeros((3, 3, 3, 2))), ValueError, "same batch size.*input of shape"),
    (lambda: F.grid_sample(X5, G5, mode="bicubic"), ValueError, "bicubic interpolation only supports 4-D"),
    (lambda: F.grid_sample(X4[0], G4[0]), ValueError, "expected 4-D or 5-D input"),
    (lambda: F.grid_sample(X4, G5), ValueError, "same number of dimensions"),
    (lambda: F.grid_sample(np.zeros((2, 1, 0, 3)), G4), ValueError, "non-empty spatial"),
    (lambda: F.grid_sample(X4.astype(np.int32), G4), TypeError, "floating-point input"),
    (lambda: F.grid_sample(X4.astype(np.float16), G4), TypeError,
     "same dtype, got input float16 and grid float64"),  # torch raises; promoting rounded one of them
    (lambda: F.affine_grid(np.zeros((1, 2, 3)), (1, 1, 3, 3, 3)), ValueError,
     r"affine_grid: expected a batch of 3-D affine matrices of shape \(1, 3, 4\)"),
    (lambda: F.affine_grid(np.zeros((1, 2, 3)), (1, 1, 3)), ValueError, "only 4-D and 5-D sizes"),
    (lambda: F.affine_grid(np.zeros((1, 2, 3)), (1, 1, 0, 3)), ValueError, "positive output size"),
    (lambda: F.affine_grid(np.zeros((1, 2, 3), np.int32), (1, 1, 3, 3)), TypeError, "floating-point"),
    (lambda: F.affine_grid(np.zeros((1, 2, 3)), 5), TypeError, "size must be a sequence"),
    (lambda: F.affine_grid(np.zeros((1, 2, 3)), (1, 1, 4.5, 4)), TypeError, "size must be a sequence of ints"),
], ids=range(16))
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.both_settings
@pytest.mark.parametrize("mode,padding_mode", itertools.product(("nearest", "bilinear", "bicubic"),
                                                                  ("zeros", "border", "reflection")))
def test_non_finite_grid_points_like_torch(mode, padding_mode):
    """NaN clips to 0 (border/reflection) or samples nothing (zeros); a reflected infinity clips to 0."""
    x = np.arange(1, 13.0).reshape(1, 1, 3, 4)
    g = np.array([[[[np.nan, 0.2], [0.3, np.nan], [np.inf, 0.1], [-np.inf, 0.5], [np.nan, np.nan],
                    [0.2, -np.inf], [0.1, 0.3]]]])
    run = jax.jit(lambda x, g: [F.grid_sample(x, g, mode, padding_mode, ac) for ac in (False, True)])
    for ac, jitted in zip((False, True), run(x, g)):
        want = TF.grid_sample(torch.tensor(x), torch.tensor(g), mode=mode, padding_mode=padding_mode, align_corners=ac)
        close(F.grid_sample(x, g, mode=mode, padding_mode=padding_mode, align_corners=ac), want)
        close(jitted, want, err_msg="jit")  # XLA once folded 0 * NaN weights to 0 there


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_nan_grid_points_send_no_gradient_to_the_input(mode):
    """A NaN grid point (zeros padding) samples nothing: its NaN output, masked by the loss, leaves the
    input's gradient that of the finite points alone (torch's; XLA's cast of NaN to the index 0 had
    made it NaN).  Oracle: torch on the finite points only (torch's own backward crashes on some
    NaN grids)."""
    x = np.arange(1, 21.0).reshape(1, 1, 4, 5)
    finite = np.array([[0.1, 0.3], [0.5, -0.4], [-0.95, 0.9]])
    g = np.concatenate([[[np.nan, 0.2], [0.3, np.nan], [np.nan, np.nan]], finite])[None, None]
    w = np.arange(1.0, 1 + len(finite))
    loss = lambda x: jnp.sum(jnp.nan_to_num(F.grid_sample(x, g, mode, "zeros", False)[0, 0, 0, 3:]) * w)  # noqa: E731
    xt = torch.tensor(x, requires_grad=True)
    (TF.grid_sample(xt, torch.tensor(finite[None, None]), mode=mode, align_corners=False)[0, 0, 0]
     * torch.tensor(w)).sum().backward()
    close(jax.grad(loss)(jnp.asarray(x)), xt.grad)


@pytest.mark.parametrize("xs,gs", [((0, 1, 3, 3), (0, 2, 2, 2)), ((1, 0, 3, 3), (1, 2, 2, 2)),
                                   ((2, 1, 3, 3, 3), (2, 0, 2, 2, 3))])
def test_empty_batch_channels_or_grid(xs, gs):
    close(F.grid_sample(np.zeros(xs), np.zeros(gs), align_corners=False),
          TF.grid_sample(torch.zeros(xs, dtype=torch.float64), torch.zeros(gs, dtype=torch.float64), align_corners=False))


def test_affine_grid_program_grows_with_the_sides_not_the_area():
    # the base grid is broadcast in the program from its 1-d axes (as a constant: 1.2 MB at 224x224)
    lower = lambda s: len(jax.jit(lambda t: F.affine_grid(t, (2, 3, s, s))).lower(jnp.ones((2, 2, 3))).as_text())
    assert lower(224) < 20_000, lower(224)


FORWARD_CASES = [(4, "bilinear"), (4, "bicubic"), (4, "nearest"), (5, "bilinear")]


@pytest.mark.both_settings
@pytest.mark.parametrize("nd,mode", FORWARD_CASES)
def test_forward_alone_matches_torch(nd, mode):
    """The undifferentiated value (the lowered taps under "auto"), with an inf and a NaN in
    the input: they reach the outputs whose taps hold them, as in torch."""
    x, g = (X4.copy(), G4) if nd == 4 else (X5.copy(), G5)
    x[0, 0, 1, 2], x[1, 1, 2, 3] = np.inf, np.nan
    opts = [("zeros", False), ("border", True), ("reflection", False), ("reflection", True)]
    run = jax.jit(lambda a, b: [F.grid_sample(a, b, mode, pm, ac) for pm, ac in opts])
    for (pm, ac), ours in zip(opts, run(jnp.asarray(x), jnp.asarray(g))):
        want = TF.grid_sample(torch.from_numpy(x), torch.from_numpy(g), mode=mode, padding_mode=pm,
                              align_corners=ac).numpy()
        assert 0 < np.isfinite(want).sum() < want.size
        np.testing.assert_allclose(np.asarray(ours), want, rtol=1e-12, atol=1e-12, err_msg=f"{pm} {ac}")


def _per_setting(run, *args):
    """``jax.jit(run)(*args)`` traced under each lowering setting: ``{setting: result}``."""
    out = {}
    for setting in ("reference", "auto"):
        with config.lowering(setting):
            out[setting] = jax.jit(run).lower(*args).compile()(*args)
    return out


@pytest.mark.parametrize("nd,mode", FORWARD_CASES[:2] + FORWARD_CASES[3:])
def test_lowered_taps_equal_the_reference(nd, mode):
    """Under "auto" the value, ``vmap``, ``jvp``, ``vjp`` and (bilinear 4-D: the lowering differentiates
    as the reference's program, so one case shows the wiring) grad of grad equal the reference's."""
    x, g = (X4, G4) if nd == 4 else (X5, G5)
    y_shape = x.shape[:2] + g.shape[1:-1]
    ct, tx, tg = RNG.normal(size=y_shape), RNG.normal(size=x.shape), RNG.normal(size=g.shape)

    def f(a, b):
        return F.grid_sample(a, b, mode, "border", False)

    def run(a, b):
        loss = lambda u, v: jnp.sum(jnp.sin(f(u, v)))  # noqa: E731
        second = ()
        if (nd, mode) == (4, "bilinear"):
            second = jax.grad(lambda u, v: jnp.sum(jax.grad(loss, (0, 1))(u, v)[1] ** 2), (0, 1))(a, b)
        return (f(a, b), jax.vmap(f)(jnp.stack([a, 2 * a]), jnp.stack([b, -b])), jax.jvp(f, (a, b), (tx, tg)),
                jax.vjp(f, a, b)[1](ct), second)

    out = _per_setting(run, x, g)
    close(out["auto"], out["reference"], rtol=1e-12, atol=1e-12)


def test_grid_sample_gathers_taps_in_place_under_auto_on_cpu():
    """Values from per-tap gathers on the input in place (no relayout); differentiated, the
    reference's program; one tap (nearest) keeps the reference."""
    x, g = jax.ShapeDtypeStruct((2, 3, 8, 8), jnp.float32), jax.ShapeDtypeStruct((2, 5, 5, 2), jnp.float32)

    def program(setting, fn):
        with config.lowering(setting):
            return jax.jit(fn).lower(x, g).as_text()

    def f(a, b, mode="bilinear"):
        return F.grid_sample(a, b, mode, "zeros", False)

    def grad(a, b):
        return jax.grad(lambda a, b: jnp.sum(jnp.sin(f(a, b))), (0, 1))(a, b)

    ops = lambda text: sorted(re.findall(r"stablehlo\.\w+", text))  # noqa: E731
    assert "stablehlo.transpose" in program("reference", f) and "stablehlo.transpose" not in program("auto", f)
    assert ops(program("auto", grad)) == ops(program("reference", grad))
    nearest = functools.partial(f, mode="nearest")
    assert program("auto", nearest) == program("reference", nearest)


def test_forward_mode_in_the_input_alone_is_the_references():
    """jvp and jacfwd w.r.t. the input only, with an inf in the input: the reference's tangent
    (a zero grid tangent times the infinite tap would be NaN)."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.inf
    g = np.array([[[[0.1, 0.2], [0.6, 0.7]]]])

    def f(a):
        return F.grid_sample(a, g, "bilinear", "zeros", False)

    out = _per_setting(lambda a: (jax.jvp(f, (a,), (jnp.ones_like(a),)), jax.jacfwd(f)(a)), x)
    np.testing.assert_array_equal(np.asarray(out["auto"][0][1]), np.asarray(out["reference"][0][1]))
    np.testing.assert_array_equal(np.asarray(out["auto"][1]), np.asarray(out["reference"][1]))
    assert np.isfinite(np.asarray(out["auto"][0][1])).all()
