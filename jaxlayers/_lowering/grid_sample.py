"""CPU lowering of ``grid_sample``'s weighted taps (private).

The reference (:func:`jaxlayers.functional.grid_sample._weighted_rows`) gathers
whole channel rows of the input moved to ``(N, H*W, C)``, one row per point and
tap, and moves the sum back to ``(N, C, P)``.  XLA:CPU fuses all of it, with
the taps' validity and weight arithmetic, into one loop over the output
elements, so each output element redoes its point's arithmetic and both
relayouts ride along: bilinear 8x16x64x64 forward takes 1.6 ms where torch
takes 0.5 (0.7 here).

:func:`weighted_taps` computes the same sum with the input in place: the taps'
table (flat index, validity, weight per point) is stored once (an optimisation
barrier keeps XLA from fusing it into the per-channel loop), then each tap is
one gather along the flattened spatial dims, its index shared by every channel,
masked and weighted, and the taps are added in the reference's order.  Less
arithmetic per output and no relayout: an algorithmic win on any CPU.

Under differentiation the reference's program runs, value and derivative (a
``custom_jvp``): the per-tap gathers' transpose, a scatter-add of every channel
at the point's index, measured 2-4x slower than the reference's scatter of rows.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from . import enabled

Array = jax.Array


def _gathered_sum(xf: Array, flat: Array, valid: Array, scale: Array) -> Array:
    """``sum_t where(valid[t], xf[n, c, flat[t]], 0) * scale[t]``, ``(N, C, P)``: one
    gather per tap along the last axis of ``xf`` ``(N, C, S)``."""
    flat, valid, scale = lax.optimization_barrier((flat, valid, scale))
    taps, nb, p = flat.shape
    zero = jnp.zeros((), xf.dtype)
    y = None
    for t in range(taps):
        index = jnp.broadcast_to(flat[t][:, None, :], (nb, xf.shape[1], p))
        v = jnp.take_along_axis(xf, index, axis=2, mode="promise_in_bounds")
        term = jnp.where(valid[t][:, None, :], v, zero) * scale[t][:, None, :]
        y = term if y is None else y + term
    return y


def weighted_taps(xf: Array, flat: Array, valid: Array, scale: Array, *,
                  reference: Callable[[Array, Array, Array, Array], Array]) -> Array:
    """``reference(xf, flat, valid, scale)``: ``sum_t where(valid[t], xf[n, c, flat[t]], 0) * scale[t]``
    over ``(N, C, P)``, from ``xf`` ``(N, C, S)`` and ``(taps, N, P)`` flat indices (in range),
    validity and weights.

    On CPU with lowerings on, the value is :func:`_gathered_sum`; differentiated, the
    reference's program gives value and derivative.
    """
    if not enabled("cpu") or flat.shape[0] == 1:  # one tap (nearest): nothing to share
        return reference(xf, flat, valid, scale)

    @jax.custom_jvp
    def taps(xf, flat, valid, scale):
        return _gathered_sum(xf, flat, valid, scale)

    def rule(primals, tangents):
        xf, flat, valid, scale = primals
        # only the live arguments: a zero tangent times an infinite tap would be NaN
        live = [i for i in (0, 3) if not isinstance(tangents[i], SymbolicZero)]
        if not live:
            y = reference(*primals)
            return y, jnp.zeros_like(y)

        def f(*args):
            full = list(primals)
            for i, a in zip(live, args):
                full[i] = a
            return reference(*full)

        return jax.jvp(f, [primals[i] for i in live], [tangents[i] for i in live])

    taps.defjvp(rule, symbolic_zeros=True)
    return taps(xf, flat, valid, scale)
