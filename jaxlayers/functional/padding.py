"""F.pad with torch's pad-tuple order and modes constant/reflect/replicate/circular."""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._utils import _is_int, shape_str

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")
_JNP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _parse_pad(pad: Any, name: str) -> tuple[int, ...]:
    if _is_int(pad):
        raise TypeError(f"{name}: pad must be a sequence of ints (last dim first, (left, right) pairs), got {pad!r}")
    if not isinstance(pad, (tuple, list)) or not all(_is_int(p) for p in pad):
        raise TypeError(f"{name}: pad must be a sequence of ints (last dim first, (left, right) pairs), got {pad!r}")
    return tuple(int(p) for p in pad)


def _source_index(mode: str, size: int, left: int, right: int) -> np.ndarray:
    """For each output position along one dim, the input position it copies (torch's kernels)."""
    pos = np.arange(-left, size + right)
    if mode == "replicate":
        return np.clip(pos, 0, size - 1)
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(pos)
        period = 2 * (size - 1)
        pos = np.mod(pos, period)
        return np.where(pos >= size, period - pos, pos)
    # circular: torch crops the negative sides first, then wraps around what is left.
    lo, hi = max(-left, 0), size - max(-right, 0)
    kept = hi - lo
    out_pos = np.arange(max(left, 0) + kept + max(right, 0)) - max(left, 0)
    return lo + np.mod(out_pos, kept)


def _pad(x: Any, pad: Any, mode: str = "constant", value: float | None = 0.0, *, name: str = "pad") -> Any:
    """N-d padding shared by :func:`pad` and the ``*Pad*d`` modules (``name`` is used in errors)."""
    x = jnp.asarray(x)
    pad = _parse_pad(pad, name)
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be one of {_MODES}, got {mode!r}")
    if len(pad) % 2:
        raise ValueError(f"{name}: padding length must be divisible by 2, got pad={pad} of length {len(pad)}")
    ndim, npairs = x.ndim, len(pad) // 2
    if npairs > ndim:
        raise ValueError(
            f"{name}: padding length must be at most twice the input dimension, got pad={pad} of length "
            f"{len(pad)} for a {ndim}-D input of shape {shape_str(x)}"
        )
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(npairs)]  # pairs[i] pads dim -1-i
    if mode != "constant":
        if npairs not in (1, 2, 3) or ndim not in (npairs + 1, npairs + 2):
            raise ValueError(
                f"{name}: mode={mode!r} with pad of length {len(pad)} needs a {npairs + 1}-D or {npairs + 2}-D input "
                f"(pads of length 2, 4 and 6 pad the last 1, 2 and 3 dims of a batched or unbatched input), "
                f"got {ndim}-D input of shape {shape_str(x)}"
            )
        if value not in (None, 0, 0.0):
            raise ValueError(f"{name}: padding mode {mode!r} does not take a value, got value={value!r}")
        if mode != "circular" and 0 in x.shape[ndim - npairs - 1:]:  # torch: only the batch dim may be empty
            raise ValueError(f"{name}: mode={mode!r} needs non-empty dims apart from the batch dim, got input of "
                             f"shape {shape_str(x)}")
    outs = [x.shape[ndim - 1 - i] + left + right for i, (left, right) in enumerate(pairs)]
    if mode in ("reflect", "replicate") and not any(outs):  # torch: only when every padded dim is empty
        raise ValueError(f"{name}: mode={mode!r} padding {tuple(pad)} gives an empty output in every padded dim "
                         f"(input shape {shape_str(x)}; torch: input is too small)")
    for i, ((left, right), out) in enumerate(zip(pairs, outs)):
        dim = ndim - 1 - i
        size = x.shape[dim]
        if out < 0 or (mode == "constant" and size + min(left, 0) + min(right, 0) < 0):  # torch crops first
            raise ValueError(
                f"{name}: padding ({left}, {right}) of dim {dim} crops more than its size {size} or gives a negative "
                f"output size {out} (input shape {shape_str(x)})"
            )
        if mode == "reflect" and (left >= size or right >= size):
            raise ValueError(
                f"{name}: reflect padding must be smaller than the padded dim, got padding ({left}, {right}) "
                f"for dim {dim} of size {size} (input shape {shape_str(x)})"
            )
        if mode == "circular":
            if left > size or right > size:
                raise ValueError(
                    f"{name}: circular padding must be at most the size of the padded dim (it may wrap around "
                    f"only once), got padding ({left}, {right}) for dim {dim} of size {size} (input shape {shape_str(x)})"
                )
            kept = size + min(left, 0) + min(right, 0)
            if kept <= 0 and (left, right) != (0, 0):
                raise ValueError(
                    f"{name}: negative circular padding ({left}, {right}) leaves an empty dim {dim} "
                    f"(input shape {shape_str(x)})"
                )
            if left > kept:  # torch's left wrap would read its own unwritten output (uninitialised memory)
                raise ValueError(
                    f"{name}: circular padding ({left}, {right}) wraps the left side around more than once the "
                    f"{kept} elements that the cropping leaves of dim {dim} (input shape {shape_str(x)})"
                )

    if mode == "constant":
        config = [(0, 0, 0)] * ndim
        for i, (left, right) in enumerate(pairs):
            config[ndim - 1 - i] = (left, right, 0)
        value = 0.0 if value is None else value
        if jnp.issubdtype(x.dtype, jnp.integer) and isinstance(value, (int, float)) and not (
                jnp.iinfo(x.dtype).min <= value <= jnp.iinfo(x.dtype).max):  # NaN too
            raise ValueError(f"{name}: value {value!r} cannot be converted to {x.dtype} without overflow (as torch)")
        fill = jnp.asarray(value, dtype=x.dtype)
        return lax.pad(x, fill, config)

    if all(left >= 0 and right >= 0 for left, right in pairs):
        width = [(0, 0)] * ndim
        for i, pr in enumerate(pairs):
            width[ndim - 1 - i] = pr
        return jnp.pad(x, width, mode=_JNP_MODE[mode])
    for i, (left, right) in enumerate(pairs):
        dim = ndim - 1 - i
        idx = _source_index(mode, x.shape[dim], left, right)
        x = jnp.take(x, jnp.asarray(idx, dtype=jnp.int32), axis=dim)
    return x


def pad(input: Any, pad: Sequence[int], mode: str = "constant", value: float | None = 0.0) -> Any:
    """Pad ``input``, as ``torch.nn.functional.pad``.

    Args:
      input: array of any rank (``constant``); for the other modes a batched or
        unbatched 1/2/3-d signal: ``(N, C, *S)`` or ``(C, *S)``.
      pad: ``(left_last, right_last, left_2nd_last, right_2nd_last, ...)`` —
        pairs for the last dim first, at most ``input.ndim`` pairs. Negative
        entries crop.
      mode: ``"constant"``, ``"reflect"`` (mirror without repeating the edge),
        ``"replicate"`` (repeat the edge) or ``"circular"`` (wrap around).
      value: fill value for ``"constant"`` (default 0; ``None`` also means 0).

    Shape: dim ``-1-i`` grows from ``S`` to ``S + pad[2i] + pad[2i+1]``.

    Errors as torch: reflect padding must be ``< S``; circular padding ``<= S``;
    the non-constant modes pad the last 1, 2 or 3 dims of a 2/3, 3/4 or 4/5-D input.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxlayers import functional as F
      >>> x = jnp.array([[[1.0, 2.0, 3.0]]])              # (N, C, W)
      >>> F.pad(x, (1, 2)).tolist(), F.pad(x, (2, 1), mode="reflect").tolist()
      ([[[0.0, 1.0, 2.0, 3.0, 0.0, 0.0]]], [[[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]])
    """
    return _pad(input, pad, mode, value, name="pad")
