"""pixel_shuffle / pixel_unshuffle / channel_shuffle / unfold / fold and their modules
against torch (float64): outputs, gradients, output sizes (hypothesis), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import close, jax_fwd_bwd, torch_fwd_bwd

from jaxlayers import functional as F
from jaxlayers import nn

RNG = np.random.default_rng(0)


def _parity_many(cases):
    """``[(jfn, tfn, x), ...]``: outputs and input gradients against torch, one jitted call."""
    xs, cts, want = [], [], []
    for _, tfn, x in cases:
        xs.append(jnp.asarray(x))
        cts.append(RNG.normal(size=tuple(tfn(torch.from_numpy(x)).shape)))
        want.append(torch_fwd_bwd(tfn, cts[-1], x))

    @jax.jit
    def run(xs, cts):
        return [jax_fwd_bwd(c[0], ct, a) for c, a, ct in zip(cases, xs, cts)]

    for i, ((j_out, (j_g,)), (t_out, (t_g,))) in enumerate(zip(run(xs, cts), want)):
        assert j_out.shape == t_out.shape, i
        close(j_out, t_out, err_msg=f"output of case {i}")
        close(j_g, t_g, err_msg=f"input gradient of case {i}")


def test_shuffles_match_torch():
    x4, x5, x3 = RNG.normal(size=(2, 8, 3, 4)), RNG.normal(size=(2, 3, 18, 2, 3)), RNG.normal(size=(9, 2, 3))
    _parity_many([
        (lambda a: F.pixel_shuffle(a, 2), lambda t: TF.pixel_shuffle(t, 2), x4),
        (lambda a: F.pixel_shuffle(a, 3), lambda t: TF.pixel_shuffle(t, 3), x5),  # extra leading dims
        (lambda a: F.pixel_shuffle(a, 3), lambda t: TF.pixel_shuffle(t, 3), x3),  # unbatched
        (lambda a: F.pixel_unshuffle(a, 2), lambda t: TF.pixel_unshuffle(t, 2), RNG.normal(size=(2, 3, 4, 6))),
        (lambda a: F.pixel_unshuffle(a, 3), lambda t: TF.pixel_unshuffle(t, 3), RNG.normal(size=(2, 1, 2, 3, 6))),
        (lambda a: F.channel_shuffle(a, 4), lambda t: TF.channel_shuffle(t, 4), x4),
        (lambda a: F.channel_shuffle(a, 3), lambda t: TF.channel_shuffle(t, 3), x5),
    ])


def test_pixel_unshuffle_inverts_shuffle():
    x = RNG.normal(size=(2, 18, 3, 4))
    np.testing.assert_array_equal(F.pixel_unshuffle(F.pixel_shuffle(x, 3), 3), x)
    np.testing.assert_array_equal(F.native_channel_shuffle(x, 3), TF.native_channel_shuffle(torch.from_numpy(x), 3))


BLOCKS = [dict(kernel_size=2), dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 2), stride=(2, 3)),
          dict(kernel_size=3, padding=1, stride=2), dict(kernel_size=(1, 4), stride=(3, 1), dilation=2),
          # more than 9 taps: one spatial dim at a time; windows that tile a dim: a reshape
          dict(kernel_size=(4, 3), stride=(1, 2), dilation=(1, 2), padding=(1, 0)),
          dict(kernel_size=(2, 4), stride=(2, 4)), dict(kernel_size=(3, 4), stride=(3, 2))]


def test_unfold_and_fold_match_torch():
    x = RNG.normal(size=(2, 3, 7, 8))
    cases = []
    for kw in BLOCKS:
        cols = RNG.normal(size=tuple(TF.unfold(torch.from_numpy(x), **kw).shape))
        cases += [
            (lambda a, kw=kw: F.unfold(a, **kw), lambda t, kw=kw: TF.unfold(t, **kw), x),
            (lambda a, kw=kw: F.fold(a, (7, 8), **kw), lambda t, kw=kw: TF.fold(t, (7, 8), **kw), cols),
        ]
    kw = BLOCKS[1]
    cases += [(lambda a: F.unfold(a, **kw), lambda t: TF.unfold(t, **kw), x[0]),  # unbatched
              (lambda a: F.fold(a, (7, 8), **kw), lambda t: TF.fold(t, (7, 8), **kw),
               RNG.normal(size=tuple(TF.unfold(torch.from_numpy(x[0]), **kw).shape)))]
    _parity_many(cases)


@pytest.mark.parametrize("kw,most_slices", [(dict(kernel_size=3, padding=1), 9), (dict(kernel_size=7), 14),
                                              (dict(kernel_size=16, stride=16), 2), (dict(kernel_size=16, stride=8), 32)])
def test_unfold_program_grows_with_kernel_sides_not_taps(kw, most_slices):
    # kh * kw slices compiled for seconds beyond a few dozen taps (16x16 patches: 12 s)
    for fn in (lambda a: F.unfold(a, **kw), lambda a: jnp.sum(jnp.sin(F.unfold(a, **kw)))):
        text = jax.jit(fn).lower(jnp.zeros((1, 3, 64, 64))).as_text()
        assert text.count("stablehlo.slice") <= most_slices, text.count("stablehlo.slice")


def test_fold_is_the_transpose_of_unfold():
    x = jnp.asarray(RNG.normal(size=(1, 2, 6, 5)))
    kw = BLOCKS[1]
    cols = jnp.asarray(RNG.normal(size=jax.eval_shape(lambda a: F.unfold(a, **kw), x).shape))
    lhs, rhs = jax.jit(lambda a, c: (jnp.vdot(F.unfold(a, **kw), c), jnp.vdot(a, F.fold(c, (6, 5), **kw))))(x, cols)
    close(lhs, rhs)


def test_unfold_column_order_is_channel_major():
    x = np.arange(2 * 3 * 3, dtype=np.float64).reshape(1, 2, 3, 3)
    y = np.asarray(F.unfold(x, 2))
    # column c * 4 + i * 2 + j of block (0, 0) is x[0, c, i, j]
    np.testing.assert_array_equal(y[0, :, 0], x[0, :, :2, :2].reshape(-1))


@settings(max_examples=12)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_block_output_sizes_match_torch(h, w, k, d, p, s):
    kw = dict(kernel_size=k, dilation=d, padding=p, stride=s)
    x = torch.zeros(1, 2, h, w)
    try:
        want = tuple(TF.unfold(x, **kw).shape)
    except RuntimeError:
        with pytest.raises(ValueError, match="unfold: .*sliding blocks"):
            jax.eval_shape(lambda a: F.unfold(a, **kw), jnp.zeros((1, 2, h, w)))
        return
    assert jax.eval_shape(lambda a: F.unfold(a, **kw), jnp.zeros((1, 2, h, w))).shape == want
    got = jax.eval_shape(lambda a: F.fold(a, (h, w), **kw), jnp.zeros(want)).shape
    assert got == tuple(TF.fold(torch.zeros(want), (h, w), **kw).shape)


def test_modules_match_torch():
    x = RNG.normal(size=(2, 8, 4, 6))
    tx = torch.from_numpy(x)
    close(nn.PixelShuffle(2).apply({}, x), torch.nn.PixelShuffle(2)(tx))
    close(nn.PixelUnshuffle(2).apply({}, x), torch.nn.PixelUnshuffle(2)(tx))
    close(nn.ChannelShuffle(4).apply({}, x), torch.nn.ChannelShuffle(4)(tx))
    kw = dict(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=2)
    cols = nn.Unfold(**kw).apply({}, x)
    close(cols, torch.nn.Unfold(**kw)(tx))
    close(nn.Fold((4, 6), **kw).apply({}, cols), torch.nn.Fold((4, 6), **kw)(torch.from_numpy(np.array(cols))))


X = np.zeros((1, 5, 3, 4))


def _channels_last(call):
    from jaxlayers import config

    with config.memory_format("channels_last"):
        return call()


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.pixel_shuffle(X, 2), ValueError, r"pixel_shuffle: the channel dimension .*5.* divisible by .*4"),
    (lambda: F.pixel_shuffle(np.zeros((4, 3)), 2), ValueError, "at least 3 dimensions"),
    (lambda: F.pixel_shuffle(X, 0), ValueError, "pixel_shuffle: upscale_factor must be positive"),
    (lambda: F.pixel_shuffle(X, 1.5), TypeError, "upscale_factor must be an int"),
    (lambda: F.pixel_unshuffle(X, 2), ValueError, r"pixel_unshuffle: the height .* divisible by downscale_factor=2"),
    (lambda: F.pixel_unshuffle(np.zeros((1, 1, 4, 3)), 2), ValueError, "the width"),
    (lambda: F.channel_shuffle(X, 2), ValueError, r"channel_shuffle: the number of channels \(5\).*groups \(2\)"),
    (lambda: F.channel_shuffle(np.zeros((2, 4)), 2), ValueError, "more than 2 dimensions"),
    (lambda: F.channel_shuffle(X, 0), ValueError, "groups must be positive"),
    (lambda: F.unfold(np.zeros((2, 3)), 2), ValueError, "unfold: expected 4-D .* got 2-D input of shape"),
    (lambda: F.unfold(X, 5), ValueError, r"unfold: input of spatial size \(3, 4\) .* sliding blocks"),
    (lambda: F.unfold(X, (2, 2, 2)), ValueError, "unfold: kernel_size must be"),
    (lambda: F.unfold(X, 2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: F.unfold(X, 2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: F.fold(np.zeros((1, 7, 4)), 3, 2), ValueError, r"fold: expected the input's dimension 1 \(7\)"),
    (lambda: F.fold(np.zeros((1, 8, 5)), 3, 2), ValueError, r"2 \* 2 = 4 sliding blocks.*last dimension is 5"),
    (lambda: F.fold(np.zeros((1, 1, 8, 5)), 3, 2), ValueError, "fold: expected 3-D"),
    (lambda: F.fold(np.zeros((1, 8, 4)), 0, 2), ValueError, "output_size must be >= 1"),
    (lambda: nn.PixelShuffle(0), ValueError, "PixelShuffle: upscale_factor must be positive"),
    (lambda: nn.PixelShuffle(2).apply({}, X), ValueError, "PixelShuffle: the channel dimension"),
    (lambda: nn.ChannelShuffle(-1), ValueError, "ChannelShuffle: groups"),
    (lambda: nn.Unfold(kernel_size=0), ValueError, "Unfold: kernel_size must be >= 1"),
    (lambda: nn.Fold(output_size=(2, 2, 2), kernel_size=2), ValueError, "Fold: output_size must be"),
    (lambda: nn.Fold(output_size=4, kernel_size=2).apply({}, np.zeros((1, 7, 9))), ValueError, "Fold: expected"),
    (lambda: F.unfold(np.zeros((1, 0, 3, 3)), 2), ValueError, r"unfold: dims other than the batch dim must be non-empty"),
    (lambda: F.fold(np.zeros((1, 4, 0)), 3, 2), ValueError, r"fold: dims other than the batch dim must be non-empty"),
    # channels-last input must be (N, H, W, C): an unbatched (H, W, C) was moved as if (H, C, W)
    (lambda: _channels_last(lambda: F.pixel_shuffle(np.zeros((4, 2, 4)), 2)), ValueError,
     r"pixel_shuffle: memory_format 'channels_last' expects a batched input"),
    (lambda: _channels_last(lambda: nn.PixelUnshuffle(2).apply({}, np.zeros((4, 4, 2)))), ValueError,
     r"PixelUnshuffle: memory_format 'channels_last' expects a batched input"),
], ids=range(28))
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_inputs_like_torch():
    cases = [(F.pixel_unshuffle, TF.pixel_unshuffle, (0, 1, 2, 2), (2,)),  # torch returns an empty input as is
             (F.pixel_unshuffle, TF.pixel_unshuffle, (1, 1, 0, 2), (2,)),
             (F.pixel_shuffle, TF.pixel_shuffle, (0, 4, 2, 2), (2,)),
             (F.unfold, TF.unfold, (0, 2, 3, 3), (2,)), (F.fold, TF.fold, (0, 4, 4), (3, 2))]
    for ours, theirs, shape, args in cases:
        assert ours(jnp.zeros(shape), *args).shape == tuple(theirs(torch.zeros(shape), *args).shape)


def test_fold_of_bool_blocks_ors_the_overlaps_as_torch():
    c = np.random.default_rng(0).random((2, 4, 4)) > 0.5  # 2x2 blocks, 4 of them, overlapping on a 3x3 image
    got = F.fold(jnp.asarray(c), 3, 2)
    assert got.dtype == jnp.bool_
    np.testing.assert_array_equal(got, TF.fold(torch.tensor(c), 3, 2).numpy())
