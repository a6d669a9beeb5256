"""Named DCN configurations: the paper's architectures as Keras models.

Each preset is a function returning the keyword arguments of
`DynamicCapacityNetwork` (towers included); `DynamicCapacityNetwork.from_preset`
looks them up by name. Every sub-network gets an explicit `keras.Input` with
`None` spatial sizes so that it never locks to the first batch's shape.

The presets live by family: `cluttered` (the paper's cluttered MNIST),
`house_numbers` (the `svhn` family, for SVHN and `mnist_numbers`),
`megapixel` (Megapixel MNIST) and `own_images` (a user's images); `blocks` holds the layers they share. This
module holds the registry and the shipped weights.
"""

import inspect
import os

from dcn_keras.presets.cluttered import cluttered_mnist
from dcn_keras.presets.cluttered import cluttered_mnist_fast
from dcn_keras.presets.cluttered import cluttered_mnist_towers
from dcn_keras.presets.house_numbers import svhn
from dcn_keras.presets.house_numbers import svhn_cropped
from dcn_keras.presets.house_numbers import svhn_cropped_towers
from dcn_keras.presets.house_numbers import svhn_patch_exact
from dcn_keras.presets.house_numbers import svhn_patch_exact_towers
from dcn_keras.presets.house_numbers import svhn_positional
from dcn_keras.presets.house_numbers import svhn_positional_towers
from dcn_keras.presets.house_numbers import svhn_reader
from dcn_keras.presets.house_numbers import svhn_reader_max
from dcn_keras.presets.house_numbers import svhn_reader_one_pool
from dcn_keras.presets.house_numbers import svhn_reader_placed
from dcn_keras.presets.house_numbers import svhn_reader_towers
from dcn_keras.presets.house_numbers import svhn_reader_wide
from dcn_keras.presets.house_numbers import svhn_towers
from dcn_keras.presets.megapixel import megapixel_mnist
from dcn_keras.presets.megapixel import megapixel_mnist_towers
from dcn_keras.presets.own_images import image_scale
from dcn_keras.presets.own_images import images
from dcn_keras.presets.own_images import images_towers


__all__ = ["PRESETS", "PRETRAINED", "cluttered_mnist", "cluttered_mnist_fast", "cluttered_mnist_towers",
           "image_scale", "images", "images_towers", "megapixel_mnist", "megapixel_mnist_towers", "preset_options", "svhn", "svhn_cropped",
           "svhn_cropped_towers", "svhn_patch_exact", "svhn_patch_exact_towers", "svhn_positional",
           "svhn_positional_towers", "svhn_reader", "svhn_reader_max", "svhn_reader_one_pool", "svhn_reader_placed",
           "svhn_reader_towers", "svhn_reader_wide", "svhn_towers",
           "weights_path"]

PRESETS = {
    "cluttered_mnist": cluttered_mnist,
    "cluttered_mnist_fast": cluttered_mnist_fast,
    "svhn": svhn,
    "svhn_positional": svhn_positional,
    "svhn_patch_exact": svhn_patch_exact,
    "svhn_reader": svhn_reader,
    "svhn_reader_max": svhn_reader_max,
    "svhn_reader_one_pool": svhn_reader_one_pool,
    "svhn_reader_placed": svhn_reader_placed,
    "svhn_reader_wide": svhn_reader_wide,
    "svhn_cropped": svhn_cropped,
    "images": images,
    "megapixel_mnist": megapixel_mnist,
}


def preset_options(name):
    """The arguments preset `name`'s builder takes (`images`: `image_shape`, `num_classes`)."""
    return tuple(inspect.signature(PRESETS[name]).parameters)


_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
# Preset -> its shipped weights by name (docs/results.md, "The shipped models").
# cluttered_mnist "pretrained": the paper's k=8 DCN trained on the 3,500
# embedded training digits, which anyone can re-make offline
# (saved_models/cluttered_mnist_dcn/1); "pretrained_full_mnist": the same
# recipe on MNIST's 50,000 training digits. cluttered_mnist_fast "pretrained":
# the default model, the k=16 DCN started from the fine model on full MNIST
# (saved_models/cluttered_mnist_fast_full_dcn/1, cluttered_mnist_fast.tflite);
# "pretrained_embedded": the same recipe on the embedded digits. svhn_reader
# "pretrained": a k=192 DCN reading mnist_numbers on 384-pixel canvases
# with an attention pool per head (saved_models/svhn_reader_numbers_dcn/4:
# the fine tower trained longer at 128 px, then the top and coarse tower
# trained at 384 px under it), trained on full MNIST; svhn_reader_one_pool
# "pretrained": the first one, with one pool for all heads (.../1), where
# the second's training starts.
# megapixel_mnist "pretrained": the k=32 DCN on 1500-px Megapixel MNIST
# canvases, trained on full MNIST (saved_models/megapixel_mnist_dcn/1).
PRETRAINED = {"megapixel_mnist": {"pretrained": "megapixel_mnist_dcn.weights.h5"},
              "cluttered_mnist": {"pretrained": "cluttered_mnist_dcn.weights.h5",
                                  "pretrained_full_mnist": "cluttered_mnist_full_dcn.weights.h5"},
              "cluttered_mnist_fast": {"pretrained": "cluttered_mnist_fast_full_dcn.weights.h5",
                                       "pretrained_embedded": "cluttered_mnist_fast_dcn.weights.h5"},
              "svhn_reader": {"pretrained": "svhn_reader_numbers_dcn_4.weights.h5"},
              "svhn_reader_one_pool": {"pretrained": "svhn_reader_numbers_dcn_1.weights.h5"}}


def weights_path(preset, weights):
    """The file `DynamicCapacityNetwork.from_preset(preset, weights=...)` loads, or None.

    Raises:
        ValueError: `preset` has no such pretrained weights, or `weights` is
            not None, one of their names or an existing `.weights.h5` file.
    """
    if weights is None:
        return None
    shipped = PRETRAINED.get(preset, {})
    if isinstance(weights, str) and weights.startswith("pretrained"):
        if weights not in shipped:
            with_weights = sorted(p for p in PRETRAINED if weights in PRETRAINED[p])
            raise ValueError(f"Preset {preset!r} has no {weights!r} weights; its shipped weights: "
                             f"{sorted(shipped) or 'none'}; presets with {weights!r}: {with_weights or 'none'}. "
                             "Use weights=None for random weights.")
        return os.path.join(_WEIGHTS_DIR, shipped[weights])
    if isinstance(weights, str) and weights.endswith(".weights.h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"weights={weights!r}: no such file.")
        return weights
    raise ValueError(f"weights={weights!r} is not valid; use None (random), a shipped name "
                     f"({', '.join(sorted({n for names in PRETRAINED.values() for n in names}))}) "
                     "or the path of a .weights.h5 file.")
