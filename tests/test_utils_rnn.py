"""nn.utils.rnn (PackedSequence and the pack/pad functions) and RNN/LSTM/GRU on packed input,
against torch in float64: torch's packed layout, outputs, final states and gradients for ragged
batches, sorted and unsorted, uni- and bidirectional; jit with traced lengths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.utils.rnn as TR
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import close

from jaxlayers import interop, nn
from jaxlayers.nn.utils import rnn as R

T, B, F, H = 5, 4, 3, 4


def _fields(p):
    return [p.data, p.batch_sizes, p.sorted_indices, p.unsorted_indices]


@pytest.mark.parametrize("lengths,enforce_sorted,batch_first", [
    ([5, 3, 3, 1], True, False), ([2, 5, 1, 5], False, True), ([3, 3, 3, 3], False, False)])
def test_pack_pad_match_torch(lengths, enforce_sorted, batch_first, rng):
    x = rng.standard_normal((B, T, 2) if batch_first else (T, B, 2))
    tp = TR.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first, enforce_sorted)
    jp = R.pack_padded_sequence(jnp.asarray(x), lengths, batch_first, enforce_sorted)
    for a, b in zip(_fields(jp), _fields(tp)):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), b.numpy())
    for kw in ({}, {"batch_first": True, "padding_value": -1.0, "total_length": 7}):
        tpad, tlen = TR.pad_packed_sequence(tp, **kw)
        jpad, jlen = R.pad_packed_sequence(jp, **kw)
        np.testing.assert_array_equal(np.asarray(jpad), tpad.numpy())
        np.testing.assert_array_equal(np.asarray(jlen), tlen.numpy())
    # torch's two fields alone are enough to rebuild the padded view
    rebuilt = R.PackedSequence(jp.data, jp.batch_sizes, jp.sorted_indices, jp.unsorted_indices)
    np.testing.assert_array_equal(np.asarray(R.pad_packed_sequence(rebuilt)[0]), TR.pad_packed_sequence(tp)[0].numpy())
    # unpack/unpad give the sequences back
    for a, b in zip(R.unpack_sequence(jp), TR.unpack_sequence(tp)):
        np.testing.assert_array_equal(np.asarray(a), b.numpy())


@settings(max_examples=4)
@given(st.lists(st.integers(1, 6), min_size=4, max_size=4), st.booleans())
def test_pack_roundtrip_matches_torch_for_random_lengths(lengths, batch_first):
    t_max = 7
    x = np.arange(t_max * len(lengths), dtype=np.float64).reshape(t_max, len(lengths))
    x = x.T.copy() if batch_first else x
    tp = TR.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first, enforce_sorted=False)
    jp = R.pack_padded_sequence(x, lengths, batch_first, enforce_sorted=False)
    np.testing.assert_array_equal(np.asarray(jp.data), tp.data.numpy())
    np.testing.assert_array_equal(np.asarray(jp.batch_sizes), tp.batch_sizes.numpy())
    np.testing.assert_array_equal(np.asarray(jp.sorted_indices), tp.sorted_indices.numpy())
    np.testing.assert_array_equal(np.asarray(R.pad_packed_sequence(jp, batch_first)[0]),
                                  TR.pad_packed_sequence(tp, batch_first)[0].numpy())


def test_pad_sequence_and_pack_sequence(rng):
    seqs = [rng.standard_normal((n, 2)) for n in (2, 4, 1)]
    for kw in ({}, {"batch_first": True, "padding_value": 9.0}, {"padding_side": "left", "batch_first": True}):
        np.testing.assert_array_equal(np.asarray(R.pad_sequence([jnp.asarray(s) for s in seqs], **kw)),
                                      TR.pad_sequence([torch.tensor(s) for s in seqs], **kw).numpy())
    tp = TR.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    jp = R.pack_sequence([jnp.asarray(s) for s in seqs], enforce_sorted=False)
    np.testing.assert_array_equal(np.asarray(jp.data), tp.data.numpy())
    padded = TR.pad_sequence([torch.tensor(s) for s in seqs])
    for a, b in zip(R.unpad_sequence(jnp.asarray(padded.numpy()), [2, 4, 1]),
                    TR.unpad_sequence(padded, torch.tensor([2, 4, 1]))):
        np.testing.assert_array_equal(np.asarray(a), b.numpy())


# (class, kwargs, lengths, enforce_sorted, with hx)
RNN_CASES = {
    "lstm_proj_bidir_unsorted": ("LSTM", {"proj_size": 2, "bidirectional": True}, [2, 5, 1, 4],
                                 False, True),
    "gru_sorted": ("GRU", {}, [5, 4, 2, 2], True, False),
    "rnn_relu_bidir_2layers": ("RNN", {"nonlinearity": "relu", "bidirectional": True, "num_layers": 2},
                               [5, 3, 3, 1], True, False),
}


def _states(h):
    return list(h) if isinstance(h, tuple) else [h]


@pytest.mark.parametrize("case", list(RNN_CASES))
def test_rnn_on_packed_sequence_matches_torch(case, rng):
    cls, kw, lengths, enforce_sorted, with_hx = RNN_CASES[case]
    tm = getattr(torch.nn, cls)(F, H, **kw)
    jm = getattr(nn, cls)(F, H, param_dtype=jnp.float64, **kw)
    x = rng.standard_normal((T, B, F))
    d = (2 if kw.get("bidirectional") else 1) * kw.get("num_layers", 1)
    h_out = kw.get("proj_size", 0) or H
    hx = None
    if with_hx:
        hx = (rng.standard_normal((d, B, h_out)),) + ((rng.standard_normal((d, B, H)),) if cls == "LSTM" else ())
    variables = interop.load_state_dict(jax.eval_shape(lambda: jm.init(jax.random.key(0), jnp.asarray(x),
                                                                       train=False)), tm.state_dict(), cast=False)
    cot_out = rng.standard_normal((T, B, h_out * (2 if kw.get("bidirectional") else 1)))
    cot_h = [rng.standard_normal((d, B, h_out)), rng.standard_normal((d, B, H))]

    # torch
    tx = torch.tensor(x, requires_grad=True)
    thx = None if hx is None else [torch.tensor(h, requires_grad=True) for h in hx]
    tp = TR.pack_padded_sequence(tx, torch.tensor(lengths), enforce_sorted=enforce_sorted)
    targs = () if thx is None else ((tuple(thx) if cls == "LSTM" else thx[0]),)
    tout, th = tm(tp, *targs)
    tpad, _ = TR.pad_packed_sequence(tout, total_length=T)
    loss = (tpad * torch.tensor(cot_out)).sum() + sum((s * torch.tensor(c)).sum() for s, c in zip(_states(th), cot_h))
    loss.backward()

    # ours: one jitted forward/backward; lengths concrete at packing, so data is torch's layout
    @jax.jit
    def fwd_bwd(params, x, hx):
        def f(params, x, hx):
            p = R.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
            args = () if hx is None else ((tuple(hx) if cls == "LSTM" else hx[0]),)
            out, h = jm.apply({"params": params}, p, *args, train=False)
            pad, _ = R.pad_packed_sequence(out, total_length=T)
            loss = jnp.sum(pad * cot_out) + sum(jnp.sum(s * c) for s, c in zip(_states(h), cot_h))
            return loss, (out, h)

        return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(params, x, hx)

    (_, (out, h)), (gp, gx, ghx) = fwd_bwd(variables["params"], jnp.asarray(x),
                                           None if hx is None else [jnp.asarray(a) for a in hx])
    close(out.data, tout.data.detach(), err_msg="packed data")
    np.testing.assert_array_equal(np.asarray(out.batch_sizes), tout.batch_sizes.numpy())
    close(_states(h), [s.detach() for s in _states(th)], err_msg="h_n")
    close(gx, tx.grad, err_msg="grad input")
    close(interop.variables_to_state_dict({"params": gp}), {n: p.grad for n, p in tm.named_parameters()},
          err_msg="grad params")
    if hx is not None:
        close(ghx, [t.grad for t in thx], err_msg="grad hx")


def test_packed_under_jit_with_traced_lengths(rng):
    """Inside jit the lengths are traced: data is None, the padded view keeps T, and the results
    equal the eager (concrete) ones."""
    m = nn.LSTM(F, H, bidirectional=True, param_dtype=jnp.float64)
    x = jnp.asarray(rng.standard_normal((B, T, F)))
    lengths = np.array([2, 5, 1, 4])
    shapes = jax.eval_shape(lambda: m.init(jax.random.key(0), x, train=False))
    v = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape)), shapes)

    seen = []

    def run(x, lengths):
        p = R.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        seen.append(p.data is None)
        out, (h, c) = m.apply(v, p, train=False)
        return R.pad_packed_sequence(out, batch_first=True)[0], h

    pad_j, h_j = jax.jit(run)(x, jnp.asarray(lengths))
    pad_e, h_e = jax.jit(lambda x: run(x, lengths))(x)  # concrete lengths while tracing x
    assert seen == [True, False]
    assert pad_j.shape == (B, T, 2 * H) and pad_e.shape == (B, max(lengths), 2 * H)
    close(pad_j, pad_e)
    close(h_j, h_e)
    # the masked scan equals running a sequence alone at its own length
    alone = jax.jit(lambda x: m.apply(v, x, train=False))
    for b in (2,):
        n = lengths[b]
        out_b, (h_b, _) = alone(x[b, :n][:, None])
        close(pad_e[b, :n], out_b[:, 0])
        close(h_e[:, b], h_b[:, 0])
        assert np.all(np.asarray(pad_e[b, n:]) == 0)


def test_errors():
    x = jnp.zeros((T, B, F))
    with pytest.raises(ValueError, match=r"pack_padded_sequence: lengths \[6, 3, 2, 1\] exceed the sequence length 5"):
        R.pack_padded_sequence(x, [6, 3, 2, 1])
    with pytest.raises(ValueError, match="pack_padded_sequence: `lengths` array must be sorted in decreasing order"):
        R.pack_padded_sequence(x, [1, 3, 2, 1])
    with pytest.raises(ValueError, match="pack_padded_sequence: every length must be positive"):
        R.pack_padded_sequence(x, [3, 3, 2, 0])
    with pytest.raises(ValueError, match=r"pack_padded_sequence: expected lengths of shape \(4,\)"):
        R.pack_padded_sequence(x, [3, 2])
    p = R.pack_padded_sequence(x, [5, 3, 2, 1])
    with pytest.raises(ValueError, match="pad_packed_sequence: expected total_length to be at least"):
        R.pad_packed_sequence(p, total_length=3)
    with pytest.raises(TypeError, match="pad_packed_sequence: expected a PackedSequence"):
        R.pad_packed_sequence(x)
    with pytest.raises(ValueError, match="pad_sequence: padding_side must be 'left' or 'right'"):
        R.pad_sequence([x[0]], padding_side="top")
    with pytest.raises(ValueError, match=r"pad_sequence: every sequence must have shape"):
        R.pad_sequence([jnp.zeros((2, 3)), jnp.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"lstm: lengths needs a batched 3-D input"):
        from jaxlayers import functional as Fn
        Fn.lstm(jnp.zeros((T, F)), None, [jnp.zeros((4 * H, F)), jnp.zeros((4 * H, H))], bias=False, lengths=[1])


def test_packed_sequence_from_torchs_three_fields_fills_unsorted_indices(rng):
    """PackedSequence(data, batch_sizes, sorted_indices) inverts the permutation, as torch's
    constructor: without it, pad_packed_sequence returned the batch in sorted order."""
    x = rng.standard_normal((4, 3, 2))
    t = TR.pack_padded_sequence(torch.from_numpy(x), torch.tensor([2, 4, 3]), enforce_sorted=False)
    ours = R.PackedSequence(jnp.asarray(t.data.numpy()), jnp.asarray(t.batch_sizes.numpy()),
                            jnp.asarray(t.sorted_indices.numpy()))
    theirs = TR.PackedSequence(t.data, t.batch_sizes, t.sorted_indices)
    np.testing.assert_array_equal(ours.unsorted_indices, theirs.unsorted_indices.numpy())
    padded, lengths = R.pad_packed_sequence(ours)
    padded_t, lengths_t = TR.pad_packed_sequence(theirs)
    np.testing.assert_array_equal(lengths, lengths_t.numpy())
    close(padded, padded_t)
    leaves, tree = jax.tree.flatten(ours)  # still a pytree that rebuilds itself
    assert jax.tree.unflatten(tree, leaves).unsorted_indices is not None


def test_pad_sequence_dtype_and_empty_pack_as_torch():
    seqs = [jnp.array([1, 2], jnp.int32), jnp.array([0.5], jnp.float32)]
    assert R.pad_sequence(seqs).dtype == jnp.int32  # torch: the first sequence's dtype
    assert TR.pad_sequence([torch.tensor([1, 2], dtype=torch.int32), torch.tensor([0.5])]).dtype == torch.int32
    with pytest.raises(ValueError, match="pack_padded_sequence: cannot pack empty tensors"):
        R.pack_padded_sequence(jnp.ones((3, 0)), jnp.zeros((0,), jnp.int32))
