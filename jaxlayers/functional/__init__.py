"""Pure functions with ``torch.nn.functional``'s names and signatures.

Flat namespace: ``from jaxlayers import functional as F; F.conv2d(...)``.
Each family lives in its own module; this file only re-exports them.
"""

from .activation import *  # noqa: F401,F403
from .adaptive_softmax import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .distance import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .fractional_pool import *  # noqa: F401,F403
from .grid_sample import *  # noqa: F401,F403
from .grouped_mm import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .linear_cross_entropy import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .padding import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rearrange import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .resampling import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403

# torch's in-place forms (``F.relu_(x)``): JAX arrays are immutable, so each is its pure function and
# returns the result; a ported ``x = F.relu_(x)`` works, a bare ``F.relu_(x)`` changes nothing.
relu_ = relu  # noqa: F405
elu_ = elu  # noqa: F405
celu_ = celu  # noqa: F405
selu_ = selu  # noqa: F405
leaky_relu_ = leaky_relu  # noqa: F405
hardtanh_ = hardtanh  # noqa: F405
rrelu_ = rrelu  # noqa: F405
threshold_ = threshold  # noqa: F405
