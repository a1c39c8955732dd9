"""jaxlayers: PyTorch's torch.nn layer catalogue rebuilt on JAX.

>>> import jaxlayers as jl
>>> from jaxlayers import nn, functional as F, ops, interop, init
"""

from . import functional, init, interop, nn, ops

__version__ = "0.1.0"

__all__ = ["functional", "init", "interop", "nn", "ops", "__version__"]
