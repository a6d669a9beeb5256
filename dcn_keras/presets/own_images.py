"""The `images` preset: towers for a user's own images of any size."""

from dcn_keras.backend import keras
from dcn_keras.patch_geometry import PatchGeometry
from dcn_keras.presets.blocks import conv
from dcn_keras.presets.blocks import fine_tower_layers
from dcn_keras.presets.blocks import top_conv

layers = keras.layers

# The share of the image's area the k fine patches cover (before overlap):
# the fine pass then costs about this share of the fine model's arithmetic.
FINE_AREA_SHARE = 0.1


def images_towers(channels=3, num_classes=10, scale=1, features=48):
    """Towers for a user's own images of any size (`--dataset=folder`, `tfds:NAME`).

    The coarse tower is the cheap, low-resolution view, the fine tower the
    expensive, full-resolution one. Coarse: with `scale` > 1 an average pool
    by `scale` first, then conv 24@5x5/2, conv 48@3x3/2 (valid, ReLU): a cell
    every `4 * scale` pixels. Fine, on full-resolution patches: one 3x3
    stride-2 conv of 24 filters per halving of `scale` (`scale` 4: two),
    which read every pixel, then the cluttered MNIST fine tower with
    `features` filters (one vector per 14x14 input to it); all valid. Top:
    conv 96@3x3/2, global max pool, dense `num_classes`.
    """
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"scale={scale!r} is not valid; choose one of: 1, 2, 4, 8.")
    x = keras.Input((None, None, channels), name="images")
    h = layers.AveragePooling2D(scale, name="coarse_scale")(x) if scale > 1 else x
    h = conv(24, 5, strides=2, name="coarse_conv1")(h)
    h = conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    p = keras.Input((None, None, channels), name="patches")
    f, halvings = p, scale.bit_length() - 1
    for i in range(halvings):
        f = conv(24, 3, strides=2, name=f"fine_stem{i + 1}")(f)
    fine = keras.Model(p, fine_tower_layers(f, features), name="fine")
    grid = keras.Input((None, None, features), name="grid")
    h = layers.GlobalMaxPooling2D(name="top_pool")(top_conv(96, 3)(grid))
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def image_scale(image_shape):
    """The `images` preset's coarse `scale`: 1 up to 128 pixels a side, 2 up to 256, 4 up to 1024, then 8."""
    side = max(image_shape[:2])
    return 1 if side <= 128 else 2 if side <= 256 else 4 if side <= 1024 else 8


def images(image_shape=(128, 128, 3), num_classes=10):
    # k: enough patches to cover a tenth of the image's area, at least 4,
    # so the fine pass stays near a tenth of the fine model's cost at any size
    # (docs/design.md's table).
    towers = images_towers(image_shape[2], num_classes, image_scale(image_shape))
    geometry = PatchGeometry.from_towers(towers["coarse"], towers["fine"], tuple(image_shape))
    patch_area = geometry.patch_size[0] * geometry.patch_size[1]
    k = max(4, round(FINE_AREA_SHARE * image_shape[0] * image_shape[1] / patch_area))
    return dict(towers, image_shape=tuple(image_shape), num_patches=min(k, geometry.num_cells))
