"""``parameters_to_vector`` / ``vector_to_parameters`` (``torch.nn.utils.convert_parameters``).

Order.  torch concatenates ``model.parameters()``: module registration order.  jaxlayers modules
create their parameters in torch's order and ``model.init`` returns dicts in creation order, so the
order here is the iteration order of the params dict flattened to torch's keys
(:func:`jaxlayers.interop.flatten_variables`, the order of ``interop.variables_to_state_dict``).
JAX's tree utilities (``jax.tree.map``, ``jit`` outputs) return dicts with *sorted* keys, which
loses that order: pass ``names=`` (e.g. ``list(torch_model.state_dict())`` or the keys of the
``init`` variables) to fix the order explicitly.  A list or tuple of arrays is taken in its order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..._utils import is_variable
from ...interop import _nest, flatten_variables

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _params(tree: Any) -> Any:
    if isinstance(tree, Mapping) and "params" in tree and isinstance(tree["params"], Mapping):
        return tree["params"]
    return tree


def _ordered(fn: str, params: Any, names: Sequence[str] | None) -> tuple[list[str] | None, list]:
    params = _params(params)
    if isinstance(params, Mapping):
        flat = flatten_variables(params)
        if names is None:
            names = list(flat)
        else:
            names = list(names)
            missing = [n for n in names if n not in flat]
            extra = [n for n in flat if n not in names]
            if missing or extra:
                raise ValueError(f"{fn}: names do not match the parameters: missing {missing}, unexpected {extra}")
        return names, [flat[n] for n in names]
    if isinstance(params, Iterable) and not isinstance(params, (str, bytes)) and not hasattr(params, "shape"):
        return None, list(params)  # a list, or torch's model.parameters() of an NNX model (nnx.Params)
    raise TypeError(f"{fn}: expected a dict of parameters or a list of arrays, got {type(params).__name__}")


def _value(p: Any) -> Any:
    return p.get_value() if is_variable(p) else p


def parameters_to_vector(parameters: Any, names: Sequence[str] | None = None) -> jax.Array:
    """All parameters flattened into one vector, as ``torch.nn.utils.parameters_to_vector``.

    Args:
      parameters: a params dict (or variables with a ``params`` entry; buffers are left out, as
        torch's ``model.parameters()``), a list of arrays, or an NNX model's ``model.parameters()``.
      names: optional torch keys (``"0.weight"``, ...) fixing the order (see the module docstring).

    Shape: ``(sum of the parameters' sizes,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> parameters_to_vector({"weight": jnp.ones((2, 2)), "bias": jnp.zeros(2)}).tolist()
      [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    _, leaves = _ordered("parameters_to_vector", parameters, names)
    if not leaves:
        return jnp.zeros((0,))
    return jnp.concatenate([jnp.ravel(jnp.asarray(_value(p))) for p in leaves])


def vector_to_parameters(vec: Any, parameters: Any, names: Sequence[str] | None = None) -> Any:
    """Split ``vec`` into parameters shaped like ``parameters``, as
    ``torch.nn.utils.vector_to_parameters`` (which writes in place; this returns the new params, and
    writes ``nnx.Param``s given as ``model.parameters()`` in place too).

    Args:
      vec: a 1-D array of ``sum of sizes`` entries.
      parameters: the template (params dict, variables with ``params``, or list of arrays).
      names: the order, as in :func:`parameters_to_vector`.

    Returns:
      A params dict (nested as the template's ``params``), or a list (a tuple for a tuple
      template), with the template's dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> p = vector_to_parameters(jnp.arange(6.0), {"weight": jnp.ones((2, 2)), "bias": jnp.zeros(2)})
      >>> p["bias"].tolist()
      [4.0, 5.0]
    """
    fn = "vector_to_parameters"
    if not hasattr(vec, "shape") or not hasattr(vec, "dtype"):
        raise TypeError(f"{fn}: expected vec to be an array, but got {type(vec).__name__}")
    vec = jnp.asarray(vec)
    keys, variables = _ordered(fn, parameters, names)
    leaves = [_value(p) for p in variables]
    sizes = [int(np.prod(np.shape(p))) for p in leaves]
    if vec.ndim != 1 or vec.shape[0] != sum(sizes):
        raise ValueError(f"{fn}: expected a 1-D vec of {sum(sizes)} entries (the parameters' total size), "
                         f"got shape {tuple(vec.shape)}")
    out, start = [], 0
    for p, n in zip(leaves, sizes):
        out.append(vec[start:start + n].reshape(np.shape(p)).astype(jnp.result_type(p)))
        start += n
    for var, value in zip(variables, out):  # NNX parameters (model.parameters()) are written in place, as torch
        if is_variable(var):
            var.set_value(value)
    if keys is None:
        return tuple(out) if isinstance(_params(parameters), tuple) else out
    return _nest(dict(zip(keys, out)))
