"""Fractional max pooling (Graham 2014), as torch's ``fractional_max_pool2d/3d``.

Each ``(n, c)`` plane draws one sample ``u ~ U(0, 1)`` per spatial dim; the window
starts along a dim of input size ``L``, output size ``O`` and kernel ``k`` are torch's
``generate_intervals`` (aten ``FractionalMaxPool2d.cpp``), computed in the input's dtype:

.. code-block:: text

    alpha    = (L - k) / (O - 1)
    start[i] = int((i + u) * alpha) - int(u * alpha)    for i < O - 1
    start[O - 1] = L - k

and the output is the maximum over the ``k``-window at each start.  With the same
samples (``_random_samples``, shape ``(N, C, 2)`` or ``(N, C, 3)``, torch's order: W, H
for 2-d; T, H, W for 3-d) outputs, indices and gradients are torch's exactly.

The whole computation is one gather: the ``prod(k)`` taps of every window are read at
once (no loop over positions), the first maximum in row-major window order is taken
(a NaN wins: the last NaN of the window, as torch's ``val > max || isnan(val)``), and
the gradient flows back through the gather as a scatter-add to the argmax, as torch's.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._memory_format import channels_last
from .._utils import always_indices, compiled, index_dtype, ntuple, shape_str

__all__ = ["fractional_max_pool2d", "fractional_max_pool3d", "fractional_max_pool2d_with_indices",
           "fractional_max_pool3d_with_indices"]

Array = jax.Array


def _fractional_args(name: str, d: int, kernel_size: Any, output_size: Any, output_ratio: Any,
                     *, module: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None, tuple[float, ...] | None]:
    """Parsed ``(kernel, output_size, output_ratio)``; exactly one of the last two is set.

    torch's function ignores ``output_ratio`` when ``output_size`` is given; its module rejects
    both, and a ratio outside ``(0, 1)``.
    """
    kernel = ntuple(kernel_size, d, "kernel_size", name, min_value=1)
    if output_size is None and output_ratio is None:
        raise ValueError(f"{name}: requires specifying either an output_size or an output_ratio")
    if output_size is not None:
        if module and output_ratio is not None:
            raise ValueError(f"{name}: only one of output_size and output_ratio may be specified, got "
                             f"output_size={output_size!r} and output_ratio={output_ratio!r}")
        return kernel, ntuple(output_size, d, "output_size", name, min_value=0), None
    if isinstance(output_ratio, (int, float, np.number)) and not isinstance(output_ratio, bool):
        ratio = (float(output_ratio),) * d
    elif isinstance(output_ratio, (tuple, list)) and len(output_ratio) in (1, d) and all(
            isinstance(r, (int, float, np.number)) and not isinstance(r, bool) for r in output_ratio):
        ratio = tuple(float(r) for r in output_ratio) * (d if len(output_ratio) == 1 else 1)
    else:
        raise TypeError(f"{name}: output_ratio must be a number or a sequence of {d} numbers, got {output_ratio!r}")
    if not all(0.0 < r < 1.0 for r in ratio):
        raise ValueError(f"{name}: output_ratio must be between 0 and 1 (exclusive), got {output_ratio!r}")
    return kernel, None, ratio


def _intervals(u: Array, in_size: int, out_size: int, k: int) -> Array:
    """torch's ``generate_intervals`` for samples ``u`` of any shape: ``u.shape + (out_size,)`` starts."""
    last = jnp.full(u.shape + (min(out_size, 1),), in_size - k, jnp.int32)
    if out_size <= 1:
        return last
    dt = u.dtype
    alpha = jnp.asarray(np.asarray(in_size - k, dt) / np.asarray(out_size - 1, dt), dt)
    i = jnp.arange(out_size - 1, dtype=dt)
    u = u[..., None]
    starts = ((i + u) * alpha).astype(jnp.int32) - (u * alpha).astype(jnp.int32)
    # in half precision a rounded product can pass the last window start (torch asserts there):
    # clamped, the window stays inside its row instead of wrapping into the next
    return jnp.concatenate([jnp.minimum(starts, in_size - k), last], axis=-1)


def _pooled(x: Array, samples: Array, out: tuple, kernel: tuple, unbatched: bool) -> tuple[Array, Array]:
    """Each window's maximum and its flat input index, torch's pick among ties and NaNs; ``samples``
    ``(>= N, C, d)`` in [0, 1) place the windows."""
    if unbatched:
        x = x[None]
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    samples = jax.lax.stop_gradient(samples[:n].astype(x.dtype))
    d = len(spatial)
    # torch's sample order: (W, H) in 2-d, (T, H, W) in 3-d
    order = (1, 0) if d == 2 else (0, 1, 2)
    strides = [math.prod(spatial[j + 1:]) for j in range(d)]
    # flat input index of every tap of every window: (N, C, *out, *kernel)
    flat = jnp.zeros((n, c) + (1,) * (2 * d), jnp.int32)
    for j in range(d):  # static: the spatial dims
        starts = _intervals(samples[:, :, order[j]], spatial[j], out[j], kernel[j])  # (N, C, O_j)
        pos = starts[..., None] + jnp.arange(kernel[j], dtype=jnp.int32)  # (N, C, O_j, k_j)
        shape = [n, c] + [1] * (2 * d)
        shape[2 + j], shape[2 + d + j] = out[j], kernel[j]
        flat = flat + (pos * strides[j]).reshape(shape)
    flat = flat.reshape((n, c) + tuple(out) + (math.prod(kernel),))  # (N, C, *out, K)
    xf = x.reshape(n, c, math.prod(spatial))  # sizes spelt out: a -1 cannot be inferred for an empty batch
    taps = jnp.take_along_axis(xf, flat.reshape(n, c, math.prod(flat.shape[2:])), axis=2).reshape(flat.shape)
    nan = jnp.isnan(taps)
    last_nan = nan.shape[-1] - 1 - jnp.argmax(nan[..., ::-1], axis=-1)
    first_max = jnp.argmax(jnp.where(nan, -jnp.inf, taps), axis=-1)
    sel = jnp.where(jnp.any(nan, axis=-1), last_nan, first_max)
    idx = jnp.take_along_axis(flat, sel[..., None], axis=-1)[..., 0]  # (N, C, *out)
    y = jnp.take_along_axis(xf, idx.reshape(n, c, math.prod(out)), axis=2).reshape(idx.shape)
    idx = idx.astype(index_dtype())
    return (y[0], idx[0]) if unbatched else (y, idx)


def _fractional_max_pool(input: Any, kernel_size: Any, output_size: Any, output_ratio: Any,
                         return_indices: bool, samples: Any, key: Any, d: int, name: str, *,
                         module: bool = False) -> Array | tuple[Array, Array]:
    kernel, out, ratio = _fractional_args(name, d, kernel_size, output_size, output_ratio, module=module)
    x = jnp.asarray(input)
    layouts = "(C, H, W) or (N, C, H, W)" if d == 2 else "(C, T, H, W) or (N, C, T, H, W)"
    if x.ndim not in (d + 1, d + 2):
        raise ValueError(f"{name}: expected {d + 1}-D or {d + 2}-D input {layouts}, got {x.ndim}-D input of shape "
                         f"{shape_str(x)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating-point input, got {x.dtype}")
    unbatched = x.ndim == d + 1
    shape = (1,) * unbatched + x.shape
    n, c, spatial = shape[0], shape[1], shape[2:]
    if any(s == 0 for s in shape[1:]):
        raise ValueError(f"{name}: expected input with non-zero channel and spatial sizes, got shape "
                         f"{shape_str(x)}")
    if out is None:
        out = tuple(int(s * r) for s, r in zip(spatial, ratio))
    # torch's checks: o + k - 1 <= size in 2-d, o + k - 1 < size in 3-d
    rule = "<=" if d == 2 else "<"
    for j, (size, o, k) in enumerate(zip(spatial, out, kernel)):
        if o + k - 1 > size - (d == 3):
            raise ValueError(f"{name}: kernel_size={kernel} with output_size={out} is too large for input of shape "
                             f"{shape_str(x)} (needs output_size + kernel_size - 1 {rule} input size "
                             f"in every spatial dim, as torch; dim {j + 2 - unbatched} has {size})")
    if samples is None:
        if key is None:
            raise ValueError(f"{name}: a PRNG `key` is required unless _random_samples is given; pass "
                             f"key=jax.random.key(seed) (the module takes it from the 'dropout' rng stream)")
        samples = jax.random.uniform(key, (n, c, d), x.dtype)
    else:
        samples = jnp.asarray(samples)
        if samples.ndim != 3 or samples.shape[0] < n or samples.shape[1:] != (c, d):
            raise ValueError(f"{name}: expected _random_samples of shape {shape_str((n, c, d))} (or more rows, as "
                             f"torch: the first N are used) for input of shape {shape_str(x)}, "
                             f"got {shape_str(samples)}")
    # one program per shape and options when called outside jit (op by op it compiled ~40)
    y, idx = compiled(_pooled, (tuple(out), kernel, unbatched), x, samples)
    return (y, idx) if return_indices else y


@channels_last(spatial=2)
def fractional_max_pool2d(input: Any, kernel_size: Any, output_size: Any = None, output_ratio: Any = None,
                          return_indices: bool = False, _random_samples: Any = None, *,
                          key: Any = None) -> Array | tuple[Array, Array]:
    """2-d fractional max pooling, as ``torch.nn.functional.fractional_max_pool2d``.

    Args:
      input: ``(N, C, H, W)`` or ``(C, H, W)``, floating point.
      kernel_size: int or ``(kH, kW)``.
      output_size: int or ``(oH, oW)``; or
      output_ratio: number or pair in ``(0, 1)``: ``o = int(size * ratio)``.  As torch, the
        ratio is ignored when ``output_size`` is given.
      return_indices: also return the argmax indices, flat over ``H * W`` of each plane
        (as ``max_pool2d``'s; int64 with x64, else int32).
      _random_samples: ``(N, C, 2)`` samples in ``[0, 1)`` (W then H, as torch); ``(1, C, 2)``
        for unbatched input.  With torch's samples the result is torch's exactly.
      key: ``jax.random`` key (keyword-only) for the samples when ``_random_samples`` is None.

    Shape: ``(N, C, H, W) -> (N, C, oH, oW)``; needs ``o + k - 1 <= size`` per dim.

    Differs from torch: torch draws the samples from its global generator; here they come from
    ``key``.  Samples are cast to the input's dtype (torch's interval arithmetic runs in it).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.arange(25.0).reshape(1, 1, 5, 5)
      >>> F.fractional_max_pool2d(x, 2, output_size=3, key=jax.random.key(0)).shape
      (1, 1, 3, 3)
      >>> y, i = F.fractional_max_pool2d(x, 2, output_size=2, return_indices=True,
      ...                                _random_samples=jnp.full((1, 1, 2), 0.5))
      >>> print(y[0, 0], i[0, 0].tolist())
      [[ 6.  9.]
       [21. 24.]] [[6, 9], [21, 24]]
    """
    return _fractional_max_pool(input, kernel_size, output_size, output_ratio, return_indices, _random_samples,
                                key, 2, "fractional_max_pool2d")


@channels_last(spatial=3)
def fractional_max_pool3d(input: Any, kernel_size: Any, output_size: Any = None, output_ratio: Any = None,
                          return_indices: bool = False, _random_samples: Any = None, *,
                          key: Any = None) -> Array | tuple[Array, Array]:
    """3-d fractional max pooling, as ``torch.nn.functional.fractional_max_pool3d``.

    Args: as :func:`fractional_max_pool2d` with three spatial dims; ``_random_samples`` is
    ``(N, C, 3)`` (T, H, W order, as torch); indices are flat over ``T * H * W``.

    Shape: ``(N, C, T, H, W) -> (N, C, oT, oH, oW)``; needs ``o + k - 1 < size`` per dim (torch's
    3-d check is strict, its 2-d one is not).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.ones((2, 3, 6, 5, 5))
      >>> F.fractional_max_pool3d(x, 2, output_ratio=0.5, key=jax.random.key(0)).shape
      (2, 3, 3, 2, 2)
    """
    return _fractional_max_pool(input, kernel_size, output_size, output_ratio, return_indices, _random_samples,
                                key, 3, "fractional_max_pool3d")


fractional_max_pool2d_with_indices = always_indices(fractional_max_pool2d, """\
      >>> x = jnp.arange(16.).reshape(1, 4, 4)
      >>> F.fractional_max_pool2d_with_indices(x, 2, output_size=2, key=jax.random.key(0))[1].shape
      (1, 2, 2)""")
fractional_max_pool3d_with_indices = always_indices(fractional_max_pool3d, """\
      >>> x = jnp.arange(27.).reshape(1, 3, 3, 3)
      >>> F.fractional_max_pool3d_with_indices(x, 2, output_size=1, key=jax.random.key(0))[1].tolist()
      [[[[26]]]]""")
