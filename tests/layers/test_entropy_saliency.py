import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.backend import keras
from dcn_keras.layers import EntropySaliency
from tests.layer_test import run_layer_test


def _top(heads):
    grid = keras.Input((None, None, 4))
    h = keras.layers.Conv2D(8, 2, activation="tanh")(grid)
    h = keras.layers.GlobalMaxPooling2D()(h)
    if heads == 1:
        return keras.Model(grid, keras.layers.Dense(5)(h))
    return keras.Model(grid, {f"head{i}": keras.layers.Dense(3 + i)(h) for i in range(heads)})


def _entropy(logits):
    p = tf.nn.softmax(logits)
    return -tf.reduce_sum(p * tf.math.log(p), axis=-1)


@pytest.mark.parametrize("heads", [1, 3])
def test_is_l2_norm_of_entropy_gradient(heads):
    top = _top(heads)
    grid = tf.constant(np.random.default_rng(0).normal(size=(3, 6, 7, 4)), tf.float32)
    out = EntropySaliency()(grid, top=top)
    with tf.GradientTape() as tape:
        tape.watch(grid)
        logits = top(grid)
        heads_logits = logits.values() if isinstance(logits, dict) else [logits]
        entropy = tf.add_n([_entropy(h) for h in heads_logits])
    expected = tf.norm(tape.gradient(entropy, grid), axis=-1)
    assert out["saliency"].dtype == tf.float32
    assert out["saliency"].shape == (3, 6, 7)
    np.testing.assert_allclose(out["saliency"], expected, rtol=1e-5, atol=1e-7)


def test_saliency_is_the_norm_not_the_sum_of_gradients():
    # The top reads channel 0 minus channel 1, so each cell's gradient is
    # (a, -a): its sum is exactly zero, its norm is not.
    grid_in = keras.Input((None, None, 2))
    diff = keras.layers.Lambda(lambda g: g[..., :1] - g[..., 1:])(grid_in)
    pooled = keras.layers.GlobalAveragePooling2D()(diff)
    top = keras.Model(grid_in, keras.layers.Dense(3)(pooled))
    grid = tf.constant(np.random.default_rng(1).normal(size=(1, 2, 2, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(grid)
        entropy = _entropy(top(grid))
    np.testing.assert_allclose(tf.reduce_sum(tape.gradient(entropy, grid), -1), 0, atol=1e-7)
    saliency = EntropySaliency()(grid, top=top)["saliency"]
    assert float(tf.reduce_min(saliency)) > 1e-4


def test_saliency_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    top = _top(1)
    grid = tf.cast(tf.random.normal((2, 5, 5, 4)), tf.bfloat16)
    out = EntropySaliency()(grid, top=top)
    assert out["saliency"].dtype == tf.float32
    assert bool(tf.reduce_all(tf.math.is_finite(out["saliency"])))


def test_saliency_is_constant_for_outer_gradients():
    top = _top(1)
    grid = tf.Variable(tf.random.normal((2, 5, 5, 4)))
    with tf.GradientTape() as tape:
        saliency = EntropySaliency()(grid, top=top)["saliency"]
        total = tf.reduce_sum(saliency)
    assert tape.gradient(total, grid) is None


def test_the_layer_contract_holds():
    grid = keras.Input((None, None, 3))
    top = keras.Model(grid, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(grid)))
    values = np.random.default_rng(0).random((2, 5, 6, 3), dtype=np.float32)
    out = run_layer_test(EntropySaliency, {}, [values], [(2, 4), (2, 5, 6)], call_kwargs={"top": top})
    assert np.all(np.asarray(out["saliency"]) > 0)
