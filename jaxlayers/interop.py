"""PyTorch ``state_dict`` <-> Flax variables, and ``.safetensors`` files.

jaxlayers modules name and shape their variables as torch does, so a torch
``state_dict`` maps onto Flax variables by splitting keys at the dots:
``"features.0.weight"`` -> ``variables["params"]["features"]["0"]["weight"]``.
torch's buffers (``running_mean``, ``running_var``, ``num_batches_tracked``)
go to the ``batch_stats`` collection.  No reshaping, no transposes::

    variables = interop.state_dict_to_variables(torch_model.state_dict())
    y = model.apply(variables, x)
    sd = interop.variables_to_state_dict(variables)   # torch's keys again

Nothing here imports torch: torch tensors are recognised by duck typing, and
``.safetensors`` files are read and written by the ``safetensors`` package
(its NumPy side; bfloat16 and float8 through ``ml_dtypes``, which ships with JAX).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Mapping
from typing import Any, Iterable

import jax
import numpy as np

from ._utils import is_torch_tensor

__all__ = [
    "BUFFER_NAMES",
    "StateDictMismatchError",
    "StateDictReport",
    "to_numpy",
    "flatten_variables",
    "state_dict_to_variables",
    "variables_to_state_dict",
    "check_state_dict",
    "load_state_dict",
    "save_safetensors",
    "load_safetensors",
    "save_variables",
    "load_variables",
]

#: torch buffer names that live in the ``batch_stats`` collection.
BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked"})

_COLLECTIONS = ("params", "batch_stats")


# torch dtypes NumPy lacks, read bit for bit as their ml_dtypes twins (what JAX uses)
_ML_DTYPES = {f"torch.{name}": name for name in
              ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu")}


def to_numpy(value: Any, key: str | None = None) -> np.ndarray:
    """A NumPy copy of a torch tensor, JAX array or array-like; bfloat16 and the float8 types kept
    (as ``ml_dtypes``' types, bit for bit).  A torch dtype with no JAX twin (``complex32``) is a
    TypeError naming ``key``."""
    if is_torch_tensor(value):
        t = value.detach().cpu()
        name = str(t.dtype)
        if name in _ML_DTYPES:
            import ml_dtypes
            import torch

            bits = {1: torch.uint8, 2: torch.int16}[t.element_size()]
            return t.contiguous().view(bits).numpy().view(getattr(ml_dtypes, _ML_DTYPES[name])).copy()
        try:
            return np.array(t.numpy())
        except TypeError as e:
            where = f" for {key!r}" if key is not None else ""
            raise TypeError(f"to_numpy: torch dtype {name}{where} has no NumPy/JAX equivalent ({e})") from None
    return np.array(value)


def _is_buffer(key: str, buffer_names: Iterable[str]) -> bool:
    return key.rsplit(".", 1)[-1] in buffer_names


def _nest(flat: Mapping[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"state_dict_to_variables: key {key!r} nests under a tensor")
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"state_dict_to_variables: key {key!r} is a tensor and a prefix of other keys")
        node[leaf] = value
    return tree


def flatten_variables(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a.b": x}`` (one collection)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_variables(v, key))
        else:
            out[key] = v
    return out


def state_dict_to_variables(
    state_dict: Mapping[str, Any], *, buffer_names: Iterable[str] = BUFFER_NAMES
) -> dict[str, dict]:
    """torch ``state_dict`` (tensors or NumPy arrays) -> ``{"params", "batch_stats"}``.

    Dtypes are kept (a float64 state_dict gives float64 variables).  The
    ``batch_stats`` entry is present only when the state_dict has buffers.
    """
    buffer_names = frozenset(buffer_names)
    params, stats = {}, {}
    for key, value in state_dict.items():
        (stats if _is_buffer(key, buffer_names) else params)[key] = to_numpy(value, key)
    out = {"params": _nest(params)}
    if stats:
        out["batch_stats"] = _nest(stats)
    return out


def _merge(a: Mapping, b: Mapping) -> dict:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in a.items()}
    for k, v in b.items():
        if k in out and isinstance(out[k], Mapping) and isinstance(v, Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax variables -> flat ``{"conv1.weight": np.ndarray, ...}`` with torch's keys.

    ``params`` and ``batch_stats`` are merged per module (parameters first, as
    torch lists them); other collections are ignored.  A ``jaxlayers.nnx`` model gives
    its ``state_dict()``.
    """
    from .nnx.module import Module  # here: jaxlayers.nnx imports this module

    if isinstance(variables, Module):
        return dict(variables.state_dict())
    return {k: to_numpy(v) for k, v in flatten_variables(_torch_order(_merged_collections(variables))).items()}


def _merged_collections(variables: Mapping[str, Any]) -> dict:
    """``params`` and ``batch_stats`` merged into one tree; a mapping with neither (a params dict without
    its collection, an ``nnx.State``) is a ValueError, not an empty state_dict."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"expected Flax variables ({{'params': ..., 'batch_stats': ...}}) or a jaxlayers.nnx "
                        f"model, got {type(variables).__name__}")
    if variables and not any(col in variables for col in _COLLECTIONS):
        raise ValueError(f"expected Flax variables with a {' or '.join(map(repr, _COLLECTIONS))} collection, got "
                         f"the keys {sorted(map(str, variables))[:6]}: pass {{'params': params}} for a params tree, "
                         "and a jaxlayers.nnx model itself (or its state_dict()), not its nnx.State")
    merged: dict = {}
    for col in _COLLECTIONS:
        if col in variables:
            merged = _merge(merged, variables[col])
    return merged


def _torch_order(tree: Mapping) -> dict:
    """torch's ``state_dict`` order per module: its own parameters, then its own buffers, then its
    children — by index for ``Sequential``/``ModuleList`` (all-digit names), else as first created
    (a buffer-only child, e.g. an affine-free BatchNorm, is otherwise merged in after the rest)."""
    leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
    children = [k for k in tree if isinstance(tree[k], Mapping)]
    if children and all(str(k).isdigit() for k in children):
        children.sort(key=int)
    return {**leaves, **{k: _torch_order(tree[k]) for k in children}}


@dataclasses.dataclass(frozen=True)
class StateDictReport:
    """What a strict load found: each entry names a key."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple, tuple], ...] = ()  # (key, expected, got)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = []
        if self.missing:
            lines.append("missing keys: " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("unexpected keys: " + ", ".join(self.unexpected))
        for key, want, got in self.mismatched:
            lines.append(f"shape mismatch for {key}: the module has {want}, the state_dict has {got}")
        return "\n".join(lines) or "state_dict matches"


class StateDictMismatchError(ValueError, RuntimeError):
    """Raised by a strict load; ``.report`` holds every problem found.  A ``RuntimeError`` as torch's."""

    def __init__(self, report: StateDictReport):
        super().__init__("load_state_dict: the state_dict does not match the module's variables:\n" + str(report))
        self.report = report


def check_state_dict(state_dict: Mapping[str, Any], variables: Mapping[str, Any]) -> StateDictReport:
    """Compare a torch-keyed state_dict with a module's variables (e.g. from ``init``).

    Reports every missing key, unexpected key and shape mismatch at once.
    """
    return _report(_torch_compatible(state_dict, variables), variables)


def _report(state_dict: Mapping[str, Any], variables: Mapping[str, Any]) -> StateDictReport:
    """:func:`check_state_dict` of a state_dict already made :func:`_torch_compatible`."""
    expected = {k: tuple(np.shape(v)) for k, v in variables_to_state_dict_shapes(variables).items()}
    got = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    missing = tuple(k for k in expected if k not in got)
    unexpected = tuple(k for k in got if k not in expected)
    mismatched = tuple((k, expected[k], got[k]) for k in expected if k in got and expected[k] != got[k])
    return StateDictReport(missing, unexpected, mismatched)


def _torch_compatible(state_dict: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """What torch's ``load_state_dict`` accepts from old checkpoints: a 1-element ``(1,)`` tensor for a
    0-d buffer, and no ``num_batches_tracked`` (BatchNorm before torch 0.4.1) — the module keeps its own."""
    expected = variables_to_state_dict_shapes(variables)
    out = dict(state_dict)
    for key, leaf in expected.items():
        value = out.get(key)
        if value is None:
            if key.rsplit(".", 1)[-1] == "num_batches_tracked":
                out[key] = np.zeros((), _leaf_dtype(leaf)) if _is_abstract(leaf) else np.asarray(leaf)
        elif np.shape(leaf) == () and tuple(np.shape(value)) == (1,):
            out[key] = to_numpy(value).reshape(())
    return out


def variables_to_state_dict_shapes(variables: Mapping[str, Any]) -> dict[str, Any]:
    return flatten_variables(_merged_collections(variables))


def load_state_dict(
    variables: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    cast: bool = True,
) -> dict[str, dict]:
    """torch's ``module.load_state_dict`` for Flax variables.

    Args:
      variables: the module's own variables (``model.init(...)``), the template;
        an abstract template (``jax.eval_shape(model.init, ...)``, whose leaves
        are ``jax.ShapeDtypeStruct``) gives its shapes and dtypes only.
      state_dict: torch tensors or NumPy arrays under torch's keys.
      strict: raise :class:`StateDictMismatchError` listing every missing key,
        unexpected key and shape mismatch; with ``strict=False`` missing entries
        keep the template's values and unexpected keys are ignored (shape
        mismatches always raise).
      cast: convert each array to the template's dtype, as torch's in-place copy
        does; ``cast=False`` keeps the state_dict's dtypes (e.g. float64).

    Returns:
      New variables with the template's structure: NumPy arrays, except where a template leaf is spread over
      several devices (a model placed on a mesh, sharded or replicated): there a ``jax.Array`` placed as the
      leaf is (torch's in-place copy keeps each parameter where it is).

    Raises:
      ValueError: with ``strict=False``, a key missing from the state_dict whose
        template leaf is abstract (there is no value to keep).
    """
    state_dict = _torch_compatible(state_dict, variables)
    report = _report(state_dict, variables)
    if (strict and not report.ok) or report.mismatched:
        raise StateDictMismatchError(report if strict else StateDictReport(mismatched=report.mismatched))
    out: dict[str, dict] = {}
    for col, tree in variables.items():
        if col not in _COLLECTIONS:
            out[col] = tree
            continue
        flat = flatten_variables(tree)
        new = {}
        for key, old in flat.items():
            if key in state_dict:
                value = to_numpy(state_dict[key], key)
                new[key] = _placed(value.astype(_leaf_dtype(old), copy=False) if cast else value, old)  # a copy
            elif _is_abstract(old):
                raise ValueError(
                    f"load_state_dict: {key!r} is missing from the state_dict and the template has no value to keep "
                    f"(it is abstract: {old}); pass concrete variables (model.init) or a complete state_dict"
                )
            elif _sharded(old) is not None:  # kept where it is
                new[key] = old
            else:
                new[key] = np.asarray(old)
        out[col] = _nest(new)
    return out


def _sharded(leaf: Any) -> Any:
    """The sharding of a template leaf (a ``jax.Array`` or ``jax.ShapeDtypeStruct``) spread over several
    devices (a sharded or replicated parameter of a model on a mesh); else None."""
    sharding = getattr(leaf, "sharding", None)
    return sharding if sharding is not None and len(getattr(sharding, "device_set", ())) > 1 else None


def _placed(value: np.ndarray, template: Any) -> Any:
    """``value`` placed as the template leaf is where that is spread over several devices (torch's in-place copy
    keeps each parameter where it is: a tensor-parallel model keeps its shardings); else the NumPy array."""
    sharding = _sharded(template)
    return value if sharding is None else jax.device_put(value, sharding)


def _is_abstract(leaf: Any) -> bool:
    """A ``jax.ShapeDtypeStruct`` (or any shape-and-dtype stand-in without data)."""
    return hasattr(leaf, "shape") and hasattr(leaf, "dtype") and not hasattr(leaf, "__array__")


def _leaf_dtype(leaf: Any) -> np.dtype:
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(leaf).dtype


# ----------------------------------------------------------------- safetensors

# safetensors dtype codes <-> NumPy dtypes (the ml_dtypes ones are registered with
# NumPy by importing ml_dtypes, a JAX dependency).
_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E8M0": "float8_e8m0fnu",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
    "BOOL": "bool", "C64": "complex64",
}


def _st_dtype_table() -> dict[str, np.dtype]:
    """``{code: np.dtype}`` for the codes this NumPy/ml_dtypes can represent."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes ships with jax
        ml_dtypes = None
    table = {}
    for code, name in _ST_DTYPES.items():
        dtype = getattr(ml_dtypes, name, None) if name.startswith(("bfloat", "float8")) else name
        if dtype is not None:
            table[code] = np.dtype(dtype)
    return table


def _safetensors_error(func: str, path: Any, err: Exception) -> ValueError:
    return ValueError(f"{func}: {os.fspath(path)} is not a valid safetensors file: {err}")


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write a flat ``{name: array}`` mapping as a ``.safetensors`` file (no torch).

    Flax variables (with ``params``/``batch_stats``) are flattened to torch's
    keys first, so the file loads in torch with ``safetensors.torch.load_file``.
    Written by ``safetensors.numpy.save_file``; bfloat16 and float8 arrays
    (``ml_dtypes``, as JAX gives them) are stored under their safetensors codes.

    Raises:
      TypeError: an array whose dtype safetensors cannot store (names the key).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    if "params" in tensors and isinstance(tensors["params"], Mapping):
        tensors = variables_to_state_dict(tensors)
    supported = set(_st_dtype_table().values())
    arrays = {}
    for key in sorted(tensors):
        arr = to_numpy(tensors[key])
        if arr.dtype.byteorder == ">":  # safetensors stores little-endian
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if arr.dtype not in supported:
            raise TypeError(f"save_safetensors: unsupported dtype {arr.dtype} for {key!r}")
        arrays[str(key)] = np.require(arr, requirements="C")  # (ascontiguousarray makes 0-d 1-d)
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    try:
        save_file(arrays, os.fspath(path), metadata=meta)
    except SafetensorError as e:
        raise ValueError(f"save_safetensors: cannot write {os.fspath(path)}: {e}") from e


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into ``{name: np.ndarray}`` (no torch), keys sorted.

    The header and offsets are parsed and validated by the ``safetensors``
    package; bfloat16 and float8 tensors come back as ``ml_dtypes`` arrays.

    Raises:
      ValueError: a malformed file (bad header length or JSON, overlapping,
        reversed or missing offsets, data that do not match the shapes, unknown
        dtype ...), naming the file and, where the package tells, the tensor.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy"):  # validates the header against the file
            pass
    except SafetensorError as e:
        raise _safetensors_error("load_safetensors", path, e) from None
    table = _st_dtype_table()
    out = {}
    with open(path, "rb") as f:  # each tensor read once, straight into its array (peak: the file's size)
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        for key in sorted(k for k in header if k != "__metadata__"):
            info = header[key]
            if info["dtype"] not in table:
                raise ValueError(f"load_safetensors: {os.fspath(path)}: tensor {key!r} has dtype {info['dtype']}, "
                                 f"which NumPy cannot hold (supported: {', '.join(table)})")
            dtype, shape = table[info["dtype"]].newbyteorder("<"), tuple(info["shape"])
            f.seek(8 + size + info["data_offsets"][0])
            arr = np.fromfile(f, dtype=dtype, count=math.prod(shape)).reshape(shape)
            out[key] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    return out


def save_variables(path: str | os.PathLike, variables: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Save Flax variables (or a ``jaxlayers.nnx`` model) as a torch-keyed ``.safetensors`` file."""
    save_safetensors(path, variables_to_state_dict(variables), metadata)


def load_variables(path: str | os.PathLike, template: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, dict]:
    """Load a ``.safetensors`` file as Flax variables; with ``template`` (the
    module's own variables) the load is strict and cast as :func:`load_state_dict`."""
    state_dict = load_safetensors(path)
    if template is None:
        return state_dict_to_variables(state_dict)
    return load_state_dict(template, state_dict, **kwargs)
