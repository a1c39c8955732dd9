"""How the linen modules create and read parameters (``jaxlayers.nn._param.param``)."""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import errors

from jaxlayers import init as jinit
from jaxlayers import nn
from jaxlayers.nn._param import param


def _counting(init_fn):
    calls = []

    def counted(key, shape, dtype):
        calls.append(tuple(shape))
        return init_fn(key, shape, dtype)

    return counted, calls


@pytest.mark.parametrize("make", [
    lambda w, b: nn.Linear(4, 3, weight_init=w, bias_init=b),
    lambda w, b: nn.Conv2d(2, 3, 3, weight_init=w, bias_init=b),
    lambda w, b: nn.BatchNorm1d(4, weight_init=w, bias_init=b),
], ids=["Linear", "Conv2d", "BatchNorm1d"])
def test_apply_does_not_run_the_initialisers(make):
    """flax's ``Module.param`` traces the initialiser on every apply (its shape check)."""
    w_init, w_calls = _counting(jinit.uniform(-0.5, 0.5))
    b_init, b_calls = _counting(jinit.uniform(-0.5, 0.5))
    module = make(w_init, b_init)
    x = jnp.ones((2, 4) if not isinstance(module, nn.Conv2d) else (1, 2, 5, 5))
    variables = module.init(jax.random.key(0), x, train=False) if isinstance(module, nn.BatchNorm1d) \
        else module.init(jax.random.key(0), x)
    assert len(w_calls) == 1 and len(b_calls) == 1
    apply = (lambda v: module.apply(v, x, train=False)) if isinstance(module, nn.BatchNorm1d) \
        else (lambda v: module.apply(v, x))
    apply(variables)
    jax.jit(apply)(variables)
    assert len(w_calls) == 1 and len(b_calls) == 1


class _Twins(fnn.Module):
    """One parameter through flax's ``Module.param``, one through ``param``, same initialiser."""

    @fnn.compact
    def __call__(self):
        a = self.param("a", jinit.normal(), (3, 5), jnp.float32)
        b = param(self, "b", jinit.normal(), (3, 5), jnp.float32)
        c = self.param("c", jinit.normal(), (4,), jnp.float32)
        return a, b, c


def test_initial_values_are_flax_params():
    """Each parameter gets the same key of the ``params`` stream as ``Module.param`` would give it:
    the values equal those of a module that uses ``Module.param`` throughout."""

    class AllFlax(fnn.Module):
        @fnn.compact
        def __call__(self):
            return (self.param("a", jinit.normal(), (3, 5), jnp.float32),
                    self.param("b", jinit.normal(), (3, 5), jnp.float32),
                    self.param("c", jinit.normal(), (4,), jnp.float32))

    ours = _Twins().init(jax.random.key(3))["params"]
    theirs = AllFlax().init(jax.random.key(3))["params"]
    for name in "abc":
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]))
    assert not np.array_equal(np.asarray(ours["a"]), np.asarray(ours["b"]))


def test_wrong_parameter_shape_is_flax_error():
    variables = nn.Linear(4, 3).init(jax.random.key(0), jnp.ones((2, 4)))
    with pytest.raises(errors.ScopeParamShapeError, match=r'"weight".*\(5, 4\).*\(3, 4\)'):
        nn.Linear(4, 5).apply(variables, jnp.ones((2, 4)))


def test_missing_parameter_is_an_error():
    with pytest.raises(errors.ScopeCollectionNotFound, match="params"):
        nn.Linear(4, 3).apply({}, jnp.ones((2, 4)))
    variables = nn.Linear(4, 3).init(jax.random.key(0), jnp.ones((2, 4)))
    del variables["params"]["bias"]
    with pytest.raises(errors.ScopeVariableNotFoundError, match="bias"):
        nn.Linear(4, 3).apply(variables, jnp.ones((2, 4)))


def test_boxed_parameters_are_unboxed():
    """An initialiser wrapped in ``nn.with_partitioning`` stores a boxed value; the layer reads the array."""
    module = nn.Linear(4, 3, weight_init=fnn.with_partitioning(jinit.uniform(-1.0, 1.0), (None, "model")))
    variables = module.init(jax.random.key(0), jnp.ones((2, 4)))
    assert isinstance(variables["params"]["weight"], fnn.Partitioned)
    y = module.apply(variables, jnp.ones((2, 4)))
    w = variables["params"]["weight"].value
    np.testing.assert_allclose(np.asarray(y), np.ones((2, 4)) @ np.asarray(w).T + np.asarray(variables["params"]["bias"]),
                               rtol=1e-6)
