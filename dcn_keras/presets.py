"""Named DCN configurations: the paper's architectures as Keras models.

Each preset is a function returning the keyword arguments of
`DynamicCapacityNetwork` (towers included); `DynamicCapacityNetwork.from_preset`
looks them up by name. Every sub-network gets an explicit `keras.Input` with
`None` spatial sizes so that it never locks to the first batch's shape.
"""

from dcn_keras.backend import keras

layers = keras.layers


def _conv(filters, kernel, strides=1, padding="valid", name=None):
    return layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, activation="relu", name=name
    )


def cluttered_mnist_towers(channels=1, features=24, num_classes=10):
    """The paper's cluttered MNIST towers (Almahairi et al. 2016, Sec. 4.1).

    Coarse: conv 12@7x7/2, conv 24@3x3/2 (valid, ReLU): 100x100 -> 23x23x24,
    each cell seeing an 11x11 window. Fine: five 3x3 convs of 24 filters,
    2x2 max pools after the 2nd and 4th, 1-pixel zero padding on all but the
    first and last: one 24-vector per 14x14 patch. Top: conv 96@4x4/2,
    global max pool, dense logits.
    """
    x = keras.Input((None, None, channels), name="images")
    h = _conv(12, 7, strides=2, name="coarse_conv1")(x)
    h = _conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")

    x = keras.Input((None, None, channels), name="patches")
    h = _conv(features, 3, name="fine_conv1")(x)
    h = _conv(features, 3, padding="same", name="fine_conv2")(h)
    h = layers.MaxPooling2D(2, name="fine_pool1")(h)
    h = _conv(features, 3, padding="same", name="fine_conv3")(h)
    h = _conv(features, 3, padding="same", name="fine_conv4")(h)
    h = layers.MaxPooling2D(2, name="fine_pool2")(h)
    h = _conv(features, 3, name="fine_conv5")(h)
    fine = keras.Model(x, h, name="fine")

    x = keras.Input((None, None, features), name="grid")
    h = _conv(96, 4, strides=2, name="top_conv")(x)
    h = layers.GlobalMaxPooling2D(name="top_pool")(h)
    logits = layers.Dense(num_classes, name="logits")(h)
    top = keras.Model(x, logits, name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def cluttered_mnist():
    return dict(
        cluttered_mnist_towers(),
        image_shape=(100, 100, 1),
        num_patches=8,
    )


PRESETS = {
    "cluttered_mnist": cluttered_mnist,
}
