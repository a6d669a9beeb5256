import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.backend import keras
from dcn_keras.layers import BandMaxPooling2D
from tests.layer_test import run_layer_test


def _numpy_bands(x, rows, cols):
    # An independent reference: PyTorch's adaptive bins, one cell at a time.
    _, h, w, _ = x.shape
    out = np.empty((x.shape[0], rows, cols, x.shape[-1]), x.dtype)
    for i in range(rows):
        for j in range(cols):
            r0, r1 = i * h // rows, -(-(i + 1) * h // rows)
            c0, c1 = j * w // cols, -(-(j + 1) * w // cols)
            out[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("height,width", [(6, 6), (7, 13), (2, 6), (1, 3)])
def test_bands_match_numpy_and_keras_adaptive_pooling(height, width):
    x = np.random.default_rng(height).normal(size=(2, height, width, 3)).astype(np.float32)
    out = BandMaxPooling2D((2, 6))(x).numpy()
    np.testing.assert_array_equal(out, _numpy_bands(x, 2, 6))
    if height >= 2 and width >= 6:
        np.testing.assert_array_equal(out, keras.layers.AdaptiveMaxPooling2D((2, 6))(x).numpy())


def test_it_runs_when_the_spatial_size_is_unknown_and_round_trips():
    layer = BandMaxPooling2D((2, 3), name="bands")
    run = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)])
    x = np.random.default_rng(1).random((1, 9, 11, 4), dtype=np.float32)
    np.testing.assert_array_equal(run(x).numpy(), _numpy_bands(x, 2, 3))
    grid = keras.Input((None, None, 4))
    assert keras.Model(grid, layer(grid)).output_shape == (None, 2, 3, 4)
    again = BandMaxPooling2D.from_config(layer.get_config())
    assert again.output_size == (2, 3) and again.name == "bands"
    for bad in (0, (2, 0), (2.5, 3), "6"):
        with pytest.raises(ValueError, match="`output_size` must be an int or a pair of ints >= 1; got"):
            BandMaxPooling2D(bad)


@pytest.mark.parametrize("height,width", [(6, 6), (7, 13)])
def test_the_gradient_reaches_each_bins_maximum_as_through_slices(height, width):
    # The entropy-gradient saliency differentiates through this layer; slices
    # of the map (the reference) would give the same gradient.
    x = tf.constant(np.random.default_rng(width).normal(size=(2, height, width, 3)), tf.float32)
    weights = tf.constant(np.random.default_rng(0).normal(size=(1, 2, 6, 3)), tf.float32)

    def sliced(x):
        h, w = x.shape[1], x.shape[2]
        return tf.stack([tf.stack([tf.reduce_max(x[:, i * h // 2:-(-(i + 1) * h // 2), j * w // 6:-(-(j + 1) * w // 6)],
                                                 axis=(1, 2)) for j in range(6)], 1) for i in range(2)], 1)

    grads = []
    for pool in (BandMaxPooling2D((2, 6)), sliced):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(pool(x) * weights)
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6)
    assert np.count_nonzero(grads[0]) > 0


def test_the_layer_contract_holds(tmp_path):
    image = np.random.default_rng(0).random((2, 7, 9, 4), dtype=np.float32)
    out = run_layer_test(BandMaxPooling2D, {"output_size": (2, 3)}, [image], (2, 2, 3, 4), tmp_path=tmp_path)
    np.testing.assert_allclose(np.max(out, axis=(1, 2)), image.max(axis=(1, 2)))
