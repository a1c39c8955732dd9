"""F.pad and the *Pad1d/2d/3d modules against torch (float64) and a NumPy reference."""

import functools
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from jaxlayers import functional as F
from jaxlayers import nn
from oracle import close

RTOL, ATOL = 1e-12, 1e-13
MODES = ["constant", "reflect", "replicate", "circular"]


_close = functools.partial(close, rtol=RTOL, atol=ATOL)


def _torch_pad(x, pad, mode, value=None):
    xt = torch.from_numpy(x).requires_grad_()
    yt = TF.pad(xt, pad, mode=mode, value=value) if mode == "constant" else TF.pad(xt, pad, mode=mode)
    return xt, yt


def _np_pad(x, pad, mode, value=0.0):
    """Independent reference: NumPy's pad for the positive part, then crop for negatives.

    (torch's circular mode crops before wrapping; reflect/replicate index the original.)
    """
    ndim = x.ndim
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    if mode == "circular":
        sl = [slice(None)] * ndim
        for i, (lo, hi) in enumerate(pairs):
            sl[ndim - 1 - i] = slice(max(-lo, 0), x.shape[ndim - 1 - i] - max(-hi, 0))
        x = x[tuple(sl)]
    width = [(0, 0)] * ndim
    for i, (lo, hi) in enumerate(pairs):
        width[ndim - 1 - i] = (max(lo, 0), max(hi, 0))
    kw = {"constant_values": value} if mode == "constant" else {}
    y = np.pad(x, width, mode={"constant": "constant", "reflect": "reflect", "replicate": "edge",
                               "circular": "wrap"}[mode], **kw)
    if mode != "circular":
        sl = [slice(None)] * ndim
        for i, (lo, hi) in enumerate(pairs):
            d = ndim - 1 - i
            sl[d] = slice(max(-lo, 0), y.shape[d] - max(-hi, 0))
        y = y[tuple(sl)]
    return y


PAD_CASES = [
    ((2, 3, 7), (2, 3)),
    ((3, 7), (1, 0)),  # unbatched 1d
    ((2, 3, 5, 6), (1, 2, 3, 1)),
    ((2, 3, 5, 6), (2, -1, -2, 3)),  # negative = crop
    ((3, 5, 6), (0, 0, 4, 4)),  # unbatched 2d
    ((1, 2, 4, 5, 3), (1, 1, 2, 0, 0, 2)),
    ((2, 4, 5, 3), (-1, 2, 1, -2, 3, 0)),  # unbatched 3d, mixed
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,pad", PAD_CASES)
def test_pad_vs_torch_and_numpy(shape, pad, mode, rng):
    x = rng.standard_normal(shape)
    value = 1.5 if mode == "constant" else None
    xt, yt = _torch_pad(x, pad, mode, value)
    cot = rng.standard_normal(tuple(yt.shape))

    @jax.jit
    def fwd_bwd(a, c):
        y, vjp = jax.vjp(lambda a: F.pad(a, pad, mode, value), a)
        return y, vjp(c)[0]

    y, gx = fwd_bwd(x, cot)
    assert y.shape == tuple(yt.shape) and y.dtype == jnp.float64
    _close(y, yt.detach().numpy())
    _close(y, _np_pad(x, pad, mode, 1.5 if mode == "constant" else 0.0))
    yt.backward(torch.from_numpy(cot))
    _close(gx, xt.grad.numpy())


def test_pad_constant_any_rank_and_default_value(rng):
    x = rng.standard_normal((2, 3, 2, 2, 2, 3))
    pad = (1, 2, 0, 1, 2, 0, 1, 1, 0, 0, 1, -1)
    _close(F.pad(x, pad), TF.pad(torch.from_numpy(x), pad).numpy())
    assert F.pad(jnp.ones(3, jnp.int32), (1, 1)).dtype == jnp.int32
    _close(F.pad(np.arange(3.0), (2, 0), value=7.0), [7, 7, 0, 1, 2])


class PadVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_float32_and_vmap(self):
        x = np.random.default_rng(1).standard_normal((4, 2, 3, 6, 5)).astype(np.float32)
        for mode, pad in [("constant", (1, -1, 2, 0)), ("reflect", (2, 1, 0, 3)), ("replicate", (3, 0, 1, 1)),
                          ("circular", (-1, 5, 2, 2))]:
            f = self.variant(lambda a, pad=pad, mode=mode: F.pad(a, pad, mode))
            y = jax.vmap(f)(x)
            assert y.dtype == jnp.float32
            ref = TF.pad(torch.from_numpy(x).double().flatten(0, 1), pad, mode=mode).numpy()
            _close(y.reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)
            _close(f(x[1]), y[1], rtol=0, atol=0)


MODULES = [
    (nn.ZeroPad1d, torch.nn.ZeroPad1d, 1, ()), (nn.ZeroPad2d, torch.nn.ZeroPad2d, 2, ()),
    (nn.ZeroPad3d, torch.nn.ZeroPad3d, 3, ()),
    (nn.ConstantPad1d, torch.nn.ConstantPad1d, 1, (2.5,)), (nn.ConstantPad2d, torch.nn.ConstantPad2d, 2, (-1.0,)),
    (nn.ConstantPad3d, torch.nn.ConstantPad3d, 3, (0.5,)),
    (nn.ReflectionPad1d, torch.nn.ReflectionPad1d, 1, ()), (nn.ReflectionPad2d, torch.nn.ReflectionPad2d, 2, ()),
    (nn.ReflectionPad3d, torch.nn.ReflectionPad3d, 3, ()),
    (nn.ReplicationPad1d, torch.nn.ReplicationPad1d, 1, ()),
    (nn.ReplicationPad2d, torch.nn.ReplicationPad2d, 2, ()),
    (nn.ReplicationPad3d, torch.nn.ReplicationPad3d, 3, ()),
    (nn.CircularPad1d, torch.nn.CircularPad1d, 1, ()), (nn.CircularPad2d, torch.nn.CircularPad2d, 2, ()),
    (nn.CircularPad3d, torch.nn.CircularPad3d, 3, ()),
]


@pytest.mark.parametrize("ours,theirs,n,extra", MODULES, ids=[m[0].__name__ for m in MODULES])
@pytest.mark.parametrize("batched", [True, False])
def test_pad_modules_vs_torch(ours, theirs, n, extra, batched, rng):
    shape = ((2,) if batched else ()) + (3,) + (5, 4, 3)[:n]
    x = rng.standard_normal(shape)
    for padding in (2, tuple(range(1, 2 * n + 1))[::-1]):
        padding = padding if isinstance(padding, int) else tuple(min(p, 2) for p in padding)
        m = ours(padding, *extra)
        assert m.init(jax.random.key(0), x) == {}
        y = m.apply({}, x)
        yt = theirs(padding, *extra)(torch.from_numpy(x))
        assert y.shape == tuple(yt.shape)
        _close(y, yt.numpy())


def test_pad_module_fields_like_torch():
    assert nn.ConstantPad2d(1, 3.0).value == 3.0
    assert nn.ZeroPad2d((1, 2, 3, 4)).padding == (1, 2, 3, 4)
    y = nn.ZeroPad2d((1, -1, 0, 0)).apply({}, np.arange(6.0).reshape(1, 2, 3))
    _close(y, [[[0, 0, 1], [0, 3, 4]]])


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "shape,pad,mode,exc,match",
    [
        ((2, 3, 4), (1,), "constant", ValueError, r"pad: padding length must be divisible by 2"),
        ((3, 4), (1, 1, 1, 1, 1, 1), "constant", ValueError, r"pad: padding length must be at most twice.*\(3, 4\)"),
        ((1, 2, 4), (4, 0), "reflect", ValueError, r"pad: reflect padding must be smaller.*\(4, 0\).*size 4"),
        ((1, 2, 4), (0, 5), "circular", ValueError, r"pad: circular padding must be at most.*size 4"),
        ((1, 2, 4), (-4, 1), "circular", ValueError, r"pad: negative circular padding \(-4, 1\) leaves an empty"),
        ((1, 2, 4), (-5, 0), "constant", ValueError, r"pad: padding \(-5, 0\) of dim 2 crops more than its size 4"),
        ((1, 2, 4), (-5, 0), "reflect", ValueError, r"pad: padding \(-5, 0\) of dim 2 crops more than its size 4"),
        # torch crops before it pads: (2, -3) of a 2-long dim is an error there, not a 1-long output
        ((2,), (2, -3), "constant", ValueError, r"pad: padding \(2, -3\) of dim 0 crops more than its size 2"),
        ((1, 3), (-1, -2), "reflect", ValueError, r"pad: mode='reflect' padding \(-1, -2\) gives an empty output in every"),
        ((1, 3), (-1, -2), "replicate", ValueError, r"pad: mode='replicate' padding \(-1, -2\) gives an"),
        ((4,), (1, 1), "reflect", ValueError, r"pad: mode='reflect' with pad of length 2 needs a 2-D or 3-D.*\(4,\)"),
        ((2, 4), (1, 1, 1, 1), "replicate", ValueError, r"pad: mode='replicate'.*3-D or 4-D.*\(2, 4\)"),
        ((1, 1, 1, 1, 4), (1, 1), "circular", ValueError, r"pad: mode='circular'.*2-D or 3-D"),
        ((1, 2, 4), (1, 1), "wrap", ValueError, r"pad: mode must be one of"),
        ((1, 2, 4), 2, "constant", TypeError, r"pad: pad must be a sequence of ints"),
        # torch: only the batch dim may be empty (reflect/replicate); a left wrap past the cropped data
        ((1, 0, 3), (1, 1), "reflect", ValueError, r"pad: mode='reflect' needs non-empty dims apart from the batch"),
        ((0, 3), (1, 1), "replicate", ValueError, r"pad: mode='replicate' needs non-empty dims"),
        ((2, 3, 0), (0, 0), "replicate", ValueError, r"pad: mode='replicate' needs non-empty dims"),
        ((1, 4, 3), (3, -2), "circular", ValueError, r"pad: circular padding \(3, -2\) wraps the left side"),
        ((1, 2, 4), (1.0, 1), "constant", TypeError, r"pad: pad must be a sequence of ints"),
    ],
)
def test_pad_errors(shape, pad, mode, exc, match):
    with pytest.raises(exc, match=match):
        F.pad(jnp.zeros(shape), pad, mode)


def test_pad_value_with_non_constant_mode_is_an_error():
    with pytest.raises(ValueError, match=r"pad: padding mode 'reflect' does not take a value"):
        F.pad(jnp.zeros((1, 2, 4)), (1, 1), "reflect", 2.0)


def test_pad_module_errors():
    with pytest.raises(ValueError, match=r"ReflectionPad2d: padding must be an int or a sequence of 4 ints"):
        nn.ReflectionPad2d((1, 2))
    with pytest.raises(TypeError, match=r"ZeroPad1d: padding must be an int"):
        nn.ZeroPad1d("1")
    with pytest.raises(ValueError, match=r"ReflectionPad1d: reflect padding must be smaller.*size 3"):
        nn.ReflectionPad1d(3).apply({}, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"ReplicationPad3d: mode='replicate' with pad of length 6 needs a 4-D or 5-D"):
        nn.ReplicationPad3d(1).apply({}, jnp.zeros((2, 3, 4)))


# --------------------------------------------------------------------------------- hypothesis


@given(
    n=st.integers(1, 3),
    batched=st.booleans(),
    mode=st.sampled_from(MODES),
    sizes=st.lists(st.integers(1, 5), min_size=3, max_size=3),
    pads=st.lists(st.integers(-5, 6), min_size=6, max_size=6),
)
def test_pad_shape_and_errors_match_torch(n, batched, mode, sizes, pads):
    shape = ((2,) if batched else ()) + (2,) + tuple(sizes[:n])
    pad = tuple(pads[: 2 * n])
    x = np.zeros(shape)
    try:
        torch_shape = tuple(TF.pad(torch.from_numpy(x), pad, mode=mode).shape)
    except (RuntimeError, NotImplementedError, ValueError):
        torch_shape = None
    if torch_shape is not None and 0 in torch_shape:
        return  # torch allows some empty results we treat the same or reject: not part of the contract
    try:
        ours = jax.eval_shape(lambda a: F.pad(a, pad, mode), x).shape
    except ValueError:
        ours = None
    if mode == "circular" and torch_shape is not None and ours is None:
        # torch silently reads garbage when negative circular padding empties a dim; we raise.
        assert any(s + min(lo, 0) + min(hi, 0) <= 0 for s, lo, hi in
                   zip(shape[::-1], pad[0::2], pad[1::2]))
        return
    assert ours == torch_shape


def test_empty_inputs_like_torch():
    for shape, pad, mode in (((0, 2, 3), (1, 1), "reflect"), ((2, 3, 0), (0, 0), "circular"),
                             ((0, 2, 3), (2, 1), "replicate")):
        y = F.pad(jnp.zeros(shape), pad, mode)
        assert y.shape == tuple(TF.pad(torch.zeros(shape), pad, mode=mode).shape)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_reflect_replicate_may_empty_one_of_several_dims_as_torch(mode):
    """torch raises only when every padded dim is empty; one of two may be."""
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    close(F.pad(jnp.asarray(x), (0, 0, -3, 0), mode=mode), TF.pad(torch.tensor(x), (0, 0, -3, 0), mode=mode))
    close(F.pad(jnp.asarray(x), (-4, 1, 0, 1), mode=mode), TF.pad(torch.tensor(x), (-4, 1, 0, 1), mode=mode))


def test_constant_fill_out_of_an_integer_range_raises_as_torch():
    with pytest.raises(ValueError, match=r"pad: value -0.5 cannot be converted to uint8 without overflow"):
        F.pad(jnp.zeros(2, jnp.uint8), (1, 1), value=-0.5)
    with pytest.raises(RuntimeError):
        TF.pad(torch.zeros(2, dtype=torch.uint8), (1, 1), value=-0.5)
    np.testing.assert_array_equal(F.pad(jnp.zeros(2, jnp.int32), (1, 1), value=1.5),  # truncated, as torch
                                  TF.pad(torch.zeros(2, dtype=torch.int32), (1, 1), value=1.5).numpy())
