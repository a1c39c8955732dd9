"""Tensor ops with torch's semantics where they differ from ``jax.numpy``.

Flat namespace: ``from jaxlayers import ops; ops.split(x, 2, dim=1)``.
"""

from .matmul import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
