"""Pools a map of any size to one vector, weighting its positions by a learned score."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf


@keras.saving.register_keras_serializable(package="dcn_keras")
class AttentionPooling2D(keras.layers.Layer):
    """Global pooling by a softmax over positions of a learned linear score.

    Each position `p` of a `[batch, height, width, channels]` map gets a
    score `s[p] = x[p] . w + b`; the output is `sum_p softmax(s)[p] x[p]`,
    one weight per position shared by all channels. Where every position's
    vector is a reading of a window (the `svhn_reader` top), the channels
    thus come from the same, best-scored windows: a global max pool takes
    each channel's maximum from wherever it is, so the features of a number
    read one digit off can mix with those read in place. The kernel starts
    at zero (an average pool); the softmax and the weighted sum run in
    float32. Any spatial size, known or not.

    Given two maps `[scored, carried]` of the same positions, the score is
    read from `scored` alone and both are pooled by its weights, the output
    their concatenation: a wide reading can find where something is while a
    narrow one at the same positions says what is there (the
    `svhn_reader_placed` top). The score weights then have the one-map
    layer's shape, so such a layer starts from a one-map layer's weights.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `[batch, height, width, channels]`, height and width
            >= 1; or a list `[scored, carried]` of two such tensors of the
            same batch, height and width.

    Returns:
        Tensor `[batch, channels]`; for two maps, `[batch, scored channels +
        carried channels]`.

    Example:
    ```python
    pooled = AttentionPooling2D()(feature_map)  # [B, C]
    pooled = AttentionPooling2D()([wide, narrow])  # [B, C_wide + C_narrow]
    ```

    Reference: Ilse et al., "Attention-based Deep Multiple Instance
    Learning", ICML 2018 (the pooling); Almahairi et al., "Dynamic Capacity
    Networks", ICML 2016 (the DCN whose top uses it).
    """

    def build(self, input_shape):
        shapes = _maps(input_shape, "input shapes")
        if any(shape[-1] is None for shape in shapes):
            raise ValueError(f"AttentionPooling2D needs a known channel count; got input shape {input_shape}.")
        if len(shapes) == 2 and any(a is not None and b is not None and a != b
                                    for a, b in zip(shapes[0][1:3], shapes[1][1:3])):
            raise ValueError(f"AttentionPooling2D pools two maps of the same positions; got shapes {shapes[0]} "
                             f"(scored) and {shapes[1]} (carried).")
        channels = shapes[0][-1]
        self.score_kernel = self.add_weight(name="score_kernel", shape=(channels, 1), initializer="zeros")
        self.score_bias = self.add_weight(name="score_bias", shape=(1,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        maps = _maps(inputs, "inputs")
        flat, weights = self._flat_and_weights(maps[0])
        pooled = [tf.reduce_sum(weights * flat, axis=1)]
        for carried in maps[1:]:
            pooled.append(tf.reduce_sum(weights * _flat(carried), axis=1))
        # One map keeps the graph the shipped SavedModels hold (no concat).
        return tf.cast(pooled[0] if len(pooled) == 1 else tf.concat(pooled, axis=-1), self.compute_dtype)

    def attention_weights(self, inputs):
        """The softmax weight of each position, float32 `[batch, height, width]` (class activation maps use it)."""
        scored = _maps(inputs, "inputs")[0]
        _, weights = self._flat_and_weights(scored)
        return tf.reshape(weights, tf.shape(scored)[:3])

    def _flat_and_weights(self, inputs):
        # `[B, H*W, C]` in float32 and the softmax over positions of the score, `[B, H*W, 1]`.
        flat = _flat(inputs)
        scores = tf.matmul(flat, tf.cast(self.score_kernel, tf.float32)) + tf.cast(self.score_bias, tf.float32)
        return flat, tf.nn.softmax(scores, axis=1)

    def compute_output_shape(self, input_shape):
        shapes = _maps(input_shape, "input shapes")
        return (shapes[0][0], sum(shape[-1] for shape in shapes))


def _flat(inputs):
    # `[B, H, W, C]` as float32 `[B, H*W, C]`.
    x = tf.cast(inputs, tf.float32)
    shape = tf.shape(x)
    return tf.reshape(x, [shape[0], -1, shape[3]])


def _maps(inputs, what):
    # One map, or `[scored, carried]`: checked, as a list of one or two.
    if not isinstance(inputs, (list, tuple)) or (inputs and not isinstance(inputs[0], (list, tuple))
                                                 and not hasattr(inputs[0], "shape")):
        return [inputs]
    if len(inputs) != 2:
        raise ValueError(f"AttentionPooling2D takes one map or two ([scored, carried]); got {len(inputs)} {what}.")
    return list(inputs)
