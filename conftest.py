"""Settings shared by the test suite (tests/) and the doctests (jaxlayers/).

* float64 is enabled, so torch (float64) is a tight oracle and doctest output is
  the same on every machine; float32 tests pass explicit dtypes.
* Four host CPU devices exist so that data-parallel tests can shard.
* Autotuning is off unless a test turns it on: results and timings of the suite
  do not depend on measurements of the machine (tests/test_lowering.py covers it).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAXLAYERS_AUTOTUNE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
