import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.backend import keras
from dcn_keras.layers import PhaseGradientConv2D
from dcn_keras.models.incremental_top import IncrementalTop


def _top(cin, filters, kernel, stride, conv_class=keras.layers.Conv2D, seed=0, **conv_kwargs):
    grid = keras.Input((None, None, cin))
    h = conv_class(filters, kernel, strides=stride, activation="relu", **conv_kwargs)(grid)
    h = keras.layers.GlobalMaxPooling2D()(h)
    top = keras.Model(grid, keras.layers.Dense(5)(h))
    rng = np.random.default_rng(seed)
    top.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in top.get_weights()])
    return top


def _distinct_cells(rows, cols, batch, k, seed):
    # The four corners (so every border case is reached) and random others.
    rng = np.random.default_rng(seed)
    corners = [0, cols - 1, (rows - 1) * cols, rows * cols - 1]
    cells = []
    for _ in range(batch):
        others = rng.permutation([c for c in range(rows * cols) if c not in corners])[: k - 4]
        cells.append(corners + list(others))
    flat = np.array(cells)
    return np.stack([flat // cols, flat % cols], -1).astype(np.int32)


@pytest.mark.parametrize("size,kernel,stride,conv_class", [
    ((23, 23), 4, 2, PhaseGradientConv2D),  # The cluttered-MNIST top.
    ((14, 14), 3, 2, PhaseGradientConv2D),  # The SVHN top.
    ((13, 17), 5, 3, keras.layers.Conv2D),  # Kernel not a multiple of the stride.
    ((9, 9), 2, 3, keras.layers.Conv2D),    # Kernel smaller than the stride.
    ((10, 11), 3, 2, keras.layers.Conv2D),  # Rows and columns past the last window.
    ((8, 7), 3, 1, keras.layers.Conv2D),    # Stride 1.
])
def test_refined_logits_equal_the_top_on_the_updated_grid(size, kernel, stride, conv_class):
    top = _top(6, 7, kernel, stride, conv_class)
    split = IncrementalTop.split(top)
    assert split is not None
    rng = np.random.default_rng(1)
    grid = rng.normal(size=(3, *size, 6)).astype(np.float32)
    locations = _distinct_cells(*size, batch=3, k=6, seed=2)
    deltas = rng.normal(size=(3, 6, 6)).astype(np.float32)
    updated = grid.copy()
    for b in range(3):
        for (r, c), d in zip(locations[b], deltas[b]):
            updated[b, r, c] += d
    coarse = split.coarse_pass(tf.constant(grid))
    np.testing.assert_allclose(coarse["logits"], top(grid), rtol=1e-5, atol=1e-5)
    got = split.refined_logits(coarse["pre_activation"], tf.constant(locations), tf.constant(deltas))
    np.testing.assert_allclose(got, top(updated), rtol=1e-5, atol=1e-4)
    # The saliency is the norm of the entropy's gradient w.r.t. the grid.
    x = tf.constant(grid)
    with tf.GradientTape() as tape:
        tape.watch(x)
        log_p = tf.nn.log_softmax(top(x))
        entropy = -tf.reduce_sum(tf.exp(log_p) * log_p, -1)
    expected = tf.norm(tape.gradient(entropy, x), axis=-1)
    assert coarse["saliency"].shape == expected.shape and coarse["saliency"].dtype == tf.float32
    np.testing.assert_allclose(coarse["saliency"], expected, rtol=1e-4, atol=1e-7)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, strides=2)
        self.pool = keras.layers.GlobalMaxPooling2D()

    def call(self, x):
        return self.pool(self.conv(x))


def _skip_top():
    grid = keras.Input((None, None, 3))
    h = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(4, 3, strides=2)(grid))
    skip = keras.layers.GlobalMaxPooling2D()(grid)
    return keras.Model(grid, keras.layers.Concatenate()([h, skip]))


def _dense_first_top():
    grid = keras.Input((None, None, 3))
    h = keras.layers.Dense(4)(grid)
    return keras.Model(grid, keras.layers.GlobalMaxPooling2D()(h))


@pytest.mark.parametrize("make_top", [
    lambda: _top(3, 4, 3, 2, padding="same"),
    lambda: _top(3, 4, 3, 1, dilation_rate=2),
    lambda: _top(3, 4, 3, (2, 1)),
    _skip_top,
    _dense_first_top,
    _Subclassed,
], ids=["same_padding", "dilated", "unequal_strides", "input_feeds_two_layers", "dense_first",
        "subclassed"])
def test_tops_it_cannot_update_are_refused(make_top):
    top = make_top()
    assert IncrementalTop.split(top) is None
    with pytest.raises(ValueError, match="does not start with a valid, undilated"):
        IncrementalTop(top)


def _pool_top(activation, keepdims, separate_activation, seed=0):
    # conv -> activation -> global max pool -> dense; with
    # `separate_activation` the activation is its own layer, so the pool does
    # not follow the convolution directly and the generic pass is taken.
    grid = keras.Input((None, None, 4))
    conv_activation = None if separate_activation else activation
    h = keras.layers.Conv2D(6, 3, strides=2, activation=conv_activation)(grid)
    if separate_activation:
        h = keras.layers.Activation(activation)(h)
    h = keras.layers.GlobalMaxPooling2D(keepdims=keepdims)(h)
    if keepdims:
        h = keras.layers.Flatten()(h)
    top = keras.Model(grid, keras.layers.Dense(5)(h))
    rng = np.random.default_rng(seed)
    top.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in top.get_weights()])
    return top


def _grid_with_ties():
    # Constant regions make equal pre-activations, so maxima tie.
    rng = np.random.default_rng(3)
    grid = rng.normal(size=(4, 11, 11, 4)).astype(np.float32)
    grid[0] = 0.0
    grid[1] = 1.0
    grid[2, :, :6] = 0.5
    return grid


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_the_pool_after_the_convolution_is_run_on_the_maxima_with_the_same_results(
        activation, keepdims):
    fused = IncrementalTop.split(_pool_top(activation, keepdims, separate_activation=False))
    generic = IncrementalTop.split(_pool_top(activation, keepdims, separate_activation=True))
    assert fused.pool is not None and generic.pool is None
    grid = tf.constant(_grid_with_ties())
    got, want = fused.coarse_pass(grid), generic.coarse_pass(grid)
    # Same ops on the same numbers up to where the maxima are taken: equal bit for bit,
    # ties included (TensorFlow gives n tied maxima 1/n of the gradient each).
    np.testing.assert_array_equal(got["logits"], want["logits"])
    np.testing.assert_array_equal(got["saliency"], want["saliency"])
    # The ties are there: each of example 1's maps holds one value at every position.
    pre = got["pre_activation"].numpy()
    assert np.all(pre[1] == pre[1, :1, :1])
    locations = tf.constant(_distinct_cells(11, 11, batch=4, k=5, seed=4))
    deltas = tf.constant(np.random.default_rng(5).normal(size=(4, 5, 4)).astype(np.float32))
    np.testing.assert_array_equal(
        fused.refined_logits(got["pre_activation"], locations, deltas),
        generic.refined_logits(want["pre_activation"], locations, deltas))


def test_the_saliency_splits_the_gradient_among_tied_maxima_as_autodiff_does():
    top = _pool_top("relu", False, separate_activation=False)
    split = IncrementalTop.split(top)
    x = tf.constant(_grid_with_ties())
    with tf.GradientTape() as tape:
        tape.watch(x)
        log_p = tf.nn.log_softmax(top(x))
        entropy = -tf.reduce_sum(tf.exp(log_p) * log_p, -1)
    expected = tf.norm(tape.gradient(entropy, x), axis=-1)
    assert np.count_nonzero(expected[1]) > 1  # The constant grid's ties do get gradient.
    np.testing.assert_allclose(split.coarse_pass(x)["saliency"], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_a_pool_after_another_activation_takes_the_generic_pass(activation):
    assert IncrementalTop.split(_pool_top(activation, False, separate_activation=False)).pool is None
