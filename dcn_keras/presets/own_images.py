"""The `images` preset: towers for a user's own images of any size."""

from dcn_keras.backend import keras
from dcn_keras.presets.blocks import conv
from dcn_keras.presets.blocks import fine_tower
from dcn_keras.presets.blocks import top_conv

layers = keras.layers


def images_towers(channels=3, num_classes=10, scale=1, features=48):
    """Towers for a user's own images of any size (`--dataset=folder`, `tfds:NAME`).

    The `svhn` towers with a single softmax head: coarse conv 24@5x5/2, conv
    48@3x3/2 (valid, ReLU); fine the cluttered MNIST fine tower with 48
    filters; top conv 96@3x3/2, global max pool, dense `num_classes`. With
    `scale` > 1 both towers first average-pool the image by `scale`, so a
    cell and its patch cover `scale` times as many pixels (patches of
    14*`scale` pixels) and the grid stays near 16x16 cells per 64 pixels of
    the scaled image.
    """
    def scaled(x, tower):
        return layers.AveragePooling2D(scale, name=f"{tower}_scale")(x) if scale > 1 else x

    x = keras.Input((None, None, channels), name="images")
    h = conv(24, 5, strides=2, name="coarse_conv1")(scaled(x, "coarse"))
    h = conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    p = keras.Input((None, None, channels), name="patches")
    fine = keras.Model(p, fine_tower(channels, features)(scaled(p, "fine")), name="fine")
    grid = keras.Input((None, None, features), name="grid")
    h = layers.GlobalMaxPooling2D(name="top_pool")(top_conv(96, 3)(grid))
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def image_scale(image_shape):
    """The `images` preset's `scale` for an image size: 1 up to 128 pixels a side, 2 up to 256, then 4."""
    side = max(image_shape[:2])
    return 1 if side <= 128 else 2 if side <= 256 else 4


def images(image_shape=(128, 128, 3), num_classes=10):
    # k: a twentieth of the cells (at least 4), so the fine tower reads about
    # a twentieth of the image, whatever its size.
    scale = image_scale(image_shape)
    cells = 1
    for side in image_shape[:2]:
        cells *= ((side // scale - 5) // 2 + 1 - 3) // 2 + 1
    return dict(images_towers(image_shape[2], num_classes, scale), image_shape=tuple(image_shape),
                num_patches=max(4, round(cells / 20)))
