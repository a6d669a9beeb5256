"""The top network split after its first convolution, for a DCN's inference."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.heads import prediction_entropy
from dcn_keras.layers.phase_gradient_conv2d import input_gradient_squared_norm
from dcn_keras.models.top_structure import first_convolution
from dcn_keras.models.top_structure import sole_user


class IncrementalTop:
    """A top network `g = rest(activation(conv(grid)))` whose refined pass is a sparse update.

    A DCN's refined grid differs from its coarse grid at `k` cells only, and
    `g`'s first layer is linear up to its activation. So the refined pass
    need not build the refined grid and repeat that convolution: the coarse
    pass's pre-activations plus the convolution of the `k` cell differences
    (`fine - coarse`, each reaching at most `ceil(kh / s) * ceil(kw / s)`
    outputs) are the refined pass's pre-activations, equal to float rounding.
    The coarse pass also gives the saliency map: the entropy's gradient with
    respect to the pre-activations, taken back through the convolution in
    phase form, with the squared norm summed before the phases are
    interleaved (`input_gradient_squared_norm`).

    `IncrementalTop.split(top)` applies when the top network's input feeds
    one layer only, a `keras.layers.Conv2D` (or subclass, such as
    `PhaseGradientConv2D`) with `"valid"` padding, no dilation, one group,
    channels last and equal strides, and returns None for other tops (a DCN
    then runs the whole top network twice). The presets' tops all apply.
    Everything runs at inference (`training=False`).

    Where the convolution's activation is ReLU or linear and its output
    feeds a `keras.layers.GlobalMaxPooling2D` alone (the presets), the
    activation is applied after the pool (it commutes with the maximum:
    `max(relu(z)) == relu(max(z))` exactly), and the pool's gradient is
    taken from the small pooled gradient directly; TensorFlow's tie rule
    (equal shares among tied maxima) is kept, so the saliency is the same.

    Args:
        top: `keras.Model`, the top network, functional, starting with such
            a convolution (use `split` to test a top without an error).

    Example:
    ```python
    split = IncrementalTop.split(top)
    coarse = split.coarse_pass(grid)  # logits, saliency, pre_activation
    logits = split.refined_logits(coarse["pre_activation"], locations, fine - coarse_cells)
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016,
    Sec. 3.1 (saliency) and Eq. 4 (the refined representation).
    """

    def __init__(self, top):
        conv = first_convolution(top)
        if conv is None:
            raise ValueError(
                f"Top network {getattr(top, 'name', top)!r} does not start with a valid, "
                "undilated, ungrouped, channels-last Conv2D with equal strides that alone "
                "takes its input; use IncrementalTop.split(top), which returns None for it."
            )
        self.top = top
        self.conv = conv
        self.pool = _max_pool_after(top, conv)
        # The rest of the network, from the pool's output where the pool is
        # run here, else from the convolution's (activated) output.
        start = conv if self.pool is None else self.pool
        self.rest = keras.Model(start.output, top.output, name=f"{top.name}_after_{start.name}")

    @classmethod
    def split(cls, top):
        """An `IncrementalTop` of `top`, or None where `top` does not apply."""
        return cls(top) if first_convolution(top) is not None else None

    def _kernel(self, dtype):
        return tf.cast(self.conv.kernel, dtype)

    def coarse_pass(self, grid):
        """`{"logits", "saliency", "pre_activation"}` of the top on the coarse grid."""
        conv = self.conv
        kernel = self._kernel(conv.compute_dtype)
        grid = tf.cast(grid, conv.compute_dtype)
        pre_activation = conv.convolution_op(grid, kernel)
        if conv.use_bias:
            pre_activation = pre_activation + tf.cast(conv.bias, pre_activation.dtype)
        if self.pool is None:
            logits, grads = self._logits_and_entropy_gradient(pre_activation, conv.activation)
        else:
            logits, grads = self._pooled_pass_and_gradient(pre_activation)
        grads = tf.stop_gradient(grads)
        squared = input_gradient_squared_norm(grads, kernel, conv.strides[0], tf.shape(grid))
        return {"logits": logits, "saliency": tf.sqrt(squared), "pre_activation": pre_activation}

    def refined_logits(self, pre_activation, locations, deltas):
        """The top's logits on the grid whose cells at `locations` changed by `deltas`.

        Args:
            pre_activation: `coarse_pass`'s, `[batch, out_rows, out_cols, filters]`.
            locations: int tensor `[batch, k, 2]`, distinct `(row, col)` cells
                of each example.
            deltas: tensor `[batch, k, channels]`, new minus old cell vectors.
        """
        conv = self.conv
        updated = _add_cell_deltas(pre_activation, locations, deltas,
                                   self._kernel(pre_activation.dtype), conv.strides[0])
        if self.pool is not None:
            return self.rest(self._pooled(tf.reduce_max(updated, axis=[1, 2])), training=False)
        return self.rest(conv.activation(updated), training=False)

    def _logits_and_entropy_gradient(self, watched, rest_input):
        # Only `watched` is, as in EntropySaliency: the weights need no gradient.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(watched)
            logits = self.rest(rest_input(watched), training=False)
            entropy = prediction_entropy(logits)
        return logits, tape.gradient(entropy, watched)

    def _pooled(self, peak):
        # The pool's output, from the pre-activations' maxima `[batch, filters]`.
        pooled = self.conv.activation(peak)
        return pooled[:, None, None, :] if self.pool.keepdims else pooled

    def _pooled_pass_and_gradient(self, pre_activation):
        # The entropy's gradient reaches each map only through its maxima:
        # TensorFlow's max gradient gives each of n tied maxima 1/n of it,
        # and ReLU's passes it where the maximum is positive (the gradient
        # with respect to `peak` already holds that factor).
        peak = tf.reduce_max(pre_activation, axis=[1, 2])
        logits, peak_gradient = self._logits_and_entropy_gradient(peak, self._pooled)
        at_peak = tf.cast(tf.equal(pre_activation, peak[:, None, None, :]), pre_activation.dtype)
        # (1 / n) * g, in TensorFlow's order, so results match it bit for bit.
        share = (1.0 / tf.reduce_sum(at_peak, axis=[1, 2])) * peak_gradient
        return logits, at_peak * share[:, None, None, :]


def _max_pool_after(top, conv):
    # The GlobalMaxPooling2D that alone takes the convolution's output, where
    # the convolution's activation commutes with the maximum; else None.
    if conv.activation not in (keras.activations.relu, keras.activations.linear):
        return None
    if any(t is conv.output for t in tf.nest.flatten(top.outputs)):
        return None
    pool = sole_user(top, conv.output)
    if isinstance(pool, keras.layers.GlobalMaxPooling2D) and pool.data_format == "channels_last":
        return pool
    return None


def _add_cell_deltas(pre_activation, locations, deltas, kernel, stride):
    """`pre_activation + conv(grid of zeros with deltas at locations)`, sparsely.

    Cell `i` (one axis) reaches outputs `q = i // s - u`, `u < ceil(kh / s)`,
    through tap `i % s + s * u`: the cell's phase `i % s` picks the taps, so
    one matmul of each delta, placed in its phase's slot, by the kernel
    regrouped by phase gives every contribution.
    """
    kh, kw, cin, cout = kernel.shape
    mh, mw = -(-kh // stride), -(-kw // stride)
    shape = tf.shape(pre_activation)
    out_rows, out_cols = shape[1], shape[2]
    num_patches = locations.shape[1]
    # [phase row, phase col, cin] x [u, v, cout]; taps past the kernel are zero.
    k = tf.pad(kernel, [[0, mh * stride - kh], [0, mw * stride - kw], [0, 0], [0, 0]])
    k = tf.reshape(k, [mh, stride, mw, stride, cin, cout])
    k = tf.reshape(tf.transpose(k, [1, 3, 4, 0, 2, 5]), [stride * stride * cin, mh * mw * cout])
    locations = tf.cast(locations, tf.int32)
    rows, cols = locations[..., 0], locations[..., 1]
    phase = tf.one_hot((rows % stride) * stride + cols % stride, stride * stride, dtype=deltas.dtype)
    placed = tf.reshape(phase[..., None] * deltas[..., None, :], [-1, stride * stride * cin])
    contributions = tf.reshape(tf.matmul(placed, k), [-1, mh, mw, cout])
    out_row = tf.reshape(rows // stride, [-1, 1, 1]) - tf.range(mh)[:, None]  # [B*k, mh, 1]
    out_col = tf.reshape(cols // stride, [-1, 1, 1]) - tf.range(mw)[None, :]  # [B*k, 1, mw]
    inside = (out_row >= 0) & (out_row < out_rows) & (out_col >= 0) & (out_col < out_cols)
    contributions = tf.where(inside[..., None], contributions, tf.zeros_like(contributions))
    example = tf.reshape(tf.repeat(tf.range(shape[0]), num_patches), [-1, 1, 1])
    # Outputs off the map get a zero contribution at a clipped (valid) index.
    index = ((example * out_rows + tf.clip_by_value(out_row, 0, out_rows - 1)) * out_cols
             + tf.clip_by_value(out_col, 0, out_cols - 1))
    flat = tf.tensor_scatter_nd_add(
        tf.reshape(pre_activation, [-1, cout]), tf.reshape(index, [-1, 1]),
        tf.reshape(contributions, [-1, cout]))
    return tf.reshape(flat, shape)
