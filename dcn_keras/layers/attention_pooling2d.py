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

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `[batch, height, width, channels]`, height and width >= 1.

    Returns:
        Tensor `[batch, channels]`.

    Example:
    ```python
    pooled = AttentionPooling2D()(feature_map)  # [B, C]
    ```

    Reference: Ilse et al., "Attention-based Deep Multiple Instance
    Learning", ICML 2018 (the pooling); Almahairi et al., "Dynamic Capacity
    Networks", ICML 2016 (the DCN whose top uses it).
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"AttentionPooling2D needs a known channel count; got input shape {input_shape}.")
        self.score_kernel = self.add_weight(name="score_kernel", shape=(channels, 1), initializer="zeros")
        self.score_bias = self.add_weight(name="score_bias", shape=(1,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        flat, weights = self._flat_and_weights(inputs)
        pooled = tf.reduce_sum(weights * flat, axis=1)
        return tf.cast(pooled, self.compute_dtype)

    def attention_weights(self, inputs):
        """The softmax weight of each position, float32 `[batch, height, width]` (class activation maps use it)."""
        _, weights = self._flat_and_weights(inputs)
        return tf.reshape(weights, tf.shape(inputs)[:3])

    def _flat_and_weights(self, inputs):
        # `[B, H*W, C]` in float32 and the softmax over positions of the score, `[B, H*W, 1]`.
        x = tf.cast(inputs, tf.float32)
        shape = tf.shape(x)
        flat = tf.reshape(x, [shape[0], -1, shape[3]])
        scores = tf.matmul(flat, tf.cast(self.score_kernel, tf.float32)) + tf.cast(self.score_bias, tf.float32)
        return flat, tf.nn.softmax(scores, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
