"""Where a reader's digit heads look, and the place loss that puts each on its own digit."""

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.attention_pooling2d import AttentionPooling2D

# Keeps the log finite where a head puts no weight on its digit yet.
_EPSILON = 1e-6


class HeadPlaces:
    """The digit heads' attention over a reader top's readings, and a loss on where it falls.

    A top whose digit heads each pool its readings by their own attention
    (`svhn_reader`: `top_pool_digit_1`, ...) learns from the cross-entropies
    alone where each head looks, and measured, the heads of the third to
    fifth places read their digit from 23 to 54 pixels off (docs/scaling.md,
    "Each head taught its place"). Given each digit's box, the place loss of
    head `i` is `-log` of the attention weight it puts on the readings
    centred on digit `i`: within half a reading step or half the box's width
    of the box's centre along the row, and within a step or half its height
    across rows. It is summed over the digits a number has (a zero-width box
    is past its end). The centre of each reading's window on the image is
    measured once, from the gradient of the reading's row or column with
    respect to the grid on a copy of the reading layers with kernels of
    ones (every path counts alike, whatever the trained weights lean to).

    Args:
        top: `keras.Model`, a DCN's top whose `digit_1`, `digit_2`, ... heads
            each have an `AttentionPooling2D` named `top_pool_<head>`.
        geometry: `PatchGeometry`, the DCN's: its grid shape, and the image
            pixels behind each cell.

    Example:
    ```python
    places = HeadPlaces(dcn.top, dcn.geometry)
    loss = places.loss(boxes, stages.refined_grid)  # [batch]
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016
    (the DCN); Ilse et al., "Attention-based Deep Multiple Instance
    Learning", ICML 2018 (the pooling whose weights it supervises).
    """

    def __init__(self, top, geometry):
        self.top = top
        self.geometry = geometry
        self.pools = _digit_pools(top)
        scored = [p.input[0] if isinstance(p.input, (list, tuple)) else p.input for p in self.pools]
        self.read = keras.Model(top.input, scored, name="head_readings")
        self.row_centres, self.column_centres = _reading_centres(self.read, geometry)

    def weights(self, grid, training=False):
        """Each digit head's attention, float32 `[batch, rows, columns]` of readings, in place order."""
        maps = self.read(grid, training=training)
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        return [pool.attention_weights(m) for pool, m in zip(self.pools, maps)]

    def loss(self, boxes, grid, training=False):
        """The place loss of each example, float32 `[batch]`: `head_losses` summed over the heads."""
        return tf.reduce_sum(self.head_losses(boxes, grid, training), axis=1)

    def head_losses(self, boxes, grid, training=False):
        """Each digit head's place loss, float32 `[batch, digits]` (0 past a number's end).

        Args:
            boxes: `[batch, digits, 4]` `[top, left, height, width]` in image
                pixels, one per digit head (zeros past the number's end).
            grid: the map the top reads (`Stages.refined_grid`).
        """
        boxes = tf.cast(boxes, tf.float32)
        if boxes.shape.rank != 3 or boxes.shape[-1] != 4 or boxes.shape[1] not in (None, len(self.pools)):
            raise ValueError(f"The digits' boxes must have shape [batch, {len(self.pools)}, 4] "
                             f"([top, left, height, width] per digit head); got {tuple(boxes.shape)}.")
        rows, columns = tf.constant(self.row_centres), tf.constant(self.column_centres)
        row_step, column_step = _step(self.row_centres), _step(self.column_centres)
        losses = []
        for i, weights in enumerate(self.weights(grid, training)):
            top, left, height, width = tf.unstack(boxes[:, i], axis=-1)
            in_rows = _near(rows, top + height / 2, tf.maximum(height / 2, row_step))
            in_columns = _near(columns, left + width / 2, tf.maximum(width / 2, column_step / 2))
            inside = tf.cast(tf.logical_and(in_rows[:, :, None], in_columns[:, None, :]), tf.float32)
            mass = tf.reduce_sum(weights * inside, axis=[1, 2])
            losses.append(tf.where(width > 0, -tf.math.log(mass + _EPSILON), 0.0))
        return tf.stack(losses, axis=1)


def _digit_pools(top):
    # The attention pool of each digit head, in place order.
    heads = sorted((n for n in (top.output if isinstance(top.output, dict) else {}) if n.startswith("digit_")),
                   key=lambda n: int(n.split("_")[1]))
    pools = []
    for head in heads:
        layer = next((l for l in top.layers if l.name == f"top_pool_{head}"), None)
        if not isinstance(layer, AttentionPooling2D):
            break
        pools.append(layer)
    if not heads or len(pools) != len(heads):
        raise ValueError("place_weight needs a top whose digit heads each pool by their own attention "
                         "(`top_pool_digit_1`, ...: the svhn_reader preset); this top "
                         f"{'has no digit heads' if not heads else 'has none for ' + heads[len(pools)]}.")
    return pools


def _reading_centres(read, geometry):
    # The image row of each reading row's window centre, and the column of each reading column's: the
    # centre of the grid cells it reads, each weighted by the paths from it. On a copy of `read` with
    # kernels of ones and zero biases every path counts alike, so the centres are the windows' own,
    # not where some trained or random weights happen to lean.
    window = keras.models.clone_model(read)
    for variable in window.weights:
        variable.assign(tf.ones_like(variable) if len(variable.shape) > 1 else tf.zeros_like(variable))
    grid = tf.ones((1, *geometry.grid_shape, read.input.shape[-1]))
    shape = _first(window(grid)).shape
    centres = []
    for axis in (1, 2):
        along = []
        for q in range(shape[axis]):
            with tf.GradientTape() as tape:
                tape.watch(grid)
                reading = tf.reduce_sum(tf.gather(_first(window(grid))[0], q, axis=axis - 1))
            weight = _axis_weight(tape.gradient(reading, grid), axis)
            cell = (weight * np.arange(len(weight))).sum() / weight.sum()
            along.append(geometry.offset[axis - 1] + geometry.stride[axis - 1] * cell
                         + geometry.patch_size[axis - 1] / 2)
        centres.append(np.array(along, np.float32))
    return centres


def _near(centres, middle, reach):
    # `[batch, readings]`: the readings within `reach` of `middle`, and always the nearest one (a digit
    # at the image's edge may be beyond every window's centre).
    distance = tf.abs(centres - middle[:, None])
    return tf.logical_or(distance <= reach[:, None], distance <= tf.reduce_min(distance, axis=1, keepdims=True))


def _first(maps):
    return maps[0] if isinstance(maps, (list, tuple)) else maps


def _axis_weight(gradient, axis):
    # The gradient's size summed over all but `axis` of `[1, rows, columns, channels]`.
    others = tuple(a for a in (0, 1, 2, 3) if a != axis)
    return tf.reduce_sum(tf.abs(gradient), axis=others).numpy()


def _step(centres):
    return float(np.median(np.diff(centres))) if len(centres) > 1 else 0.0
