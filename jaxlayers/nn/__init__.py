"""Flax linen modules with ``torch.nn``'s names, constructor arguments,
parameter names and weight layouts.

Flat namespace: ``from jaxlayers import nn; nn.Conv2d(3, 16, 3)``.
Each family lives in its own module; this file only re-exports them.
"""

from .activation import *  # noqa: F401,F403
from .adaptive_softmax import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .distance import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .fractional_pool import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .linear_cross_entropy import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .norm_extra import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .padding import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rearrange import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .resampling import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403

from . import utils  # noqa: E402,F401  (torch.nn.utils: a subpackage, not star-exported)
