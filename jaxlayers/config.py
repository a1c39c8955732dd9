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
    "get_autotune",
    "set_autotune",
    "autotune_cache_file",
]

LOWERINGS = ("reference", "auto")


def _check_mode(mode: str, where: str) -> str:
    if mode not in LOWERINGS:
        raise ValueError(f"jaxlayers.config: {where} must be one of {LOWERINGS}, got {mode!r}")
    return mode


_env_mode = _check_mode(os.environ.get("JAXLAYERS_LOWERING", "auto"), "JAXLAYERS_LOWERING")

try:  # a JAX config state: part of jit's cache key and trace context
    from jax._src import config as _jax_config

    _state = _jax_config.enum_state(
        "jaxlayers_lowering",
        list(LOWERINGS),
        _env_mode,
        help="jaxlayers: 'reference' or 'auto' (lowerings where they apply)",
        include_in_jit_key=True,
        include_in_trace_context=True,
    )
except Exception:  # pragma: no cover - older/newer JAX without this API
    _state = None
    _fallback = {"mode": _env_mode}


def get_lowering() -> str:
    """The current setting, ``"reference"`` or ``"auto"``."""
    if _state is None:  # pragma: no cover
        return _fallback["mode"]
    return _state.value


def set_lowering(mode: str) -> None:
    """Set the lowering for the process: ``"reference"`` or ``"auto"``."""
    _check_mode(mode, "lowering")
    if _state is None:  # pragma: no cover
        _fallback["mode"] = mode
    else:
        jax.config.update("jaxlayers_lowering", mode)


@contextlib.contextmanager
def lowering(mode: str) -> Iterator[None]:
    """Use ``mode`` inside a ``with`` block (thread-local where JAX allows)."""
    _check_mode(mode, "lowering")
    if _state is None:  # pragma: no cover
        old = _fallback["mode"]
        _fallback["mode"] = mode
        try:
            yield
        finally:
            _fallback["mode"] = old
    else:
        with _state(mode):
            yield


def use_lowerings() -> bool:
    """Whether lowerings may be used (the setting is ``"auto"``); read at trace time."""
    return get_lowering() == "auto"


_autotune = {
    "on": os.environ.get("JAXLAYERS_AUTOTUNE", "0").strip().lower() in ("1", "true", "yes", "on"),
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
