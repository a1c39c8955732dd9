"""RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU.

Thin linen modules over :mod:`jaxlayers.functional.recurrent`: they create torch's
parameters (names, shapes, default init U(±1/sqrt(hidden_size))) and call one function.
The three cells share :class:`_CellBase`; RNN/LSTM/GRU share :class:`_RNNBase` and differ
only in their constructor fields (torch's positional order) and mode.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable

import flax.linen as fnn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from .. import init as jinit
from .._utils import check_sizes, require_train
from ..functional import recurrent as R
from ._options import LayerOptions
from .utils.rnn import PackedSequence
from ._param import param

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]

_NONLINEARITY = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}


def _inits(module: Any) -> tuple[Callable, Callable]:
    default = jinit.uniform_fan_in(module.hidden_size)
    return module.weight_init or default, module.bias_init or default


class _CellBase(LayerOptions):
    """Shared body of RNNCell/LSTMCell/GRUCell (subclasses declare the fields)."""

    def _mode(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __post_init__(self) -> None:
        layer = type(self).__name__
        check_sizes(layer, input_size=self.input_size)  # a cell takes 0 (torch too)
        check_sizes(layer, 1, hidden_size=self.hidden_size)
        if getattr(self, "nonlinearity", "tanh") not in _NONLINEARITY:
            raise ValueError(f"{layer}: unknown nonlinearity {self.nonlinearity!r}; use 'tanh' or 'relu'")
        super().__post_init__()

    @fnn.compact
    def __call__(self, input, hx=None):
        mode = self._mode()
        g = R._GATES[mode] * self.hidden_size
        w_init, b_init = _inits(self)
        w_ih = param(self, "weight_ih", w_init, (g, self.input_size), self.param_dtype)
        w_hh = param(self, "weight_hh", w_init, (g, self.hidden_size), self.param_dtype)
        b_ih = param(self, "bias_ih", b_init, (g,), self.param_dtype) if self.bias else None
        b_hh = param(self, "bias_hh", b_init, (g,), self.param_dtype) if self.bias else None
        input, w_ih, w_hh, b_ih, b_hh = promote_dtype(input, w_ih, w_hh, b_ih, b_hh, dtype=self.dtype)
        if hx is not None:
            hx = tuple(jnp.asarray(h, input.dtype) for h in hx) if isinstance(hx, (tuple, list)) \
                else jnp.asarray(hx, input.dtype)
        return R._cell(mode, type(self).__name__, input, hx, w_ih, w_hh, b_ih, b_hh, self.precision)


class RNNCell(_CellBase):
    """Elman RNN cell, as ``torch.nn.RNNCell``: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Args:
      input_size, hidden_size: feature sizes of ``x`` and ``h``.
      bias: learn ``bias_ih`` and ``bias_hh``.
      nonlinearity: ``"tanh"`` or ``"relu"``.
      dtype, param_dtype, weight_init, bias_init, precision: Flax-side options
        (``None`` initialisers = torch's U(±1/sqrt(hidden_size))).

    Call: ``cell(input, hx=None)``; ``hx=None`` means zeros.
    Params: ``weight_ih (H, in)``, ``weight_hh (H, H)``, ``bias_ih (H,)``, ``bias_hh (H,)``.
    Shape: input ``(N, in)`` or ``(in,)``; hx and output ``(N, H)`` or ``(H,)``.
    """

    input_size: int
    hidden_size: int
    bias: bool = True
    nonlinearity: str = "tanh"

    def _mode(self) -> str:
        return _NONLINEARITY[self.nonlinearity]


class LSTMCell(_CellBase):
    """LSTM cell, as ``torch.nn.LSTMCell``; returns ``(h', c')``.

    Gates ``i, f, g, o`` along ``4*hidden_size``. Args as :class:`RNNCell` (no nonlinearity).

    Call: ``cell(input, hx=None)`` with ``hx = (h_0, c_0)`` or None (zeros).
    Params: ``weight_ih (4H, in)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``.
    Shape: input ``(N, in)`` or ``(in,)``; h, c ``(N, H)`` or ``(H,)``.
    """

    input_size: int
    hidden_size: int
    bias: bool = True

    def _mode(self) -> str:
        return "LSTM"


class GRUCell(_CellBase):
    """GRU cell, as ``torch.nn.GRUCell``.

    Gates ``r, z, n`` along ``3*hidden_size``; the reset gate multiplies ``h W_hn^T + b_hn``.
    Args as :class:`RNNCell` (no nonlinearity).

    Params: ``weight_ih (3H, in)``, ``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``.
    Shape: input ``(N, in)`` or ``(in,)``; hx and output ``(N, H)`` or ``(H,)``.
    """

    input_size: int
    hidden_size: int
    bias: bool = True

    def _mode(self) -> str:
        return "GRU"


class _RNNBase(LayerOptions):
    """Shared body of RNN/LSTM/GRU (subclasses declare torch's fields in torch's order)."""

    def _mode(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _proj_size(self) -> int:
        return int(getattr(self, "proj_size", 0))

    def __post_init__(self) -> None:
        layer = type(self).__name__
        check_sizes(layer, 1, input_size=self.input_size, hidden_size=self.hidden_size,  # torch: input_size > 0
                    num_layers=self.num_layers)
        if getattr(self, "nonlinearity", "tanh") not in _NONLINEARITY:
            raise ValueError(f"{layer}: unknown nonlinearity {self.nonlinearity!r}; use 'tanh' or 'relu'")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Number) \
                or not 0 <= self.dropout <= 1:
            raise ValueError(f"{layer}: dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {self.dropout!r}")
        if hasattr(self, "proj_size"):
            check_sizes(layer, proj_size=self.proj_size)
            if self.proj_size >= self.hidden_size:
                raise ValueError(f"{layer}: proj_size has to be smaller than hidden_size, got "
                                 f"proj_size={self.proj_size} and hidden_size={self.hidden_size}")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{layer}: dropout={self.dropout} has no effect with num_layers=1 (dropout is "
                          "applied after every recurrent layer but the last)", stacklevel=2)
        super().__post_init__()

    @fnn.compact
    def __call__(self, input, hx=None, *, train: bool | None = None):
        layer = type(self).__name__
        train = require_train(layer, train)
        mode, proj = self._mode(), self._proj_size()
        g = R._GATES[mode] * self.hidden_size
        h_out = proj or self.hidden_size
        num_dir = 2 if self.bidirectional else 1
        w_init, b_init = _inits(self)
        shapes = {}
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else h_out * num_dir
            for sfx in ("", "_reverse")[:num_dir]:
                shapes.update({f"weight_ih_l{k}{sfx}": (g, in_k), f"weight_hh_l{k}{sfx}": (g, h_out),
                               f"bias_ih_l{k}{sfx}": (g,), f"bias_hh_l{k}{sfx}": (g,),
                               f"weight_hr_l{k}{sfx}": (proj, self.hidden_size)})
        names = R.rnn_weight_names(self.num_layers, self.bias, self.bidirectional, proj)
        weights = [param(self, n, b_init if n.startswith("bias") else w_init, shapes[n], self.param_dtype)
                   for n in names]
        packed = input if isinstance(input, PackedSequence) else None
        lengths = None
        if packed is not None:
            packed = packed.with_padded()
            input, lengths = packed.padded, packed.lengths
        input, *weights = promote_dtype(input, *weights, dtype=self.dtype)
        if hx is not None:
            hx = tuple(jnp.asarray(h, input.dtype) for h in hx) if isinstance(hx, (tuple, list)) \
                else jnp.asarray(hx, input.dtype)
            if packed is not None and packed.sorted_indices is not None:  # torch's permute_hidden
                hx = jax.tree.map(lambda h: jnp.take(h, packed.sorted_indices, axis=1), hx)
        use_dropout = train and self.dropout > 0 and self.num_layers > 1
        key = self.make_rng("dropout") if use_dropout else None
        out, h = R.rnn(input, hx, weights, mode=mode, num_layers=self.num_layers, bias=self.bias,
                       batch_first=self.batch_first and packed is None, dropout=float(self.dropout), train=train,
                       bidirectional=self.bidirectional, proj_size=proj, key=key, precision=self.precision,
                       name=layer, lengths=lengths)
        if packed is None:
            return out, h
        if packed.unsorted_indices is not None:
            h = jax.tree.map(lambda a: jnp.take(a, packed.unsorted_indices, axis=1), h)
        return packed.replace_padded(out), h


class RNN(_RNNBase):
    """Multi-layer Elman RNN, as ``torch.nn.RNN``.

    Args:
      input_size, hidden_size: feature sizes of the input and of ``h``.
      num_layers: stacked recurrent layers.
      nonlinearity: ``"tanh"`` or ``"relu"``.
      bias: learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
      batch_first: input/output ``(N, L, H)`` instead of ``(L, N, H)`` (not ``h_0``/``h_n``).
      dropout: dropout probability on the outputs of every layer but the last (when ``train``).
      bidirectional: add a reverse direction (params suffixed ``_reverse``).
      dtype, param_dtype, weight_init, bias_init, precision: Flax-side options.

    Call: ``rnn(input, hx=None, *, train)`` -> ``(output, h_n)``; ``train`` is required; dropout
    draws from the ``"dropout"`` rng stream.
    Params: ``weight_ih_l{k}[_reverse] (H, in_k)``, ``weight_hh_l{k} (H, H)``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` ``(H,)``, with ``in_0 = input_size``, ``in_k = D*H``.
    Shape: input ``(L, N, H_in)`` / ``(N, L, H_in)`` (batch_first) / ``(L, H_in)``; output
    ``(L, N, D*H)``; ``h_0``, ``h_n`` ``(D*num_layers, N, H)`` (unbatched ``(D*num_layers, H)``),
    ``D = 2 if bidirectional else 1``.
    A ``PackedSequence`` input gives a ``PackedSequence`` output (:mod:`jaxlayers.nn.utils.rnn`).
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False

    def _mode(self) -> str:
        return _NONLINEARITY[self.nonlinearity]


class LSTM(_RNNBase):
    """Multi-layer LSTM, as ``torch.nn.LSTM``; returns ``(output, (h_n, c_n))``.

    Args as :class:`RNN` (no nonlinearity), plus ``proj_size``: when > 0, ``h`` is projected
    by ``weight_hr_l{k} (proj_size, hidden_size)`` after every step, so ``h`` and the output have
    ``proj_size`` features (``H_out``) and the next layer's input is ``D*proj_size``.

    Call: ``lstm(input, hx=None, *, train)`` with ``hx = (h_0, c_0)``.
    Params: ``weight_ih_l{k}[_reverse] (4H, in_k)``, ``weight_hh_l{k} (4H, H_out)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(4H,)``, ``weight_hr_l{k} (proj_size, H)``; gates i, f, g, o.
    Shape: output ``(L, N, D*H_out)``; ``h_n (D*num_layers, N, H_out)``;
    ``c_n (D*num_layers, N, H)``.
    A ``PackedSequence`` input gives a ``PackedSequence`` output (:mod:`jaxlayers.nn.utils.rnn`).
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0

    def _mode(self) -> str:
        return "LSTM"


class GRU(_RNNBase):
    """Multi-layer GRU, as ``torch.nn.GRU``; returns ``(output, h_n)``.

    Args as :class:`RNN` (no nonlinearity).  Gates r, z, n along ``3*hidden_size``, the reset
    gate applied after the hidden matmul (``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``).
    Params: ``weight_ih_l{k}[_reverse] (3H, in_k)``, ``weight_hh_l{k} (3H, H)``, biases ``(3H,)``.
    Shape: as :class:`RNN`.
    A ``PackedSequence`` input gives a ``PackedSequence`` output (:mod:`jaxlayers.nn.utils.rnn`).
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False

    def _mode(self) -> str:
        return "GRU"
