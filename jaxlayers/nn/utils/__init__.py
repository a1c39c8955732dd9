"""``torch.nn.utils`` for jaxlayers: same layout, so imports port one for one.

* :mod:`.parametrizations` (weight_norm, spectral_norm, orthogonal) and :mod:`.parametrize`
  (the wrapper behind them, ``remove_parametrizations``);
* the old hook API: :func:`weight_norm`/:func:`remove_weight_norm`,
  :func:`spectral_norm`/:func:`remove_spectral_norm`;
* :mod:`.rnn`: ``PackedSequence`` and the pack/pad functions;
* gradient clipping on pytrees (:func:`clip_grad_norm_`, ...), also as optax transformations;
* :func:`parameters_to_vector`/:func:`vector_to_parameters`;
* :func:`fuse_conv_bn_eval`/:func:`fuse_linear_bn_eval` on variable dicts.
"""

from . import parametrizations, parametrize, rnn
from .clip_grad import (
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)
from .convert_parameters import parameters_to_vector, vector_to_parameters
from .fusion import (
    fuse_conv_bn_eval,
    fuse_conv_bn_weights,
    fuse_linear_bn_eval,
    fuse_linear_bn_weights,
)
from .spectral_norm import remove_spectral_norm, spectral_norm
from .weight_norm import remove_weight_norm, weight_norm

__all__ = [
    "parametrizations",
    "parametrize",
    "rnn",
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "parameters_to_vector",
    "vector_to_parameters",
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "fuse_linear_bn_eval",
    "fuse_linear_bn_weights",
    "weight_norm",
    "remove_weight_norm",
    "spectral_norm",
    "remove_spectral_norm",
]
