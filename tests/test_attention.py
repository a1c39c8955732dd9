"""scaled_dot_product_attention, multi_head_attention_forward and nn.MultiheadAttention
against torch (float64): outputs, attention weights and gradients w.r.t. the inputs and
every parameter, for every option and mask kind; error paths."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from jaxlayers import functional as F
from jaxlayers import interop, nn
from oracle import close, to_numpy

E, H, L, S, N = 8, 2, 3, 4, 2
TOL = dict(rtol=1e-9, atol=1e-11)


_np = to_numpy


_close = functools.partial(close, **TOL)


# --------------------------------------------------------------------------- masks


def _masks(kind, rng, L=L, S=S, N=N, H=H, batched=True):
    """(attn_mask, key_padding_mask) as NumPy arrays for a named mask kind.

    No query row is fully masked (that case has its own test)."""
    am = kpm = None
    allowed = np.ones((L, S), bool)
    if "am2b" in kind:
        am = rng.random((L, S)) < 0.4
        am[:, 0] = False
    if "am2f" in kind:
        am = rng.normal(size=(L, S))
        am[0, 1] = -np.inf
    if "am3b" in kind:
        am = rng.random((N * H, L, S)) < 0.4
        am[..., 0] = False
    if "am3f" in kind:
        am = rng.normal(size=(N * H, L, S))
    if "kpmb" in kind:
        kpm = np.zeros((N, S), bool)
        kpm[0, -1] = kpm[-1, 1] = True
    if "kpmf" in kind:
        kpm = rng.normal(size=(N, S))
        kpm[0, -1] = -np.inf
    if "causal" in kind:
        am = np.triu(np.full((L, S), -np.inf), 1)
    del allowed
    if not batched:
        if am is not None and am.ndim == 3:
            am = am[:H]
        if kpm is not None:
            kpm = kpm[0]
    return am, kpm


# --------------------------------------------------------------------------- MHA parity

MHA_CASES = {
    # name: (constructor kwargs, call kwargs, mask kind)
    "default": ({}, {}, ""),
    "no_weights": ({}, dict(need_weights=False), ""),
    "per_head": ({}, dict(average_attn_weights=False), "am2f"),
    "batch_first": (dict(batch_first=True), {}, "kpmb"),
    "no_bias": (dict(bias=False), {}, "am2b"),
    "bias_kv": (dict(add_bias_kv=True), {}, "am2b+kpmb"),
    "zero_attn": (dict(add_zero_attn=True), {}, "am3f+kpmf"),
    "bias_kv_zero_attn": (dict(add_bias_kv=True, add_zero_attn=True), dict(need_weights=False), "am3b+kpmb"),
    "kdim_vdim": (dict(kdim=3, vdim=5), {}, "am2f+kpmb"),
    "kdim_vdim_no_bias": (dict(kdim=3, vdim=5, bias=False, batch_first=True), dict(need_weights=False), "am2b"),
    "am2b": ({}, {}, "am2b"),
    "am2f": ({}, {}, "am2f"),
    "am3b": ({}, dict(average_attn_weights=False), "am3b"),
    "am3f": ({}, {}, "am3f"),
    "kpmb": ({}, {}, "kpmb"),
    "kpmf": ({}, dict(need_weights=False), "kpmf"),
    "both_bool": ({}, dict(need_weights=False), "am2b+kpmb"),
    "both_float": ({}, {}, "am3f+kpmf"),
    "causal_hint_sdpa": ({}, dict(is_causal=True, need_weights=False), "causal"),
    "causal_hint_weights": ({}, dict(is_causal=True), "causal"),
    "causal_hint_kpm": ({}, dict(is_causal=True, need_weights=False), "causal+kpmb"),
    # torch ignores the mask's contents on this path and applies tril(ones(L, S)):
    "causal_hint_overrides_mask": ({}, dict(is_causal=True, need_weights=False), "am2f"),
}


def _torch_mha(ctor, seed=0):
    torch.manual_seed(seed)
    t = torch.nn.MultiheadAttention(E, H, **ctor)
    if ctor.get("bias", True):  # torch zeroes these; make them count in the test
        with torch.no_grad():
            t.in_proj_bias.normal_()
            t.out_proj.bias.normal_()
    return t


def _inputs(ctor, rng, batched=True, L=L, S=S):
    kd, vd = ctor.get("kdim") or E, ctor.get("vdim") or E
    bf = ctor.get("batch_first", False) and batched

    def shape(n, d):
        if not batched:
            return (n, d)
        return (N, n, d) if bf else (n, N, d)

    return rng.normal(size=shape(L, E)), rng.normal(size=shape(S, kd)), rng.normal(size=shape(S, vd))


@pytest.fixture(scope="module")
def mha_fns():
    """Jitted loss-and-gradient functions per static option set: one program a case, where
    eagerly each case's new shapes compiled every primitive of both passes (this test's
    22 cases took 8-10 s eagerly, 5 jitted)."""
    cache = {}

    def get(ctor, call):
        key = (tuple(sorted(ctor.items())), tuple(sorted(call.items())))
        if key not in cache:
            m = nn.MultiheadAttention(E, H, **ctor)

            def loss(params, q, k, v, am, kpm, ro, rw):
                out, w = m.apply({"params": params}, q, k, v, key_padding_mask=kpm, attn_mask=am,
                                 train=False, **call)
                total = jnp.sum(out * ro)
                if w is not None:
                    total = total + jnp.sum(w * rw)
                return total, (out, w)

            cache[key] = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))
        return cache[key]

    return get


def _torch_run(t, q, k, v, am, kpm, call, rng):
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out, w = t(tq, tk, tv, key_padding_mask=None if kpm is None else torch.tensor(kpm),
               attn_mask=None if am is None else torch.tensor(am), **call)
    ro = rng.normal(size=tuple(out.shape))
    rw = None if w is None else rng.normal(size=tuple(w.shape))
    loss = (out * torch.tensor(ro)).sum()
    if w is not None:
        loss = loss + (w * torch.tensor(rw)).sum()
    loss.backward()
    grads = {k_: p.grad.numpy() for k_, p in t.named_parameters()}
    return _np(out), _np(w), (tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()), grads, ro, rw


def _check_mha_case(ctor, call, kind, mha_fns, rng, batched=True):
    t = _torch_mha(ctor)
    q, k, v = _inputs(ctor, rng, batched)
    am, kpm = _masks(kind, rng, batched=batched)
    out_t, w_t, gin_t, gp_t, ro, rw = _torch_run(t, q, k, v, am, kpm, call, rng)
    params = interop.state_dict_to_variables(t.state_dict())["params"]
    (gp, gq, gk, gv), (out, w) = mha_fns(ctor, call)(params, q, k, v, am, kpm, ro, rw)
    _close(out, out_t)
    assert (w is None) == (w_t is None)
    if w is not None:
        _close(w, w_t)
    for a, b in zip((gq, gk, gv), gin_t):
        _close(a, b)
    flat = interop.flatten_variables(gp)
    assert set(flat) == set(gp_t)
    for name in gp_t:
        _close(flat[name], gp_t[name], err_msg=name)


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_mha_matches_torch(case, mha_fns, rng):
    ctor, call, kind = MHA_CASES[case]
    _check_mha_case(ctor, call, kind, mha_fns, rng)


@pytest.mark.parametrize("kind,call", [("", {}), ("am3b+kpmb", dict(need_weights=False)),
                                       ("am2f+kpmf", dict(average_attn_weights=False))])
def test_mha_unbatched_matches_torch(kind, call, mha_fns, rng):
    _check_mha_case(dict(batch_first=True), call, kind, mha_fns, rng, batched=False)


def test_mha_parameters_names_shapes_and_init():
    m = nn.MultiheadAttention(E, H, add_bias_kv=True)
    x = jnp.zeros((L, N, E))
    v = m.init(jax.random.key(0), x, x, x, train=False)
    t = torch.nn.MultiheadAttention(E, H, add_bias_kv=True)
    sd = interop.variables_to_state_dict(v)
    assert {k: s.shape for k, s in sd.items()} == {k: tuple(p.shape) for k, p in t.state_dict().items()}
    assert np.all(sd["in_proj_bias"] == 0) and np.all(sd["out_proj.bias"] == 0)
    assert np.abs(sd["in_proj_weight"]).max() <= math.sqrt(6 / (E + 3 * E))
    assert np.abs(sd["out_proj.weight"]).max() <= 1 / math.sqrt(E)
    assert sd["in_proj_weight"].dtype == np.float32
    # separate projections when kdim/vdim differ
    m2 = nn.MultiheadAttention(E, H, kdim=3, vdim=5, bias=False)
    v2 = m2.init(jax.random.key(0), x, jnp.zeros((S, N, 3)), jnp.zeros((S, N, 5)), train=False)
    t2 = torch.nn.MultiheadAttention(E, H, kdim=3, vdim=5, bias=False)
    shapes = {k: a.shape for k, a in interop.variables_to_state_dict(v2).items()}
    assert shapes == {k: tuple(p.shape) for k, p in t2.state_dict().items()}


def test_fully_masked_rows_follow_torch(rng):
    """A query that may attend to nothing: NaN with need_weights=True, zeros (and finite
    gradients) with need_weights=False, as torch's two paths."""
    t = _torch_mha({})
    params = interop.state_dict_to_variables(t.state_dict())
    q, k, v = _inputs({}, rng)
    am = np.zeros((L, S), bool)
    am[1] = True
    m = nn.MultiheadAttention(E, H)
    for need in (True, False):
        out, w = m.apply(params, q, k, v, attn_mask=am, need_weights=need, train=False)
        out_t, w_t = t(*(torch.tensor(a) for a in (q, k, v)), attn_mask=torch.tensor(am), need_weights=need)
        _close(out, _np(out_t), equal_nan=True)
        if need:
            assert np.isnan(np.asarray(out)[1]).all() and np.isnan(np.asarray(w)[:, 1]).all()
            _close(w, _np(w_t), equal_nan=True)
        else:
            assert np.isfinite(np.asarray(out)).all()
    g = jax.grad(lambda q: m.apply(params, q, k, v, attn_mask=am, need_weights=False, train=False)[0].sum())(q)
    tq = torch.tensor(q, requires_grad=True)
    t(tq, torch.tensor(k), torch.tensor(v), attn_mask=torch.tensor(am), need_weights=False)[0].sum().backward()
    _close(g, tq.grad.numpy())


def test_mha_jit_vmap_and_float32(rng):
    t = _torch_mha(dict(batch_first=True))
    params = interop.state_dict_to_variables(t.state_dict())
    m = nn.MultiheadAttention(E, H, batch_first=True)
    q, k, v = _inputs(dict(batch_first=True), rng)
    _, kpm = _masks("kpmb", rng)
    ref = _np(t(*(torch.tensor(a) for a in (q, k, v)), key_padding_mask=torch.tensor(kpm))[0])
    # vmap over the batch of the unbatched form equals the batched result
    one = lambda q, k, v, p: m.apply(params, q, k, v, key_padding_mask=p, train=False)[0]  # noqa: E731
    _close(jax.jit(jax.vmap(one))(q, k, v, kpm), ref)
    # float32 parameters and inputs, bfloat16 compute
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    out32 = jax.jit(lambda *a: m.apply(p32, *a, key_padding_mask=kpm, train=False)[0])(
        *(jnp.asarray(a, jnp.float32) for a in (q, k, v)))
    assert out32.dtype == jnp.float32
    _close(out32, ref, rtol=1e-4, atol=1e-5)
    mb = nn.MultiheadAttention(E, H, batch_first=True, dtype=jnp.bfloat16)
    outb, wb = mb.apply(p32, *(jnp.asarray(a, jnp.float32) for a in (q, k, v)), train=False)
    assert outb.dtype == jnp.bfloat16 and p32["params"]["in_proj_weight"].dtype == jnp.float32
    _close(outb.astype(jnp.float32), _np(t(*(torch.tensor(a) for a in (q, k, v)))[0]), rtol=0.1, atol=0.1)


def test_mha_dropout(rng):
    p = 0.5
    t = _torch_mha(dict(dropout=p))
    params = interop.state_dict_to_variables(t.state_dict())
    m = nn.MultiheadAttention(E, H, dropout=p)
    q, k, v = _inputs({}, rng)
    ev_out, ev_w = m.apply(params, q, k, v, average_attn_weights=False, train=False)
    t.eval()
    _close(ev_w, _np(t(*(torch.tensor(a) for a in (q, k, v)), average_attn_weights=False)[1]))
    key = jax.random.key(3)
    out, w = m.apply(params, q, k, v, average_attn_weights=False, train=True, rngs={"dropout": key})
    w, ev_w = np.asarray(w), np.asarray(ev_w)
    dropped = w == 0
    assert 0 < dropped.mean() < 1
    _close(w[~dropped], ev_w[~dropped] / (1 - p))
    out2, _ = m.apply(params, q, k, v, train=True, rngs={"dropout": key})
    _close(out2, out)  # same key, same mask, with or without per-head weights
    out3, _ = m.apply(params, q, k, v, train=True, rngs={"dropout": jax.random.key(4)})
    assert not np.allclose(out3, out)
    # the same dropped weights through the explicit maths
    vproj = np.einsum("snE,oE->sno", v, params["params"]["in_proj_weight"][2 * E:]) + params["params"]["in_proj_bias"][2 * E:]
    vh = vproj.reshape(S, N, H, E // H).transpose(1, 2, 0, 3)
    ctx = np.einsum("nhls,nhsd->lnhd", w, vh).reshape(L, N, E)
    expect = ctx @ params["params"]["out_proj"]["weight"].T + params["params"]["out_proj"]["bias"]
    _close(out, expect)


# --------------------------------------------------------------------------- SDPA


SDPA_CASES = {
    "plain": dict(),
    "bool_mask": dict(mask="bool"),
    "float_mask": dict(mask="float"),
    "broadcast_mask": dict(mask="bcast"),
    "causal": dict(is_causal=True),
    "scale": dict(scale=0.3, mask="float"),
    "gqa": dict(enable_gqa=True),
}


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case, rng):
    opts = dict(SDPA_CASES[case])
    kind = opts.pop("mask", None)
    hk = 1 if opts.get("enable_gqa") else H
    q, k, v = rng.normal(size=(N, H, L, 4)), rng.normal(size=(N, hk, S, 4)), rng.normal(size=(N, hk, S, 5))
    mask = None
    if kind == "bool":
        mask = rng.random((N, H, L, S)) < 0.7
        mask[..., 0] = True
    elif kind == "float":
        mask = rng.normal(size=(L, S))
    elif kind == "bcast":
        mask = rng.random((N, 1, 1, S)) < 0.7
        mask[..., 0] = True
    r = rng.normal(size=(N, H, L, 5))

    def loss(q, k, v):
        return jnp.sum(F.scaled_dot_product_attention(q, k, v, mask, **opts) * r)

    out = F.scaled_dot_product_attention(q, k, v, mask, **opts)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out_t = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, None if mask is None else torch.tensor(mask), **opts)
    (out_t * torch.tensor(r)).sum().backward()
    _close(out, _np(out_t))
    for a, b in zip(jax.grad(loss, argnums=(0, 1, 2))(q, k, v), (tq.grad, tk.grad, tv.grad)):
        _close(a, b.numpy())


def test_sdpa_fully_masked_rows_are_zero(rng):
    q, k, v = rng.normal(size=(H, L, 4)), rng.normal(size=(H, S, 4)), rng.normal(size=(H, S, 4))
    mask = np.ones((L, S), bool)
    mask[1] = False
    out = F.scaled_dot_product_attention(q, k, v, mask)
    out_t = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)), torch.tensor(mask))
    _close(out, _np(out_t))
    assert np.all(np.asarray(out)[:, 1] == 0)
    g = jax.grad(lambda q: F.scaled_dot_product_attention(q, k, v, mask).sum())(q)
    assert np.isfinite(g).all() and np.all(g[:, 1] == 0)


@pytest.mark.parametrize("kind", ["bool", "float", "bcast_bool", "dead_row"])
def test_sdpa_attn_mask_with_is_causal_matches_torch_default(kind, rng):
    """attn_mask and is_causal=True together: torch's default CPU dispatch (4-D inputs, no
    dropout, value head dim = query head dim: its fused kernel) applies both -- bool: mask AND
    tril, float: mask + -inf above the diagonal -- as jaxlayers does (it raised before)."""
    q, k, v = rng.normal(size=(N, H, L, 4)), rng.normal(size=(N, H, S, 4)), rng.normal(size=(N, H, S, 4))
    if kind == "bool":
        mask = rng.random((N, H, L, S)) < 0.6
        mask[..., 0] = True
    elif kind == "float":
        mask = rng.normal(size=(L, S))
        mask[2, 1] = -np.inf
    elif kind == "bcast_bool":
        mask = np.ones((N, 1, 1, S), bool)
        mask[0, ..., 0] = False
    else:  # row 0 may attend to key 0 only (causal) and the mask forbids it: a zero row
        mask = np.ones((L, S), bool)
        mask[0, 0] = False
    r = rng.normal(size=(N, H, L, 4))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out_t = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask), is_causal=True)
    (out_t * torch.tensor(r)).sum().backward()
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)  # noqa: E731
    out, vjp = jax.vjp(fn, q, k, v)
    _close(out, _np(out_t))
    for a, b in zip(vjp(jnp.asarray(r)), (tq, tk, tv)):
        _close(a, b.grad.numpy())
    if kind == "dead_row":
        assert np.all(np.asarray(out)[:, :, 0] == 0)


# (torch's math backend, taken for E = 0, rejects attn_mask with is_causal: not compared)
@pytest.mark.parametrize("mask,is_causal", [(None, False), (None, True), ("bool", False), ("float", False)])
def test_sdpa_zero_head_dim_matches_torch(mask, is_causal, rng):
    """E = 0: the scores are all 0 (plus the mask), as torch; 1/sqrt(0) raised ZeroDivisionError."""
    q, k, v = np.zeros((1, 1, 3, 0)), np.zeros((1, 1, 3, 0)), rng.normal(size=(1, 1, 3, 4))
    m = {None: None, "bool": np.tril(np.ones((3, 3), bool)) | np.eye(3, k=1, dtype=bool),
         "float": rng.normal(size=(3, 3))}[mask]
    for scale in (None, 2.0):
        out = F.scaled_dot_product_attention(q, k, v, m, is_causal=is_causal, scale=scale)
        out_t = TF.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)),
                                                 None if m is None else torch.tensor(m), is_causal=is_causal,
                                                 scale=scale)
        assert out.shape == (1, 1, 3, 4)
        _close(out, _np(out_t))


@pytest.mark.parametrize("shape", [(S,), ()])
def test_sdpa_attn_mask_below_2d_raises_as_torch(shape, rng):
    """torch's default dispatch rejects an (S,) or 0-D attn_mask for 4-D inputs (IndexError from
    its fused-kernel check; only its math path, for other ranks or dropout, broadcasts it);
    jaxlayers raises for every rank rather than broadcasting it silently."""
    q, k = rng.normal(size=(N, H, L, 4)), rng.normal(size=(N, H, S, 4))
    mask = np.ones(shape, bool)
    with pytest.raises(IndexError):
        TF.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(k), torch.tensor(mask))
    for qq, kk in ((q, k), (q[0], k[0])):
        with pytest.raises(ValueError, match=r"scaled_dot_product_attention: attn_mask must have at least 2 dims "
                                             r"\(\.\.\., L, S\).*got shape \(" + ",".join(map(str, shape))):
            F.scaled_dot_product_attention(qq, kk, kk, mask)


@pytest.mark.parametrize("dtypes", [("float32", "float16", "float32"), ("float32", "float32", "float16"),
                                    ("float64", "float32", "float32"), ("bfloat16", "bfloat16", "float32")])
def test_sdpa_mixed_dtypes_raise_as_torch(dtypes, rng):
    """torch: "Expected query, key, and value to have the same dtype"; jaxlayers promoted."""
    q, k = rng.normal(size=(H, L, 4)), rng.normal(size=(H, S, 4))
    args = [a.astype(np.float32) for a in (q, k, k)]
    with pytest.raises(RuntimeError, match="same dtype"):
        TF.scaled_dot_product_attention(*(torch.tensor(a).to(getattr(torch, d)) for a, d in zip(args, dtypes)))
    with pytest.raises(TypeError, match=r"scaled_dot_product_attention: expected query, key and value to have the "
                                        rf"same dtype .*query {dtypes[0]}, key {dtypes[1]} and value {dtypes[2]}"):
        F.scaled_dot_product_attention(*(jnp.asarray(a, d) for a, d in zip(args, dtypes)))


@pytest.mark.parametrize("q_dtype,mask_dtype,ok", [
    ("float32", "float64", False), ("float32", "float16", False), ("float32", "bfloat16", False),
    ("float64", "float16", False), ("float32", "int32", False),
    ("float64", "float32", True), ("float16", "float32", True), ("float32", "float32", True),
    ("float64", "float64", True), ("float32", "bool", True),
])
def test_sdpa_attn_mask_dtype_follows_torch(q_dtype, mask_dtype, ok, rng):
    """torch takes a bool mask, a float32 mask or one of the query's dtype, and raises otherwise."""
    q, k = rng.normal(size=(1, H, L, 4)), rng.normal(size=(1, H, S, 4))
    mask = rng.normal(size=(L, S)) if mask_dtype != "bool" else rng.random((L, S)) < 0.7
    if mask_dtype == "bool":
        mask[:, 0] = True
    tm = torch.tensor(mask).to(getattr(torch, mask_dtype))
    targs = [torch.tensor(a).to(getattr(torch, q_dtype)) for a in (q, k, k)]
    jargs = [jnp.asarray(a, q_dtype) for a in (q, k, k)]
    jm = jnp.asarray(mask, mask_dtype)
    if not ok:
        with pytest.raises(RuntimeError, match="Expected attn_mask dtype"):
            TF.scaled_dot_product_attention(*targs, tm)
        with pytest.raises(TypeError, match=rf"scaled_dot_product_attention: attn_mask must be bool, float32 or the "
                                            rf"query's dtype .*got attn_mask {mask_dtype} with query {q_dtype}"):
            F.scaled_dot_product_attention(*jargs, jm)
        return
    out_t = TF.scaled_dot_product_attention(*targs, tm).double().numpy()
    out = F.scaled_dot_product_attention(*jargs, jm)
    assert out.dtype == jnp.dtype(q_dtype)
    tol = dict(rtol=1e-9, atol=1e-11) if q_dtype == "float64" else dict(rtol=1e-2, atol=1e-2)
    close(np.asarray(out, np.float64), out_t, **tol)


def test_sdpa_dropout(rng):
    q, k, v = rng.normal(size=(H, L, 4)), rng.normal(size=(H, S, 4)), rng.normal(size=(H, S, 4))
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, dropout_key=jax.random.key(0))
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, dropout_key=jax.random.key(0))
    c = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, dropout_key=jax.random.key(1))
    _close(a, b)
    assert not np.allclose(a, c)
    z = F.scaled_dot_product_attention(q, k, v, dropout_p=1.0, dropout_key=jax.random.key(0))
    assert np.all(np.asarray(z) == 0)


def test_functional_mha_matches_torch(rng):
    """The function itself, sequence-first, with static_k/static_v."""
    t = _torch_mha({})
    p = {k: _np(a) for k, a in t.state_dict().items()}
    q, k, v = _inputs({}, rng)
    sk, sv = rng.normal(size=(N * H, S + 1, E // H)), rng.normal(size=(N * H, S + 1, E // H))
    args = (E, H, p["in_proj_weight"], p["in_proj_bias"], None, None, False, 0.0,
            p["out_proj.weight"], p["out_proj.bias"])
    out, w = F.multi_head_attention_forward(q, k, v, *args, training=False, static_k=sk, static_v=sv)
    out_t, w_t = torch.nn.functional.multi_head_attention_forward(
        *(torch.tensor(a) for a in (q, k, v)), *(torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args),
        training=False, static_k=torch.tensor(sk), static_v=torch.tensor(sv))
    _close(out, _np(out_t))
    _close(w, _np(w_t))


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("add_zero_attn", [False, True])
@pytest.mark.parametrize("kpm_kind", ["bool", "float"])
@pytest.mark.parametrize("batched", [True, False])
def test_functional_mha_key_padding_mask_follows_static_k(need_weights, add_zero_attn, kpm_kind, batched, rng):
    """key_padding_mask is checked against static_k's length S' (torch), not the key input's S
    (that raised for a (N, S') mask), and add_zero_attn pads it as torch."""
    t = _torch_mha({})
    p = {k: _np(a) for k, a in t.state_dict().items()}
    n = N if batched else 1
    q, k, v = _inputs({}, rng, batched=batched)
    S2 = S + 2
    sk, sv = rng.normal(size=(n * H, S2, E // H)), rng.normal(size=(n * H, S2, E // H))
    if kpm_kind == "bool":
        kpm = np.zeros((n, S2), bool)
        kpm[0, 1] = kpm[-1, -1] = True
    else:
        kpm = rng.normal(size=(n, S2))
        kpm[0, 2] = -np.inf
    if not batched:
        kpm = kpm[0]
    args = (E, H, p["in_proj_weight"], p["in_proj_bias"], None, None, add_zero_attn, 0.0,
            p["out_proj.weight"], p["out_proj.bias"])
    kw = dict(training=False, key_padding_mask=kpm, need_weights=need_weights, static_k=sk, static_v=sv)
    out, w = F.multi_head_attention_forward(q, k, v, *args, **kw)
    out_t, w_t = TF.multi_head_attention_forward(
        *(torch.tensor(a) for a in (q, k, v)), *(torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args),
        **{k_: torch.tensor(a) if isinstance(a, np.ndarray) else a for k_, a in kw.items()})
    _close(out, _np(out_t))
    assert (w is None) == (w_t is None)
    if need_weights:
        assert w.shape == tuple(w_t.shape) and w.shape[-1] == S2 + add_zero_attn
        _close(w, _np(w_t))
    # the key input's length no longer fits the mask once static_k replaces the keys (torch raises too)
    with pytest.raises(ValueError, match=r"key_padding_mask has shape .* must have shape .* for static_k of shape"):
        F.multi_head_attention_forward(q, k, v, *args, **{**kw, "key_padding_mask": kpm[..., :S]})


# --------------------------------------------------------------------------- errors


def _mha_apply(m, q, k, v, **kw):
    kw.setdefault("train", False)
    return m.init_with_output(jax.random.key(0), q, k, v, **kw)[0]


def test_mha_constructor_errors():
    with pytest.raises(ValueError, match="MultiheadAttention: embed_dim=6 must be divisible by num_heads=4"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="MultiheadAttention: embed_dim and num_heads must be > 0"):
        nn.MultiheadAttention(0, 2)
    with pytest.raises(ValueError, match="MultiheadAttention: dropout must be in"):
        nn.MultiheadAttention(E, H, dropout=1.5)


@pytest.mark.parametrize("kw,match", [
    (dict(attn_mask=np.zeros((L, S + 1), bool)),
     r"MultiheadAttention: attn_mask has shape \(3, 5\) but a 2-D \(L, S\) mask must have shape \(3, 4\)"),
    (dict(attn_mask=np.zeros((H, L, S), bool)),
     r"attn_mask has shape \(2, 3, 4\) but a 3-D \(N\*num_heads, L, S\) mask must have shape \(4, 3, 4\)"),
    (dict(attn_mask=np.zeros((1, 1, L, S), bool)), r"attn_mask must be 2-D \(L, S\) or 3-D"),
    (dict(key_padding_mask=np.zeros((N, S + 2), bool)),
     r"key_padding_mask has shape \(2, 6\) but must have shape \(2, 4\)"),
    (dict(key_padding_mask=np.zeros((S,), bool)), r"key_padding_mask must be 2-D \(N, S\)"),
    (dict(attn_mask=np.zeros((L, S), np.int32)), "only bool and floating types of attn_mask"),
    (dict(key_padding_mask=np.zeros((N, S), np.int32)), "only bool and floating types of key_padding_mask"),
    (dict(is_causal=True), "is_causal=True is a hint that needs attn_mask"),
    (dict(train=None), r"MultiheadAttention: `train` must be given"),
])
def test_mha_call_errors(kw, match):
    m = nn.MultiheadAttention(E, H)
    x, y = jnp.zeros((L, N, E)), jnp.zeros((S, N, E))
    with pytest.raises((ValueError, TypeError), match=match):
        _mha_apply(m, x, y, y, **kw)


def test_mha_input_shape_errors():
    m = nn.MultiheadAttention(E, H)
    x, y = jnp.zeros((L, N, E)), jnp.zeros((S, N, E))
    with pytest.raises(ValueError, match=r"expected 3-D key and value, got key \(4, 8\)"):
        _mha_apply(m, x, y[:, 0], y)
    with pytest.raises(ValueError, match=r"for unbatched \(2-D\) query \(3, 8\), expected 2-D key"):
        _mha_apply(m, x[:, 0], y, y)
    with pytest.raises(ValueError, match=r"expected query of shape \(L, N, E\) or unbatched \(L, E\), got 4-D"):
        _mha_apply(m, x[None], y, y)
    with pytest.raises(ValueError, match=r"expected query with embedding dim 8 \(embed_dim\), got shape \(3, 2, 6\)"):
        _mha_apply(nn.MultiheadAttention(E, H, kdim=6), x[..., :6], y, y)
    with pytest.raises(ValueError, match=r"key and value must both have shape \(S, N, embed_dim=8\)"):
        _mha_apply(m, x, y, y[..., :5])
    with pytest.raises(ValueError, match="must share the batch size N"):
        _mha_apply(m, x, y[:, :1], y[:, :1])
    with pytest.raises(ValueError, match=r"k_proj_weight of shape \(8, 3\) does not fit: expected \(8, 4\) \(embed_dim, kdim\)"):
        _mha_apply(nn.MultiheadAttention(E, H, kdim=3, vdim=5), x, jnp.zeros((S, N, 4)), jnp.zeros((S, N, 5)))
    with pytest.raises(ValueError, match="key and value must have the same sequence length"):
        _mha_apply(nn.MultiheadAttention(E, H, kdim=3, vdim=5), x, jnp.zeros((S, N, 3)), jnp.zeros((S + 1, N, 5)))
    with pytest.raises(ValueError, match=r"key_padding_mask must be 1-D \(S,\)"):
        _mha_apply(m, x[:, 0], y[:, 0], y[:, 0], key_padding_mask=np.zeros((1, S), bool))


def test_functional_errors(rng):
    q = rng.normal(size=(H, L, 4))
    k = rng.normal(size=(H, S, 4))
    sdpa = F.scaled_dot_product_attention
    with pytest.raises(ValueError, match="scaled_dot_product_attention: query and key must have the same embedding"):
        sdpa(q, k[..., :3], k)
    with pytest.raises(ValueError, match="key and value must have the same sequence length"):
        sdpa(q, k, k[:, :2])
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 5\) does not broadcast .* \(2, 3, 4\)"):
        sdpa(q, k, k, np.zeros((L, S + 1), bool))
    with pytest.raises(ValueError, match=r"enable_gqa needs the number of query heads \(2\) to be a multiple"):
        sdpa(q, np.zeros((3, S, 4)), np.zeros((3, S, 4)), enable_gqa=True)
    with pytest.raises(ValueError, match=r"enable_gqa needs a heads dim \(-3\)"):
        sdpa(q[0], k[0], k[0], enable_gqa=True)
    with pytest.raises(ValueError, match="dropout_p=0.5 needs a PRNG key"):
        sdpa(q, k, k, dropout_p=0.5)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\]"):
        sdpa(q, k, k, dropout_p=2.0)
    with pytest.raises(ValueError, match="at least 2 dims"):
        sdpa(q[0, 0], k, k)
    w = np.zeros((3 * E, E))
    x, y = np.zeros((L, N, E)), np.zeros((S, N, E))
    mhaf = F.multi_head_attention_forward
    with pytest.raises(ValueError, match="multi_head_attention_forward: embed_dim 8 is not divisible by num_heads 3"):
        mhaf(x, y, y, E, 3, w, None, None, None, False, 0.0, np.zeros((E, E)), None)
    with pytest.raises(ValueError, match=r"in_proj_weight must have shape \(24, 8\)"):
        mhaf(x, y, y, E, H, w[:, :4], None, None, None, False, 0.0, np.zeros((E, E)), None)
    with pytest.raises(ValueError, match="bias_k and bias_v must both be given"):
        mhaf(x, y, y, E, H, w, None, np.zeros((1, 1, E)), None, False, 0.0, np.zeros((E, E)), None)
    with pytest.raises(ValueError, match=r"bias_k must have shape \(1, 1, 8\), \(1, 8\) or \(8,\), got \(1, 2, 8\)"):
        mhaf(x, y, y, E, H, w, None, np.zeros((1, N, E)), np.zeros((1, N, E)), False, 0.0, np.zeros((E, E)), None)
    with pytest.raises(ValueError, match="use_separate_proj_weight=True but q_proj_weight is None"):
        mhaf(x, y, y, E, H, None, None, None, None, False, 0.0, np.zeros((E, E)), None, use_separate_proj_weight=True)
    with pytest.raises(ValueError, match=r"static_k must have shape \(N\*num_heads=4, S, head_dim=4\)"):
        mhaf(x, y, y, E, H, w, None, None, None, False, 0.0, np.zeros((E, E)), None, static_k=np.zeros((2, S, 4)))
    with pytest.raises(ValueError, match="dropout_p=0.5 needs a PRNG key"):
        mhaf(x, y, y, E, H, w, None, None, None, False, 0.5, np.zeros((E, E)), None, training=True)


# ------------------------------------------------- with and without jit; shape rules over many settings

import chex  # noqa: E402
from absl.testing import parameterized  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class VariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(False, True)
    def test_sdpa_causal_and_mask_grads(self, causal):
        rng = np.random.default_rng(5)
        q, k, v = rng.normal(size=(N, H, L, 4)), rng.normal(size=(N, H, S, 4)), rng.normal(size=(N, H, S, 3))
        mask = None if causal else rng.normal(size=(L, S))
        fn = self.variant(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal))
        tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
        ty = torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal)
        cot = rng.normal(size=ty.shape)
        ty.backward(torch.tensor(cot))
        y, vjp = jax.vjp(fn, q, k, v)
        chex.assert_shape(y, (N, H, L, 3))
        _close(y, _np(ty))
        for g, t in zip(vjp(jnp.asarray(cot)), (tq, tk, tv)):
            _close(g, t.grad.numpy())

    @chex.variants(with_jit=True, without_jit=True)
    def test_module_matches_torch(self):
        rng = np.random.default_rng(6)
        t = _torch_mha(dict(batch_first=True))
        params = interop.state_dict_to_variables(t.state_dict())
        m = nn.MultiheadAttention(E, H, batch_first=True)
        q, k, v = _inputs(dict(batch_first=True), rng)
        out, w = self.variant(lambda q, k, v: m.apply(params, q, k, v, train=False))(q, k, v)
        tout, tw = t(*(torch.tensor(a) for a in (q, k, v)))
        chex.assert_shape([out, w], [(N, L, E), (N, L, S)])
        chex.assert_trees_all_close((out, w), (_np(tout), _np(tw)), rtol=1e-9, atol=1e-11)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    heads=st.sampled_from([1, 2, 4]),
    lq=st.integers(1, 4),
    ls=st.integers(1, 4),
    batch=st.one_of(st.none(), st.integers(1, 2)),
    batch_first=st.booleans(),
    kdim=st.sampled_from([None, 3]),
    add_bias_kv=st.booleans(),
    add_zero_attn=st.booleans(),
    average=st.booleans(),
)
def test_mha_shapes_and_values_over_settings(heads, lq, ls, batch, batch_first, kdim, add_bias_kv, add_zero_attn,
                                             average):
    """Output and weight shapes (and values) follow torch over heads, lengths, ranks and options."""
    rng = np.random.default_rng(heads * 100 + lq * 10 + ls)
    ctor = dict(batch_first=batch_first, kdim=kdim, vdim=kdim, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn)
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(E, heads, **ctor)
    params = interop.state_dict_to_variables(t.state_dict())
    m = nn.MultiheadAttention(E, heads, **ctor)
    kd = kdim or E

    def seq(n, d):
        if batch is None:
            return rng.normal(size=(n, d))
        return rng.normal(size=(batch, n, d) if batch_first else (n, batch, d))

    q, k, v = seq(lq, E), seq(ls, kd), seq(ls, kd)
    out, w = m.apply(params, q, k, v, average_attn_weights=average, train=False)
    tout, tw = t(*(torch.tensor(a) for a in (q, k, v)), average_attn_weights=average)
    assert out.shape == tuple(tout.shape) and w.shape == tuple(tw.shape)
    _close(out, _np(tout))
    _close(w, _np(tw))


@pytest.mark.parametrize("shape", [(E,), (1, E)])
@pytest.mark.parametrize("batched", [True, False])
def test_mha_forward_bias_kv_short_shapes_match_torch(shape, batched, rng):
    # torch appends bias_k.repeat(1, N, 1), which takes (E,) and (1, E) as well as (1, 1, E)
    from oracle import close, jax_fwd_bwd, torch_fwd_bwd

    q, k, v = (rng.normal(size=(n, N, E) if batched else (n, E)) for n in (L, S, S))
    w, b, o, ob = rng.normal(size=(3 * E, E)), rng.normal(size=3 * E), rng.normal(size=(E, E)), rng.normal(size=E)
    bk, bv = rng.normal(size=shape), rng.normal(size=shape)
    args = (q, k, v, w, b, bk, bv, o, ob)

    def run(f):
        return lambda q, k, v, w, b, bk, bv, o, ob: f(q, k, v, E, H, w, b, bk, bv, False, 0.0, o, ob,
                                                      need_weights=False)[0]

    ct = rng.normal(size=(L, N, E) if batched else (L, E))
    out_t, g_t = torch_fwd_bwd(run(torch.nn.functional.multi_head_attention_forward), ct, *args)
    out, g = jax_fwd_bwd(run(F.multi_head_attention_forward), ct, *args)
    close(out, out_t)
    close(g, g_t)
    assert g[5].shape == shape


def test_causal_mask_program_does_not_grow_with_the_sequence():
    # the (L, S) mask is built from iotas: as an embedded constant it was 8 MB of program at 2048
    sizes = [len(jax.jit(lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True))
                 .lower(jax.ShapeDtypeStruct((1, 2, n, 8), jnp.float32)).as_text()) for n in (16, 2048)]
    assert sizes[1] < sizes[0] * 1.05, sizes


def test_low_precision_attention_accumulates_in_float32():
    """bfloat16 attention: products accumulate and the softmax runs in float32, rounded once at
    the end, so the result is as close to float64 as torch's bfloat16 kernel (rounded at every
    step it was 2-4x further)."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 16, 8)) for _ in range(3))
    want = TF.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v))).numpy()
    got = F.scaled_dot_product_attention(*(jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)))
    assert got.dtype == jnp.bfloat16
    theirs = TF.scaled_dot_product_attention(*(torch.tensor(a).bfloat16() for a in (q, k, v))).float().numpy()
    assert np.abs(np.asarray(got, np.float64) - want).max() <= 1.5 * np.abs(theirs - want).max()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_float32_mask_keeps_its_precision_with_a_half_query(dtype):
    """A float32 attn_mask is added to the float32 scores as it is, as torch (it was rounded to the
    query's dtype: -70000 became -inf in float16, a fully masked row of zeros; in bfloat16 -69999 and
    -70000 merged).  Oracle: torch in float64."""
    q, k = np.zeros((4, 8)), np.zeros((6, 8))
    v = np.repeat(np.arange(6.0)[:, None], 8, axis=1)
    m = np.array([[0.0, 0.01, 0.02, 0.03, 0.04, 0.05]] * 2 + [[-70000.0] * 5 + [-69999.0]] * 2, np.float32)
    want = TF.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)), attn_mask=torch.tensor(m, dtype=torch.float64))
    half = [jnp.asarray(a, dtype) for a in (q, k, v)]
    got = F.scaled_dot_product_attention(*half, attn_mask=jnp.asarray(m))
    np.testing.assert_allclose(np.asarray(got, np.float32), want.numpy(), atol=0.02)
    # MultiheadAttention's SDPA path (need_weights=False) too
    w = np.concatenate([np.zeros((16, 8)), np.eye(8)])
    got = F.multi_head_attention_forward(half[0][:, None], half[1][:, None], half[2][:, None], 8, 1, jnp.asarray(w, dtype),
                                         None, None, None, False, 0.0, jnp.asarray(np.eye(8), dtype), None,
                                         training=False, need_weights=False, attn_mask=jnp.asarray(m))[0]
    np.testing.assert_allclose(np.asarray(got, np.float32)[:, 0], want.numpy(), atol=0.02)
