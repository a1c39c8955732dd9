"""Shared test helpers: comparison with the torch (float64) oracle and
torch <-> JAX conversion.  Import as ``from oracle import close, to_torch, ...``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

RTOL = 1e-10
ATOL = 1e-10


def to_numpy(a: Any) -> Any:
    """A torch tensor, JAX array or nested tuple/list/dict of them as NumPy."""
    if torch is not None and isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, (list, tuple)):
        if hasattr(a, "_fields"):  # a NamedTuple keeps its type
            return type(a)(*(to_numpy(v) for v in a))
        # lists stay lists; tuples and tuple-like torch.return_types become plain tuples
        return [to_numpy(v) for v in a] if isinstance(a, list) else tuple(to_numpy(v) for v in a)
    if isinstance(a, dict):
        return {k: to_numpy(v) for k, v in a.items()}
    if a is None:
        return None
    return np.asarray(a)


def to_torch(a: Any, requires_grad: bool = False, dtype: Any = None) -> Any:
    """A NumPy/JAX array as a torch tensor (``None`` stays ``None``); float64 stays float64."""
    if a is None:
        return None
    t = torch.from_numpy(np.array(a))
    if dtype is not None:
        t = t.to(dtype)
    return t.requires_grad_(requires_grad) if requires_grad else t


def close(a: Any, b: Any, rtol: float = RTOL, atol: float = ATOL, err_msg: str = "", equal_nan: bool = True) -> None:
    """``np.testing.assert_allclose`` on arrays, tensors or matching trees of them."""
    a, b = to_numpy(a), to_numpy(b)
    if a is None or b is None:
        assert a is None and b is None, f"{err_msg}: {a!r} != {b!r}"
        return
    if isinstance(a, dict):
        assert set(a) == set(b), f"{err_msg}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            close(a[k], b[k], rtol, atol, f"{err_msg}[{k}]", equal_nan)
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{err_msg}: {len(a)} != {len(b)} entries"
        for i, (u, v) in enumerate(zip(a, b)):
            close(u, v, rtol, atol, f"{err_msg}[{i}]", equal_nan)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{err_msg}: shape {a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=err_msg, equal_nan=equal_nan)


@contextlib.contextmanager
def compiles(event: str = "/jax/core/compile/backend_compile_duration") -> Iterator[list]:
    """The list of XLA compilations while the block runs (one entry each); or of another of JAX's monitored
    durations (``"/jax/core/compile/jaxpr_trace_duration"``: the traces)."""
    found: list = []

    def listen(name: str, duration: float, **kwargs: Any) -> None:
        if name == event:
            found.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield found
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def on_host(args: Sequence[Any]) -> tuple:
    """``args`` with JAX arrays as NumPy arrays (same values and dtypes), for ``check_grads``: its finite
    differences add and subtract the step with ``+`` and ``-``, which on a JAX array compile two XLA programs
    at every new argument shape; on NumPy they compile nothing."""
    return tuple(np.asarray(a) if isinstance(a, jax.Array) and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended)
                 else a for a in args)


def check_grads_through_hessian(fn: Callable, args: Sequence[Any], atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """``check_grads`` in forward and reverse mode, and in forward mode through the reverse-mode pullback
    ``x -> vjp(fn, x)(fn(x))``: forward-over-reverse, the path of ``jax.hessian`` and hessian-vector products.
    Half the programs of ``check_grads(order=2, modes=("fwd", "rev"))`` (which also runs forward-over-forward,
    reverse-over-forward and reverse-over-reverse), so the transform table can afford it on every row."""

    def pulled_back(*a):
        out, pull = jax.vjp(fn, *a)
        return pull(out)

    args = on_host(args)
    check_grads(jax.jit(fn), args, order=1, modes=("fwd", "rev"), atol=atol, rtol=rtol)
    check_grads(jax.jit(pulled_back), args, order=1, modes=("fwd",), atol=atol, rtol=rtol)


def torch_fwd_bwd(fn: Callable, cotangent: Any, *arrays: Any) -> tuple[Any, list]:
    """torch's output of ``fn(*tensors)`` and the gradients of ``sum(out * cotangent)``
    w.r.t. every array (``None`` for ``None`` entries and integer arrays)."""
    ts = [None if a is None else to_torch(a, requires_grad=np.issubdtype(np.asarray(a).dtype, np.floating))
          for a in arrays]
    out = fn(*ts)
    (out * to_torch(cotangent)).sum().backward()
    grads = [None if t is None or t.grad is None else t.grad.numpy() for t in ts]
    return out.detach().numpy(), grads


def jax_fwd_bwd(fn: Callable, cotangent: Any, *arrays: Any, argnums: Sequence[int] | None = None) -> tuple[Any, list]:
    """jaxlayers' output of ``fn(*arrays)`` and the gradients of ``sum(out * cotangent)``
    w.r.t. the floating arrays (``argnums``: which; default every floating one).  Jitted: two programs, where
    eager differentiation compiled every primitive of both passes (13 % off the files that use it)."""
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(arrays)
                        if a is not None and jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating))
    out, vjp = jax.vjp(jax.jit(lambda *d: fn(*[d[argnums.index(i)] if i in argnums else a
                                       for i, a in enumerate(arrays)])), *[arrays[i] for i in argnums])
    gs = vjp(jnp.asarray(cotangent, out.dtype))
    grads = [None] * len(arrays)
    for i, g in zip(argnums, gs):
        grads[i] = g
    return out, grads


def variables_from_torch(module: Any) -> dict:
    """A torch module's ``state_dict`` as Flax variables (checks names and layouts)."""
    from jaxlayers import interop

    return interop.state_dict_to_variables(module.state_dict())


def public_functions() -> dict[str, str]:
    """Every public function of :mod:`jaxlayers.functional`: name -> family (module) name."""
    import importlib
    import pkgutil

    import jaxlayers.functional as F

    names = {}
    for m in pkgutil.iter_modules(F.__path__):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"jaxlayers.functional.{m.name}")
        for n in getattr(mod, "__all__", ()):
            names[n] = m.name
    return names


def relayouts(compiled: Any) -> int:
    """The data-moving transposes and copies of a compiled JAX program
    (``benchmarks/bench_models.count_relayouts`` of its optimised HLO)."""
    import pathlib
    import sys

    benchmarks = str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    from bench_models import count_relayouts

    return count_relayouts(compiled.as_text())
