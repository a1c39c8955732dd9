"""jaxlayers.interop: state_dict <-> variables, strict checks, safetensors."""

import json
import re
import struct
import subprocess
import sys
import textwrap

import chex
import jax
import ml_dtypes
import numpy as np
import pytest
import torch

from jaxlayers import interop


def _state_dict(rng):
    return {
        "features.0.weight": rng.standard_normal((4, 3, 3, 3)),
        "features.0.bias": rng.standard_normal(4),
        "features.1.weight": rng.standard_normal(4),
        "features.1.bias": rng.standard_normal(4),
        "features.1.running_mean": rng.standard_normal(4),
        "features.1.running_var": rng.random(4) + 0.5,
        "features.1.num_batches_tracked": np.array(7, dtype=np.int64),
        "classifier.weight": rng.standard_normal((2, 4)),
    }


def test_state_dict_to_variables_nests_and_routes_buffers(rng):
    sd = _state_dict(rng)
    v = interop.state_dict_to_variables(sd)
    assert set(v) == {"params", "batch_stats"}
    np.testing.assert_array_equal(v["params"]["features"]["0"]["weight"], sd["features.0.weight"])
    np.testing.assert_array_equal(v["batch_stats"]["features"]["1"]["running_var"], sd["features.1.running_var"])
    assert "running_mean" not in v["params"]["features"]["1"]
    assert "weight" not in v["batch_stats"]["features"]["1"]
    assert v["batch_stats"]["features"]["1"]["num_batches_tracked"].dtype == np.int64
    assert v["params"]["features"]["0"]["weight"].dtype == np.float64


def test_no_buffers_gives_params_only(rng):
    v = interop.state_dict_to_variables({"weight": rng.standard_normal((2, 3))})
    assert set(v) == {"params"}


def test_round_trip_is_exact_and_keeps_torch_order(rng):
    sd = _state_dict(rng)
    back = interop.variables_to_state_dict(interop.state_dict_to_variables(sd))
    assert list(back) == list(sd)  # parameters before buffers within a module, as torch
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
        assert back[k].dtype == sd[k].dtype


def test_buffer_only_and_parametrized_modules_keep_torch_order():
    """Own parameters, own buffers, then children (by index in Sequential) — also when a child has
    only buffers (affine-free BatchNorm) or a parametrized module has buffers of its own."""
    import jax.numpy as jnp
    import torch.nn.utils.parametrizations as TP

    from jaxlayers import nn
    from jaxlayers.nn.utils import parametrizations as P

    x = jnp.ones((1, 2, 4, 4))
    cases = [(nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, affine=False), nn.Conv2d(3, 2, 1)),
              torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3, affine=False),
                                  torch.nn.Conv2d(3, 2, 1)), x),
             (P.weight_norm(nn.BatchNorm1d(3)), TP.weight_norm(torch.nn.BatchNorm1d(3)), jnp.ones((2, 3)))]
    for ours, theirs, x in cases:
        v = ours.init(jax.random.key(0), x, train=False)
        assert list(interop.variables_to_state_dict(v)) == list(theirs.state_dict())


def test_old_checkpoints_load_as_in_torch():
    """torch accepts a BatchNorm state_dict without num_batches_tracked (the module keeps its own) and a
    (1,) tensor for a 0-d buffer; so do the linen and NNX loaders."""
    import jax.numpy as jnp
    from flax import nnx as fnnx

    from jaxlayers import nn, nnx

    theirs = torch.nn.BatchNorm1d(3)
    no_count = {k: v for k, v in theirs.state_dict().items() if k != "num_batches_tracked"}
    one_elem = {**theirs.state_dict(), "num_batches_tracked": torch.tensor([5])}
    for sd in (no_count, one_elem):
        assert str(torch.nn.BatchNorm1d(3).load_state_dict(dict(sd))) == "<All keys matched successfully>"
    v = nn.BatchNorm1d(3).init(jax.random.key(0), jnp.ones((2, 3)), train=False)
    assert interop.check_state_dict(no_count, v).ok
    assert int(interop.load_state_dict(v, no_count)["batch_stats"]["num_batches_tracked"]) == 0
    loaded = interop.load_state_dict(v, one_elem)["batch_stats"]["num_batches_tracked"]
    assert loaded.shape == () and int(loaded) == 5
    m = nnx.BatchNorm1d(3, rngs=fnnx.Rngs(0))
    assert m.load_state_dict(one_elem).ok and int(m.state_dict()["num_batches_tracked"]) == 5


def test_a_key_that_is_also_a_prefix_is_an_error():
    for sd in ({"a.b": np.ones(1), "a": np.ones(1)}, {"a": np.ones(1), "a.b": np.ones(1)}):
        with pytest.raises(ValueError, match="state_dict_to_variables: key 'a"):
            interop.state_dict_to_variables(sd)


def test_torch_tensors_including_bfloat16():
    lin = torch.nn.Linear(3, 2)
    sd = dict(lin.state_dict())
    sd["half"] = torch.arange(4, dtype=torch.bfloat16)
    v = interop.state_dict_to_variables(sd)
    np.testing.assert_array_equal(v["params"]["weight"], lin.weight.detach().numpy())
    assert str(v["params"]["half"].dtype) == "bfloat16"
    np.testing.assert_array_equal(v["params"]["half"].astype(np.float32), np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                                   "float8_e8m0fnu"])
def test_torch_low_precision_tensors_load_bit_for_bit(dtype):
    """torch dtypes NumPy lacks arrive as their ml_dtypes twins with the same bits (transposed,
    0-d and NaN included); one with no JAX twin is a TypeError naming the key."""
    td = getattr(torch, dtype)
    t = (torch.arange(-6, 6, dtype=torch.float32).reshape(3, 4) / 4).to(td).t()  # not contiguous
    v = interop.state_dict_to_variables({"w": t, "s": torch.tensor(float("nan")).to(td), "b": t[0]})["params"]
    assert v["w"].dtype == np.dtype(getattr(ml_dtypes, dtype)) and v["w"].shape == (4, 3)
    np.testing.assert_array_equal(v["w"].astype(np.float32), t.float().numpy())
    assert v["s"].shape == () and np.isnan(v["s"].astype(np.float32))


def test_torch_dtype_without_a_jax_twin_names_the_key():
    with pytest.raises(TypeError, match=r"torch dtype torch.complex32 for 'layer.w' has no NumPy/JAX equivalent"):
        interop.state_dict_to_variables({"layer.w": torch.zeros(2, dtype=torch.complex32)})


def test_check_reports_every_problem_at_once(rng):
    sd = _state_dict(rng)
    template = interop.state_dict_to_variables(sd)
    bad = dict(sd)
    del bad["classifier.weight"]
    del bad["features.1.running_mean"]
    bad["extra.weight"] = np.zeros(3)
    bad["features.0.weight"] = np.zeros((4, 3, 5, 5))
    report = interop.check_state_dict(bad, template)
    assert not report.ok
    assert set(report.missing) == {"classifier.weight", "features.1.running_mean"}
    assert report.unexpected == ("extra.weight",)
    assert report.mismatched == (("features.0.weight", (4, 3, 3, 3), (4, 3, 5, 5)),)
    with pytest.raises(interop.StateDictMismatchError) as err:
        interop.load_state_dict(template, bad)
    msg = str(err.value)
    for key in ("classifier.weight", "features.1.running_mean", "extra.weight", "features.0.weight", "(4, 3, 5, 5)"):
        assert key in msg
    assert err.value.report == report


def test_load_state_dict_casts_like_torch_and_non_strict(rng):
    sd = _state_dict(rng)
    template = interop.state_dict_to_variables({k: np.asarray(v, np.float32) if np.asarray(v).dtype == np.float64 else v for k, v in sd.items()})
    loaded = interop.load_state_dict(template, sd)
    assert loaded["params"]["classifier"]["weight"].dtype == np.float32
    np.testing.assert_allclose(loaded["params"]["classifier"]["weight"], sd["classifier.weight"].astype(np.float32))
    kept = interop.load_state_dict(template, sd, cast=False)
    assert kept["params"]["classifier"]["weight"].dtype == np.float64
    partial = {k: v for k, v in sd.items() if k != "classifier.weight"}
    partial["unused"] = np.zeros(1)
    loaded = interop.load_state_dict(template, partial, strict=False)
    np.testing.assert_array_equal(loaded["params"]["classifier"]["weight"], template["params"]["classifier"]["weight"])
    with pytest.raises(interop.StateDictMismatchError, match="shape mismatch for classifier.weight"):
        interop.load_state_dict(template, {**sd, "classifier.weight": np.zeros((3, 3))}, strict=False)


def test_safetensors_round_trip_all_dtypes(tmp_path, rng):
    tensors = {
        "a.f64": rng.standard_normal((2, 3)),
        "a.f32": rng.standard_normal((4,)).astype(np.float32),
        "b.f16": rng.standard_normal((1, 2)).astype(np.float16),
        "b.bf16": rng.standard_normal((3,)).astype(ml_dtypes.bfloat16),
        "c.i64": np.arange(5, dtype=np.int64),
        "c.i32": np.arange(3, dtype=np.int32).reshape(3, 1),
        "c.u8": np.arange(3, dtype=np.uint8),
        "d.bool": np.array([True, False]),
        "e.scalar": np.array(3.5),
    }
    path = tmp_path / "x.safetensors"
    interop.save_safetensors(path, tensors, metadata={"format": "pt"})
    back = interop.load_safetensors(path)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v)
    # big-endian arrays (from a file or another machine) are stored little-endian, not refused as a dtype
    interop.save_safetensors(path, {"be": np.arange(3, dtype=">f4")})
    np.testing.assert_array_equal(interop.load_safetensors(path)["be"], np.arange(3, dtype=np.float32))


def test_save_variables_takes_variables_or_an_nnx_model_and_refuses_other_trees(tmp_path):
    """A params tree without its collection (or an nnx.State) had been saved as an empty file, silently."""
    from flax import nnx as fnnx

    from jaxlayers import nnx as jnnx

    model = jnnx.BatchNorm1d(3, rngs=fnnx.Rngs(0))
    interop.save_variables(tmp_path / "m.safetensors", model)
    want = torch.nn.BatchNorm1d(3).state_dict()
    got = interop.load_safetensors(tmp_path / "m.safetensors")
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k].numpy()) for k in want)
    for bad in ({"bn": {"weight": np.ones(3)}}, fnnx.state(model)):
        with pytest.raises(ValueError, match=r"expected Flax variables with a 'params' or 'batch_stats' collection"):
            interop.save_variables(tmp_path / "bad.safetensors", bad)
    with pytest.raises(TypeError, match="expected Flax variables .* or a jaxlayers.nnx model, got list"):
        interop.variables_to_state_dict([1])
    assert interop.variables_to_state_dict({}) == {}


def test_safetensors_interoperates_with_reference_library(tmp_path, rng):
    from safetensors.numpy import load_file, save_file
    from safetensors.torch import load_file as torch_load_file

    lin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    variables = interop.state_dict_to_variables(lin.state_dict())
    ours = tmp_path / "ours.safetensors"
    interop.save_variables(ours, variables)
    theirs = torch_load_file(str(ours))
    assert theirs.keys() == lin.state_dict().keys()
    for k, t in lin.state_dict().items():
        torch.testing.assert_close(theirs[k], t, rtol=0, atol=0)

    ref = tmp_path / "ref.safetensors"
    arrays = {"w": rng.standard_normal((3, 2)).astype(np.float32), "n": np.array([1, 2], np.int64)}
    save_file(arrays, str(ref))
    back = interop.load_safetensors(ref)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    np.testing.assert_array_equal(load_file(str(ours))["0.weight"], lin[0].weight.detach().numpy())


def test_load_variables_with_template_is_strict(tmp_path, rng):
    sd = _state_dict(rng)
    template = interop.state_dict_to_variables(sd)
    path = tmp_path / "v.safetensors"
    interop.save_variables(path, template)
    chex.assert_trees_all_equal(interop.load_variables(path, template), template)
    interop.save_safetensors(path, {k: v for k, v in sd.items() if k != "classifier.weight"})
    with pytest.raises(interop.StateDictMismatchError, match="missing keys: classifier.weight"):
        interop.load_variables(path, template)


def test_load_safetensors_reads_each_tensor_once(tmp_path):
    """Peak memory is the tensors' own size (it read the whole file, then copied every tensor
    twice: 3x; a 14 GB checkpoint would have needed 42 GB)."""
    import tracemalloc

    tensors = {"a": np.arange(2**20, dtype=np.float32), "b": np.ones((512, 1024), np.float32)}
    path = tmp_path / "big.safetensors"
    interop.save_safetensors(path, tensors)
    tracemalloc.start()
    back = interop.load_safetensors(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = sum(t.nbytes for t in tensors.values())
    assert peak < 1.3 * size, (peak, size)
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].flags.writeable


def _st_file(header, data: bytes, header_len=None, raw_header=None) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON, data."""
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


_F32x4 = np.arange(4, dtype=np.float32).tobytes()


def _t(dtype="F32", shape=(4,), offsets=(0, 16)):
    entry = {"dtype": dtype, "shape": list(shape)}
    if offsets is not None:
        entry["data_offsets"] = list(offsets)
    return entry


MALFORMED = {
    # name: (file bytes, what the message must also name)
    "negative_shape": (_st_file({"w": _t(shape=(-2,))}, _F32x4), "-2"),
    "overlapping_offsets": (_st_file({"a": _t(shape=(2,), offsets=(0, 8)), "b": _t(shape=(2,), offsets=(4, 12))},
                                     _F32x4[:12]), "`b`"),
    "reversed_offsets": (_st_file({"w": _t(shape=(0,), offsets=(8, 0))}, _F32x4[:8]), "`w`"),
    "gap_between_tensors": (_st_file({"a": _t(shape=(1,), offsets=(0, 4)), "b": _t(shape=(2,), offsets=(8, 16))},
                                     _F32x4), "`b`"),
    "truncated_data": (_st_file({"w": _t()}, _F32x4[:10]), "not fully covered"),
    "trailing_bytes": (_st_file({"w": _t(shape=(2,), offsets=(0, 8))}, _F32x4), "not fully covered"),
    "header_length_past_the_end": (_st_file({"w": _t()}, _F32x4, header_len=10**6), "header length"),
    "too_short": (b"\x01\x02", "too small"),
    "non_json_header": (_st_file(None, _F32x4, raw_header=b"{not json}      "), "JSON"),
    "header_not_a_mapping": (_st_file(None, _F32x4, raw_header=b"[1, 2]  "), "JSON"),
    "unknown_dtype": (_st_file({"w": _t(dtype="X99")}, _F32x4), "X99"),
    "shape_inconsistent_with_bytes": (_st_file({"w": _t(shape=(3,))}, _F32x4), "shape"),
    "missing_data_offsets": (_st_file({"w": _t(offsets=None)}, _F32x4), "data_offsets"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_safetensors_raise_value_error_naming_the_file(case, tmp_path):
    data, detail = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        interop.load_safetensors(path)
    assert detail in str(err.value)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        interop.load_variables(path)


def test_safetensors_dtypes_numpy_cannot_hold_and_cannot_store(tmp_path):
    path = tmp_path / "f4.safetensors"
    path.write_bytes(_st_file({"w": _t(dtype="F4", shape=(2,), offsets=(0, 1))}, b"\x00"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: tensor 'w' has dtype F4"):
        interop.load_safetensors(path)
    with pytest.raises(TypeError, match="save_safetensors: unsupported dtype complex128 for 'z'"):
        interop.save_safetensors(tmp_path / "z.safetensors", {"z": np.zeros(2, np.complex128)})


def test_safetensors_bfloat16_round_trips_through_torch(tmp_path):
    from safetensors.torch import load_file as torch_load_file
    from safetensors.torch import save_file as torch_save_file

    values = np.array([[1.5, -2.25, 3e-3], [1e30, -0.0, 7.0]], np.float32)
    ours = tmp_path / "ours.safetensors"
    interop.save_safetensors(ours, {"w": values.astype(ml_dtypes.bfloat16), "f": values})
    back = torch_load_file(str(ours))
    assert back["w"].dtype == torch.bfloat16 and back["f"].dtype == torch.float32
    torch.testing.assert_close(back["w"], torch.from_numpy(values).bfloat16(), rtol=0, atol=0)
    theirs = tmp_path / "theirs.safetensors"
    torch_save_file({"w": torch.from_numpy(values).bfloat16()}, str(theirs))
    w = interop.load_safetensors(theirs)["w"]
    assert w.dtype == ml_dtypes.bfloat16 and w.shape == (2, 3)
    np.testing.assert_array_equal(w.astype(np.float32), torch.from_numpy(values).bfloat16().float().numpy())


def test_load_state_dict_with_an_abstract_template(rng):
    # jax.eval_shape gives ShapeDtypeStruct leaves: the load casts to their dtypes
    # (it used to build dtype=object arrays) and checks their shapes
    sd = _state_dict(rng)
    concrete = interop.state_dict_to_variables(
        {k: v.astype(np.float32) if v.dtype == np.float64 else v.astype(np.int32) for k, v in sd.items()})
    template = jax.eval_shape(lambda: concrete)
    assert isinstance(template["params"]["classifier"]["weight"], jax.ShapeDtypeStruct)
    loaded = interop.load_state_dict(template, sd)
    chex.assert_trees_all_equal_structs(loaded, concrete)
    for want, got in zip(jax.tree_util.tree_leaves(concrete), jax.tree_util.tree_leaves(loaded)):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert interop.load_state_dict(template, sd, cast=False)["params"]["classifier"]["weight"].dtype == np.float64
    with pytest.raises(interop.StateDictMismatchError, match=r"shape mismatch for classifier.weight"):
        interop.load_state_dict(template, {**sd, "classifier.weight": np.zeros((3, 3))})
    partial = {k: v for k, v in sd.items() if k != "classifier.weight"}
    with pytest.raises(ValueError, match="load_state_dict: 'classifier.weight' is missing from the state_dict and "
                                         "the template has no value to keep"):
        interop.load_state_dict(template, partial, strict=False)


def test_numpy_path_needs_no_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any torch import now fails
        import numpy as np
        from jaxlayers import interop
        v = interop.state_dict_to_variables({{"fc.weight": np.ones((2, 3)), "bn.running_mean": np.zeros(2)}})
        interop.save_variables(r"{tmp_path / 'n.safetensors'}", v)
        assert interop.load_safetensors(r"{tmp_path / 'n.safetensors'}")["fc.weight"].shape == (2, 3)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
