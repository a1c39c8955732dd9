"""Test configuration shared by the whole suite.

* float64 is enabled so that torch (float64) is a tight oracle; float32 tests
  pass explicit dtypes.
* Four host CPU devices exist so that data-parallel tests can shard; everything
  else runs on device 0 as usual.
* torch is the oracle: float64 by default, a few threads.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
