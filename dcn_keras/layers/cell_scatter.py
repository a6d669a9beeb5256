"""Writes fine feature vectors into the coarse grid."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf


@keras.saving.register_keras_serializable(package="dcn_keras")
class CellScatter(keras.layers.Layer):
    """Builds the refined grid: fine vectors at selected cells, coarse elsewhere.

    Gradients flow to whichever tower produced each cell: the coarse grid
    receives none at the selected cells, the fine vectors receive theirs.
    The selected cells of one example must be distinct (top-k cells are).

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        grid: tensor `[batch, rows, cols, channels]`.
        locations: int tensor `[batch, k, 2]` of `(row, col)` cells.
        vectors: tensor `[batch, k, channels]`, written at `locations`.

    Returns:
        Tensor shaped like `grid`.

    Example:
    ```python
    refined = CellScatter()(coarse_grid, locations, fine_vectors)
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016, Eq. 4.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # Stateless: nothing to build.

    def call(self, grid, locations, vectors):
        # Flat cell indices into the grid reshaped to [B * rows * cols, D]:
        # fewer ops than an [B, k, 3] index, which matters at batch 1.
        locations = tf.cast(locations, tf.int32)
        shape = tf.shape(grid)
        rows, cols = shape[1], shape[2]
        batch = tf.range(shape[0])[:, None]
        index = (batch * rows + locations[..., 0]) * cols + locations[..., 1]  # [B, k]
        flat = tf.reshape(grid, [-1, grid.shape[-1]])
        updates = tf.reshape(tf.cast(vectors, grid.dtype), [-1, grid.shape[-1]])
        flat = tf.tensor_scatter_nd_update(flat, tf.reshape(index, [-1, 1]), updates)
        return tf.reshape(flat, shape)

    def compute_output_shape(self, grid_shape, locations_shape, vectors_shape):
        return grid_shape
