"""jaxlayers.init against torch.nn.init: fans, gains, bounds and moments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxlayers import init

SHAPES = [(5, 3), (8, 4, 3, 3), (6, 2, 3), (4, 2, 1, 2, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init.fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("name,param", [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", math.sqrt(5)), ("selu", None), ("sigmoid", None), ("conv2d", None)])
def test_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_fan_needs_two_dims_and_gain_name_checked():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fan_in_and_fan_out((3,))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def _uniform_bound_check(sample, bound):
    sample = np.asarray(sample)
    assert np.abs(sample).max() <= bound
    assert np.abs(sample).max() > 0.9 * bound  # the whole range is used
    # U(-b, b) has variance b^2/3; 4 standard errors of the sample variance
    n = sample.size
    assert abs(sample.var() - bound**2 / 3) < 4 * bound**2 * math.sqrt(4 / 45 / n)


@pytest.mark.parametrize("shape", [(64, 32), (32, 16, 3, 3), (16, 8, 5)])
def test_torch_weight_default_is_uniform_inverse_sqrt_fan_in(shape):
    fan_in = init.fan_in_and_fan_out(shape)[0]
    w = init.torch_weight_default()(jax.random.key(0), shape, jnp.float32)
    assert w.shape == shape and w.dtype == jnp.float32
    _uniform_bound_check(w, 1 / math.sqrt(fan_in))
    # torch draws from the same distribution
    t = torch.empty(shape)
    torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    assert t.abs().max().item() <= 1 / math.sqrt(fan_in)


def test_uniform_fan_in_bias():
    b = init.uniform_fan_in(16)(jax.random.key(1), (4096,), jnp.float32)
    _uniform_bound_check(b, 0.25)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_and_xavier_normal_std(mode):
    shape = (128, 64, 3)
    fan_in, fan_out = init.fan_in_and_fan_out(shape)
    w = np.asarray(init.kaiming_normal(mode=mode, nonlinearity="relu")(jax.random.key(2), shape, jnp.float32))
    want = math.sqrt(2) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    assert w.std() == pytest.approx(want, rel=0.03)
    x = np.asarray(init.xavier_normal(gain=2.0)(jax.random.key(3), shape, jnp.float32))
    assert x.std() == pytest.approx(2.0 * math.sqrt(2.0 / (fan_in + fan_out)), rel=0.03)
    xu = init.xavier_uniform()(jax.random.key(4), shape, jnp.float32)
    _uniform_bound_check(xu, math.sqrt(6.0 / (fan_in + fan_out)))


def test_constants_and_normal():
    assert np.all(np.asarray(init.ones(None, (2, 3), jnp.float32)) == 1)
    assert np.all(np.asarray(init.zeros(None, (2,), jnp.float64)) == 0)
    n = np.asarray(init.normal(1.0, 0.5)(jax.random.key(5), (20000,), jnp.float32))
    assert n.mean() == pytest.approx(1.0, abs=0.02) and n.std() == pytest.approx(0.5, rel=0.03)
