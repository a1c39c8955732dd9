"""``torch.nn.utils.parametrizations``: weight_norm, spectral_norm, orthogonal.

Each function wraps a linen module (:class:`~jaxlayers.nn.utils.parametrize.Parametrized`) and
stores torch's variables under torch's keys:

=================  ==============================================================================
weight_norm        params ``parametrizations.<name>.original0`` (g), ``...original1`` (v)
spectral_norm      params ``parametrizations.<name>.original``; batch_stats
                   ``parametrizations.<name>.0._u``, ``..._v``
orthogonal         params ``parametrizations.<name>.original``; batch_stats
                   ``parametrizations.<name>.0.base`` (with ``use_trivialization=True``)
=================  ==============================================================================

so ``interop.variables_to_state_dict`` gives the keys of the torch module and
``interop.load_state_dict(variables, torch_module.state_dict())`` loads it strictly.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxlayers import nn, interop
  >>> from jaxlayers.nn.utils import parametrizations as P
  >>> m = P.weight_norm(nn.Linear(3, 4))
  >>> v = m.init(jax.random.key(0), jnp.ones((2, 3)))
  >>> list(interop.variables_to_state_dict(v))
  ['bias', 'parametrizations.weight.original0', 'parametrizations.weight.original1']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as fnn
import jax
import jax.numpy as jnp
from jax import lax

from .clip_grad import _vector_norm
from .parametrize import Parametrization, _base, register_parametrization

__all__ = ["weight_norm", "spectral_norm", "orthogonal"]


# ----------------------------------------------------------------------------- numerics


def _check_dim(fn: str, dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"{fn}: dim out of range (expected to be in range of [{-ndim}, {ndim - 1}] for a "
                         f"{ndim}-D tensor, but got {dim})")
    return dim % ndim


def norm_except_dim(v: jax.Array, dim: int) -> jax.Array:
    """``torch.norm_except_dim(v, 2, dim)``: the 2-norm over every axis but ``dim``, keeping dims;
    ``dim=-1`` is the norm of the whole tensor (0-d), as in torch.  Accumulated in at least float32
    and rounded to ``v``'s dtype, as torch (float16 squares of 200 would overflow)."""
    if dim == -1:
        return _vector_norm(v, 2)
    axes = tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    return _vector_norm(v, 2, axes, keepdims=True)


def weight_norm_fn(v: jax.Array, g: jax.Array, dim: int) -> jax.Array:
    """``torch._weight_norm(v, g, dim)``: ``v * (g / norm_except_dim(v, dim))``."""
    return v * (g / norm_except_dim(v, dim))


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    """``F.normalize(x, dim=0, eps)`` of a vector (its norm accumulated in at least float32)."""
    return x / jnp.maximum(_vector_norm(x, 2), eps)


def _matrix(w: jax.Array, dim: int) -> jax.Array:
    """Spectral norm's ``_reshape_weight_to_matrix``: ``dim`` first, the rest flattened."""
    w = jnp.moveaxis(w, dim, 0)
    return w.reshape(w.shape[0], -1)


def power_iteration(w_mat: jax.Array, u: jax.Array, v: jax.Array, n: int, eps: float,
                    v_first: bool = False) -> tuple[jax.Array, jax.Array]:
    """``n`` steps of the power method on ``w_mat`` (no gradient).

    torch's parametrization updates ``u = normalize(W v)`` then ``v = normalize(W^T u)``; the old
    ``torch.nn.utils.spectral_norm`` hook (``v_first=True``) updates ``v`` first.
    """
    w_mat = lax.stop_gradient(w_mat)

    def step(_, uv):
        u, v = uv
        if v_first:
            v = _normalize(w_mat.T @ u, eps)
            u = _normalize(w_mat @ v, eps)
        else:
            u = _normalize(w_mat @ v, eps)
            v = _normalize(w_mat.T @ u, eps)
        return u, v

    return lax.fori_loop(0, n, step, (u, v)) if n else (u, v)


def spectral_norm_fn(weight: jax.Array, u: jax.Array, v: jax.Array, dim: int) -> jax.Array:
    """``weight / sigma`` with ``sigma = u . (W v)``; ``u``, ``v`` are constants (no gradient)."""
    u, v = lax.stop_gradient(u), lax.stop_gradient(v)
    sigma = jnp.dot(u, _matrix(weight, dim) @ v)
    return weight / sigma


def _householder_product(a: jax.Array, tau: jax.Array) -> jax.Array:
    """``torch.linalg.householder_product`` for a tall ``(..., n, k)`` ``a`` with implicit unit
    diagonal: ``H_1 ... H_k`` applied to the first ``k`` columns of the identity, as one scan."""
    n, k = a.shape[-2:]
    eye = jnp.broadcast_to(jnp.eye(n, k, dtype=a.dtype), a.shape)
    vs = jnp.tril(a, -1) + jnp.eye(n, k, dtype=a.dtype)

    def body(q, i):
        v = jnp.take(vs, i, axis=-1)[..., :, None]  # (..., n, 1)
        t = jnp.take(tau, i, axis=-1)[..., None, None]
        q = q - t * v * jnp.sum(v * q, axis=-2, keepdims=True)
        return q, None

    q, _ = lax.scan(body, eye, jnp.arange(k - 1, -1, -1))
    return q


_MAPS = ("matrix_exp", "cayley", "householder")


def orthogonal_fn(x: jax.Array, orthogonal_map: str, base: jax.Array | None = None) -> jax.Array:
    """torch's ``_Orthogonal.forward``: an orthogonal matrix (batch) from ``x``."""
    n, k = x.shape[-2:]
    transposed = n < k
    if transposed:
        x = jnp.swapaxes(x, -1, -2)
        n, k = k, n
    if orthogonal_map in ("matrix_exp", "cayley"):
        x = jnp.tril(x)
        if n != k:
            x = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (n - k,), x.dtype)], axis=-1)
        a = x - jnp.swapaxes(x, -1, -2)
        if orthogonal_map == "matrix_exp":
            q = jax.scipy.linalg.expm(a)
        else:
            eye = jnp.eye(n, dtype=a.dtype)
            q = jnp.linalg.solve(eye - 0.5 * a, eye + 0.5 * a)
        q = q[..., :k]
    else:
        a = jnp.tril(x, -1)
        tau = 2.0 / (1.0 + jnp.sum(a * a, axis=-2))
        q = _householder_product(a, tau)
        sign = lax.stop_gradient(jnp.trunc(jnp.diagonal(x, axis1=-2, axis2=-1)))  # torch's .int()
        q = q * sign[..., None, :]
    if base is not None:
        q = base @ q
    return jnp.swapaxes(q, -1, -2) if transposed else q


def _make_orthogonal(a: jax.Array) -> jax.Array:
    """Q of ``a = QR`` with ``diag(R) >= 0`` (torch's ``_make_orthogonal``)."""
    q, r = jnp.linalg.qr(a)
    return q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


# ----------------------------------------------------------------------------- parametrizations


def _pdict(name: str, *rest: str) -> tuple[str, ...]:
    return ("parametrizations", name) + rest


@dataclasses.dataclass(frozen=True)
class WeightNorm(Parametrization):
    """``weight = g * v / ||v||`` (norm over every dim but ``dim``; ``dim=None``: whole tensor).

    ``legacy=True`` stores torch's old ``weight_norm`` variables ``<name>_g``, ``<name>_v``;
    otherwise ``parametrizations.<name>.original0`` (g) and ``original1`` (v).
    """

    dim: int | None = 0
    legacy: bool = False
    label: str = dataclasses.field(default="weight_norm", init=False, repr=False)

    def slots(self, name):
        if self.legacy:
            return {"g": ("params", (f"{name}_g",)), "v": ("params", (f"{name}_v",))}
        return {"g": ("params", _pdict(name, "original0")), "v": ("params", _pdict(name, "original1"))}

    def _dim(self, ndim: int) -> int:
        if self.dim is None or self.dim == -1:
            return -1
        _check_dim(self.label, self.dim, ndim)
        return self.dim % ndim

    def init(self, key, tensor):
        return {"g": norm_except_dim(tensor, self._dim(tensor.ndim)), "v": tensor}

    def forward(self, values, train, update):
        v = values["v"]
        return weight_norm_fn(v, values["g"], self._dim(v.ndim)), {}


@dataclasses.dataclass(frozen=True)
class SpectralNorm(Parametrization):
    """``weight / sigma``, ``sigma`` the largest singular value estimated by power iteration.

    ``legacy=True`` is torch's old ``spectral_norm`` hook (params ``<name>_orig``, buffers
    ``<name>_u``, ``<name>_v``, ``v`` updated first, no iteration at registration); otherwise
    the parametrization (``parametrizations.<name>.original``, buffers ``...0._u``, ``...0._v``,
    ``u`` first, ``15 + n_power_iterations`` iterations at ``init`` as torch's registration does).
    """

    n_power_iterations: int = 1
    dim: int = 0
    eps: float = 1e-12
    legacy: bool = False
    label: str = dataclasses.field(default="spectral_norm", init=False, repr=False)
    needs_train: bool = dataclasses.field(default=True, init=False, repr=False)

    def slots(self, name):
        if self.legacy:
            return {"w": ("params", (f"{name}_orig",)), "u": ("batch_stats", (f"{name}_u",)),
                    "v": ("batch_stats", (f"{name}_v",))}
        return {"w": ("params", _pdict(name, "original")), "u": ("batch_stats", _pdict(name, "0", "_u")),
                "v": ("batch_stats", _pdict(name, "0", "_v"))}

    def _dim(self, w):
        if w.ndim < 1:
            raise ValueError(f"{self.label}: expected a tensor with at least 1 dimension, got shape {tuple(w.shape)}")
        return _check_dim(self.label, self.dim, w.ndim)

    def _vector(self, w) -> bool:
        """A 1-D weight in the parametrization: torch normalises it exactly (no ``u``/``v``); the old
        hook treats it as an ``(n, 1)`` matrix."""
        return w.ndim == 1 and not self.legacy

    def init_buffers(self, w, u0, v0):
        """The buffers torch registers from the normal draws ``u0``, ``v0`` (exposed for tests)."""
        u, v = _normalize(u0, self.eps), _normalize(v0, self.eps)
        if not self.legacy:
            w_mat = _matrix(w, self._dim(w))
            u, v = power_iteration(w_mat, u, v, 15, self.eps)
            u, v = power_iteration(w_mat, u, v, self.n_power_iterations, self.eps)
        return u, v

    def init(self, key, tensor):
        if self._vector(tensor):
            self._dim(tensor)
            return {"w": tensor}
        h, w = _matrix(tensor, self._dim(tensor)).shape
        ku, kv = jax.random.split(key)
        u0 = jax.random.normal(ku, (h,), tensor.dtype)
        v0 = jax.random.normal(kv, (w,), tensor.dtype)
        u, v = self.init_buffers(tensor, u0, v0)
        return {"w": tensor, "u": u, "v": v}

    def forward(self, values, train, update):
        w = values["w"]
        if self._vector(w):
            return _normalize(w, self.eps), {}
        u, v = values["u"], values["v"]
        dim = self._dim(w)
        new = {}
        if train:
            u, v = power_iteration(_matrix(w, dim), u, v, self.n_power_iterations, self.eps, self.legacy)
            if update:
                new = {"u": u, "v": v}
        return spectral_norm_fn(w, u, v, dim), new

    def original(self, values):
        return values["w"]


@dataclasses.dataclass(frozen=True)
class Orthogonal(Parametrization):
    """An orthogonal (or semi-orthogonal) matrix from ``original`` (torch's ``_Orthogonal``)."""

    orthogonal_map: str = "matrix_exp"
    use_trivialization: bool = True
    label: str = dataclasses.field(default="orthogonal", init=False, repr=False)

    def slots(self, name):
        out = {"x": ("params", _pdict(name, "original"))}
        if self.use_trivialization:
            out["base"] = ("batch_stats", _pdict(name, "0", "base"))
        return out

    def init(self, key, tensor):
        if tensor.ndim < 2:
            raise ValueError(f"orthogonal: expected a matrix or batch of matrices, got a tensor of shape "
                             f"{tuple(tensor.shape)}")
        q = tensor
        n, k = q.shape[-2:]
        transpose = n < k
        if transpose:
            q = jnp.swapaxes(q, -1, -2)
            n, k = k, n
        if not self.use_trivialization:
            if self.orthogonal_map != "householder":  # torch: NotImplementedError -> original = weight
                return {"x": tensor}
            h, tau = jnp.linalg.qr(q, mode="raw")  # LAPACK geqrf, transposed
            a = jnp.swapaxes(h, -1, -2)
            d = jnp.diagonal(a, axis1=-2, axis2=-1)
            d = jnp.where(tau == 0.0, -jnp.sign(d), jnp.sign(d))
            a = _set_diag(a, d)
            return {"x": jnp.swapaxes(a, -1, -2) if transpose else a}
        if n == k:
            eye = jnp.eye(k, dtype=q.dtype)
            eps = 10.0 * n * jnp.finfo(q.dtype).eps
            is_orth = jnp.all(jnp.abs(jnp.swapaxes(q, -1, -2) @ q - eye) <= eps + 1e-5 * jnp.abs(eye))
            base = jnp.where(is_orth, q, _make_orthogonal(q))
        else:
            noise = jax.random.normal(key, q.shape[:-1] + (n - k,), q.dtype)
            base = _make_orthogonal(jnp.concatenate([q, noise], axis=-1))
        neg_id = -jnp.broadcast_to(jnp.eye(*tensor.shape[-2:], dtype=tensor.dtype), tensor.shape)
        return {"x": neg_id, "base": base}

    def forward(self, values, train, update):
        return orthogonal_fn(values["x"], self.orthogonal_map, values.get("base")), {}

    def original(self, values):
        return values["x"]


def _set_diag(a: jax.Array, d: jax.Array) -> jax.Array:
    m = min(a.shape[-2:])
    idx = jnp.arange(m)
    return a.at[..., idx, idx].set(d)


# ----------------------------------------------------------------------------- public functions


def _is_conv_transpose(module: Any) -> bool:
    from ..conv import _ConvTransposeNd

    return isinstance(module, _ConvTransposeNd)


def weight_norm(module: fnn.Module, name: str = "weight", dim: int | None = 0, *,
                module_name: str | None = None) -> fnn.Module:
    """Weight normalisation, as ``torch.nn.utils.parametrizations.weight_norm``.

    ``name = g * v / ||v||`` with the norm over every dim but ``dim`` (``None``: the whole tensor).

    Args:
      module: the linen module to wrap.
      name: the parametrized parameter.
      dim: the dim kept by the norm (``None`` or ``-1``: whole-tensor norm, as torch).
      module_name: the wrapper's linen name (``name`` is torch's tensor name), e.g. ``"conv"`` inside
        a compact parent; in ``setup`` or ``Sequential`` the attribute or position names it.

    Variables: params ``parametrizations.<name>.original0`` (g, shape with 1s but at ``dim``) and
    ``parametrizations.<name>.original1`` (v), initialised from the module's initial ``name``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = weight_norm(nn.Conv1d(2, 3, 2))
      >>> v = m.init(jax.random.key(0), jnp.ones((1, 2, 5)))
      >>> v["params"]["parametrizations"]["weight"]["original0"].shape
      (3, 1, 1)
    """
    return register_parametrization(module, name, WeightNorm(dim, legacy=False), module_name=module_name)


def spectral_norm(module: fnn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, *, module_name: str | None = None) -> fnn.Module:
    """Spectral normalisation, as ``torch.nn.utils.parametrizations.spectral_norm``.

    ``name = W / sigma(W)``, ``sigma`` estimated by ``n_power_iterations`` steps of the power method
    per training call (``train=True``; the vectors are stored only with ``mutable=["batch_stats"]``).
    ``train`` is required at call time.

    Args:
      module, name: the module and its parameter.
      n_power_iterations: power-method steps per training call.
      eps: the normalisation's epsilon.
      dim: the dim of the output channels (default 0, 1 for ConvTranspose*).
      module_name: the wrapper's linen name (as :func:`weight_norm`).

    Variables: params ``parametrizations.<name>.original``; batch_stats
    ``parametrizations.<name>.0._u`` ``(W.shape[dim],)`` and ``..._v`` (the other dims' product).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn, interop
      >>> m = spectral_norm(nn.Linear(3, 4))
      >>> v = m.init(jax.random.key(0), jnp.ones((2, 3)), train=False)
      >>> list(interop.variables_to_state_dict(v))
      ['bias', 'parametrizations.weight.original', 'parametrizations.weight.0._u', 'parametrizations.weight.0._v']
    """
    return _register_spectral_norm(module, name, n_power_iterations, eps, dim, module_name)


def _register_spectral_norm(module: fnn.Module, name: str, n_power_iterations: int, eps: float, dim: int | None,
                            module_name: str | None, legacy: bool = False) -> fnn.Module:
    """Both ``spectral_norm`` APIs: the default ``dim`` (1 for ConvTranspose*, else 0; the wrapped
    layer decides, through other parametrization wrappers) and the :class:`SpectralNorm`
    parametrization (``legacy``: the old hook's variable names)."""
    if int(n_power_iterations) <= 0:
        raise ValueError(f"spectral_norm: expected n_power_iterations to be positive, but got "
                         f"n_power_iterations={n_power_iterations}")
    if dim is None:
        dim = 1 if _is_conv_transpose(_base(module)) else 0
    return register_parametrization(
        module, name, SpectralNorm(int(n_power_iterations), int(dim), float(eps), legacy=legacy),
        module_name=module_name)


def orthogonal(module: fnn.Module, name: str = "weight", orthogonal_map: str | None = None, *,
               use_trivialization: bool = True, module_name: str | None = None) -> fnn.Module:
    """An orthogonal (semi-orthogonal) matrix, as ``torch.nn.utils.parametrizations.orthogonal``.

    Args:
      module, name: the module and its (at least 2-D) parameter.
      orthogonal_map: ``"matrix_exp"``, ``"cayley"`` or ``"householder"``; default as torch:
        ``"matrix_exp"`` for square matrices, ``"householder"`` otherwise.  The map's shape rule is
        decided at ``init`` (the weight's shape is not known before).
      use_trivialization: store a ``base`` buffer (the initial orthogonal matrix) and start
        ``original`` at ``-I``, as torch.
      module_name: the wrapper's linen name (as :func:`weight_norm`).

    Variables: params ``parametrizations.<name>.original``; batch_stats
    ``parametrizations.<name>.0.base`` (with ``use_trivialization``).

    What differs from torch: the weight is not known when wrapping, so ``orthogonal_map=None``
    resolves to a map class that chooses at call time from the shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlayers import nn
      >>> m = orthogonal(nn.Linear(3, 3, bias=False))
      >>> v = m.init(jax.random.key(0), jnp.ones((1, 3)))
      >>> w = m.apply(v, jnp.eye(3)).T
      >>> bool(jnp.allclose(w @ w.T, jnp.eye(3), atol=1e-5))
      True
    """
    if orthogonal_map is not None and orthogonal_map not in _MAPS:
        raise ValueError(f'orthogonal: orthogonal_map has to be one of "matrix_exp", "cayley", "householder", '
                         f"got {orthogonal_map!r}")
    return register_parametrization(module, name, _AutoOrthogonal(orthogonal_map, bool(use_trivialization)),
                                    module_name=module_name)


@dataclasses.dataclass(frozen=True)
class _AutoOrthogonal(Orthogonal):
    """:class:`Orthogonal` whose ``orthogonal_map=None`` follows torch's default for the shape."""

    orthogonal_map: str | None = None

    def _resolved(self, shape) -> Orthogonal:
        m = self.orthogonal_map or ("matrix_exp" if shape[-1] == shape[-2] else "householder")
        return Orthogonal(m, self.use_trivialization)

    def init(self, key, tensor):
        if tensor.ndim < 2:
            raise ValueError(f"orthogonal: expected a matrix or batch of matrices, got a tensor of shape "
                             f"{tuple(tensor.shape)}")
        return self._resolved(tensor.shape).init(key, tensor)

    def forward(self, values: Mapping, train, update):
        return self._resolved(values["x"].shape).forward(values, train, update)
