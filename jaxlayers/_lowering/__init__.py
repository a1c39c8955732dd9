"""Backend- and machine-specific lowerings (private).

Each module here holds the fast paths of one family (``conv``, ``norm``,
``pooling``, ``resampling``, ``grid_sample``, ``distance``, ``recurrent``) behind one function per operation
that takes the family's reference implementation and falls back to it wherever the lowering does not
apply.  A lowering is used only when :func:`enabled` says so: the setting
``jaxlayers.config`` ``"auto"`` and a backend it was written for.  What a
lowering computes is tested against the reference (values, every derivative
mode, ``vmap``); it never changes a result beyond float rounding.

Rules for a lowering to be on by default (see docs/engine.md): it wins by
construction on any machine of its backend (skipping multiplications by the
zeros of a stride-dilated input; one GEMM for a 1x1 convolution or where XLA's
convolution is pathological, on tiny maps; a sum over taps for a depthwise
convolution, where XLA's grouped convolution is; an interpolation's taps instead of a
dense matrix; grid_sample's taps read in place, their arithmetic once per point; pdist's
distances as GEMMs), or it
is measured on the running machine first (:mod:`jaxlayers._lowering.autotune`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import config
from .._utils import has_explicit_axes


def enabled(*backends: str) -> bool:
    """Whether lowerings are on (``config`` ``"auto"``) for the default backend,
    which must be one of ``backends`` (any backend when none are given), outside a
    mesh of ``Explicit`` axes (``jax.set_mesh`` of ``jax.make_mesh``'s default), where
    JAX asks every reshape, loop carry and gather for its output's sharding: the
    lowerings are single-device programs, and the reference holds there.  Read at
    trace time."""
    if not config.use_lowerings() or has_explicit_axes(jax.sharding.get_abstract_mesh()):
        return False
    return not backends or jax.default_backend() in backends


@jax.custom_batching.custom_vmap
def batch_max(case: jax.Array) -> jax.Array:
    """``case`` (an integer: which form a lowering takes); under ``vmap``, the largest of the
    batch for every element, unbatched, so that a ``lax.cond``/``lax.switch`` on it runs one
    form for the whole batch (the forms ordered so that each is exact for the cases before
    it) instead of every form and a select.  pdist: 8x512x64 forward 40 -> 6 ms,
    forward + backward 211 -> 19.5 ms (the reference 28 and 185)."""
    return case


@batch_max.def_vmap
def _batch_max_vmap(axis_size, in_batched, case):
    return (jnp.max(case) if in_batched[0] else case), False
