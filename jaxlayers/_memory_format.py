"""Channels-last execution: one decorator for every layer over ``(N, C, *spatial)``.

With ``config.memory_format("channels_last")`` a decorated function or module
call takes its activation arguments as ``(N, *spatial, C)``: it moves the
channel axis to 1, runs the channels-first (torch-layout) code with the setting
switched back to ``"contiguous"`` — so nested layers move nothing — and moves
it back to the end in every output of the input's rank.  Between two layers the
pair of moves cancels, and inside XLA:CPU's convolutions, which run
channels-last, so does the other pair: the network's activations stay
channels-last without a second implementation of any layer.  Layers that reduce
over the spatial dims or slide a window over them (batch / instance / group norm,
max / average / LP / adaptive average pooling) are decorated ``native=True``
instead: they take ``channel_axis=-1`` and compute in place, which XLA:CPU does
~2-3x faster than over a moved view.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any, Callable

import jax.numpy as jnp

from . import config
from ._utils import shape_str


_MOVED = contextvars.ContextVar("jaxlayers_moved_from_channels_last", default=False)


def moved() -> bool:
    """Whether the running layer's activations arrived channels-last and were moved by :func:`channels_last`.

    A hint for lowerings with a channels-last form (:mod:`jaxlayers._lowering.conv`): computed
    in that form, their own channel moves cancel against the wrapper's.  Values never depend on it.
    """
    return _MOVED.get()


def _to_first(x: Any) -> Any:
    return jnp.moveaxis(x, -1, 1)


def _to_last(out: Any, rank: int) -> Any:
    """Channel axis 1 -> last in ``out`` and in each element of a tuple output, for arrays of ``rank``."""
    if isinstance(out, tuple):
        items = [_to_last(o, rank) for o in out]
        return out._make(items) if hasattr(out, "_make") else tuple(items)
    if hasattr(out, "ndim") and out.ndim == rank:
        return jnp.moveaxis(out, 1, -1)
    return out


def channels_last(fn: Callable | None = None, *, moved: int = 1, spatial: int | None = None,
                  native: bool = False, shapes: tuple[str, ...] = ()) -> Callable:
    """Make ``fn`` (a function or a module's ``__call__``) honour ``memory_format``.

    Args:
      moved: how many leading arguments (after ``self``) may be activations whose
        channel axis is last in channels-last mode (``max_unpool``: input and
        indices; ``cross_entropy``: logits and a probability target).  The first is
        moved when it has spatial dims; the others when they have its rank.
      spatial: the number of spatial dims, when fixed; a module's
        ``num_spatial_dims`` is used when it has one.  Channels-last input must then
        be batched, ``(N, *spatial, C)``: an unbatched one is ambiguous and rejected.
      native: ``fn`` takes a ``channel_axis`` keyword and computes channels-last
        itself (a reduction or window over the spatial dims in place, ~2-3x faster
        on XLA:CPU than over the moved array); it is called with
        ``channel_axis=-1`` and nothing is moved.
      shapes: arguments that may be a full activation shape (``max_unpool``'s
        ``output_size``, often ``x.shape``): given with ``spatial + 2`` entries,
        they are read as ``(N, *spatial, C)`` and passed as ``(N, C, *spatial)``.
    """
    if fn is None:
        return functools.partial(channels_last, moved=moved, spatial=spatial, native=native, shapes=shapes)
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    method = names[:1] == ["self"]
    activations = names[int(method): int(method) + moved]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not config.channels_last():
            return fn(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        owner = type(args[0]).__name__ if method else bound.arguments.get("name") or fn.__name__
        n = getattr(args[0], "num_spatial_dims", None) or spatial if method else spatial
        rank = None
        for i, arg in enumerate(activations):
            if arg not in bound.arguments or bound.arguments[arg] is None:
                continue
            x = jnp.asarray(bound.arguments[arg])
            if i and x.ndim != rank:  # e.g. class-index targets beside (N, *spatial, C) logits
                continue
            if n and x.ndim != n + 2:
                raise ValueError(
                    f"{owner}: memory_format 'channels_last' expects a batched {arg} of shape "
                    f"(N, *{n} spatial dims, C) ({n + 2}-D), got shape {shape_str(x)}"
                )
            if x.ndim >= 3 and not native:
                bound.arguments[arg] = _to_first(x)
                rank = x.ndim if rank is None else rank
        for arg in shapes:
            v = bound.arguments.get(arg)
            if v is not None and n and jnp.ndim(v) == 1 and len(v) == n + 2:
                v = tuple(v)
                bound.arguments[arg] = (v[0], v[-1], *v[1:-1])
        if native:
            bound.arguments["channel_axis"] = -1
        token = _MOVED.set(rank is not None)
        try:
            with config.memory_format("contiguous"):
                out = fn(*bound.args, **bound.kwargs)
        finally:
            _MOVED.reset(token)
        return out if rank is None else _to_last(out, rank)

    wrapper.channels_last = True  # the marker tests/test_memory_format.py looks for
    return wrapper
