from dcn_keras.models.dynamic_capacity_network import DynamicCapacityNetwork
from dcn_keras.models.loading import load_model
from dcn_keras.models.loading import with_num_patches
from dcn_keras.models.loading import with_dtype_policy
