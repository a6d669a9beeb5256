"""How a DCN runs its fine tower on the chosen cells: patch by patch, or block by block."""

from dcn_keras.backend import tf


def fine_pass(fine, patch_gather, tile_gather=None):
    """The fine pass `DynamicCapacityNetwork` calls: `(images, locations, training)` -> `[batch, k, D]`.

    Args:
        fine: `keras.Model`, the fine tower.
        patch_gather: a `PatchGather` cutting each cell's patch.
        tile_gather: a `TileGather` (`fine_tile > 1`), or None: patch by patch.
    """
    return _PerPatch(fine, patch_gather) if tile_gather is None else _PerBlock(fine, tile_gather)


class _PerPatch:
    # The paper's: one fine-tower call on all `batch * k` patches.
    def __init__(self, fine, patch_gather):
        self.fine, self.patch_gather = fine, patch_gather

    def __call__(self, images, locations, training):
        patches = self.patch_gather(images, locations)  # [B, k, ph, pw, C]
        batch = tf.shape(patches)[0]
        patches = tf.reshape(patches, [-1, *patches.shape[2:]])
        k = locations.shape[1] if locations.shape[1] is not None else tf.shape(locations)[1]
        return tf.reshape(self.fine(patches, training=training), [batch, k, -1])


class _PerBlock:
    # One fine-tower call on the windows of the grid's blocks that hold a
    # chosen cell; the chosen cells' vectors are then picked from its output.
    def __init__(self, fine, tile_gather):
        self.fine, self.tile_gather = fine, tile_gather

    def __call__(self, images, locations, training):
        windows, pick = self.tile_gather(images, locations)
        out = self.fine(windows, training=training)
        return tf.gather(tf.reshape(out, [-1, out.shape[-1]]), pick)
