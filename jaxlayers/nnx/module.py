"""The base class of every ``jaxlayers.nnx`` module: torch's habits on an ``nnx.Module``.

``train()`` / ``eval()`` set Flax's own mode attributes (``deterministic`` and
``use_running_average``) on every nested module, so ``nnx.view``,
``model.set_attributes(...)`` and flax's own layers (``nnx.Dropout``,
``nnx.BatchNorm``) inside a jaxlayers container follow the same switch.
``state_dict()`` / ``load_state_dict()`` use torch's keys (``"0.weight"``,
``"blocks.conv.running_mean"``); the strict check is
:func:`jaxlayers.interop.load_state_dict`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import interop
from .._utils import is_torch_tensor

__all__ = ["Module"]

_SKIP_TYPES = (nnx.RngState, nnx.Intermediate)


def _child_items(node: Any) -> Iterator[tuple[str, Any]]:
    """The named children of a graph node, in insertion order (torch's registration order)."""
    if isinstance(node, (nnx.Rngs, nnx.RngStream)):
        return
    if isinstance(node, Module):  # torch's registration order, kept through nnx.split/merge
        items = ((k, getattr(node, k)) for k in node._child_order())
    elif isinstance(node, nnx.Pytree):
        items = vars(node).items()
    elif isinstance(node, Mapping):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return
    for name, value in items:
        if isinstance(name, str) and name.startswith("_pytree__"):
            continue
        yield str(name), value


def _is_container(value: Any) -> bool:
    if isinstance(value, (nnx.Rngs, nnx.RngStream, nnx.Variable)):
        return False
    return isinstance(value, (nnx.Pytree, Mapping, list, tuple))


def _walk(node: Any, prefix: str, seen: set[int], aliases: bool = False) -> Iterator[tuple[str, Any]]:
    """Every Variable and every module below ``node``: ``(dotted key, object)``, each object once
    (torch's ``named_parameters``/``named_modules``), or with ``aliases`` once under every name
    it is reachable by (torch's ``state_dict``: a tied weight is listed under each of its
    names); ``seen`` then holds the containers being walked, which only a cycle meets again.
    Per node torch's order: its own parameters, its own buffers, then its children (each in
    assignment order)."""
    items = list(_child_items(node))
    own = sorted((item for item in items if isinstance(item[1], nnx.Variable)),
                 key=lambda item: not isinstance(item[1], nnx.Param))
    for name, value in own:
        if id(value) in seen:
            continue
        if not aliases:
            seen.add(id(value))
        if not isinstance(value, _SKIP_TYPES):
            yield prefix + name, value
    for name, value in items:
        if id(value) in seen or not _is_container(value):
            continue
        key = prefix + name
        seen.add(id(value))
        if isinstance(value, nnx.Module):
            yield key, value
        yield from _walk(value, key + ".", seen, aliases)
        if aliases:
            seen.discard(id(value))


def _post_order(node: Any, seen: set[int]) -> Iterator[nnx.Module]:
    """The modules below ``node``, each once, children before their parent (torch's ``apply`` order)."""
    for _, value in _child_items(node):
        if id(value) in seen or not _is_container(value):
            continue
        seen.add(id(value))
        yield from _post_order(value, seen)
        if isinstance(value, nnx.Module):
            yield value


# the NNX layers' own bookkeeping, which is no child (torch's `self._fc = Linear(...)` is one)
_INTERNAL = frozenset({"_order", "_linen", "_paths", "_initialized", "_owner"})

_DEVICE_KINDS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "tpu": "tpu"}


def _device(device: Any, module: str) -> Any:
    """torch's device spelling (``"cuda:1"``) or a ``jax.Device`` -> the ``jax.Device``."""
    if isinstance(device, jax.Device):
        return device
    kind, _, index = str(device).partition(":")
    platform = _DEVICE_KINDS.get(kind)
    try:
        devices = jax.devices(platform) if platform else []
    except RuntimeError:  # no such backend here
        devices = []
    i = int(index) if index.isdigit() else 0
    if i >= len(devices):
        raise ValueError(f"{module}.to: no device {device!r} here (JAX's devices: {jax.devices()}); torch's "
                         "'cuda' is JAX's 'gpu' platform")
    return devices[i]


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _nest(flat: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


class _IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` found, as torch's: ``missing, unexpected = model.load_state_dict(...)``.

    ``missing`` / ``unexpected`` (tuples), ``mismatched`` and ``ok`` are the names of
    :class:`jaxlayers.interop.StateDictReport`, kept as aliases.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(self.missing_keys)

    @property
    def unexpected(self) -> tuple[str, ...]:
        return tuple(self.unexpected_keys)

    @property
    def mismatched(self) -> tuple:
        return ()  # a shape mismatch always raises

    @property
    def ok(self) -> bool:
        return not (self.missing_keys or self.unexpected_keys)

    def __repr__(self) -> str:
        if self.ok:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"

    __str__ = __repr__


def _assigned_buffer(layer: str, name: str, current: Any, value: Any) -> jax.Array | None:
    """torch's rules for ``layer.name = value``: the array that ``value`` (a JAX/NumPy array or torch tensor)
    assigns to ``current`` where that is a buffer (an ``nnx.Variable`` that is not a ``Param``), as torch's
    ``module.buf = t``; None where the assignment is flax's own (``current`` is no parameter or buffer, or
    ``value`` is a variable, a module or None).  Anything else raises torch's TypeError: flax would put the
    value there and drop the variable from ``state_dict()`` and ``nnx.state`` without a word."""
    if (not isinstance(current, nnx.Variable) or isinstance(current, _SKIP_TYPES) or value is None
            or isinstance(value, (nnx.Variable, nnx.Module))):
        return None
    if isinstance(current, nnx.Param):
        raise TypeError(f"{layer}.{name}: cannot assign '{type(value).__name__}' as parameter '{name}' (a Parameter "
                        f"or None expected, as torch's nn.Parameter): {name} = Parameter(array) replaces it, "
                        f"{name}.data = array writes it in place")
    if not (isinstance(value, (jax.Array, np.ndarray)) or is_torch_tensor(value)):
        raise TypeError(f"{layer}.{name}: cannot assign '{type(value).__name__}' as buffer '{name}' (an array, a "
                        "torch tensor or None expected, as torch)")
    return jnp.asarray(interop.to_numpy(value) if is_torch_tensor(value) else value)


class Module(nnx.Module):
    """``nnx.Module`` with torch's habits; the base of every ``jaxlayers.nnx`` class.

    A module is in training mode after construction, as in torch.
    ``train(mode=True)`` / ``eval()`` switch it and all its children and return
    the module.  They set Flax's attributes ``deterministic`` (dropout,
    attention and recurrent dropout) and ``use_running_average`` (layers with
    running statistics), so ``nnx.view(model, deterministic=True)`` and
    ``model.set_attributes(use_running_average=True)`` work too; a layer with
    running statistics follows ``use_running_average``, every other layer
    ``deterministic``.  ``training`` reads the mode.

    Children, variables and other attributes keep the order they were first
    assigned in (torch's registration order), also after ``nnx.split``/``merge``.
    """

    _order: tuple[str, ...] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "Module":
        self = super().__new__(cls)
        # The mode flags exist from construction, whatever a subclass's __init__ does: train()/eval()
        # set only attributes a module has, and the graph (nnx.jit's cache key) stays the same
        # after eval() -> train().
        vars(self).update(deterministic=False, use_running_average=False)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        current = vars(self).get(name)
        array = _assigned_buffer(type(self).__name__, name, current, value)
        if array is not None:
            # torch's buffer assignment (`self.pe = pe` on a registered buffer): a buffer of the same kind holds
            # the array, so it stays in state_dict() and nnx.state (flax would put a bare array there); a new
            # variable, as torch rebinds the name: a module sharing the old buffer keeps it
            value = current.replace(array)
        new = name not in vars(self)
        super().__setattr__(name, value)
        if new and name not in _INTERNAL and name not in self._order:
            # flax rebuilds attributes sorted by name (nnx.merge, inside nnx.jit): the order is kept
            # in this static tuple, which travels in the graph definition
            super().__setattr__("_order", self._order + (name,))

    def _graph_node_set_key(self, key: Any, value: Any) -> None:
        # flax's own writes (nnx.recursive_map, graph updates) set what they were given, without torch's rule
        if isinstance(key, str) and not isinstance(value, nnx.Variable) and isinstance(vars(self).get(key), nnx.Variable):
            nnx.Module.__setattr__(self, key, value)
            return
        super()._graph_node_set_key(key, value)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        if name in self._order:  # torch: a child deleted and assigned again comes last
            super().__setattr__("_order", tuple(k for k in self._order if k != name))

    def _child_order(self) -> tuple[str, ...]:
        """Attribute names in torch's order: as first assigned (``_order``), then any set without
        ``__setattr__`` (the mode flags)."""
        present = vars(self)
        return tuple(dict.fromkeys([k for k in self._order if k in present] + list(present)))

    # ------------------------------------------------------------------ modes
    @property
    def training(self) -> bool:
        return not self.deterministic

    @training.setter
    def training(self, mode: bool) -> None:
        """torch's ``module.training = mode``: this module only (``train(mode)`` sets every child)."""
        self.deterministic = self.use_running_average = not mode

    def train(self, mode: bool = True, **attributes: Any) -> "Module":  # type: ignore[override]
        """torch's ``module.train(mode)``; extra keywords go to ``set_attributes``."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.train: mode must be a bool, got {type(mode).__name__}")
        self.set_attributes(deterministic=not mode, use_running_average=not mode,
                            raise_if_not_found=False, **attributes)
        return self

    def eval(self, **attributes: Any) -> "Module":  # type: ignore[override]
        """torch's ``module.eval()``: ``train(False)``."""
        return self.train(False, **attributes)

    def set_view(self, deterministic: bool | None = None, use_running_average: bool | None = None) -> None:
        """Used by ``nnx.view(model, deterministic=..., use_running_average=...)``."""
        if deterministic is not None:
            self.deterministic = bool(deterministic)
        if use_running_average is not None:
            self.use_running_average = bool(use_running_average)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, nnx.Module]]:
        """``(key, module)`` for this module (key ``prefix``) and every descendant."""
        yield prefix, self
        for key, value in _walk(self, prefix + "." if prefix else "", set()):
            if isinstance(value, nnx.Module):
                yield key, value

    def modules(self) -> Iterator[nnx.Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, nnx.Module]]:
        for name, value in _child_items(self):
            if isinstance(value, nnx.Module):
                yield name, value

    def children(self) -> Iterator[nnx.Module]:
        for _, m in self.named_children():
            yield m

    def _named_variables(self, aliases: bool = False) -> list[tuple[str, nnx.Variable]]:
        return [(k, v) for k, v in _walk(self, "", set(), aliases) if isinstance(v, nnx.Variable)]

    def named_parameters(self) -> Iterator[tuple[str, nnx.Param]]:
        """``(torch key, nnx.Param)`` pairs, e.g. ``("0.weight", Param(...))``."""
        for key, var in self._named_variables():
            if isinstance(var, nnx.Param):
                yield key, var

    def parameters(self) -> Iterator[nnx.Param]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, nnx.Variable]]:
        """``(torch key, variable)`` for the buffers (``running_mean``, ``num_batches_tracked``, ...)."""
        for key, var in self._named_variables():
            if not isinstance(var, nnx.Param):
                yield key, var

    def buffers(self) -> Iterator[nnx.Variable]:
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn: Any) -> "Module":
        """torch's ``model.apply(fn)``: ``fn`` on every module below this one, children before their
        parent (also inside flax's ``nnx.List``/``nnx.Dict`` and other ``nnx.Module``s), each once;
        then on this one."""
        for module in _post_order(self, {id(self)}):
            fn(module)
        fn(self)
        return self

    # ------------------------------------------------------------ dtype
    def to(self, *args: Any, device: Any = None, dtype: Any = None, non_blocking: bool = False) -> "Module":
        """torch's ``model.to(dtype)``, ``model.to(device)``, ``model.to(device, dtype)``: floating-point
        parameters and buffers cast to ``dtype`` in place (``num_batches_tracked`` keeps its integer type);
        every variable put on ``device`` (a ``jax.Device``, or torch's ``"cpu"``, ``"cuda"``, ``"cuda:1"``:
        JAX's ``gpu`` devices), with ``jax.device_put``.  Returns the module."""
        for arg in args:  # torch's positional forms: a device, a dtype, or both
            if isinstance(arg, jax.Device) or (isinstance(arg, str) and arg.split(":")[0] in _DEVICE_KINDS):
                device = arg
            else:
                dtype = arg
        if device is not None:
            target = _device(device, type(self).__name__)
            for _, var in self._named_variables():
                var.set_value(jax.device_put(var.get_value(), target))
        return self if dtype is None else self._cast(dtype)

    def _cast(self, dtype: Any) -> "Module":
        try:
            dtype = jnp.dtype(dtype)
        except TypeError:
            raise TypeError(f"{type(self).__name__}.to: expected a floating dtype or a device, got {dtype!r}") from None
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{type(self).__name__}.to: expected a floating dtype, got {dtype}")
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:  # JAX would keep float32, warning only
            raise ValueError(f"{type(self).__name__}.to: float64 needs jax.config.update('jax_enable_x64', True)")
        for _, var in self._named_variables():
            value = var.get_value()
            if jnp.issubdtype(getattr(value, "dtype", None) or jnp.result_type(value), jnp.floating):
                abstract = isinstance(value, jax.ShapeDtypeStruct)  # a model from nnx.eval_shape (torch's meta)
                var.set_value(jax.ShapeDtypeStruct(value.shape, dtype) if abstract else jnp.asarray(value).astype(dtype))
        # lazy layers create theirs in that dtype
        return self.apply(lambda m: m._cast_waiting_variables(dtype) if isinstance(m, Module) else None)

    def _cast_waiting_variables(self, dtype: Any) -> None:
        """Hook for layers whose variables are created at their first call (lazy layers)."""

    # ------------------------------------------------------------ gradients
    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """torch's ``requires_grad_`` has no state to set here: JAX returns gradients of what it is asked
        to differentiate.  A TypeError that says how to freeze parameters instead."""
        raise TypeError(f"{type(self).__name__}.requires_grad_: JAX computes gradients of what it is asked to "
                        "differentiate, so parameters carry no requires_grad flag. To freeze some, differentiate "
                        "and optimise a filter: nnx.value_and_grad(loss, argnums=nnx.DiffState(0, trainable)) and "
                        "nnx.Optimizer(model, tx, wrt=trainable) (docs/nnx.md, 'Parameter groups and frozen "
                        "parameters')")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``: nothing is accumulated here (``nnx.grad`` returns fresh gradients)."""
        raise TypeError(f"{type(self).__name__}.zero_grad: gradients are not stored on the model: nnx.grad / "
                        "nnx.value_and_grad return them for each step, so there is nothing to zero (drop the call)")

    def double(self) -> "Module":
        """``to(float64)`` (needs ``jax_enable_x64``), as torch's."""
        return self.to(jnp.float64)

    def float(self) -> "Module":
        return self.to(jnp.float32)

    def half(self) -> "Module":
        return self.to(jnp.float16)

    def bfloat16(self) -> "Module":
        return self.to(jnp.bfloat16)

    # ------------------------------------------------------------ state_dict
    def state_dict(self, *, keep_vars: bool = False) -> dict[str, Any]:
        """Flat ``{torch key: np.ndarray}``, parameters and buffers, as torch's ``state_dict()``.

        The arrays are read-only copies: torch's share memory with the parameters, so writing into
        one (``sd[k].copy_(v)``) would load it there and here would change nothing.
        ``keep_vars=True`` gives the ``nnx.Variable`` objects instead.  A variable
        shared by several modules (tied weights) is listed under each of its names, as torch's.
        """
        return {k: (v if keep_vars else _read_only(interop.to_numpy(v.get_value())))  # copies
                for k, v in self._named_variables(aliases=True)}

    def _variables_template(self) -> dict[str, dict]:
        params, buffers = {}, {}
        for key, var in self._named_variables(aliases=True):
            (params if isinstance(var, nnx.Param) else buffers)[key] = var.get_value()
        return {"params": _nest(params), "batch_stats": _nest(buffers)}

    def _lazy_load(self, state_dict: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
        """torch's lazy-module hook: create the variables that wait for the first call from ``state_dict``
        (its keys start with ``prefix``); returns the keys it could not create (missing)."""
        return ()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> _IncompatibleKeys:
        """torch's ``load_state_dict``: copy torch-keyed arrays into this module's variables, in place.

        The check is :func:`jaxlayers.interop.load_state_dict`'s: with ``strict=True``
        every missing key, unexpected key and shape mismatch is reported at once in a
        :class:`~jaxlayers.interop.StateDictMismatchError` (a ``RuntimeError``, as torch's,
        and a ``ValueError``); shape mismatches always raise.  Arrays are cast to the
        variables' dtypes.  A lazy layer not called yet (``LazyLinear``) first creates its
        variables with the state_dict's shapes, as torch's lazy modules.  Returns torch's
        ``(missing_keys, unexpected_keys)`` named tuple.
        """
        waiting = tuple(key for name, module in list(self.named_modules()) if isinstance(module, Module)
                        for key in module._lazy_load(state_dict, name + "." if name else ""))
        template = self._variables_template()
        report = interop.check_state_dict(state_dict, template)
        if waiting:  # lazy variables the state_dict lacks: left uncreated, so not in the template
            report = dataclasses.replace(report, missing=report.missing + waiting)
            if strict:
                raise interop.StateDictMismatchError(report)
        new = interop.load_state_dict(template, state_dict, strict=strict)
        flat = {**interop.flatten_variables(new["params"]), **interop.flatten_variables(new["batch_stats"])}
        for key, var in self._named_variables(aliases=True):  # a tied variable takes its last name's value, as torch
            if key in state_dict:
                var.set_value(jnp.asarray(flat[key]))
        return _IncompatibleKeys(list(report.missing), list(report.unexpected))


class IndexedChildren:
    """torch's ``ModuleList`` indexing for a composite layer's numbered children (``enc.layers[0]``,
    ``len(enc.layers)``, ``for layer in enc.layers``)."""

    def _numbered(self) -> list[nnx.Module]:
        return [getattr(self, k) for k in sorted((k for k in vars(self) if k.isdigit()), key=int)]

    def __getitem__(self, index: int | slice) -> Any:
        children = self._numbered()
        try:
            return children[index]
        except IndexError:
            raise IndexError(f"{type(self).__name__}: index {index} is out of range for {len(children)} "
                             "children") from None

    def __len__(self) -> int:
        return len(self._numbered())

    def __iter__(self) -> Iterator[nnx.Module]:
        return iter(self._numbered())


class Submodule(Module):
    """A node of a wrapped linen layer's variables that is no linen submodule (a parametrization's
    ``parametrizations``): it holds variables only, so that they keep torch's keys.  Linen submodules
    (``self_attn``, ``layers.0``) become layers of their own NNX classes."""
