"""Cuts one input window per tile of selected coarse cells, for a fine pass shared by neighbours."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.grid_arithmetic import int_pair
from dcn_keras.layers.patch_gather import METHODS
from dcn_keras.layers.patch_gather import PatchGather


@keras.saving.register_keras_serializable(package="dcn_keras")
class TileGather(keras.layers.Layer):
    """Gathers one input window per `tile` x `tile` block of the grid holding a selected cell.

    Neighbouring cells' patches overlap (a 14-pixel patch every 4 pixels
    shares most of its pixels with the next), so a fine tower run patch by
    patch repeats most of its work on a compact object. This layer cuts the
    grid into `tile` x `tile` blocks and returns, for each block holding at
    least one selected cell, the window covering all its cells' patches
    (`patch_size + (tile - 1) * strides` pixels), once, however many of its
    cells were chosen. A fine tower of valid convolutions whose steps
    multiply to `strides` (`patch_exact_fine_tower`) maps that window to a
    `tile` x `tile` grid whose vector `(r, c)` is exactly the one it gives
    on cell `(r, c)`'s own patch: `pick` indexes the selected cells' vectors
    in its flattened output. The number of windows varies with the images.

    Args:
        patch_size: int or pair, the fine tower's patch size.
        strides: int or pair, input pixels between neighbouring cells.
        offset: int or pair, input coordinate of cell `(0, 0)`'s patch corner.
        grid_shape: pair, rows and columns of the coarse grid.
        tile: int >= 1, cells per side of a block. Defaults to `3`.
        method: str, `"index"` (default) or `"extract_patches"`; see `PatchGather`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        images: tensor `[batch, height, width, channels]`.
        locations: int tensor `[batch, k, 2]` of `(row, col)` grid cells.

    Returns:
        `(windows, pick)`: windows `[n, window_h, window_w, channels]` (in
        the order their blocks first hold a selected cell), and int32 `pick`
        `[batch, k]`, the row of each selected cell's vector in the fine
        tower's output on `windows` reshaped to `[n * tile * tile, D]`.

    Example:
    ```python
    gather = TileGather(14, strides=4, offset=0, grid_shape=(94, 94), tile=3)
    windows, pick = gather(images, locations)  # windows [n, 22, 22, 3]
    vectors = tf.gather(tf.reshape(fine(windows), [-1, 48]), pick)  # [B, k, 48]
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, patch_size, strides, offset, grid_shape, tile=3, method="index", **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int_pair(patch_size, "patch_size", 1)
        self.strides = int_pair(strides, "strides", 1)
        self.offset = int_pair(offset, "offset")
        self.grid_shape = int_pair(grid_shape, "grid_shape", 1)
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise ValueError(f"`tile` must be an int >= 1; got {tile!r}.")
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
        self.tile = tile
        self.method = method
        self.tile_grid = tuple(-(-n // tile) for n in self.grid_shape)
        self.window_size = tuple(p + (tile - 1) * s for p, s in zip(self.patch_size, self.strides))
        self._windows = PatchGather(self.window_size, tuple(s * tile for s in self.strides), self.offset,
                                    self.tile_grid, method=method, dtype=self.dtype_policy)
        self.built = True  # Stateless: nothing to build.

    def check_fine_tower(self, fine, channels, name="tile"):
        """Raises a ValueError unless `fine` gives each window's cells their patches' vectors.

        That takes unpadded layers (a padded one sees zeros at a patch's
        edge where the window has the neighbours' pixels) mapping a window to
        a `tile` x `tile` grid. `name` is the argument the message names.
        """
        shape = tuple(fine.compute_output_shape((None, *self.window_size, channels))[1:3])
        padded = [layer.name for layer in fine.layers if getattr(layer, "padding", "valid") != "valid"]
        if shape != (self.tile, self.tile) or padded:
            found = f"pads in {', '.join(padded)}" if padded else f"gives {shape[0]}x{shape[1]}"
            height, width = self.window_size
            raise ValueError(
                f"{name}={self.tile} needs a fine tower of unpadded layers that maps a {height}x{width} "
                f"window to a {self.tile}x{self.tile} grid of its patches' vectors (as "
                f"`patch_exact_fine_tower`); this one {found}. Use {name}=1.")

    def call(self, images, locations):
        locations = tf.cast(locations, tf.int32)
        tile, (tile_rows, tile_cols) = self.tile, self.tile_grid
        shape = tf.shape(locations)
        block = locations // tile
        image = tf.broadcast_to(tf.range(shape[0])[:, None], shape[:2])
        # Blocks numbered across the batch, so that one unique covers every image.
        ids = (image * tile_rows + block[..., 0]) * tile_cols + block[..., 1]
        blocks, which = tf.unique(tf.reshape(ids, [-1]))
        per_image = tile_rows * tile_cols
        at = blocks % per_image
        windows = self._windows(images, tf.stack([at // tile_cols, at % tile_cols], axis=-1),
                                batch_index=blocks // per_image)
        within = tf.reshape((locations[..., 0] % tile) * tile + locations[..., 1] % tile, [-1])
        return windows, tf.reshape(which * tile * tile + within, shape[:2])

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, strides=self.strides, offset=self.offset,
                      grid_shape=self.grid_shape, tile=self.tile, method=self.method)
        return config
