"""Engine settings: which implementation of a function runs.

Every function in :mod:`jaxlayers.functional` has a **reference**
implementation: plain JAX that reads like the maths (``lax.reduce_window``,
``lax.conv_general_dilated``, two-pass moments) and is differentiated by JAX
itself.  Some also have a faster **lowering** for a backend or machine
(:mod:`jaxlayers._lowering`); a lowering always falls back to the reference
where it does not apply.

``lowering`` chooses:

* ``"auto"`` (default) — lowerings where they apply: algorithmic wins on any
  machine, and choices measured on the running machine (autotuning, see below).
* ``"reference"`` — the reference implementation everywhere.

Set it with :func:`set_lowering`, for a block with the :func:`lowering`
context manager, or with the environment variable ``JAXLAYERS_LOWERING``
(read at import).  The setting is part of ``jax.jit``'s cache key, so a jitted
function traced under one setting is traced again under the other.

``autotune`` (default off, as ``torch.backends.cudnn.benchmark``;
``JAXLAYERS_AUTOTUNE=1`` or :func:`set_autotune` turns it on) lets a lowering
that does not win on every machine time itself against the reference on the
first trace with a given shape and dtype.  It costs compile time (about 11 s
more for a ResNet-18 training step on a 2-core CPU, whose steady step it did not
speed up), so it is for long runs.  Decisions are cached per process and, when ``JAXLAYERS_AUTOTUNE_CACHE``
names a file (or :func:`set_autotune` is given ``cache_file``), on disk.

>>> from jaxlayers import config
>>> config.get_lowering()
'auto'
>>> with config.lowering("reference"):
...     config.get_lowering()
'reference'

``memory_format`` (default ``"contiguous"``) is torch's
``memory_format=torch.channels_last`` for whole networks: with
``"channels_last"`` the layers over ``(N, C, *spatial)`` (convolutions, batch /
instance / group norm, pools, unpooling, feature dropout, resampling,
shuffles, padding layers, ``Flatten``) take and return **channels-last** arrays
``(N, *spatial, C)``.  Parameters, buffers and ``state_dict`` keys do not
change, so a torch checkpoint loads as before; XLA on CPU runs convolutions
channels-last, so the activations between layers then need no relayout
(ResNet-18 training step about 7 % faster on a 2-core AVX-512 CPU, see
docs/engine.md).  One switch per model: wrap its ``init``/``apply`` (or NNX
call) in ``with config.memory_format("channels_last"):`` and feed NHWC input;
``JAXLAYERS_MEMORY_FORMAT`` sets the process default.  Like the lowering it is
part of ``jax.jit``'s cache key.

>>> with config.memory_format("channels_last"):
...     config.get_memory_format()
'channels_last'
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import jax

__all__ = [
    "LOWERINGS",
    "get_lowering",
    "set_lowering",
    "lowering",
    "use_lowerings",
    "MEMORY_FORMATS",
    "get_memory_format",
    "set_memory_format",
    "memory_format",
    "channels_last",
    "get_autotune",
    "set_autotune",
    "autotune_cache_file",
]

LOWERINGS = ("reference", "auto")
MEMORY_FORMATS = ("contiguous", "channels_last")


class _Setting:
    """A named choice among ``values``: a JAX config state (part of jit's cache key
    and trace context), its default from the environment variable ``env``."""

    def __init__(self, name: str, values: tuple[str, ...], env: str, default: str, help: str):
        self.name, self.values = name, values
        initial = self.check(os.environ.get(env, default).strip().lower(), env)
        try:
            from jax._src import config as _jax_config

            self.state = _jax_config.enum_state(f"jaxlayers_{name}", list(values), initial, help=help,
                                                include_in_jit_key=True, include_in_trace_context=True)
        except Exception:  # pragma: no cover - a JAX without this API: a process-wide value
            self.state, self.fallback = None, initial

    def check(self, value: str, where: str) -> str:
        if value not in self.values:
            raise ValueError(f"jaxlayers.config: {where} must be one of {self.values}, got {value!r}")
        return value

    def get(self) -> str:
        return self.fallback if self.state is None else self.state.value

    def set(self, value: str) -> None:
        self.check(value, self.name)
        if self.state is None:  # pragma: no cover
            self.fallback = value
        else:
            jax.config.update(f"jaxlayers_{self.name}", value)

    @contextlib.contextmanager
    def scoped(self, value: str) -> Iterator[None]:
        self.check(value, self.name)
        if self.state is not None:
            with self.state(value):
                yield
            return
        old, self.fallback = self.fallback, value  # pragma: no cover
        try:  # pragma: no cover
            yield
        finally:  # pragma: no cover
            self.fallback = old


_lowering = _Setting("lowering", LOWERINGS, "JAXLAYERS_LOWERING", "auto",
                     "jaxlayers: 'reference' or 'auto' (lowerings where they apply)")
_memory_format = _Setting("memory_format", MEMORY_FORMATS, "JAXLAYERS_MEMORY_FORMAT", "contiguous",
                          "jaxlayers: 'contiguous' (torch's N, C, *spatial) or 'channels_last' (N, *spatial, C)")


def get_lowering() -> str:
    """The current setting, ``"reference"`` or ``"auto"``."""
    return _lowering.get()


def set_lowering(mode: str) -> None:
    """Set the lowering for the process: ``"reference"`` or ``"auto"``."""
    _lowering.set(mode)


def lowering(mode: str) -> contextlib.AbstractContextManager:
    """Use ``mode`` inside a ``with`` block (thread-local where JAX allows)."""
    return _lowering.scoped(mode)


def use_lowerings() -> bool:
    """Whether lowerings may be used (the setting is ``"auto"``); read at trace time."""
    return get_lowering() == "auto"


def get_memory_format() -> str:
    """The current memory format, ``"contiguous"`` or ``"channels_last"``."""
    return _memory_format.get()


def set_memory_format(memory_format: str) -> None:
    """Set the memory format for the process: ``"contiguous"`` or ``"channels_last"``."""
    _memory_format.set(memory_format)


def memory_format(memory_format: str) -> contextlib.AbstractContextManager:
    """Use ``memory_format`` inside a ``with`` block (wrap a model's ``init`` and ``apply``)."""
    return _memory_format.scoped(memory_format)


def channels_last() -> bool:
    """Whether spatial layers take channels-last input; read at trace time."""
    return get_memory_format() == "channels_last"


def _env_flag(env: str) -> bool:
    """A boolean environment variable: 1/true/yes/on or 0/false/no/off (or unset); anything else is an
    error, as for the other settings (``JAXLAYERS_AUTOTUNE=2`` had silently meant off)."""
    value = os.environ.get(env, "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"jaxlayers.config: {env} must be 1/true/yes/on or 0/false/no/off, got {value!r}")


_autotune = {
    "on": _env_flag("JAXLAYERS_AUTOTUNE"),
    "cache_file": os.environ.get("JAXLAYERS_AUTOTUNE_CACHE") or None,
}


def get_autotune() -> bool:
    """Whether lowerings that must be measured may time themselves (default off)."""
    return bool(_autotune["on"])


def set_autotune(on: bool, cache_file: str | None = None) -> None:
    """Turn autotuning on or off; ``cache_file`` keeps decisions on disk (JSON)."""
    _autotune["on"] = bool(on)
    if cache_file is not None:
        _autotune["cache_file"] = os.fspath(cache_file)


def autotune_cache_file() -> str | None:
    """The on-disk autotuning cache, or ``None`` (decisions kept for the process only)."""
    return _autotune["cache_file"]
