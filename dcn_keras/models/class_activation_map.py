"""Class activation maps as a DCN's saliency: the forward pass alone, no backward pass."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.attention_pooling2d import AttentionPooling2D
from dcn_keras.layers.phase_gradient_conv2d import input_gradient
from dcn_keras.models.top_structure import first_convolution
from dcn_keras.models.top_structure import sole_user

_POOLS = (keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D, AttentionPooling2D)


class ClassActivationMap:
    """A top network `dense(pool(relu(conv(grid))))` that scores cells by class activation.

    For such a top (the `cluttered_mnist`, `svhn_cropped` and
    `megapixel_mnist` presets), the class activation of top-convolution
    output position `p` for class `c` is
    `CAM_c[p] = sum_f w[f, c] * a[p, f]` (Zhou et al. 2016), with `a` the
    convolution's ReLU output and `w` the dense layer's kernel. The map
    scores position `p` by the coarse prediction's expected class activation,

        `s[p] = max(0, sum_c p_c * CAM_c[p])`,   `p_c = softmax(logits)_c`,

    or, with `top_class`, by the top class's alone (`p` one-hot at the
    argmax of the logits: `s[p] = max(0, CAM_argmax[p])`). Behind an
    `AttentionPooling2D` (the `megapixel_mnist` top) each position's map is
    weighted by its attention weight `alpha[p]`: the logits are then
    `sum_p alpha[p] * CAM_c[p] + bias_c`, so `alpha[p] * CAM_c[p]` is what
    position `p` adds to class `c`, as `CAM_c[p] / positions` is under an
    average pool;

    and every coarse cell gets the sum of `s` over the positions whose
    convolution window holds it (for a `k x k`, stride-`t` convolution,
    `saliency[i, j] = sum s[q, r]` over `t*q <= i < t*q + k`, `t*r <= j <
    t*r + k`), computed as a stride-1 convolution in phase form: no gradient
    and no transposed convolution in the graph. The logits are the top's own
    (`dense(pool(a))`) and the first layer's pre-activations are returned
    too, so `IncrementalTop.refined_logits` can reuse them.

    Args:
        top: `keras.Model`, the top network: a `Conv2D` (ReLU) that alone
            takes the grid, a `GlobalMaxPooling2D`, `GlobalAveragePooling2D`
            or `AttentionPooling2D` that alone takes its output, and a
            `Dense` on the pool whose output is the top's (logits). Anything
            else is a `ValueError` naming what is missing.
        top_class: bool, default False: score by the top class's map
            instead of the probability-weighted sum of all classes'.

    Example:
    ```python
    cam = ClassActivationMap(model.top)
    scored = cam(grid)  # logits, saliency [batch, rows, cols], pre_activation
    ```

    Reference: Zhou et al., "Learning Deep Features for Discriminative
    Localization", CVPR 2016; Almahairi et al., "Dynamic Capacity Networks",
    ICML 2016 (where the entropy gradient scores the cells instead).
    """

    def __init__(self, top, top_class=False):
        name = getattr(top, "name", top)
        conv = first_convolution(top)
        if conv is None:
            raise ValueError(f"saliency='cam' needs a top network that starts with a valid Conv2D "
                             f"taking the grid alone; {name!r} does not.")
        if conv.activation is not keras.activations.relu:
            raise ValueError(f"saliency='cam' needs the top's first convolution to use ReLU; {conv.name!r} "
                             f"uses {getattr(conv.activation, '__name__', conv.activation)}.")
        pool = sole_user(top, conv.output)
        if (not isinstance(pool, _POOLS) or getattr(pool, "data_format", "channels_last") != "channels_last"
                or getattr(pool, "keepdims", False)):
            raise ValueError(f"saliency='cam' needs a global pooling layer right after the top's first "
                             f"convolution; {name!r} has {getattr(pool, 'name', 'none')!r} there.")
        dense = sole_user(top, pool.output)
        outputs = tf.nest.flatten(top.outputs)
        if not isinstance(dense, keras.layers.Dense) or len(outputs) != 1 or outputs[0] is not dense.output:
            raise ValueError(f"saliency='cam' needs the pool to feed one Dense layer that gives the top's "
                             f"logits; {name!r} has {getattr(dense, 'name', 'none')!r} after "
                             f"{pool.name!r} (a hidden layer or several heads have no class activation map).")
        self.top, self.conv, self.pool, self.dense = top, conv, pool, dense
        self.top_class = top_class

    def __call__(self, grid):
        """`{"logits", "saliency", "pre_activation"}` of the top on a coarse grid."""
        conv = self.conv
        kernel = tf.cast(conv.kernel, conv.compute_dtype)
        grid = tf.cast(grid, conv.compute_dtype)
        pre_activation = conv.convolution_op(grid, kernel)
        if conv.use_bias:
            pre_activation = pre_activation + tf.cast(conv.bias, pre_activation.dtype)
        activation = tf.nn.relu(pre_activation)
        logits = self.dense(self.pool(activation), training=False)
        return {"logits": logits, "saliency": self.cell_scores(activation, logits, tf.shape(grid)),
                "pre_activation": pre_activation}

    def cell_scores(self, activation, logits, grid_shape):
        """The saliency map, float32 `[batch, rows, cols]`, from the ReLU'd map and the logits."""
        activation = tf.cast(activation, tf.float32)
        logits = tf.cast(logits, tf.float32)
        if self.top_class:
            classes = tf.one_hot(tf.argmax(logits, axis=-1), tf.shape(logits)[-1], dtype=tf.float32)
        else:
            classes = tf.nn.softmax(logits)
        weights = tf.matmul(classes, tf.cast(self.dense.kernel, tf.float32), transpose_b=True)  # [B, F]
        scores = tf.einsum("bhwf,bf->bhw", activation, weights)
        if isinstance(self.pool, AttentionPooling2D):
            scores *= self.pool.attention_weights(activation)
        scores = tf.nn.relu(scores)
        kh, kw = self.conv.kernel_size
        windows = tf.ones([kh, kw, 1, 1], tf.float32)
        return input_gradient(scores[..., None], windows, self.conv.strides[0], grid_shape)[..., 0]
