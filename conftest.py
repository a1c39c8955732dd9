"""Settings shared by the test suite (tests/) and the doctests (jaxlayers/).

* float64 is enabled for the tests, so torch (float64) is a tight oracle; float32
  tests pass explicit dtypes.  Doctests run in JAX's default float32, as a user's
  session does.
* Four host CPU devices exist so that data-parallel tests can shard; XLA:CPU compiles
  for speed of compilation (compile time dominates the suite), where its version
  knows the flags.
* Autotuning is off unless a test turns it on: results and timings of the suite
  do not depend on measurements of the machine (tests/test_lowering.py covers it).
"""

import os
import subprocess
import sys

# The suite compiles thousands of small programs, so XLA:CPU's compile time dominates it: backend
# optimisation level 0 and the older (non-MLIR) fusion emitters compile ~2x faster and run such
# inputs as fast (float semantics unchanged: no fast-math); one LLVM module per program instead of
# several compiled on threads (two test workers already fill a 2-core machine: ~5 % off the suite,
# ~25 % off a lone compile).  These flags are XLA-version specific
# and an unknown flag aborts XLA, so they are probed once (xdist workers inherit the result).
_DEVICES = "--xla_force_host_platform_device_count=4"
_FAST_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                 "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1")


def _xla_accepts(flags):
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


if "XLA_FLAGS" not in os.environ:
    fast = f"{_DEVICES} {_FAST_COMPILE}"
    os.environ["XLA_FLAGS"] = fast if _xla_accepts(fast) else _DEVICES
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
