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
        locations = tf.cast(locations, tf.int32)
        batch_index = tf.broadcast_to(
            tf.range(tf.shape(locations)[0])[:, None, None],
            tf.concat([tf.shape(locations)[:2], [1]], axis=0),
        )
        indices = tf.concat([batch_index, locations], axis=-1)  # [B, k, 3]
        return tf.tensor_scatter_nd_update(grid, indices, tf.cast(vectors, grid.dtype))

    def compute_output_shape(self, grid_shape, locations_shape, vectors_shape):
        return grid_shape
