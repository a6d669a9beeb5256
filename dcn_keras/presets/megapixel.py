"""The `megapixel_mnist` preset: a DCN for images far larger than their objects."""

from dcn_keras.backend import keras
from dcn_keras.layers.attention_pooling2d import AttentionPooling2D
from dcn_keras.presets.blocks import conv
from dcn_keras.presets.blocks import top_conv

layers = keras.layers


def megapixel_mnist_towers(features=32, num_classes=10):
    """Towers for Megapixel MNIST: a cheap view of the whole canvas, full resolution where it matters.

    Coarse: conv 16@4x4/4 (each pixel read once, at a 4-pixel step a stroke
    still shows), conv 16@3x3/2, conv 32@3x3/2, conv `features`@1x1 (valid,
    ReLU): a cell every 16 input pixels seeing a 28-pixel window, for about
    70 multiply-adds per input pixel. (A single 8x8/8 first layer, 18 per
    pixel, never learned to read digits: docs/scaling.md.) Fine, on full-resolution 46x46 patches (a whole digit
    wherever it sits against the 16-pixel grid): conv 16@3x3, 2x2 max pool,
    conv 32@3x3, pool, conv 32@3x3, pool, conv 48@3x3, pool, conv
    `features`@1x1, all valid; run over a whole image it gives the coarse
    grid's 16-pixel steps. Top: conv 48@3x3/2, an attention pool (a softmax
    over positions, so the pooled vector is bounded on any canvas: the
    digits' readings weighted over the noise and the background), dense
    `num_classes`.
    """
    x = keras.Input((None, None, 1), name="images")
    h = conv(16, 4, strides=4, name="coarse_conv1")(x)
    h = conv(16, 3, strides=2, name="coarse_conv2")(h)
    h = conv(32, 3, strides=2, name="coarse_conv3")(h)
    h = conv(features, 1, name="coarse_conv4")(h)
    coarse = keras.Model(x, h, name="coarse")

    p = keras.Input((None, None, 1), name="patches")
    f = p
    for i, filters in enumerate((16, 32, 32, 48)):
        f = conv(filters, 3, name=f"fine_conv{i + 1}")(f)
        f = layers.MaxPooling2D(2, name=f"fine_pool{i + 1}")(f)
    fine = keras.Model(p, conv(features, 1, name="fine_conv5")(f), name="fine")

    grid = keras.Input((None, None, features), name="grid")
    h = AttentionPooling2D(name="top_pool")(top_conv(48, 3)(grid))
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def megapixel_mnist():
    # k=32: five digits, each inside about 2x2 to 3x3 cells of the 16-pixel
    # grid; the rest of the budget goes to noise blocks the coarse view
    # cannot tell from strokes.
    return dict(megapixel_mnist_towers(), image_shape=(1500, 1500, 1), num_patches=32)
