"""Recurrent cells and layers: the numerics behind nn.RNN/LSTM/GRU and their cells.

One implementation serves every mode (``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"``,
``"GRU"``): a cell step that takes the input projections ``x @ W_ik^T + b_ik`` of the
gates already computed, so that the multi-layer function projects the whole sequence
(one matmul per gate and direction) outside the ``lax.scan`` time loop, and the public
cell functions project one step.  Gate order and formulas are torch's:

* RNN:  ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, ``act`` = tanh or relu
* LSTM: gates ``i, f, g, o`` (in that order along ``4*hidden_size``);
  ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``, then ``h' = h' W_hr^T``
  when ``proj_size > 0``
* GRU:  gates ``r, z, n``; ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``
  (the reset gate is applied after the hidden matmul), ``h' = (1 - z) n + z h``

Weights follow torch's names and layouts (``weight_ih_l{k}{_reverse}`` of shape
``(G*hidden_size, in)``, ``weight_hh_l{k}`` ``(G*hidden_size, proj_size or hidden_size)``,
``bias_ih_l{k}``/``bias_hh_l{k}`` ``(G*hidden_size,)``, ``weight_hr_l{k}``
``(proj_size, hidden_size)``), with ``G`` = 1 (RNN), 4 (LSTM), 3 (GRU).
Ragged batches (``nn.utils.rnn.PackedSequence``) are masked inside the scan (``lengths``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .._lowering import recurrent as _lowering_recurrent
from .._utils import (HALF, batch_sharding, compiled, compute_dtype, dense_sharding, matmul_wt, one_program,
                      scan_carry, shape_str)

__all__ = [
    "rnn_tanh_cell",
    "rnn_relu_cell",
    "lstm_cell",
    "gru_cell",
    "rnn",
    "rnn_tanh",
    "rnn_relu",
    "lstm",
    "gru",
    "rnn_weight_names",
]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_mode(mode: str, name: str) -> int:
    if mode not in _GATES:
        raise ValueError(f"{name}: mode must be one of {sorted(_GATES)}, got {mode!r}")
    return _GATES[mode]


# ----------------------------------------------------------------------------- cell step


def _gate_inputs(x: jax.Array, w_ih: jax.Array, bias: jax.Array | None, gates: int,
                 precision: Any) -> tuple[jax.Array, ...]:
    """The input projection of each gate, ``x W_k^T + b_k`` (torch's per-gate equations):
    one matmul per gate, so that the time loop reads each gate's step as a whole array.
    (Slicing the gates of one ``(T, N, G*H)`` projection inside the loop made XLA:CPU's
    LSTM forward 1.3-1.6x slower; docs/recurrent.md.)"""
    bs = jnp.split(bias, gates) if bias is not None else (None,) * gates
    return tuple(matmul_wt(x, w, precision) if b is None else matmul_wt(x, w, precision) + b
                 for w, b in zip(jnp.split(w_ih, gates), bs))


def _update(mode: str, gi: tuple[jax.Array, ...], gh: Any, state: Any) -> Any:
    """The new state from each gate's input part ``gi`` and hidden part ``gh`` (``h W_hk^T + b_hk``),
    before LSTM's projection: ``h`` or, for LSTM, ``(h, c)``."""
    if mode == "LSTM":
        i, f, g, o = (a + b for a, b in zip(gi, gh))
        c = jax.nn.sigmoid(f) * state[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c
    if mode == "GRU":
        (i_r, i_z, i_n), (h_r, h_z, h_n) = gi, gh
        r = jax.nn.sigmoid(i_r + h_r)
        z = jax.nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)
        return (1 - z) * n + z * state
    pre = gi[0] + gh[0]
    return jnp.tanh(pre) if mode == "RNN_TANH" else jax.nn.relu(pre)


def _finish(mode: str, gi: tuple[jax.Array, ...], gh: jax.Array, state: Any, w_hr_t: jax.Array | None,
            valid: jax.Array | None, precision: Any, extra: jax.Array | None = None) -> tuple[Any, jax.Array, Any]:
    """The rest of a time step once ``gh = h W_hh^T + b_hh`` is known: the gates (:func:`_update`),
    LSTM's projection by ``w_hr_t = W_hr^T`` (plus ``extra``: ``jaxlayers._lowering.recurrent``'s
    weight-tangent term), and ``valid`` ``(N,)`` (or None), which keeps the state of the sequences
    that have ended and zeroes their output.  Returns ``(new state, output h, h before the projection)``."""
    new = _update(mode, gi, jnp.split(gh, len(gi), axis=-1), state)
    raw = new[0] if mode == "LSTM" else new
    if w_hr_t is not None:
        h = jnp.matmul(raw, w_hr_t, precision=precision, out_sharding=dense_sharding(raw, w_hr_t, 1))
        new = (h if extra is None else h + extra, new[1])
    out = new[0] if mode == "LSTM" else new
    if valid is not None:
        m = valid[:, None]
        new = jax.tree.map(lambda a, b: jnp.where(m, a, b), new, state)
        out = jnp.where(m, out, jnp.zeros((), out.dtype))
    return new, out, raw


def _time_step(mode: str, w_hh_t: jax.Array, b_hh: jax.Array | None, w_hr_t: jax.Array | None, precision: Any,
               state: Any, gi: tuple[jax.Array, ...], valid: jax.Array | None) -> tuple[Any, jax.Array, tuple]:
    """One time step given the input projections ``gi`` of the gates (:func:`_gate_inputs`) and the
    transposed weights ``w_hh_t = W_hh^T`` ``(H_out, G*H)``, ``w_hr_t = W_hr^T`` ``(H, P)`` (or None).

    ``state`` is ``h`` or, for LSTM, ``(h, c)``; ``valid`` as in :func:`_finish`.  Returns ``(new
    state, output h, (gh, h before LSTM's projection))``, the last for ``jaxlayers._lowering.recurrent``.
    """
    h = state[0] if mode == "LSTM" else state
    gh = jnp.matmul(h, w_hh_t, precision=precision, out_sharding=dense_sharding(h, w_hh_t, 1))
    if b_hh is not None:
        gh = gh + b_hh
    new, out, raw = _finish(mode, gi, gh, state, w_hr_t, valid, precision)
    return new, out, (gh, raw)


def _step(mode: str, gi: tuple[jax.Array, ...], state: Any, w_hh: jax.Array, b_hh: jax.Array | None,
          w_hr: jax.Array | None, precision: Any) -> Any:
    """One cell step (no mask): the new state."""
    return _time_step(mode, w_hh.T, b_hh, None if w_hr is None else w_hr.T, precision, state, gi, None)[0]


def _scan_reference(gi: tuple[jax.Array, ...], state0: Any, w_hh: jax.Array, b_hh: jax.Array | None,
                    w_hr: jax.Array | None, valid: jax.Array | None, mode: str, reverse: bool,
                    precision: Any) -> tuple[Any, jax.Array]:
    """One direction of one layer: ``lax.scan`` of :func:`_time_step` over time; ``(final state,
    outputs (T, N, H_out))``.  The weights are transposed once, before the loop: each step's
    ``h @ W_hh^T`` as a product with a stored ``W_hh^T`` took half the time on XLA:CPU (docs/recurrent.md)."""
    w_hh_t, w_hr_t = w_hh.T, None if w_hr is None else w_hr.T

    def body(state, inp):
        new, out, _ = _time_step(mode, w_hh_t, b_hh, w_hr_t, precision, state, *inp)
        return new, out

    return lax.scan(body, scan_carry(body, state0, (gi, valid)), (gi, valid), reverse=reverse)


# ----------------------------------------------------------------------------- cells


@one_program
def _cell(mode: str, name: str, input: jax.Array, hx: Any, w_ih: jax.Array, w_hh: jax.Array,
          b_ih: jax.Array | None, b_hh: jax.Array | None, precision: Any) -> Any:
    gates = _check_mode(mode, name)
    input, w_ih, w_hh = jnp.asarray(input), jnp.asarray(w_ih), jnp.asarray(w_hh)
    b_ih = None if b_ih is None else jnp.asarray(b_ih)
    b_hh = None if b_hh is None else jnp.asarray(b_hh)
    if input.ndim not in (1, 2):
        raise ValueError(
            f"{name}: expected input of shape (batch, input_size) or (input_size,), got "
            f"{input.ndim}-D input of shape {shape_str(input)}")
    if w_ih.ndim != 2 or w_hh.ndim != 2 or w_ih.shape[0] % gates or w_hh.shape != (w_ih.shape[0], w_ih.shape[0] // gates):
        raise ValueError(
            f"{name}: expected weight_ih of shape ({gates}*hidden_size, input_size) and weight_hh of shape "
            f"({gates}*hidden_size, hidden_size), got {shape_str(w_ih)} and {shape_str(w_hh)}")
    hidden = w_hh.shape[1]
    for arg, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and tuple(b.shape) != (gates * hidden,):
            raise ValueError(f"{name}: expected {arg} of shape ({gates * hidden},), got {shape_str(b)}")
    if input.shape[-1] != w_ih.shape[1]:
        raise ValueError(
            f"{name}: expected input with {w_ih.shape[1]} features (input_size={w_ih.shape[1]}), "
            f"got shape {shape_str(input)}")
    batched = input.ndim == 2
    state_shape = input.shape[:-1] + (hidden,)
    dtype = jnp.result_type(input, w_ih, w_hh, *(b for b in (b_ih, b_hh) if b is not None))
    zeros_sharding = batch_sharding(input, len(state_shape)) if batched else None  # an Explicit mesh's batch
    if mode == "LSTM":
        if hx is None:
            hx = tuple(jnp.zeros(state_shape, dtype, out_sharding=zeros_sharding) for _ in range(2))
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        names = ("h_0", "c_0")
    else:
        if hx is None:
            hx = jnp.zeros(state_shape, dtype, out_sharding=zeros_sharding)
        hx = (hx,)
        names = ("hx",)
    hx = tuple(jnp.asarray(s) for s in hx)
    for arg, s in zip(names, hx):
        if tuple(s.shape) != state_shape:
            layout = "(batch, hidden_size)" if batched else "(hidden_size,) for unbatched input"
            raise ValueError(
                f"{name}: expected {arg} of shape {shape_str(state_shape)} {layout}, got {shape_str(s)} "
                f"(input {shape_str(input)}, hidden_size={hidden})")
    if dtype in HALF:  # float32 gates and state, rounded once (torch accumulates in float32)
        up = lambda a: None if a is None else a.astype(jnp.float32)  # noqa: E731
        input, w_ih, w_hh, b_ih, b_hh = map(up, (input, w_ih, w_hh, b_ih, b_hh))
    hx = tuple(s.astype(input.dtype) for s in hx)
    gi = _gate_inputs(input, w_ih, b_ih, gates, precision)
    out = _step(mode, gi, hx if mode == "LSTM" else hx[0], w_hh, b_hh, None, precision)
    return tuple(o.astype(dtype) for o in out) if mode == "LSTM" else out.astype(dtype)


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=None):
    """One Elman RNN step with tanh, as ``torch.rnn_tanh_cell``.

    ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``; ``hx=None`` means zeros.

    Shape: input ``(N, in)`` or ``(in,)``; hx and output ``(N, H)`` or ``(H,)``;
    ``w_ih (H, in)``, ``w_hh (H, H)``, biases ``(H,)``.
    """
    return _cell("RNN_TANH", "rnn_tanh_cell", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=None):
    """One Elman RNN step with ReLU, as ``torch.rnn_relu_cell``.  Shapes as :func:`rnn_tanh_cell`."""
    return _cell("RNN_RELU", "rnn_relu_cell", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=None):
    """One LSTM step, as ``torch.lstm_cell``; returns ``(h', c')``.

    Gates ``i, f, g, o`` along ``4*H``: ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``.
    ``hx`` is ``(h, c)`` or None (zeros).

    Shape: input ``(N, in)`` or ``(in,)``; h, c ``(N, H)`` or ``(H,)``;
    ``w_ih (4H, in)``, ``w_hh (4H, H)``, biases ``(4H,)``.
    """
    return _cell("LSTM", "lstm_cell", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=None):
    """One GRU step, as ``torch.gru_cell``.

    Gates ``r, z, n`` along ``3*H``; ``n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))``,
    ``h' = (1 - z) n + z h``.

    Shape: input ``(N, in)`` or ``(in,)``; hx and output ``(N, H)`` or ``(H,)``;
    ``w_ih (3H, in)``, ``w_hh (3H, H)``, biases ``(3H,)``.
    """
    return _cell("GRU", "gru_cell", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


# ----------------------------------------------------------------------------- layers


def rnn_weight_names(num_layers: int = 1, bias: bool = True, bidirectional: bool = False,
                     proj_size: int = 0) -> list[str]:
    """torch's ``_flat_weights_names`` order: per layer, per direction,
    ``weight_ih, weight_hh, [bias_ih, bias_hh], [weight_hr]`` with ``_l{k}`` and ``_reverse``."""
    names = []
    for layer in range(num_layers):
        for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
            kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
            kinds += ["weight_hr"] if proj_size > 0 else []
            names += [f"{k}_l{layer}{suffix}" for k in kinds]
    return names


def _dropout(x: jax.Array, p: float, key: jax.Array) -> jax.Array:
    """Inverted dropout between layers: :func:`jaxlayers.functional.dropout`."""
    from .dropout import dropout  # sibling family; imported lazily to keep import order free

    return dropout(x, p, True, key=key)


def _run_layer(mode: str, x: jax.Array, states: list, ws: list[dict], precision: Any,
               valid: jax.Array | None = None):
    """One layer, all directions; ``x`` is time-major ``(T, N, in)``.

    The input projections of every step and direction are one matmul; each direction
    then runs its own ``lax.scan`` (the reverse one with ``reverse=True``).  ``valid``
    ``(T, N)`` (ragged batches) keeps a sequence's state past its end and zeroes its output
    there; the reverse scan thus starts each sequence at its own last step with ``h_0``.
    """
    gates = _GATES[mode]
    outs, finals = [], []
    for d, (w, state0) in enumerate(zip(ws, states)):
        b_ih, b_hh = w.get("bias_ih"), w.get("bias_hh")
        if b_hh is not None and mode != "GRU":  # GRU keeps b_hn inside r * (.)
            b_ih = b_hh if b_ih is None else b_ih + b_hh
            b_hh = None
        gi = _gate_inputs(x, w["weight_ih"], b_ih, gates, precision)
        final, ys = _lowering_recurrent.scan(gi, state0, w["weight_hh"], b_hh, w.get("weight_hr"), valid,
                                             mode=mode, reverse=d == 1, precision=precision,
                                             finish=_finish, time_step=_time_step, reference=_scan_reference)
        outs.append(ys)
        finals.append(final)
    out = jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
    return out, finals


def _compiled_layer(x, states, ws, valid, mode, precision):
    return _run_layer(mode, x, states, ws, precision, valid)


def rnn(input, hx, weights, *, mode: str = "RNN_TANH", num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, train: bool = False, bidirectional: bool = False,
        proj_size: int = 0, key: jax.Array | None = None, precision: Any = None, name: str | None = None,
        lengths: Any = None):
    """Multi-layer, optionally bidirectional RNN/LSTM/GRU over a sequence (torch's ``_VF.rnn_tanh``,
    ``_VF.lstm``, ``_VF.gru`` behind ``nn.RNN``/``nn.LSTM``/``nn.GRU``).

    Args:
      input: ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first``, or unbatched ``(L, H_in)``.
      hx: None (zeros), the initial ``h_0`` of shape ``(D*num_layers, N, H_out)`` (unbatched:
        ``(D*num_layers, H_out)``), or for LSTM a tuple ``(h_0, c_0)`` with ``c_0`` of shape
        ``(D*num_layers, N, hidden_size)``.  Not affected by ``batch_first``.
      weights: a mapping from torch's parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...)
        to arrays, or a sequence of arrays in torch's ``_flat_weights`` order
        (see :func:`rnn_weight_names`).
      mode: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``.
      num_layers, bias, batch_first, bidirectional, proj_size: as torch's constructor arguments
        (``proj_size`` is LSTM only).
      dropout, train, key: dropout with probability ``dropout`` on the outputs of every layer but the
        last, when ``train`` is true; ``key`` is then required.
      precision: matmul precision (``lax.Precision``).
      name: layer name used in error messages (default: the mode's lowercase name).
      lengths: ``(N,)`` valid length of each batch element (ragged batches, the path behind
        ``PackedSequence`` input of ``nn.RNN/LSTM/GRU``): past its length a sequence's state stays
        as it was (so ``h_n`` is taken at its own last step and the reverse direction starts there)
        and its outputs are zeros.  Batched input only; may be traced.

    Returns:
      ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM.

    Shape: output ``(L, N, D*H_out)`` (``(N, L, D*H_out)`` with ``batch_first``, ``(L, D*H_out)``
    unbatched); ``h_n (D*num_layers, N, H_out)``; ``c_n (D*num_layers, N, hidden_size)``, where
    ``D = 2`` if bidirectional else 1 and ``H_out = proj_size or hidden_size``.
    """
    name = name or {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}.get(mode, "rnn")
    gates = _check_mode(mode, name)
    num_layers, proj_size = int(num_layers), int(proj_size)
    if num_layers <= 0:
        raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers}")
    if proj_size < 0:
        raise ValueError(f"{name}: proj_size must be >= 0, got {proj_size}")
    if proj_size and mode != "LSTM":
        raise ValueError(f"{name}: proj_size is only supported for LSTM, got proj_size={proj_size}")
    if not 0.0 <= float(dropout) <= 1.0:
        raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout}")
    num_dir = 2 if bidirectional else 1
    names = rnn_weight_names(num_layers, bias, bidirectional, proj_size)
    if isinstance(weights, Mapping):
        missing = [n for n in names if n not in weights]
        unexpected = [n for n in weights if n not in names]
        if missing or unexpected:
            raise ValueError(f"{name}: weights do not match the configuration: missing {missing}, "
                             f"unexpected {unexpected}")
        flat = {n: jnp.asarray(weights[n]) for n in names}
    else:
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(f"{name}: expected {len(names)} weights ({', '.join(names)}), got {len(weights)}")
        flat = {n: jnp.asarray(w) for n, w in zip(names, weights)}

    input = jnp.asarray(input)
    if input.ndim not in (2, 3):
        layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
        raise ValueError(f"{name}: expected a 3-D input {layout} or a 2-D unbatched input (L, H_in), "
                         f"got {input.ndim}-D input of shape {shape_str(input)}")
    batched = input.ndim == 3
    if input.shape[1 if batch_first and batched else 0] == 0:
        raise ValueError(f"{name}: expected a sequence length larger than 0, got input of shape {shape_str(input)}")
    w0 = flat["weight_ih_l0"]
    if w0.ndim != 2 or w0.shape[0] % gates or w0.shape[0] == 0:
        raise ValueError(f"{name}: weight_ih_l0 must have shape ({gates}*hidden_size, input_size), "
                         f"got {shape_str(w0)}")
    hidden = w0.shape[0] // gates
    input_size = w0.shape[1]
    if proj_size >= hidden and proj_size:
        raise ValueError(f"{name}: proj_size must be smaller than hidden_size, got proj_size={proj_size} "
                         f"and hidden_size={hidden}")
    h_out = proj_size or hidden
    for layer in range(num_layers):
        in_l = input_size if layer == 0 else h_out * num_dir
        for suffix in ("", "_reverse")[:num_dir]:
            expected = {"weight_ih": (gates * hidden, in_l), "weight_hh": (gates * hidden, h_out),
                        "bias_ih": (gates * hidden,), "bias_hh": (gates * hidden,), "weight_hr": (proj_size, hidden)}
            for kind, shp in expected.items():
                key_name = f"{kind}_l{layer}{suffix}"
                if key_name in flat and tuple(flat[key_name].shape) != shp:
                    raise ValueError(f"{name}: expected {key_name} of shape {shape_str(shp)}, "
                                     f"got {shape_str(flat[key_name])}")
    if input.shape[-1] != input_size:
        raise ValueError(f"{name}: expected input with {input_size} features (input_size={input_size}), "
                         f"got shape {shape_str(input)}")

    if batched:
        x = jnp.swapaxes(input, 0, 1) if batch_first else input
    else:
        x = input[:, None, :]
    batch = x.shape[1]
    out_dtype = jnp.result_type(x, *flat.values())
    dtype = compute_dtype(out_dtype)  # half precision: float32 gates, states, sums
    x = x.astype(dtype)
    flat = {n: w.astype(dtype) for n, w in flat.items()}

    nstates = num_layers * num_dir
    specs = [("h_0", (nstates, batch, h_out))]
    if mode == "LSTM":
        specs.append(("c_0", (nstates, batch, hidden)))
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{name}: hx must be a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
    elif isinstance(hx, (tuple, list)):
        raise TypeError(f"{name}: hx must be an array h_0, got a {type(hx).__name__}")
    if hx is None:
        sharding = batch_sharding(x, 3, axis=1, out_axis=1)  # an Explicit mesh's batch, as the carries'
        states0 = [jnp.zeros(shp, dtype, out_sharding=sharding) for _, shp in specs]
    else:
        hx = list(hx) if mode == "LSTM" else [hx]
        states0 = []
        for (arg, shp), s in zip(specs, hx):
            s = jnp.asarray(s)
            want = shp if batched else (shp[0], shp[2])
            if s.ndim != len(want):
                raise ValueError(f"{name}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, {arg} "
                                 f"should be {len(want)}-D, got {s.ndim}-D of shape {shape_str(s)}")
            if tuple(s.shape) != want:
                raise ValueError(
                    f"{name}: expected {arg} of shape {shape_str(want)} (num_layers*num_directions="
                    f"{nstates}, {'batch=' + str(batch) + ', ' if batched else ''}"
                    f"{'proj_size' if arg == 'h_0' and proj_size else 'hidden_size'}={want[-1]}), "
                    f"got {shape_str(s)}")
            states0.append((s if batched else s[:, None, :]).astype(dtype))

    valid = None
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if not batched:
            raise ValueError(f"{name}: lengths needs a batched 3-D input, got shape {shape_str(input)}")
        if lengths.shape != (batch,):
            raise ValueError(f"{name}: expected lengths of shape ({batch},) (one per batch element), got "
                             f"{shape_str(lengths)}")
        valid = jnp.arange(x.shape[0])[:, None] < lengths[None, :]

    use_dropout = bool(train) and float(dropout) > 0.0 and num_layers > 1
    if use_dropout and key is None:
        raise ValueError(f"{name}: dropout={dropout} with train=True needs a PRNG `key`")

    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    h_n, c_n = [], []
    for layer in range(num_layers):
        ws, states = [], []
        for d, suffix in enumerate(("", "_reverse")[:num_dir]):
            ws.append({k: flat.get(f"{k}_l{layer}{suffix}") for k in kinds})
            idx = layer * num_dir + d
            states.append((states0[0][idx], states0[1][idx]) if mode == "LSTM" else states0[0][idx])
        x, finals = compiled(_compiled_layer, (mode, precision), x, states, ws, valid)
        for f in finals:
            if mode == "LSTM":
                h_n.append(f[0])
                c_n.append(f[1])
            else:
                h_n.append(f)
        if use_dropout and layer < num_layers - 1:
            x = _dropout(x, float(dropout), jax.random.fold_in(key, layer))

    x = x.astype(out_dtype)
    h_n = jnp.stack(h_n).astype(out_dtype)
    c_n = jnp.stack(c_n).astype(out_dtype) if mode == "LSTM" else None
    if batched:
        out = jnp.swapaxes(x, 0, 1) if batch_first else x
    else:
        out = x[:, 0]
        h_n = h_n[:, 0]
        c_n = c_n[:, 0] if c_n is not None else None
    return (out, (h_n, c_n)) if mode == "LSTM" else (out, h_n)


def rnn_tanh(input, hx, weights, **kwargs):
    """:func:`rnn` with ``mode="RNN_TANH"`` (``nn.RNN`` with tanh)."""
    return rnn(input, hx, weights, mode="RNN_TANH", **kwargs)


def rnn_relu(input, hx, weights, **kwargs):
    """:func:`rnn` with ``mode="RNN_RELU"`` (``nn.RNN`` with relu)."""
    return rnn(input, hx, weights, mode="RNN_RELU", **kwargs)


def lstm(input, hx, weights, **kwargs):
    """:func:`rnn` with ``mode="LSTM"``; returns ``(output, (h_n, c_n))``."""
    return rnn(input, hx, weights, mode="LSTM", **kwargs)


def gru(input, hx, weights, **kwargs):
    """:func:`rnn` with ``mode="GRU"``."""
    return rnn(input, hx, weights, mode="GRU", **kwargs)
