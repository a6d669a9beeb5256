from dcn_keras.layers.cell_scatter import CellScatter
from dcn_keras.layers.entropy_saliency import EntropySaliency
from dcn_keras.layers.patch_gather import PatchGather
