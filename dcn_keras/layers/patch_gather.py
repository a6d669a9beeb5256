"""Cuts the fine tower's input patches behind selected coarse cells."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.grid_arithmetic import int_pair
from dcn_keras.grid_arithmetic import patches_span

METHODS = ("index", "extract_patches")


@keras.saving.register_keras_serializable(package="dcn_keras")
class PatchGather(keras.layers.Layer):
    """Gathers the input patch behind each selected coarse cell.

    Cell `(i, j)` reads the `patch_size` window whose top-left input pixel is
    `offset + (i, j) * strides`. Windows past the image edge read zeros, on
    every side (never noise, never clamped). Both methods return identical
    patches; `"index"` gathers only the selected windows and is the default
    because it is faster (see the README's Performance section), while
    `"extract_patches"` cuts every window with `tf.image.extract_patches`
    and picks the selected ones.

    Args:
        patch_size: int or pair, the fine tower's patch size.
        strides: int or pair, input pixels between neighbouring cells.
        offset: int or pair, input coordinate of cell `(0, 0)`'s patch
            corner; negative values start in the zero padding.
        grid_shape: pair, rows and columns of the coarse grid.
        method: str, `"index"` (default) or `"extract_patches"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        images: tensor `[batch, height, width, channels]`.
        locations: int tensor `[batch, k, 2]` of `(row, col)` grid cells,
            or, with `batch_index`, `[n, 2]`.
        batch_index: int tensor `[n]` or None (default): the image of each
            of `n` locations, for a flat list (a varying number per image).

    Returns:
        Tensor `[batch, k, patch_h, patch_w, channels]` (with `batch_index`:
        `[n, patch_h, patch_w, channels]`).

    Example:
    ```python
    gather = PatchGather(14, strides=4, offset=-2, grid_shape=(23, 23))
    patches = gather(images, locations)  # [B, k, 14, 14, 1]
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, patch_size, strides, offset, grid_shape, method="index", **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int_pair(patch_size, "patch_size", 1)
        self.strides = int_pair(strides, "strides", 1)
        self.offset = int_pair(offset, "offset")
        self.grid_shape = int_pair(grid_shape, "grid_shape", 1)
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
        self.method = method
        self.built = True  # Stateless: nothing to build.

    def _pad(self, images):
        pads = [[0, 0]]
        for axis in (0, 1):
            size = images.shape[axis + 1]
            if size is None:
                size = tf.shape(images)[axis + 1]
            before, end = patches_span(self.offset[axis], self.grid_shape[axis], self.strides[axis],
                                       self.patch_size[axis])
            pads.append([before, tf.maximum(0, end - size)])
        pads.append([0, 0])
        return tf.pad(images, pads)

    def call(self, images, locations, batch_index=None):
        padded = self._pad(images)
        locations = tf.cast(locations, tf.int32)
        if batch_index is not None:
            batch_index = tf.cast(batch_index, tf.int32)
        # Corner of each window in padded coordinates.
        shift = [max(0, -o) + o for o in self.offset]
        corner = locations * self.strides + shift
        if self.method == "index":
            return self._index_gather(padded, corner, batch_index)
        return self._extract_patches(padded, locations, shift, batch_index)

    def _index_gather(self, padded, corner, batch_index):
        # One gather from the whole batch flattened to pixels: window pixel
        # (u, v) of a patch with corner (y, x) in image b is flat index
        # (b * height + y + u) * width + x + v. (No `batch_dims`: it expands
        # to dozens of small ops, which dominate at batch 1.)
        shape = tf.shape(padded)
        height, width = shape[1], shape[2]
        flat = tf.reshape(padded, [-1, padded.shape[-1]])
        window = tf.range(self.patch_size[0])[:, None] * width + tf.range(self.patch_size[1])
        if batch_index is None:
            batch_index = tf.range(shape[0])[:, None]  # [B, 1]: each row of locations its image.
        rows = corner[..., 0] + batch_index * height
        start = rows * width + corner[..., 1]  # [B, k]
        index = start[..., None, None] + window  # [B, k, ph, pw]
        return tf.gather(flat, index)  # [B, k, ph, pw, C]

    def _extract_patches(self, padded, locations, shift, batch_index):
        # Start the window lattice at cell (0, 0)'s corner so that window
        # (i, j) of extract_patches is exactly cell (i, j)'s patch.
        padded = padded[:, shift[0]:, shift[1]:, :]
        channels = padded.shape[-1]
        windows = tf.image.extract_patches(
            padded,
            sizes=[1, self.patch_size[0], self.patch_size[1], 1],
            strides=[1, self.strides[0], self.strides[1], 1],
            rates=[1, 1, 1, 1],
            padding="VALID",
        )
        if batch_index is None:
            picked = tf.gather_nd(windows, locations, batch_dims=1)  # [B, k, ph*pw*C]
        else:
            picked = tf.gather_nd(windows, tf.concat([batch_index[:, None], locations], axis=-1))
        shape = tf.concat(
            [tf.shape(locations)[:-1], [self.patch_size[0], self.patch_size[1], channels]],
            axis=0,
        )
        return tf.reshape(picked, shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            patch_size=self.patch_size,
            strides=self.strides,
            offset=self.offset,
            grid_shape=self.grid_shape,
            method=self.method,
        )
        return config
