"""dcn_keras: Dynamic Capacity Networks (Almahairi et al., ICML 2016) in Keras 3."""

from dcn_keras import backend as _backend  # noqa: F401  (sets KERAS_BACKEND first)
from dcn_keras.layers import CellScatter
from dcn_keras.layers import EntropySaliency
from dcn_keras.layers import PatchGather
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.patch_geometry import PatchGeometry

__version__ = "0.1.0"
