"""Settings shared by the test suite (tests/) and the doctests (jaxlayers/).

* float64 is enabled for the tests, so torch (float64) is a tight oracle; float32
  tests pass explicit dtypes.  Doctests run in JAX's default float32, as a user's
  session does.
* Four host CPU devices exist so that data-parallel tests can shard; XLA's backend
  optimisation level is 0 (compile time dominates the suite).
* Autotuning is off unless a test turns it on: results and timings of the suite
  do not depend on measurements of the machine (tests/test_lowering.py covers it).
"""

import os

# the suite compiles thousands of small programs: XLA:CPU's backend optimisations cost more
# compile time than they save on such inputs (float semantics are unchanged: no fast-math)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAXLAYERS_AUTOTUNE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctests_in_float32(request):
    """Doctests run as a user's session does, with JAX's default float32 (the tests use x64)."""
    from _pytest.doctest import DoctestItem

    if not isinstance(request.node, DoctestItem):
        yield
        return
    with jax.enable_x64(False):
        yield
