"""Label-free saliency: the entropy gradient of the coarse prediction."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.heads import prediction_entropy


@keras.saving.register_keras_serializable(package="dcn_keras")
class EntropySaliency(keras.layers.Layer):
    """Runs the top network on a coarse grid and scores every cell.

    The score of cell `(i, j)` is `|| dH / dc_ij ||_2`, the L2 norm over
    channels of the gradient of the prediction entropy `H` with respect to
    that cell's feature vector. `H` needs no label, so the saliency map is
    available at test time. With several softmax heads (a dict or list of
    logits) `H` is the sum of their entropies. Entropy and norms are computed
    in float32 whatever the compute dtype. The saliency map is a constant for
    outer gradients (selection is hard attention); the logits are not, so the
    same top pass serves as the coarse prediction.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        grid: tensor `[batch, rows, cols, channels]`, the coarse features.
        top: the top network `g`, mapping a grid to logits.
        training: bool, passed to `top`.

    Returns:
        A dict with `"logits"` (what `top` returned) and `"saliency"`, a
        float32 tensor `[batch, rows, cols]`.

    Example:
    ```python
    out = EntropySaliency()(coarse(images), top=top)
    out["saliency"].shape  # (batch, 23, 23) for cluttered MNIST
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016, Sec. 3.1.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.built = True  # Stateless: nothing to build.

    def call(self, grid, top, training=None):
        # Only the grid is watched: the top's weights need no gradient here,
        # and recording them would make the backward pass also compute the
        # (unused) filter gradients in eager mode.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(grid)
            logits = top(grid, training=training)
            entropy = prediction_entropy(logits)
        # Examples are independent in `top`, so the gradient of the summed
        # entropy holds each example's own gradient.
        grads = tape.gradient(entropy, grid)
        grads = tf.cast(tf.stop_gradient(grads), tf.float32)
        saliency = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=-1))
        return {"logits": logits, "saliency": saliency}

    def compute_output_spec(self, grid, top, training=None):
        logits = top.compute_output_spec(grid)
        saliency = keras.KerasTensor(grid.shape[:-1], dtype="float32")
        return {"logits": logits, "saliency": saliency}
