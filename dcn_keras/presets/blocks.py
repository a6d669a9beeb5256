"""Layer builders the presets' towers share."""

from dcn_keras.backend import keras
from dcn_keras.layers.phase_gradient_conv2d import PhaseGradientConv2D

layers = keras.layers


def conv(filters, kernel, strides=1, padding="valid", name=None):
    """A ReLU `Conv2D`, valid padding unless `padding` says otherwise."""
    return layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, activation="relu", name=name
    )


def top_conv(filters, kernel):
    """The top network's first layer: a stride-2 ReLU `PhaseGradientConv2D` named `top_conv`."""
    # The saliency map is this conv's input gradient, taken at every
    # inference: PhaseGradientConv2D computes it faster (same forward pass).
    return PhaseGradientConv2D(filters, kernel, strides=2, activation="relu", name="top_conv")


def fine_tower(channels, features):
    """The paper's cluttered MNIST fine tower with `features` filters: one vector per 14x14 patch."""
    x = keras.Input((None, None, channels), name="patches")
    return keras.Model(x, fine_tower_layers(x, features), name="fine")


def fine_tower_layers(x, features):
    """`fine_tower`'s layers applied to `x`: 14x14 pixels of `x` give one vector."""
    h = conv(features, 3, name="fine_conv1")(x)
    h = conv(features, 3, padding="same", name="fine_conv2")(h)
    h = layers.MaxPooling2D(2, name="fine_pool1")(h)
    h = conv(features, 3, padding="same", name="fine_conv3")(h)
    h = conv(features, 3, padding="same", name="fine_conv4")(h)
    h = layers.MaxPooling2D(2, name="fine_pool2")(h)
    return conv(features, 3, name="fine_conv5")(h)


def patch_exact_fine_tower(channels, features, widths=None):
    """A fine tower whose whole-image grid equals its patch vectors (`svhn_patch_exact`).

    `widths`: the filters of its first three convolutions (default: `features`
    each); the last gives the `features` of the grid.
    """
    # Valid convolutions only, and strides that keep every window on the
    # 4-pixel cell grid: a 14x14 patch gives one vector, the padded image a
    # grid of them, and each grid vector is exactly its patch's vector.
    widths = (features,) * 3 if widths is None else tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths={widths!r} is not valid: give three positive integers, one per inner convolution.")
    x = keras.Input((None, None, channels), name="patches")
    h = conv(widths[0], 3, name="fine_conv1")(x)
    h = conv(widths[1], 3, name="fine_conv2")(h)
    h = layers.MaxPooling2D(2, name="fine_pool1")(h)
    h = conv(widths[2], 3, name="fine_conv3")(h)
    h = conv(features, 3, strides=2, name="fine_conv4")(h)
    return keras.Model(x, h, name="fine")
