import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.backend import keras
from dcn_keras.layers import PhaseGradientConv2D
from tests.helpers import traced_ops
from tests.layer_test import run_layer_test


def _pair(filters, kernel, input_shape, seed=0, **kwargs):
    """A Conv2D and a PhaseGradientConv2D with the same weights."""
    plain = keras.layers.Conv2D(filters, kernel, activation="relu", **kwargs)
    phase = PhaseGradientConv2D(filters, kernel, activation="relu", **kwargs)
    plain.build(input_shape)
    phase.build(input_shape)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in plain.get_weights()]
    plain.set_weights(weights)
    phase.set_weights(weights)
    return plain, phase


def _outputs_and_gradients(layer, x, training):
    readout = tf.constant(np.random.default_rng(9).normal(size=layer(x).shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training) if isinstance(layer, PhaseGradientConv2D) else layer(x)
        loss = tf.reduce_sum(y * readout)
    return [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])


@pytest.mark.parametrize("size,kernel,stride,channels", [
    ((23, 23), 4, 2, (24, 96)),  # The cluttered-MNIST top.
    ((14, 14), 3, 2, (48, 96)),  # The SVHN top.
    ((13, 17), 5, 3, (3, 7)),    # Kernel not a multiple of the stride.
    ((9, 9), 2, 3, (2, 4)),      # Kernel smaller than the stride.
    ((10, 11), 3, 2, (1, 5)),    # Rows and columns past the last window.
])
def test_inference_gradients_match_conv2d(size, kernel, stride, channels):
    x = tf.constant(np.random.default_rng(1).normal(size=(2, *size, channels[0])), tf.float32)
    plain, phase = _pair(channels[1], kernel, x.shape, strides=stride)
    assert phase.phase_form_applies(training=False)
    expected = _outputs_and_gradients(plain, x, training=None)
    got = _outputs_and_gradients(phase, x, training=False)
    np.testing.assert_array_equal(got[0], expected[0])  # Same forward pass.
    for g, e in zip(got[1:], expected[1:]):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * float(tf.reduce_max(tf.abs(e))))


def test_inference_gradient_runs_no_backprop_input_op():
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 23, 23, 24)), tf.float32)
    plain, phase = _pair(96, 4, x.shape, strides=2)

    def op_types(layer, training):
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training) if layer is phase else layer(x)
            return tape.gradient(y, x)
        return {op.type for op in traced_ops(grad, x)}

    assert "Conv2DBackpropInput" in op_types(plain, None)
    assert "Conv2DBackpropInput" in op_types(phase, True)
    inference = op_types(phase, False)
    assert "Conv2DBackpropInput" not in inference and "DepthToSpace" in inference


def test_training_gradients_are_conv2d_bit_for_bit():
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 23, 23, 24)), tf.float32)
    plain, phase = _pair(96, 4, x.shape, strides=2)
    assert not phase.phase_form_applies(training=True)
    for g, e in zip(_outputs_and_gradients(phase, x, training=True),
                    _outputs_and_gradients(plain, x, training=None)):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("kwargs", [
    dict(strides=1), dict(strides=2, padding="same"), dict(strides=(2, 1)),
    dict(strides=1, dilation_rate=2),
])
def test_other_configurations_keep_conv2d_gradient(kwargs):
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 12, 12, 3)), tf.float32)
    plain, phase = _pair(4, 3, x.shape, **kwargs)
    assert not phase.phase_form_applies(training=False)
    for g, e in zip(_outputs_and_gradients(phase, x, training=False),
                    _outputs_and_gradients(plain, x, training=None)):
        np.testing.assert_array_equal(g, e)


def test_unknown_spatial_sizes_in_one_traced_function():
    grid = keras.Input((None, None, 6))
    model = keras.Model(grid, PhaseGradientConv2D(5, 4, strides=2)(grid))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 6])])
    def input_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
        return tape.gradient(y, x)

    for size in ((11, 11), (8, 13)):
        x = tf.random.normal((2, *size, 6))
        assert input_gradient(x).shape == x.shape


def test_keras_file_round_trip_keeps_the_class(tmp_path):
    grid = keras.Input((None, None, 4))
    layer = PhaseGradientConv2D(6, 3, strides=2, activation="relu", name="conv")
    model = keras.Model(grid, layer(grid))
    assert PhaseGradientConv2D.from_config(layer.get_config()).get_config() == layer.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("conv")) is PhaseGradientConv2D
    x = tf.random.normal((1, 9, 9, 4))
    np.testing.assert_array_equal(model(x), loaded(x))


def test_the_layer_contract_holds(tmp_path):
    image = np.random.default_rng(0).random((2, 9, 9, 2), dtype=np.float32)
    args = {"filters": 4, "kernel_size": (3, 3), "strides": (2, 2), "activation": "relu"}
    out = run_layer_test(PhaseGradientConv2D, {k: v for k, v in args.items() if k != "activation"}, [image],
                         (2, 4, 4, 4), tmp_path=tmp_path)
    assert np.any(np.asarray(out) != 0)
