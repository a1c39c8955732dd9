"""Parametrizations of a module's tensor, as ``torch.nn.utils.parametrize``.

torch replaces a module's ``weight`` by a function of other tensors (``weight_g``/``weight_v``,
``parametrizations.weight.original``, ...).  Here a linen module is wrapped by
:class:`Parametrized`, which

* stores the parametrization's tensors under torch's ``state_dict`` keys, next to the wrapped
  module's other variables (the wrapper is transparent: a wrapped ``Conv1d`` named ``"conv"`` has
  ``conv.bias``, ``conv.weight_g``, ``conv.weight_v``, exactly as torch);
* computes the tensor from them on every call and applies the wrapped module with it
  (``module.apply`` with an explicit variables dict), passing ``train``, rngs and mutable
  collections on.

Buffers of a parametrization (spectral norm's ``u``/``v``, orthogonal's ``base``) live in
``batch_stats`` and are only updated with ``train=True`` and ``mutable=["batch_stats"]``.

The variables are created at ``init`` from the wrapped module's own initial value of the tensor
(torch's ``right_inverse``): ``weight_norm`` starts from the wrapped layer's default weight.

What differs from torch: one parametrization per tensor (torch can chain several in a
``ParametrizationList``; here a chain would be ``parametrizations.weight.0``, ``.1`` ... which is not
supported); a tensor is parametrized by wrapping, so ``remove_parametrizations`` takes and returns
``(module, variables)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as fnn
import jax
import jax.numpy as jnp

from ..._utils import accepts_train, require_train

__all__ = [
    "Parametrization",
    "Parametrized",
    "register_parametrization",
    "is_parametrized",
    "remove_parametrizations",
    "cached",
]

Path = tuple[str, ...]


# ----------------------------------------------------------------------------- nested-dict helpers


def _copy(tree: Mapping) -> dict:
    """A nested-dict copy that keeps the key order (``jax.tree.map`` would sort the keys, and the
    order is torch's ``state_dict`` order); boxed Flax metadata is unboxed."""
    return {k: _copy(v) if isinstance(v, Mapping) else fnn.unbox(v) for k, v in tree.items()}


def _get(tree: Mapping, path: Path) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _has(tree: Mapping, path: Path) -> bool:
    for p in path:
        if not isinstance(tree, Mapping) or p not in tree:
            return False
        tree = tree[p]
    return True


def _set(tree: dict, path: Path, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _delete(tree: dict, path: Path) -> None:
    """Remove ``path`` and every dict left empty above it."""
    node = tree
    stack = []
    for p in path[:-1]:
        stack.append((node, p))
        node = node[p]
    del node[path[-1]]
    for parent, p in reversed(stack):
        if parent[p]:
            break
        del parent[p]


# ----------------------------------------------------------------------------- parametrization base


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """What a parametrization stores and how it computes the tensor.

    Subclasses are frozen dataclasses (hashable, so a wrapped module stays a valid linen field) and
    define:

    * ``slots(tensor_name) -> {role: (collection, path)}``: where each stored array lives, relative
      to the wrapped module's variables (``("params", ("weight_g",))``);
    * ``init(key, tensor) -> {role: array}``: the stored arrays from the tensor's initial value
      (torch's ``right_inverse`` plus buffer initialisation);
    * ``forward(values, train, update) -> (tensor, new_buffers)``: the tensor from the stored arrays,
      and (when ``update``) the new values of buffers that training changes;
    * ``original(values)``: the unparametrized tensor for ``leave_parametrized=False`` (or raise).
    """

    #: name used in error messages (``weight_norm``, ``spectral_norm``, ...)
    label: str = dataclasses.field(default="parametrization", init=False, repr=False)
    #: whether the result depends on ``train`` (``train`` is then required at call time)
    needs_train: bool = dataclasses.field(default=False, init=False, repr=False)

    def slots(self, tensor_name: str) -> dict[str, tuple[str, Path]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def init(self, key: jax.Array, tensor: jax.Array) -> dict[str, jax.Array]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, values: Mapping[str, jax.Array], train: bool, update: bool):  # pragma: no cover
        raise NotImplementedError

    def original(self, values: Mapping[str, jax.Array]) -> jax.Array:
        raise ValueError(
            f"remove_parametrizations: cannot leave unparametrized (leave_parametrized=False) a tensor "
            f"that {self.label} parametrizes in terms of a sequence of tensors")


# ----------------------------------------------------------------------------- the wrapper module


class Parametrized(fnn.Module):
    """A linen module whose tensor ``tensor_name`` is computed by ``parametrization``.

    Args:
      module: the wrapped module (any jaxlayers/linen module with a ``params`` entry ``tensor_name``).
      tensor_name: the parametrized tensor, e.g. ``"weight"`` or ``"weight_hh_l0"``.
      parametrization: a :class:`Parametrization`.
      unsafe: allow a parametrization that changes the tensor's shape or dtype (torch's flag); without
        it, ``init`` checks that the parametrized tensor has the original's (``ValueError`` as torch).

    Call: ``wrapped(*args, train=None, **kwargs)``: the wrapped module's call; ``train`` is passed
    on when the wrapped module takes it, and is required when the parametrization depends on it
    (spectral norm).  Variables: the wrapped module's, minus ``tensor_name``, plus the
    parametrization's under torch's keys.
    """

    #: its call is the wrapped module's (the NNX front end builds its variables from the same probe input)
    forwards_inputs: ClassVar[bool] = True
    module: fnn.Module
    tensor_name: str = "weight"
    parametrization: Parametrization | None = None
    unsafe: bool = False

    def _inner(self) -> fnn.Module:
        return self.module.clone(parent=None, name=None)

    def _rngs(self, *streams: str) -> dict:
        return {s: self.make_rng(s) for s in streams if self.has_rng(s)}

    @fnn.compact
    def __call__(self, *args: Any, train: bool | None = None, **kwargs: Any) -> Any:
        par = self.parametrization
        layer = par.label
        inner = self._inner()
        inner_train = accepts_train(inner)
        if inner_train and train is not None:
            kwargs["train"] = train
        if par.needs_train:
            train = require_train(layer, train)
        slots = par.slots(self.tensor_name)
        original = None

        if self.is_initializing() and not self.has_variable(*_top(slots)):
            key = self.make_rng("params")
            k_inner, k_par = jax.random.split(key)
            rngs = {"params": k_inner, **self._rngs("dropout")}
            init_vars = _copy(inner.init(rngs, *args, **kwargs))
            params = init_vars.get("params", {})
            if self.tensor_name not in params or isinstance(params[self.tensor_name], Mapping):
                raise ValueError(
                    f"{layer}: module {type(self.module).__name__} has no parameter {self.tensor_name!r} "
                    f"(its parameters: {sorted(params)})")
            tensor = original = params[self.tensor_name]
            del params[self.tensor_name]
            values = par.init(k_par, tensor)
            for role, (col, path) in slots.items():
                if role not in values:  # a slot this tensor does not need (1-D spectral norm's u, v)
                    continue
                if _has(init_vars.get(col, {}), path):
                    raise ValueError(f"{layer}: module {type(self.module).__name__} already has a variable "
                                     f"{'.'.join(path)!r} in {col!r}")
                _set(init_vars.setdefault(col, {}), path, values[role])
            for col, tree in init_vars.items():
                for k, v in tree.items():
                    if col == "params":
                        self.param(k, lambda _key, v=v: v)
                    else:
                        self.variable(col, k, lambda v=v: v)

        stored = _copy(self.variables)
        values = _stored_values(stored, slots)
        update = bool(train) and not self.is_initializing() and self.is_mutable_collection("batch_stats")
        tensor, new_buffers = par.forward(values, train=bool(train), update=update)
        if original is not None and not self.unsafe:
            _check_unchanged(layer, original, tensor)
        stored = _with_tensor(stored, slots, values, self.tensor_name, tensor)

        mutable = [c for c in stored if c != "params" and self.is_mutable_collection(c)
                   and not self.is_initializing()]
        rngs = self._rngs("dropout")
        if mutable:
            out, updates = inner.apply(stored, *args, rngs=rngs, mutable=mutable, **kwargs)
        else:
            out, updates = inner.apply(stored, *args, rngs=rngs, **kwargs), {}
        updates = _copy(updates)
        for role, value in new_buffers.items():
            col, path = slots[role]
            _set(updates.setdefault(col, {}), path, value)
        for col, tree in updates.items():
            merged = _copy(self.variables.get(col, {}))
            for k, v in tree.items():
                merged[k] = _merge(merged.get(k), v)
            for k in tree:
                self.put_variable(col, k, merged[k])
        return out


def _check_unchanged(layer: str, original: Any, tensor: Any) -> None:
    """torch's checks at registration: the parametrized tensor keeps the original's shape and dtype."""
    for what, before, after in (("shape", tuple(jnp.shape(original)), tuple(jnp.shape(tensor))),
                                ("dtype", jnp.result_type(original), jnp.result_type(tensor))):
        if before != after:
            raise ValueError(f"{layer}: registering a parametrization may not change the {what} of the tensor, "
                             f"unless the `unsafe` flag is enabled (unparametrized {what}: {before}, parametrized "
                             f"{what}: {after})")


def _stored_values(variables: Mapping, slots: Mapping[str, tuple[str, Path]]) -> dict:
    """``{role: array}`` of the slots that hold a variable (a parametrization may leave some empty)."""
    return {role: _get(variables[col], path) for role, (col, path) in slots.items()
            if _has(variables.get(col, {}), path)}


def _with_tensor(variables: dict, slots: Mapping[str, tuple[str, Path]], values: Mapping, tensor_name: str,
                 tensor: Any) -> dict:
    """``variables`` (a copy, changed in place) with the parametrization's stored ``values`` taken out
    (collections left empty dropped) and the plain ``params`` entry ``tensor_name`` put in."""
    for role in values:
        _delete(variables[slots[role][0]], slots[role][1])
    variables = {c: t for c, t in variables.items() if t or c == "params"}
    variables.setdefault("params", {})[tensor_name] = tensor
    return variables


def _top(slots: Mapping[str, tuple[str, Path]]) -> tuple[str, str]:
    col, path = next(iter(slots.values()))
    return col, path[0]


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = _copy(old)
        for k, v in new.items():
            out[k] = _merge(out.get(k), v)
        return out
    return new


# ----------------------------------------------------------------------------- public functions


def register_parametrization(module: fnn.Module, tensor_name: str, parametrization: Parametrization, *,
                             unsafe: bool = False, module_name: str | None = None) -> Parametrized:
    """Wrap ``module`` so that ``tensor_name`` is computed by ``parametrization``.

    As ``torch.nn.utils.parametrize.register_parametrization``, but returns the wrapper (a new linen
    module) instead of mutating ``module``; ``module_name`` is the wrapper's linen name (needed in a
    compact parent to get torch's key, e.g. ``conv.weight_g``; ``setup`` attributes and
    ``Sequential`` name it themselves).  ``unsafe`` as torch's: without it a parametrization may not
    change the tensor's shape or dtype (checked at ``init``).
    """
    if not isinstance(module, fnn.Module):
        hint = ""
        if hasattr(module, "_linen"):  # a jaxlayers.nnx layer
            hint = (f"; for NNX wrap the linen layer and convert it: jaxlayers.nnx.from_linen(<weight_norm, "
                    f"spectral_norm, ...>(jaxlayers.nn.{type(module).__name__}(...)), rngs=...)")
        raise TypeError(f"register_parametrization: expected a flax.linen Module, got {type(module).__name__}{hint}")
    if not isinstance(parametrization, Parametrization):
        raise TypeError("register_parametrization: parametrization must be a jaxlayers "
                        f"Parametrization, got {type(parametrization).__name__}")
    for p in _chain(module):
        if p.tensor_name == tensor_name:
            raise ValueError(f"{parametrization.label}: {tensor_name!r} of {type(_base(module)).__name__} is "
                             f"already parametrized by {p.parametrization.label}")
    return Parametrized(module, tensor_name, parametrization, unsafe=unsafe, name=module_name)


def _chain(module: Any) -> list[Parametrized]:
    out = []
    while isinstance(module, Parametrized):
        out.append(module)
        module = module.module
    return out


def _base(module: Any) -> Any:
    while isinstance(module, Parametrized):
        module = module.module
    return module


def is_parametrized(module: Any, tensor_name: str | None = None) -> bool:
    """Whether ``module`` is a :class:`Parametrized` wrapper (for ``tensor_name``, if given)."""
    return any(tensor_name is None or p.tensor_name == tensor_name for p in _chain(module))


def _remove(fn: str, module: Any, variables: Mapping, tensor_name: str, kinds: tuple | None,
            leave_parametrized: bool = True, train: bool = False) -> tuple[fnn.Module, dict]:
    chain = _chain(module)
    hit = [p for p in chain if p.tensor_name == tensor_name
           and (kinds is None or isinstance(p.parametrization, kinds))]
    if not hit:
        what = "/".join(k.__name__ for k in kinds) if kinds else "a parametrization"
        raise ValueError(f"{fn}: {tensor_name!r} of {type(_base(module)).__name__} is not parametrized by {what}")
    target = hit[0]
    par = target.parametrization
    slots = par.slots(tensor_name)
    variables = _copy(variables)
    values = _stored_values(variables, slots)
    tensor = (par.forward(values, train=bool(train), update=bool(train))[0] if leave_parametrized
              else par.original(values))
    variables = _with_tensor(variables, slots, values, tensor_name, tensor)
    # rebuild the chain without the target wrapper
    inner = target.module
    for p in reversed(chain[:chain.index(target)]):
        inner = p.clone(module=inner)
    return inner, variables


def remove_parametrizations(module: fnn.Module, variables: Mapping, tensor_name: str = "weight",
                            leave_parametrized: bool = True, *, train: bool = False) -> tuple[fnn.Module, dict]:
    """Undo a parametrization, as ``torch.nn.utils.parametrize.remove_parametrizations``.

    Args:
      module: a :class:`Parametrized` wrapper (possibly wrapping further wrappers).
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      tensor_name: the parametrized tensor.
      leave_parametrized: keep the current value of the tensor; ``False`` keeps the unparametrized
        ``original`` instead.
      train: torch's ``module.training`` at the call: torch evaluates the tensor in the module's mode,
        so a spectral norm removed in training mode runs one more power iteration first (default
        False: as after ``module.eval()``).

    Returns:
      ``(module, variables)`` without the parametrization and with a plain ``tensor_name``.
    """
    return _remove("remove_parametrizations", module, variables, tensor_name, None, leave_parametrized, train)


def cached() -> Any:
    """``torch.nn.utils.parametrize.cached``: a no-op context here (under ``jit`` XLA shares the
    computed tensor between its uses)."""
    import contextlib

    return contextlib.nullcontext()

