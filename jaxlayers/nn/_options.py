"""Flax options shared by the linen modules, declared once.

They are keyword-only dataclass fields, so they never shift the torch
positional order of a module's own arguments: ``Linear(4, 8, dtype=jnp.bfloat16)``.

* ``dtype`` — computation dtype (``None``: promote the input and the parameters);
  ``param_dtype`` — dtype of parameters and buffers (float32).
* ``weight_init`` / ``bias_init`` — ``(key, shape, dtype) -> array`` initialisers that
  replace torch's defaults (``jaxlayers.init``); ``None`` keeps torch's.
* ``precision`` — ``lax.Precision`` of the layer's matmuls/convolutions.
* ``axis_name`` / ``axis_index_groups`` — a named device axis (``shard_map``/``pmap``) over
  which batch statistics are reduced, as in Flax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as fnn
import jax.numpy as jnp


def kw_only(default: Any) -> Any:
    """A keyword-only dataclass field with ``default``."""
    return dataclasses.field(default=default, kw_only=True)


class DtypeOptions(fnn.Module):
    """``dtype``, ``param_dtype``."""

    dtype: Any = kw_only(None)
    param_dtype: Any = kw_only(jnp.float32)


class InitOptions(DtypeOptions):
    """``dtype``, ``param_dtype``, ``weight_init``."""

    weight_init: Optional[Callable] = kw_only(None)


class AffineOptions(InitOptions):
    """``dtype``, ``param_dtype``, ``weight_init``, ``bias_init``."""

    bias_init: Optional[Callable] = kw_only(None)


class LayerOptions(AffineOptions):
    """``dtype``, ``param_dtype``, ``weight_init``, ``bias_init``, ``precision``."""

    precision: Any = kw_only(None)


class PrecisionOptions(DtypeOptions):
    """``dtype``, ``param_dtype``, ``precision``."""

    precision: Any = kw_only(None)


class StatsOptions(AffineOptions):
    """``dtype``, ``param_dtype``, ``weight_init``, ``bias_init``, ``axis_name``,
    ``axis_index_groups`` (normalisations with batch statistics)."""

    axis_name: Any = kw_only(None)
    axis_index_groups: Any = kw_only(None)


def set_field(module: fnn.Module, name: str, value: Any) -> None:
    """Store a constructor argument as torch's module holds it (``kernel_size=3`` as ``(3, 3)``),
    from ``__post_init__``: linen's fields are frozen after construction."""
    object.__setattr__(module, name, value)
