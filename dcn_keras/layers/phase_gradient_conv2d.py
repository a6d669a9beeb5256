"""A strided Conv2D whose input gradient is one stride-1 convolution."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf


@keras.saving.register_keras_serializable(package="dcn_keras")
class PhaseGradientConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a faster input gradient at inference.

    The forward pass is Conv2D's, unchanged. At inference (`training` not
    true), for a `"valid"`, undilated, ungrouped, channels-last convolution
    with equal strides `s > 1`, the gradient with respect to the input is
    computed in sub-pixel ("phase") form: the kernel's `s * s` phases are
    applied by one stride-1 convolution of the output gradient and
    interleaved by `tf.nn.depth_to_space`. That is the sum TensorFlow's
    `Conv2DBackpropInput` computes, in another order (results agree to
    float rounding), and on CPU it runs as a forward convolution, which
    oneDNN does faster than its strided backward-data kernel. A DCN takes
    this gradient at every inference (its saliency map is a gradient through
    the top network), so the presets' top networks use this layer.

    In training, and for other configurations, the gradient is Conv2D's:
    training runs stay bit-for-bit those of a plain Conv2D with the same
    weights. The kernel's gradient is always TensorFlow's.

    Args:
        Those of `keras.layers.Conv2D`.

    Example:
    ```python
    conv = PhaseGradientConv2D(96, 4, strides=2, activation="relu")
    with tf.GradientTape() as tape:
        tape.watch(grid)
        out = conv(grid)
    tape.gradient(out, grid)  # a keras.layers.Conv2D's, to float rounding
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016,
    Sec. 3.1 (the saliency gradient); Shi et al., "Real-Time Single Image
    and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
    Neural Network", CVPR 2016 (the phase form).
    """

    def phase_form_applies(self, training=False):
        """Whether a call with this `training` takes the phase-form gradient."""
        stride = self.strides[0]
        return (
            not training
            and self.data_format == "channels_last"
            and self.padding == "valid"
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.strides[1] == stride
            and stride > 1
        )

    def call(self, inputs, training=None):
        if not self.phase_form_applies(training):
            return super().call(inputs)
        # Conv2D.call with the convolution swapped.
        outputs = self._phase_convolution(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + tf.reshape(self.bias, (1, 1, 1, self.filters))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _phase_convolution(self, inputs, kernel):
        stride = self.strides[0]
        forward = super().convolution_op

        @tf.custom_gradient
        def convolve(x, w):
            def gradient(dy):
                dx = input_gradient(dy, w, stride, tf.shape(x))
                dw = tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=tf.shape(w), out_backprop=dy,
                    strides=[1, stride, stride, 1], padding="VALID")
                return dx, dw

            return forward(x, w), gradient

        return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def input_gradient(dy, kernel, stride, input_shape):
    """Gradient of a valid stride-`stride` conv w.r.t. its input, phase form."""
    return _on_input_grid(phase_products(dy, phase_kernel(kernel, stride)), stride, input_shape)


def input_gradient_squared_norm(dy, kernel, stride, input_shape):
    """`sum_c (dL/dx[..., c])**2` of that gradient, in float32, `[B, H, W]`.

    The squares are summed per phase, before the phases are interleaved,
    so that only a one-channel map is moved into place (the saliency map
    needs nothing more).
    """
    products = tf.cast(phase_products(dy, phase_kernel(kernel, stride)), tf.float32)
    shape = tf.shape(products)
    squares = tf.reduce_sum(
        tf.reshape(tf.square(products), [shape[0], shape[1], shape[2], stride * stride, -1]), -1)
    return _on_input_grid(squares, stride, input_shape)[..., 0]


def phase_kernel(kernel, stride):
    """The kernel's `s * s` phases as one stride-1 kernel, `[mh, mw, cout, s * s * cin]`.

    Input row `stride * q + p` receives `sum_u dy[q - u] * kernel[stride * u + p]`:
    per phase `p`, a stride-1 correlation of `dy` with the phase's taps
    reversed, `m = ceil(kernel_size / stride)` of them per axis. It depends
    on the weights only.
    """
    kh, kw, cin, cout = kernel.shape
    mh, mw = -(-kh // stride), -(-kw // stride)
    k = tf.pad(kernel, [[0, mh * stride - kh], [0, mw * stride - kw], [0, 0], [0, 0]])
    # One axis per reverse: LiteRT's REVERSE_V2 takes contiguous axes only
    # (it runs when the kernel is not folded, e.g. inside a cond branch).
    k = tf.reverse(tf.reverse(tf.reshape(k, [mh, stride, mw, stride, cin, cout]), [0]), [2])
    # [u, v, cout, row phase, col phase, cin]: depth_to_space's channel order.
    return tf.reshape(tf.transpose(k, [0, 2, 5, 1, 3, 4]), [mh, mw, cout, stride * stride * cin])


def phase_products(dy, phased_kernel):
    """Every phase's share of the input gradient, `[B, rows, cols, s * s * cin]`.

    `dy` (padded by `m - 1`) correlated with `phase_kernel(kernel, stride)`.
    """
    mh, mw = phased_kernel.shape[0], phased_kernel.shape[1]
    dy = tf.pad(dy, [[0, 0], [mh - 1, mh - 1], [mw - 1, mw - 1], [0, 0]])
    return tf.nn.conv2d(dy, phased_kernel, 1, "VALID")


def _on_input_grid(phased, stride, input_shape):
    # Interleaves the phases into input rows and columns, cropped to the
    # input; rows past the last window get no gradient.
    dx = tf.nn.depth_to_space(phased, stride) if stride > 1 else phased
    height, width = input_shape[1], input_shape[2]
    dx = dx[:, :height, :width]
    covered = tf.shape(dx)
    return tf.pad(dx, [[0, 0], [0, height - covered[1]], [0, width - covered[2]], [0, 0]])
