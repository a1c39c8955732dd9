"""CPU lowering of the recurrent layers' time loop (private).

The reference (:func:`jaxlayers.functional.recurrent._scan_reference`) is a ``lax.scan`` of
one time step, ``gh_t = h_(t-1) W_hh^T + b_hh`` then the gates.  Differentiated by JAX, the
weight's part of the step's tangent, ``h_(t-1) dW_hh^T``, stays inside the loop, so the
backward pass adds a rank-``N`` product into the whole ``(G*H, H)`` weight gradient at every
step: ``T`` passes over a matrix that does not fit in cache (an LSTM of hidden size 512:
4 MB read and written per step), each a GEMM with an inner dimension of the batch size.

:func:`scan` gives the loop a **custom JVP** that moves that term out: the primal scan also
returns each step's previous state and ``gh_t``, the weights' tangent terms of every step are
one GEMM over ``(T*N, H)`` before the tangent loop (``h_prev dW_hh^T + db_hh``, and LSTM's
projection ``h_raw dW_hr^T``), and the tangent loop carries only the state's tangent through
``W_hh``.  Its transpose, the backward pass, is then one reverse loop of ``dh W_hh`` products
and one ``(G*H, T*N) @ (T*N, H)`` GEMM for the weight gradient: an algorithmic win on any
machine (``T`` fewer passes over the weight).  Forward mode, ``hessian``, ``vmap`` and
``jax.checkpoint`` work as for the reference: the rule is plain JAX.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._utils import matmul_wt
from . import enabled


def scan(gi: tuple, state0: Any, w_hh: jax.Array, b_hh: jax.Array | None, w_hr: jax.Array | None,
         valid: jax.Array | None, *, mode: str, reverse: bool, precision: Any, finish: Callable,
         time_step: Callable, reference: Callable) -> tuple[Any, jax.Array]:
    """``reference(gi, state0, w_hh, b_hh, w_hr, valid, mode, reverse, precision)``: ``(final
    state, outputs)`` of one direction of one layer, with the derivative above on CPU.

    ``time_step`` is one masked step (of the transposed weights) returning ``(new, out, (gh, h before
    the projection))``, and ``finish(mode, gi_t, gh_t, state, w_hr_t, valid_t, precision, extra)`` its
    part after ``gh``: gates, projection (``+ extra``) and mask (:mod:`jaxlayers.functional.recurrent`)."""
    if not enabled("cpu"):
        return reference(gi, state0, w_hh, b_hh, w_hr, valid, mode, reverse, precision)
    return _scan(mode, reverse, precision, finish, time_step, reference, gi, state0, w_hh, b_hh, w_hr, valid)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3, 4, 5))
def _scan(mode, reverse, precision, finish, time_step, reference, gi, state0, w_hh, b_hh, w_hr, valid):
    return reference(gi, state0, w_hh, b_hh, w_hr, valid, mode, reverse, precision)


@_scan.defjvp
def _scan_jvp(mode, reverse, precision, finish, time_step, reference, primals, tangents):
    gi, state0, w_hh, b_hh, w_hr, valid = primals
    dgi, dstate0, dw_hh, db_hh, dw_hr, _ = tangents
    lstm = mode == "LSTM"

    w_hh_t, w_hr_t = w_hh.T, None if w_hr is None else w_hr.T  # the primal loop's layout (the reference's)

    def body(state, inp):
        new, out, (gh, raw) = time_step(mode, w_hh_t, b_hh, w_hr_t, precision, state, *inp)
        return new, (out, state, gh, raw)

    final, (ys, states, ghs, raws) = lax.scan(body, state0, (gi, valid), reverse=reverse)
    # the weights' tangent terms of every step, one GEMM each, outside the loop
    ext = matmul_wt(states[0] if lstm else states, dw_hh, precision)
    if b_hh is not None:
        ext = ext + db_hh
    ext_h = None if w_hr is None else matmul_wt(raws, dw_hr, precision)

    def tangent_body(dstate, inp):
        gi_t, dgi_t, state, gh, ext_t, ext_h_t, m_t = inp
        # with W_hh as stored, so that the transposed (backward) loop's product is dgh @ W_hh
        dgh = matmul_wt(dstate[0] if lstm else dstate, w_hh, precision) + ext_t
        zero = None if ext_h_t is None else jnp.zeros_like(ext_h_t)  # the projection's weight term enters as extra

        def step(g, h, s, e):
            return finish(mode, g, h, s, w_hr_t, m_t, precision, e)[:2]

        _, (dnew, dout) = jax.jvp(step, (gi_t, gh, state, zero), (dgi_t, dgh, dstate, ext_h_t))
        return dnew, dout

    dfinal, dys = lax.scan(tangent_body, dstate0, (gi, dgi, states, ghs, ext, ext_h, valid), reverse=reverse)
    return (final, ys), (dfinal, dys)
