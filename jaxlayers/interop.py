"""PyTorch ``state_dict`` <-> Flax variables, and ``.safetensors`` files.

jaxlayers modules name and shape their variables as torch does, so a torch
``state_dict`` maps onto Flax variables by splitting keys at the dots:
``"features.0.weight"`` -> ``variables["params"]["features"]["0"]["weight"]``.
torch's buffers (``running_mean``, ``running_var``, ``num_batches_tracked``)
go to the ``batch_stats`` collection.  No reshaping, no transposes.

>>> variables = interop.state_dict_to_variables(torch_model.state_dict())
>>> y = model.apply(variables, x)
>>> sd = interop.variables_to_state_dict(variables)   # torch's keys again

Nothing here imports torch: torch tensors are recognised by duck typing, and
the safetensors reader/writer is plain NumPy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Mapping
from typing import Any, Iterable

import numpy as np

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


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy copy of a torch tensor, JAX array or array-like (bfloat16 kept)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, no import
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            import ml_dtypes

            return t.float().numpy().astype(ml_dtypes.bfloat16)
        return np.array(t.numpy())
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
        (stats if _is_buffer(key, buffer_names) else params)[key] = to_numpy(value)
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
    torch lists them); other collections are ignored.
    """
    merged: dict = {}
    for col in _COLLECTIONS:
        if col in variables:
            merged = _merge(merged, variables[col])
    return {k: to_numpy(v) for k, v in flatten_variables(merged).items()}


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


class StateDictMismatchError(ValueError):
    """Raised by a strict load; ``.report`` holds every problem found."""

    def __init__(self, report: StateDictReport):
        super().__init__("load_state_dict: the state_dict does not match the module's variables:\n" + str(report))
        self.report = report


def check_state_dict(state_dict: Mapping[str, Any], variables: Mapping[str, Any]) -> StateDictReport:
    """Compare a torch-keyed state_dict with a module's variables (e.g. from ``init``).

    Reports every missing key, unexpected key and shape mismatch at once.
    """
    expected = {k: tuple(np.shape(v)) for k, v in variables_to_state_dict_shapes(variables).items()}
    got = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    missing = tuple(k for k in expected if k not in got)
    unexpected = tuple(k for k in got if k not in expected)
    mismatched = tuple((k, expected[k], got[k]) for k in expected if k in got and expected[k] != got[k])
    return StateDictReport(missing, unexpected, mismatched)


def variables_to_state_dict_shapes(variables: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict = {}
    for col in _COLLECTIONS:
        if col in variables:
            merged = _merge(merged, variables[col])
    return flatten_variables(merged)


def load_state_dict(
    variables: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    cast: bool = True,
) -> dict[str, dict]:
    """torch's ``module.load_state_dict`` for Flax variables.

    Args:
      variables: the module's own variables (``model.init(...)``), the template.
      state_dict: torch tensors or NumPy arrays under torch's keys.
      strict: raise :class:`StateDictMismatchError` listing every missing key,
        unexpected key and shape mismatch; with ``strict=False`` missing entries
        keep the template's values and unexpected keys are ignored (shape
        mismatches always raise).
      cast: convert each array to the template's dtype, as torch's in-place copy
        does; ``cast=False`` keeps the state_dict's dtypes (e.g. float64).

    Returns:
      New variables with the template's structure.
    """
    report = check_state_dict(state_dict, variables)
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
                value = to_numpy(state_dict[key])
                new[key] = value.astype(np.asarray(old).dtype) if cast else value
            else:
                new[key] = np.asarray(old)
        out[col] = _nest(new)
    return out


# ----------------------------------------------------------------- safetensors

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}


def _st_dtype_table() -> dict[str, Any]:
    table = dict(_ST_DTYPES)
    try:
        import ml_dtypes

        table["BF16"] = ml_dtypes.bfloat16
    except ImportError:  # pragma: no cover - ml_dtypes ships with jax
        pass
    return table


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write a flat ``{name: array}`` mapping as a ``.safetensors`` file (no torch).

    Flax variables (with ``params``/``batch_stats``) are flattened to torch's
    keys first, so the file loads in torch with ``safetensors.torch.load_file``.
    """
    if "params" in tensors and isinstance(tensors["params"], Mapping):
        tensors = variables_to_state_dict(tensors)
    names = {np.dtype(v): k for k, v in _st_dtype_table().items()}
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for key in sorted(tensors):
        arr = to_numpy(tensors[key])
        if arr.dtype not in names:
            raise TypeError(f"save_safetensors: unsupported dtype {arr.dtype} for {key!r}")
        data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()
        header[key] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into ``{name: np.ndarray}`` (no torch)."""
    table = _st_dtype_table()
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"load_safetensors: {path} is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"load_safetensors: {path} has a header of {n} bytes but only {len(buf)} bytes in all")
    header = json.loads(buf[8 : 8 + n])
    data = memoryview(buf)[8 + n :]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in table:
            raise TypeError(f"load_safetensors: unsupported dtype {info['dtype']} for {key!r}")
        begin, end = info["data_offsets"]
        dtype = np.dtype(table[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(data[begin:end], dtype=dtype).reshape(tuple(info["shape"]))
        out[key] = arr.astype(arr.dtype.newbyteorder("="))
    return out


def save_variables(path: str | os.PathLike, variables: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Save Flax variables as a torch-keyed ``.safetensors`` file."""
    save_safetensors(path, variables_to_state_dict(variables), metadata)


def load_variables(path: str | os.PathLike, template: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, dict]:
    """Load a ``.safetensors`` file as Flax variables; with ``template`` (the
    module's own variables) the load is strict and cast as :func:`load_state_dict`."""
    state_dict = load_safetensors(path)
    if template is None:
        return state_dict_to_variables(state_dict)
    return load_state_dict(template, state_dict, **kwargs)
