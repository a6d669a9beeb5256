"""Max-pools a map of any size to a fixed grid of bands, keeping their order."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.grid_arithmetic import int_pair


def _bounds(size, bins, i):
    # Bin i covers [floor(i * size / bins), ceil((i + 1) * size / bins)):
    # never empty for size >= 1, overlapping by a cell where size % bins != 0.
    return (i * size) // bins, -((-(i + 1) * size) // bins)


def _bin_masks(size, bins, trailing):
    # One bool mask per bin over an axis of `size` cells, shaped to broadcast
    # over `trailing` axes after it. A masked maximum stands in for a slice
    # x[:, a:b]: the slice's gradient (StridedSliceGrad, needed by the
    # entropy-gradient saliency) is no LiteRT builtin, and SelectV2's is.
    position = tf.range(size)
    masks = []
    for i in range(bins):
        start, end = _bounds(size, bins, i)
        inside = tf.logical_and(position >= start, position < end)
        masks.append(tf.reshape(inside, [-1] + [1] * trailing))
    return masks


def _masked_max(x, mask):
    # The maximum over axis 1 of the cells `mask` keeps.
    return tf.reduce_max(tf.where(mask, x, tf.cast(x.dtype.min, x.dtype)), axis=1)


@keras.saving.register_keras_serializable(package="dcn_keras")
class BandMaxPooling2D(keras.layers.Layer):
    """Adaptive max pooling to `output_size` bins that also runs on unknown sizes.

    Splits the map's rows into `output_size[0]` bands and its columns into
    `output_size[1]`, each band as even as the size allows (PyTorch's
    `AdaptiveMaxPool2d` bins), and takes the maximum of each cell of bands.
    The result keeps the bands' order, so a following Dense layer knows
    which column a feature came from: the positional top of the
    `svhn_positional` preset reads a number's digits left to right with it.
    `keras.layers.AdaptiveMaxPooling2D` does the same but needs the spatial
    size known when the graph is traced, which a SavedModel serving images
    of any size (or a fine baseline's map) does not have.

    Args:
        output_size: int or pair of ints >= 1, the bands `(rows, columns)`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `[batch, height, width, channels]`, height and width
            at least 1 (known or not).

    Returns:
        Tensor `[batch, rows, columns, channels]`.

    Example:
    ```python
    pooled = BandMaxPooling2D((2, 6))(feature_map)  # [B, 2, 6, C]
    ```

    Reference: He et al., "Spatial Pyramid Pooling in Deep Convolutional
    Networks for Visual Recognition", ECCV 2014 (one level of it).
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = int_pair(output_size, "output_size", 1)
        self.built = True  # Stateless: nothing to build.

    def call(self, inputs):
        shape = tf.shape(inputs)
        rows, cols = self.output_size
        # Column masks are built once and shared by every row band.
        columns = _bin_masks(shape[2], cols, trailing=1)
        out = []
        for row in _bin_masks(shape[1], rows, trailing=2):
            band = _masked_max(inputs, row)
            out.append(tf.stack([_masked_max(band, column) for column in columns], axis=1))
        return tf.stack(out, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}
