"""Test configuration of tests/ (x64, host devices and autotuning: ../conftest.py).

* torch is the oracle: float64 by default, one thread.
* hypothesis profile "ci": 25 derandomised examples.
"""

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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_settings: run the test under the 'reference' and the 'auto' lowering settings")


def pytest_generate_tests(metafunc):
    """Tests marked ``both_settings`` run once per lowering setting (``jaxlayers.config``)."""
    if metafunc.definition.get_closest_marker("both_settings") and "lowering_setting" not in metafunc.fixturenames:
        metafunc.fixturenames.append("lowering_setting")
        metafunc.parametrize("lowering_setting", ["reference", "auto"], indirect=True)


@pytest.fixture
def lowering_setting(request):
    from jaxlayers import config

    with config.lowering(request.param):
        yield request.param
