"""The engine switch and the CPU lowerings, each against the reference.

Every lowering in ``jaxlayers._lowering`` is compared with the reference it
replaces: values, reverse mode, forward mode, second order and ``vmap``.
The torch-parity suites run under the default setting (``"auto"``); the
``both_settings`` tests and tests/test_transforms.py run both.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from hypothesis import given
from hypothesis import strategies as st
from jax.ad_checkpoint import print_saved_residuals

from jaxlayers import config
from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers._lowering import autotune, enabled
from jaxlayers._lowering import conv as LC
from jaxlayers._lowering import distance as LD
from jaxlayers._lowering import norm as LN
from jaxlayers.functional.conv import _reference_conv as reference_conv
from jaxlayers._utils import upper_triangle
from oracle import close, relayouts

# ------------------------------------------------------------------------- the switch


def test_switch_values_context_and_errors():
    assert config.get_lowering() in config.LOWERINGS
    before = config.get_lowering()
    with config.lowering("reference"):
        assert config.get_lowering() == "reference" and not config.use_lowerings() and not enabled()
        with config.lowering("auto"):
            assert enabled("cpu") == (jax.default_backend() == "cpu")
            assert not enabled("gpu-that-is-not-there")
    assert config.get_lowering() == before
    with pytest.raises(ValueError, match="lowering must be one of"):
        config.set_lowering("fast")
    with pytest.raises(ValueError, match="lowering must be one of"):
        with config.lowering("cpu"):
            pass


def test_switch_is_part_of_the_jit_cache_key():
    """A function jitted under one setting is traced again under the other."""
    traced = []

    @jax.jit
    def f(x):
        traced.append(config.get_lowering())
        return x + 1

    with config.lowering("reference"):
        f(1.0)
    with config.lowering("auto"):
        f(1.0)
    assert traced == ["reference", "auto"]


def test_switch_from_the_environment(monkeypatch):
    """Read at import (one fresh process); a bad value is refused when the setting is built."""
    import subprocess
    import sys

    code = "import jaxlayers.config as c; print(c.get_lowering())"
    out = subprocess.run([sys.executable, "-c", code], env={"JAXLAYERS_LOWERING": " Reference", "PATH": ""},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    monkeypatch.setenv("JAXLAYERS_LOWERING", "turbo")
    with pytest.raises(ValueError, match="JAXLAYERS_LOWERING must be one of"):
        config._Setting("lowering", config.LOWERINGS, "JAXLAYERS_LOWERING", "auto", "")


def test_autotune_environment_flag(monkeypatch):
    """1/true/yes/on or 0/false/no/off, any case and spacing; anything else an error, as for the other
    settings (``JAXLAYERS_AUTOTUNE=2`` had silently meant off)."""
    for value, want in ((" ON ", True), ("1", True), ("False", False), ("", False)):
        monkeypatch.setenv("JAXLAYERS_AUTOTUNE", value)
        assert config._env_flag("JAXLAYERS_AUTOTUNE") is want
    monkeypatch.setenv("JAXLAYERS_AUTOTUNE", "2")
    with pytest.raises(ValueError, match="JAXLAYERS_AUTOTUNE must be 1/true/yes/on or 0/false/no/off, got '2'"):
        config._env_flag("JAXLAYERS_AUTOTUNE")


# ------------------------------------------------------------------------- convolution lowerings


def _ref_conv(x, w, stride, pairs, lhs, dil):
    return lax.conv_general_dilated(x, w, stride, pairs, lhs_dilation=lhs, rhs_dilation=dil)


CONV_CASES = [
    # kind, x shape, w shape, stride, padding pairs, lhs dilation (transposed conv's stride), dilation
    ("taps", (2, 3, 9), (4, 3, 3), (1,), ((1, 1),), (1,), (1,)),
    ("taps", (2, 3, 8, 7), (5, 3, 3, 2), (1, 1), ((1, 2), (0, 1)), (1, 1), (2, 1)),
    ("taps", (1, 2, 5, 6, 4), (3, 2, 2, 3, 2), (1, 1, 1), ((1, 1), (1, 0), (0, 1)), (1, 1, 1), (1, 1, 2)),
    # transposed: stride-dilated input, cropping (negative) padding, sub-pixel phases in 1-d/3-d
    ("taps", (2, 3, 5), (4, 3, 3), (1,), ((1, 2),), (2,), (1,)),
    ("taps", (2, 3, 4, 5), (2, 3, 3, 2), (1, 1), ((-1, 0), (1, 2)), (3, 2), (2, 1)),
    ("taps", (2, 3, 6), (4, 3, 3), (1,), ((4, 4),), (2,), (2,)),
    ("taps", (1, 2, 1), (3, 2, 2), (1,), ((1, 1),), (4,), (1,)),
    ("taps", (1, 2, 3, 2, 3), (3, 2, 3, 2, 1), (1, 1, 1), ((1, 2), (1, 1), (0, 0)), (2, 2, 3), (1, 2, 1)),
    # transposed beyond 27 taps: weight derivative per output phase (forward too in 1-d/3-d)
    ("taps", (1, 2, 3, 2, 2), (2, 2, 4, 4, 2), (1, 1, 1), ((2, 2), (1, 3), (1, 1)), (2, 2, 2), (1, 1, 1)),
    ("taps", (2, 2, 3, 2), (3, 2, 6, 5), (1, 1), ((3, 4), (2, 2)), (2, 3), (1, 1)),
    ("taps", (2, 3, 2), (2, 3, 29), (1,), ((20, 27),), (3,), (1,)),
    # stacked taps (tiny maps): strides, dilation, 1-d to 3-d
    ("stacked", (2, 5, 2, 2), (4, 5, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1)),
    ("stacked", (1, 3, 7, 5), (2, 3, 3, 2), (2, 3), ((1, 0), (0, 1)), (1, 1), (2, 1)),
    ("stacked", (2, 3, 4), (2, 3, 2), (2,), ((0, 1),), (1,), (1,)),
    ("stacked", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), (2, 2, 2), ((0, 0), (0, 0), (0, 0)), (1, 1, 1), (1, 1, 1)),
    # pointwise (1x1) GEMM: strides, zero and cropping padding, 1-d to 3-d
    ("pointwise", (2, 5, 4, 3), (3, 5, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1)),
    ("pointwise", (2, 3, 7, 6), (4, 3, 1, 1), (2, 3), ((1, 0), (-1, 2)), (1, 1), (2, 1)),
    ("pointwise", (3, 4, 5), (2, 4, 1), (2,), ((1, 1),), (1,), (1,)),
    ("pointwise", (1, 2, 3, 4, 2), (3, 2, 1, 1, 1), (1, 2, 1), ((0, 0), (0, 1), (0, 0)), (1, 1, 1), (1, 1, 1)),
]


@pytest.mark.parametrize("kind,xs,ws,stride,pairs,lhs,dil", CONV_CASES)
def test_conv_lowerings_match_the_reference(kind, xs, ws, stride, pairs, lhs, dil, rng):
    """Values, vjp, jvp, grad of grad and vmap(grad) equal plain lax.conv_general_dilated."""
    x, w = jnp.asarray(rng.standard_normal(xs)), jnp.asarray(rng.standard_normal(ws))

    def ref(x, w):
        return _ref_conv(x, w, stride, pairs, lhs, dil)

    if kind == "taps":
        def new(x, w):
            return LC._cpu_conv(x, w, pairs, lhs, dil, None, reference_conv)
    elif kind == "pointwise":
        def new(x, w):
            return LC._pointwise_conv(x, w, stride, pairs, None)
    else:
        def new(x, w):
            return LC._stacked_taps_conv(x, w, stride, pairs, dil, None)

    y = ref(x, w)
    g = jnp.asarray(rng.standard_normal(y.shape))
    t = (jnp.asarray(rng.standard_normal(xs)), jnp.asarray(rng.standard_normal(ws)))
    full = CONV_CASES.index((kind, xs, ws, stride, pairs, lhs, dil)) in (0, 4, 8, 11, 16)  # second order: a few cases
    close(_conv_derivatives(new, full)(x, w, g, t), _conv_derivatives(ref, full)(x, w, g, t),
          rtol=1e-9, atol=1e-10)


def _conv_derivatives(fn, full):
    """One jitted bundle: value, vjp, jvp and (``full``) grad of grad and vmap(grad) of ``fn(x, w)``."""

    def second(x, w):
        return jnp.sum(jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), argnums=1)(x, w) ** 2)

    def run(x, w, g, t):
        first = (fn(x, w), jax.vjp(fn, x, w)[1](g), jax.jvp(fn, (x, w), t)[1])
        if not full:
            return first
        xb = jnp.stack([x, 2 * x])
        grad_w = jax.vmap(jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=1), (0, None))
        return first + (jax.grad(second, argnums=(0, 1))(x, w), grad_w(xb, w))

    return jax.jit(run)


DEPTHWISE_CASES = [
    # x shape, channel multiplier, kernel, stride, padding pairs, dilation
    ((2, 3, 7, 6), 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 3, 8, 7), 2, (3, 2), (2, 3), ((1, 0), (-1, 2)), (2, 1)),
    ((3, 4, 9), 3, (5,), (2,), ((2, 2),), (1,)),
    ((1, 2, 4, 5, 3), 1, (2, 3, 1), (1, 2, 1), ((0, 1), (1, 1), (0, 0)), (2, 1, 1)),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("xs,mult,kernel,stride,pairs,dil", DEPTHWISE_CASES)
def test_depthwise_conv_matches_the_reference(xs, mult, kernel, stride, pairs, dil, channels_last, rng):
    """The sum over taps equals XLA's grouped convolution (groups = in_channels): values, vjp, jvp,
    and for two cases grad of grad and vmap(grad); computed channels-first or on the channels-last view."""
    chans = xs[1]
    x = jnp.asarray(rng.standard_normal(xs))
    w = jnp.asarray(rng.standard_normal((chans * mult, 1, *kernel)))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, stride, pairs, rhs_dilation=dil, feature_group_count=chans)

    def new(x, w):
        return LC._depthwise_conv(x, w, stride, pairs, dil, channels_last)

    y = ref(x, w)
    g = jnp.asarray(rng.standard_normal(y.shape))
    t = (jnp.asarray(rng.standard_normal(xs)), jnp.asarray(rng.standard_normal(w.shape)))
    full = DEPTHWISE_CASES.index((xs, mult, kernel, stride, pairs, dil)) in (1, 3)
    close(_conv_derivatives(new, full)(x, w, g, t), _conv_derivatives(ref, full)(x, w, g, t),
          rtol=1e-9, atol=1e-10)


def test_depthwise_conv_low_precision_accumulates_in_float32():
    """bfloat16 in, bfloat16 out, but the 27 taps are summed in float32: the result is the float32
    reference rounded once (summing in bfloat16 is off by several of its ulps)."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, 4, 5, 5, 5)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((4, 1, 3, 3, 3)), jnp.bfloat16)
    pairs = ((1, 1),) * 3
    y = LC._depthwise_conv(x, w, (1, 1, 1), pairs, (1, 1, 1))
    want = lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1, 1), pairs,
                                    feature_group_count=4, precision=lax.Precision.HIGHEST)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(want.astype(jnp.bfloat16), np.float32))


def _spy(monkeypatch):
    """Record which path :func:`LC.conv` takes."""
    seen = []
    monkeypatch.setattr(LC, "_cpu_conv", lambda *a: seen.append("taps") or _ref_conv(
        a[0], a[1], (1,) * (a[0].ndim - 2), a[2], a[3], a[4]))
    monkeypatch.setattr(LC, "_stacked_taps_conv", lambda x, w, s, p, d, prec: seen.append("stacked") or _ref_conv(
        x, w, s, p, None, d))
    monkeypatch.setattr(LC, "_pointwise_conv", lambda x, w, s, p, prec: seen.append("pointwise") or _ref_conv(
        x, w, s, p, None, (1,) * len(s)))
    monkeypatch.setattr(LC, "_depthwise_conv", lambda x, w, s, p, d, channels_last: seen.append(
        ("depthwise", channels_last)) or lax.conv_general_dilated(x, w, s, p, rhs_dilation=d,
                                                                  feature_group_count=x.shape[1]))
    return seen


def _call(xs, ws, stride, pairs, lhs=None, groups=1):
    x, w = jnp.zeros(xs), jnp.zeros(ws)
    seen = []

    def ref(x, w, stride, pairs, lhs, dil, groups, precision):
        seen.append("reference")
        return lax.conv_general_dilated(x, w, stride, pairs, lhs_dilation=lhs, rhs_dilation=dil,
                                        feature_group_count=groups)

    LC.conv(x, w, stride=stride, pairs=pairs, dilation=(1,) * len(stride), groups=groups, lhs_dilation=lhs,
            reference=ref)
    return seen


def test_conv_path_choice(monkeypatch):
    """Which path the CPU lowering takes, with autotuning off (algorithmic wins only), and that
    the reference setting always takes the reference."""
    seen = _spy(monkeypatch)
    monkeypatch.setattr(config, "get_autotune", lambda: False)
    cpu = jax.default_backend() == "cpu"
    p1 = ((1, 1), (1, 1))
    assert _call((8, 64, 2, 2), (64, 64, 3, 3), (1, 1), p1) + seen == (["stacked"] if cpu else ["reference"])
    seen.clear()
    assert _call((8, 16, 16, 16), (32, 16, 3, 3), (1, 1), p1) == ["reference"]  # measured only: autotune off
    assert _call((8, 16, 2, 2), (32, 8, 3, 3), (1, 1), p1, groups=2) == ["reference"]  # grouped
    assert _call((2, 2, 5, 5), (3, 2, 7, 7), (1, 1), ((3, 3), (3, 3))) == ["reference"]  # 49 taps
    assert _call((8, 16, 8, 8), (32, 8, 1, 1), (1, 1), ((0, 0), (0, 0)), groups=2) == ["reference"]  # grouped 1x1
    assert seen == []
    for xs, ws, stride in [((8, 16, 16, 16), (32, 16, 1, 1), (2, 2)), ((8, 64, 2, 2), (64, 64, 1, 1), (1, 1)),
                           ((4, 8, 9), (3, 8, 1), (1,))]:  # 1x1, on any map size
        assert _call(xs, ws, stride, ((0, 0),) * len(stride)) + seen == (["pointwise"] if cpu else ["reference"])
        seen.clear()
    for ws in [(16, 1, 3, 3), (32, 1, 7, 7), (16, 1, 1, 1)]:  # depthwise (multiplier 1 or 2), up to 7x7
        assert _call((2, 16, 9, 9), ws, (1, 1), p1, groups=16) + seen == (
            [("depthwise", False)] if cpu else ["reference"])
        seen.clear()
    assert _call((2, 16, 9, 9), (16, 1, 9, 9), (1, 1), p1, groups=16) == ["reference"]  # 81 taps
    assert _call((2, 16, 9, 9), (16, 2, 3, 3), (1, 1), p1, groups=8) == ["reference"]  # 2 channels per group
    assert seen == []
    for xs, ws, lhs in [((8, 16, 8, 8), (32, 16, 4, 4), (2, 2)),  # transposed: skips the dilated input's zeros
                        ((2, 8, 4, 4, 4), (4, 8, 4, 4, 4), (2, 2, 2))]:  # also beyond 27 taps
        assert _call(xs, ws, (1,) * len(lhs), ((2, 2),) * len(lhs), lhs=lhs) + seen == (
            ["taps"] if cpu else ["reference"])
        seen.clear()
    assert _call((2, 8, 5), (4, 8, 4), (1,), ((2, 2),), lhs=(28,)) == ["reference"]  # 28 phases
    assert seen == []
    with config.lowering("reference"):
        assert _call((8, 64, 2, 2), (64, 64, 3, 3), (1, 1), p1) == ["reference"]
        assert _call((8, 16, 8, 8), (32, 16, 4, 4), (1, 1), ((2, 2), (2, 2)), lhs=(2, 2)) == ["reference"]
    assert seen == []


def test_pointwise_conv_in_channels_last_mode_moves_nothing():
    """A 1x1 convolution in channels-last mode compiles to the GEMM alone: the lowering's channel
    moves cancel against the memory-format wrapper's, and the OIHW kernel is not relaid out
    (XLA's convolution needs the kernel HWIO)."""
    if jax.default_backend() != "cpu":
        pytest.skip("CPU lowering")
    rng = np.random.default_rng(5)
    x, w = jnp.asarray(rng.standard_normal((2, 7, 6, 16))), jnp.asarray(rng.standard_normal((8, 16, 1, 1)))
    with config.memory_format("channels_last"):
        compiled = jax.jit(lambda x, w: F.conv2d(x, w, stride=2, padding=(1, 0))).lower(x, w).compile()
    hlo = compiled.as_text()
    assert " dot(" in hlo and " convolution(" not in hlo
    assert " transpose(" not in hlo and " copy(" not in hlo
    want = _ref_conv(jnp.moveaxis(x, -1, 1), w, (2, 2), ((1, 1), (0, 0)), None, (1, 1))
    close(compiled(x, w), jnp.moveaxis(want, 1, -1))


def test_depthwise_conv_in_channels_last_mode_moves_nothing(monkeypatch):
    """In channels-last mode the depthwise lowering computes on the channels-last view (the
    memory-format wrapper says the activations were moved): its moves cancel against the wrapper's,
    and each tap's weights are read as a contiguous vector."""
    if jax.default_backend() != "cpu":
        pytest.skip("CPU lowering")
    seen = _spy(monkeypatch)
    x, w = jnp.zeros((2, 7, 6, 16)), jnp.zeros((32, 1, 3, 3))
    with config.memory_format("channels_last"):
        jax.eval_shape(lambda x, w: F.conv2d(x, w, padding=1, groups=16), x, w)
    jax.eval_shape(lambda x, w: F.conv2d(x, w, padding=1, groups=16), jnp.moveaxis(x, -1, 1), w)
    assert seen == [("depthwise", True), ("depthwise", False)]
    monkeypatch.undo()
    rng = np.random.default_rng(6)
    x, w = jnp.asarray(rng.standard_normal(x.shape)), jnp.asarray(rng.standard_normal(w.shape))
    with config.memory_format("channels_last"):
        compiled = jax.jit(lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=16)).lower(x, w).compile()
    hlo = compiled.as_text()
    assert " convolution(" not in hlo and " transpose(" not in hlo and " copy(" not in hlo
    # each tap's weights are one contiguous vector of a (taps, C) array, not a strided slice of the
    # (C, 1, kh, kw) kernel that the loop would load channel by channel
    assert "[32,1,1,1]" not in hlo
    want = lax.conv_general_dilated(jnp.moveaxis(x, -1, 1), w, (2, 2), ((1, 1), (1, 1)), feature_group_count=16)
    close(compiled(x, w), jnp.moveaxis(want, 1, -1))


def test_conv_candidates_crop_negative_padding():
    """A stride-1 transposed convolution with padding > dilation * (kernel - 1) reaches the lowering
    as a convolution with negative padding; the GEMM candidates crop, as the reference does."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 5)))
    w = jnp.asarray(rng.standard_normal((4, 3, 2, 3)))
    pairs = ((-1, 1), (1, -2))
    want = _ref_conv(x, w, (1, 1), pairs, None, (1, 1))
    close(LC._stacked_taps_conv(x, w, (1, 1), pairs, (1, 1), None), want)
    close(LC._tap_conv(x, w, pairs, (1, 1), None), want)


def test_conv_autotune_measures_once_and_caches_on_disk(monkeypatch, tmp_path):
    """With autotuning on, a k x k convolution is timed against its candidates once per key; the
    decision is kept per process and in the cache file, and the result is the convolution."""
    if jax.default_backend() != "cpu":
        pytest.skip("CPU lowering")
    cache = tmp_path / "tune.json"
    monkeypatch.setattr(config, "_autotune", {"on": True, "cache_file": str(cache)})
    autotune.clear()
    timed = []
    real_time = autotune._time
    monkeypatch.setattr(autotune, "_time", lambda fn, args, repeats: timed.append(1) or real_time(fn, args, 1))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 6)))
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)))
    y = F.conv2d(x, w, padding=1)
    close(y, _ref_conv(x, w, (1, 1), ((1, 1), (1, 1)), None, (1, 1)))
    n = len(timed)
    assert n >= 2  # the reference and at least one candidate
    F.conv2d(x + 1, w, padding=1)
    assert len(timed) == n  # same key: cached
    stored = json.loads(cache.read_text())
    assert len(stored) == 1 and list(stored.values())[0] in ("reference", "tap_weight_grad", "stacked_taps")
    # keyed by the CPU model and its feature flags: an AVX2 and an AVX-512 machine sharing a cache
    # file (a home directory, an image) would have replayed each other's timings
    assert autotune._cpu() in list(stored)[0]
    autotune.clear()
    F.conv2d(x, w, padding=1)
    assert len(timed) == n  # read back from disk
    # a cache path that cannot be written (here a directory) leaves no temporary file behind
    autotune.clear()
    (tmp_path / "dir.json").mkdir()
    monkeypatch.setattr(config, "_autotune", {"on": True, "cache_file": str(tmp_path / "dir.json")})
    F.conv2d(x, w, padding=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.json", "tune.json"]
    autotune.clear()


# ------------------------------------------------------------------------- normalisation lowerings


@pytest.mark.parametrize("faster", ["reference", "fused"])
def test_norm_forward_autotunes_forward_only(monkeypatch, faster):
    """Not differentiated, a lowered norm's forward is the fused one by default and, with
    autotuning on, whichever of it and the reference is timed faster, forward only: the
    program is then that setting's.  Differentiated calls keep torch's analytic derivative."""
    if jax.default_backend() != "cpu":
        pytest.skip("CPU lowering")
    x = jax.ShapeDtypeStruct((6, 32), jnp.float32)

    def ln(a):
        return F.layer_norm(a, (32,))

    def program(setting):
        with config.lowering(setting):
            return jax.jit(ln).lower(x).as_text(debug_info=False)

    assert "stablehlo.case" in program("auto")  # autotuning off: the fused forward (its guard's cond)
    monkeypatch.setattr(config, "_autotune", {"on": True, "cache_file": None})
    autotune.clear()
    jax.clear_caches()  # the norm's inner jit was traced with autotuning off
    asked, real_choose = [], autotune.choose

    def choose(key, candidates, shapes, repeats=5, forward_only=False):
        asked.append((key[0], forward_only))
        return real_choose(key, candidates, shapes, repeats, forward_only)

    def timed(fn, args, repeats):  # the candidate named by `faster` takes 1 s, the other 2 s
        fused = "stablehlo.case" in fn.lower(*args).as_text()
        return 1.0 if fused == (faster == "fused") else 2.0

    monkeypatch.setattr(autotune, "choose", choose)
    monkeypatch.setattr(autotune, "_time", timed)
    got = program("auto")
    assert asked == [("norm forward", True)]
    assert ("stablehlo.case" in got) == (faster == "fused")
    if faster == "reference":
        assert got == program("reference")
    grads = {}
    for setting in ("auto", "reference"):  # differentiated: torch's analytic derivative, not autodiff's
        with config.lowering(setting):
            grads[setting] = jax.jit(jax.grad(lambda a: jnp.sum(ln(a) ** 2))).lower(x).as_text(debug_info=False)
    assert grads["auto"] != grads["reference"]
    autotune.clear()
    jax.clear_caches()

NORM_CASES = [
    ("layer", (3, 4, 5), (2,), (5,)),
    ("batch", (4, 3, 5), (0, 2), (1, 3, 1)),
    ("batch 2-d", (3, 2, 4, 3), (0, 2, 3), (1, 2, 1, 1)),
    ("batch channels-last", (4, 3, 2, 5), (0, 1, 2), (1, 1, 1, 5)),
    ("group", (2, 2, 3, 4), (2, 3), (1, 2, 3, 1)),
]


@pytest.mark.parametrize("kind,shape,axes,pshape", NORM_CASES)
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_fused_norm_matches_the_reference(kind, shape, axes, pshape, offset, rng):
    """The CPU custom-JVP norm (guarded moments, both branches; batch norm in torch's layout on
    the channels-last view) equals the two-pass reference: values, moments, vjp, jvp, second
    order, vmap."""
    from jaxlayers.functional import normalization as N

    x = jnp.asarray(offset + rng.standard_normal(shape))
    w = jnp.asarray(rng.standard_normal(int(np.prod(pshape))))
    b = jnp.asarray(rng.standard_normal(int(np.prod(pshape))))

    def new(x, w, b):
        assert config.get_lowering() == "auto"
        return LN.fused_norm(x, w, b, 1e-5, axes, pshape, reference=_no_reference)

    def ref(x, w, b):
        return N._reference_norm(x, w, b, 1e-5, axes, pshape)

    g = jnp.asarray(rng.standard_normal(shape))
    t = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in (x, w, b))

    def bundle(fn):
        def run(x, w, b, g, t):
            out0 = lambda *a: fn(*a)[0]  # noqa: E731
            hess = jax.hessian(lambda w: jnp.sum(jnp.sin(fn(x, w, b)[0])))(w)
            xb = jnp.stack([x, 2 * x + 1])
            vg = jax.vmap(jax.grad(lambda x: jnp.sum(fn(x, w, b)[0] * g)))(xb)
            return fn(x, w, b), jax.vjp(out0, x, w, b)[1](g), jax.jvp(fn, (x, w, b), t)[1], hess, vg

        return jax.jit(run)

    close(bundle(new)(x, w, b, g, t), bundle(ref)(x, w, b, g, t), rtol=1e-8, atol=1e-9)


def _no_reference(*args):
    raise AssertionError("the lowering fell back to the reference")


def test_batch_norm_in_torch_layout_keeps_the_convolutions_layout():
    """conv -> BatchNorm (training) -> relu -> conv in torch's layout, differentiated: XLA:CPU
    computes the convolutions channels-last; on the channels-last view the norm's elementwise
    passes keep that layout, over the interleaved axes they were relaid to NCHW and back (here
    21 relayouts -> 12).  The values equal the reference setting's."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 16, 8, 8)), jnp.float32)
    w1, w2 = (jnp.asarray(rng.standard_normal((16, 16, 3, 3)) / 12, jnp.float32) for _ in range(2))

    def loss(x, w1, w2):
        h = F.conv2d(x, w1, padding=1)
        h = F.relu(F.batch_norm(h, None, None, training=True).output)
        return jnp.sum(jnp.sin(F.conv2d(h, w2, padding=1)))

    grad = jax.grad(loss, (0, 1, 2))
    programs = {}
    for setting in ("reference", "auto"):
        with config.lowering(setting):
            programs[setting] = jax.jit(grad).lower(x, w1, w2).compile()
    close(programs["auto"](x, w1, w2), programs["reference"](x, w1, w2), rtol=2e-4, atol=2e-5)
    assert relayouts(programs["auto"]) <= 13, relayouts(programs["auto"])


def test_max_pool_indices_forward_is_the_reference_pass():
    """Indices asked for and not differentiated: the CPU setting runs the reference's single pass
    of ``(value, index)`` selects, the same program.  Computing the maxima and then searching
    the taps for them ran 1.3-3x slower (8x112x112x64: 13.6 against 4.3 ms); the search (its
    NaN pass a ``lax.cond``) stays in the derivative, whose stride phases it feeds."""
    x = jax.ShapeDtypeStruct((2, 9, 9, 4), jnp.float32)

    def pool(a):
        return F.max_pool2d(a, 3, 2, 1, return_indices=True, channel_axis=-1)

    programs = {}
    for setting in ("auto", "reference"):
        with config.lowering(setting):
            programs[setting] = jax.jit(pool).lower(x).as_text(debug_info=False)
    assert programs["auto"] == programs["reference"]
    with config.lowering("auto"):
        grad = jax.jit(jax.grad(lambda a: jnp.sum(pool(a)[0]))).lower(x).as_text()
    assert "stablehlo.case" in grad


def test_max_pool_in_torch_layout_keeps_the_convolutions_layout():
    """conv -> relu -> MaxPool2d(3, 2, 1) -> conv (+ the pooled residual) in torch's layout, as
    a ResNet's stem and first block: pooled on the channels-last view, the pool's output stays in
    the convolutions' layout (here 7 relayouts -> 5; pooled as NCHW the result and the add after
    it were relaid).  Values, indices and the gradient equal the reference setting's."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 8, 16, 16)), jnp.float32)
    w1, w2 = (jnp.asarray(rng.standard_normal((8, 8, 3, 3)) / 8, jnp.float32) for _ in range(2))

    def forward(x, w1, w2):
        h, idx = F.max_pool2d(F.relu(F.conv2d(x, w1, padding=1)), 3, 2, 1, return_indices=True)
        return F.conv2d(h, w2, padding=1) + h, idx

    def grad(x, w1, w2):
        return jax.grad(lambda *a: jnp.sum(jnp.sin(forward(*a)[0])), (0, 1, 2))(x, w1, w2)

    programs, grads = {}, {}
    for setting in ("reference", "auto"):
        with config.lowering(setting):
            programs[setting] = jax.jit(forward).lower(x, w1, w2).compile()
            grads[setting] = jax.jit(grad)(x, w1, w2)
    (y, idx), (y_ref, idx_ref) = programs["auto"](x, w1, w2), programs["reference"](x, w1, w2)
    close(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(idx_ref))
    close(grads["auto"], grads["reference"], rtol=1e-4, atol=1e-5)
    assert relayouts(programs["auto"]) <= 5, relayouts(programs["auto"])


def test_fused_norm_keeps_only_its_input_for_reverse_mode(capsys):
    """Reverse mode through the lowered layer norm keeps x and the per-row moments, not
    x̂ or other full-size products (x̂ is recomputed in the backward pass, as torch does)."""
    x, w = jnp.ones((4, 8, 32), jnp.float32), jnp.ones(32, jnp.float32)
    with config.lowering("auto"):
        print_saved_residuals(lambda x, w: F.layer_norm(x, (32,), w, w), x, w)
    full = [line for line in capsys.readouterr().out.splitlines() if "[4,8,32]" in line]
    assert len(full) == 1 and "argument" in full[0], full


def test_norm_lowering_off_the_cpu_and_in_the_reference_setting(monkeypatch):
    """Where the lowering does not apply, fused_norm and scale_trailing call the reference."""
    calls = []
    ref = lambda *a: calls.append("ref") or (a[0], a[0], a[0])  # noqa: E731
    x = jnp.ones((2, 3))
    with config.lowering("reference"):
        LN.fused_norm(x, None, None, 1e-5, (1,), (3,), reference=ref)
        LN.scale_trailing(x, jnp.ones(3), reference=lambda y, w: calls.append("ref") or y * w)
    assert calls == ["ref", "ref"]
    with config.lowering("auto"):  # trailing and leading axes (batch norm channels-last): lowered
        for axes, pshape in (((1, 2), (1, 3, 5)), ((0, 1), (1, 1, 5))):
            LN.fused_norm(jnp.ones((4, 3, 5)), None, None, 1e-5, axes, pshape, reference=ref)
        assert calls == ["ref", "ref"]
        # all but the channel at 1 (batch norm in torch's layout): lowered on the channels-last view
        LN.fused_norm(jnp.ones((4, 3, 5)), None, None, 1e-5, (0, 2), (1, 3, 1), reference=ref)
        assert calls == ["ref", "ref"]
        # other interleaved axes and an empty input: the reference
        LN.fused_norm(jnp.ones((4, 3, 5, 2)), None, None, 1e-5, (1, 3), (4, 1, 5, 1), reference=ref)
        LN.fused_norm(jnp.ones((0, 3)), None, None, 1e-5, (0,), (1, 3), reference=ref)
        assert calls == ["ref", "ref", "ref", "ref"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    LN.fused_norm(x, None, None, 1e-5, (1,), (3,), reference=ref)
    assert calls == ["ref", "ref", "ref", "ref", "ref"]


# ------------------------------------------------------------------------- pdist


def _gram_case(x):
    """The form the pdist lowering picks for ``x``, and each row's near partner."""
    return LD._classify(LD._near(*LD._squared_distances(jnp.asarray(x))))


def _gram_pairs(x):
    """The pairs of the GEMM form alone, with its derivative."""
    return LD._gram_pairs(x, upper_triangle(LD._distances(LD._squared_distances(lax.stop_gradient(x))[1])))


def _pdist_bundle(fn):
    """Values, vjp, jvp, hessian, vmap of grad and grad of vmap of ``fn`` (x -> pairs), one program."""
    def run(x, g, t):
        hess = jax.hessian(lambda x: jnp.sum(jnp.sin(fn(x))))(x)
        xs = jnp.stack([x, 2 * x + 1])
        vg = jax.vmap(jax.grad(lambda x: jnp.sum(fn(x) * g)))(xs)
        gv = jax.grad(lambda xs: jnp.sum(jax.vmap(fn)(xs) * g))(xs)
        return fn(x), jax.vjp(fn, x)[1](g), jax.jvp(fn, (x,), (t,))[1], hess, vg, gv

    return jax.jit(run)


def test_pdist_gram_forms_match_the_reference(rng):
    """pdist p=2 from GEMMs equals the exact pair differences (values, vjp, jvp, second order,
    vmap): separated rows with a common offset (the centring removes it), then a duplicated row
    and a near pair, patched from their exact differences; each form alone and through pdist."""
    from jaxlayers.functional import distance as D

    x = 10 + rng.standard_normal((7, 5))
    patched = x.copy()
    patched[4], patched[6] = x[1], x[2] + 1e-7 * rng.standard_normal(5)
    assert int(_gram_case(x)[0]) == LD._SEPARATED and int(_gram_case(patched)[0]) == LD._PATCHED
    count, partner = LD._partners(LD._near(*LD._squared_distances(jnp.asarray(patched))))
    assert count.tolist() == [0, 1, 1, 0, 1, 0, 1] and np.asarray(partner)[[1, 2, 4, 6]].tolist() == [4, 6, 1, 2]
    g, t = jnp.asarray(rng.standard_normal(21)), jnp.asarray(rng.standard_normal((7, 5)))
    def patched_form(a):
        return LD._patch(a, _gram_pairs(a), _gram_case(lax.stop_gradient(a))[1])

    reference, lowered = _pdist_bundle(lambda x: D._pdist(x, 2.0)), _pdist_bundle(F.pdist)  # one program each
    for a, form in ((x, _gram_pairs), (patched, patched_form)):
        want = reference(a, g, t)
        close(_pdist_bundle(form)(a, g, t), want, rtol=1e-7, atol=1e-9)
        with config.lowering("auto"):
            close(lowered(a, g, t), want, rtol=1e-7, atol=1e-9)


def test_pdist_close_points_keep_torchs_accuracy():
    """float32 rows 1e-4 apart, where the GEMM form's distance is off by more than 10%: a near pair
    (patched from its difference) and a cluster of three (the reference) keep torch's accuracy,
    values and gradient."""
    import torch

    base = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    step = np.float32(1e-4) * np.arange(8, dtype=np.float32) / 8
    pair, cluster = base.copy(), base.copy()
    pair[5] = pair[0] + step
    cluster[4], cluster[5] = cluster[0] + step, cluster[0] - step
    gram = np.asarray(LD._distances(LD._squared_distances(jnp.asarray(pair))[1]))[0, 5]
    exact = np.linalg.norm(step.astype(np.float64))
    assert abs(gram - exact) > 0.1 * exact
    for x, case in ((pair, LD._PATCHED), (cluster, LD._REFERENCE)):
        assert int(_gram_case(x)[0]) == case
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        want = torch.pdist(xt)
        (want_grad,) = torch.autograd.grad(want.sum(), xt)
        with config.lowering("auto"):
            got = jax.jit(F.pdist)(x)
            grad = jax.jit(jax.grad(lambda a: jnp.sum(F.pdist(a))))(x)
        close(got, want.detach().numpy(), rtol=1e-5, atol=1e-6)
        close(grad, want_grad.numpy(), rtol=1e-4, atol=1e-4)


def test_pdist_under_vmap_runs_the_batchs_most_general_form():
    """Under vmap the switch index is the batch's most general case, unbatched (one form runs for
    every element; each form is exact for the cases before it): batches mixing separated rows, a
    near pair and a cluster give each element's own values and gradient."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6, 16))
    pair, cluster = base.copy(), base.copy()
    pair[5] = pair[0] + 1e-6
    cluster[4], cluster[5] = cluster[0] + 1e-6, cluster[0] - 1e-6
    cases = [int(_gram_case(a)[0]) for a in (base, pair, cluster)]
    assert cases == [LD._SEPARATED, LD._PATCHED, LD._REFERENCE]
    g = jnp.asarray(rng.standard_normal(15))

    def value_and_grad(a):
        return jax.value_and_grad(lambda a: jnp.sum(F.pdist(a) * g))(a)

    with config.lowering("auto"):
        one = jax.jit(value_and_grad)
        batched = jax.jit(jax.vmap(value_and_grad))
        for batch in ((base, pair), (base, cluster), (pair, cluster, base)):
            close(batched(jnp.stack(batch)), [jnp.stack(t) for t in zip(*[one(a) for a in batch])],
                  rtol=1e-9, atol=1e-12)
        # one form runs: the switch stays a branch instead of a select over every form's result
        assert " conditional(" in jax.jit(jax.vmap(F.pdist)).lower(jnp.stack([base, pair])).compile().as_text()


def test_pdist_lowering_applies_to_p2_float32_and_float64_on_the_cpu(monkeypatch):
    """The GEMM form (a dot in the program) for p = 2 in float32/float64 (half precision is computed
    in float32) with two rows or more; the reference otherwise, and in the reference setting or off
    the CPU."""
    def gemm(x, p=2.0):
        return "dot_general" in str(jax.make_jaxpr(lambda a: F.pdist(a, p))(x))

    x = jnp.ones((4, 3), jnp.float32)
    with config.lowering("auto"):
        assert gemm(x) and gemm(x.astype(jnp.float64))
        assert gemm(x.astype(jnp.float16)) and not gemm(x, 1.0) and not gemm(x[:1])
    with config.lowering("reference"):
        assert not gemm(x)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with config.lowering("auto"):
        assert LD.pdist(x, 2.0, reference=lambda x, p: "reference") == "reference"


_PDIST_VALUE_AND_GRAD = jax.jit(jax.value_and_grad(lambda a, g: jnp.sum(F.pdist(a) * g)))


def test_pdist_lowering_where_the_expansion_breaks():
    """float32 cases a review found: one column at an offset of 1e6 (the centred rows must be the
    same in every term of the expansion: its gradient was off by 0.02), an infinite entry (the
    GEMM form's derivative, taken outside the switch, made every gradient NaN), and squares that
    overflow (``inf >= inf`` passed the guard: inf where the distance is finite).  The lowering
    gives the reference's values and gradients, NaNs in the same places."""
    line = np.array([[1.3], [-7.2], [4.4], [12.1], [-15.5], [3.0]], np.float32)
    cases = [line + np.float32(1e6),
             np.array([[0, 1], [np.inf, 2], [3, 4], [5, -1], [2, 2], [-3, 0]], np.float32),
             np.float32(3e19) * np.array([[-2], [1], [1.000001], [0.5], [-0.7], [0.2]], np.float32)]
    g = jnp.asarray(np.linspace(-1.0, 1.0, 15, dtype=np.float32))
    want_line = np.sum(np.sign(line - line.T) * _upper_matrix(np.asarray(g), 6), 1, keepdims=True)
    for x in cases:
        got = {}
        for setting in ("auto", "reference"):
            with config.lowering(setting):
                got[setting] = [np.asarray(a) for a in _PDIST_VALUE_AND_GRAD(jnp.asarray(x), g)]
        value, grad = got["auto"]
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(got["reference"][1]))
        close(value, got["reference"][0], rtol=1e-5, atol=0)
        close(np.nan_to_num(grad), np.nan_to_num(got["reference"][1]), rtol=1e-5, atol=1e-5)
    with config.lowering("auto"):
        close(_PDIST_VALUE_AND_GRAD(jnp.asarray(cases[0]), g)[1], want_line, rtol=0, atol=1e-4)


def _upper_matrix(pairs, n):
    """The symmetric ``(n, n)`` matrix with ``pairs`` (pdist's order) above and below the diagonal."""
    m = np.zeros((n, n), pairs.dtype)
    m[np.triu_indices(n, 1)] = pairs
    return m + m.T


@given(rows=st.lists(st.lists(st.sampled_from([-2.0, -1.0, 0.0, 1e-9, 0.5, 1.0, 3.0]), min_size=3, max_size=3),
                     min_size=6, max_size=6))
def test_pdist_lowering_matches_the_reference_on_any_rows(rows):
    """Rows drawn from a few values (duplicates, near pairs, clusters, collinear points): whichever
    form the switch picks gives the reference's distances and gradient (the setting is part of the
    jit cache key, so each setting compiles once)."""
    x = jnp.asarray(np.array(rows))
    g = jnp.asarray(np.linspace(-1.0, 1.0, 15))
    got = {}
    for setting in ("auto", "reference"):
        with config.lowering(setting):
            got[setting] = _PDIST_VALUE_AND_GRAD(x, g)
    close(got["auto"], got["reference"], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------- recurrent layers

RNN_CASES = [
    # mode, proj_size, bidirectional, lengths, full (second order and vmap of grad too)
    ("LSTM", 0, False, None, False),
    ("LSTM", 2, False, (4, 2), True),
    ("LSTM", 2, True, (4, 2), False),
    ("GRU", 0, True, (3, 4), False),
    ("RNN_TANH", 0, False, (4, 1), False),
]


def _rnn_case(mode, proj, bidir, seed=0):
    gates = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    hidden, h_out, num_dir = 3, proj or 3, 2 if bidir else 1
    shapes = {"weight_ih": lambda layer: (gates * hidden, 2 if layer == 0 else h_out * num_dir),
              "weight_hh": lambda layer: (gates * hidden, h_out), "bias_ih": lambda layer: (gates * hidden,),
              "bias_hh": lambda layer: (gates * hidden,), "weight_hr": lambda layer: (proj, hidden)}
    r = np.random.default_rng(seed)
    return {n: jnp.asarray(r.standard_normal(shapes[n.split("_l")[0]](int(n.split("_l")[1][0]))) * 0.6)
            for n in F.rnn_weight_names(2, True, bidir, proj)}


@pytest.mark.parametrize("mode,proj,bidir,lengths,full", RNN_CASES)
def test_recurrent_lowering_matches_the_reference(mode, proj, bidir, lengths, full, rng):
    """The time loop's custom JVP (weights' tangent terms outside the loop) against the plain
    scan: values, reverse mode, forward mode, second order and vmap of the gradient, float64,
    two layers (the second differentiates through the first's outputs), ragged lengths."""
    ws = _rnn_case(mode, proj, bidir)
    x = jnp.asarray(rng.standard_normal((4, 2, 2)))
    lens = None if lengths is None else jnp.asarray(lengths)

    def fn(ws, x, lens=lens):
        out, state = F.rnn(x, None, ws, mode=mode, num_layers=2, bidirectional=bidir, proj_size=proj, lengths=lens)
        return jnp.concatenate([out.ravel()] + [s.ravel() for s in jax.tree.leaves(state)])

    def bundle(ws, x):
        loss = lambda ws, x, lens=lens: jnp.sum(jnp.sin(fn(ws, x, lens)))  # noqa: E731
        tangent = jax.tree.map(jnp.cos, (ws, x))
        first = fn(ws, x), jax.grad(loss, argnums=(0, 1))(ws, x), jax.jvp(fn, (ws, x), tangent)[1]
        if not full:
            return first
        second = jax.grad(lambda ws: jnp.sum(jax.tree.leaves(jax.grad(loss)(ws, x))[0] ** 2))(ws)
        per_example = jax.vmap(jax.grad(loss), (None, 1, None if lens is None else 0))(
            ws, x[:, :, None], None if lens is None else lens[:, None])
        return first + (second, per_example)

    with jax.enable_x64(True):
        ws, x = jax.tree.map(lambda a: a.astype(jnp.float64), (ws, x))
        results = {}
        for setting in ("reference", "auto"):
            with config.lowering(setting):
                results[setting] = jax.jit(bundle)(ws, x)
    close(results["auto"], results["reference"], rtol=1e-10, atol=1e-12)


def _weight_gemms_in_loops(hlo: str, rows: int, cols: int) -> int:
    """Dots with a ``(rows, cols)`` or ``(cols, rows)`` result in a while loop's body."""
    shapes = (f"[{rows},{cols}]", f"[{cols},{rows}]")
    return sum(1 for line in hlo.splitlines() if " dot(" in line and "/while/" in line
               and any(s in line.split(" dot(")[0] for s in shapes))


def test_recurrent_backward_computes_the_weight_gradient_once():
    """Reverse mode through an LSTM adds h_(t-1)^T dgates_t into the (4H, H) weight gradient at
    every step when JAX differentiates the scan; lowered, it is one GEMM after the loop."""
    x = jnp.ones((6, 2, 4))
    m = nn.LSTM(4, 8)
    v = m.init(jax.random.key(0), x, train=False)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(m.apply(v, x, train=False)[0] ** 2)))
    counts = {}
    for setting in ("reference", "auto"):
        with config.lowering(setting):
            counts[setting] = _weight_gemms_in_loops(grad.lower(v).compile().as_text(), 32, 8)
    assert counts == {"reference": 1, "auto": 0}, counts
