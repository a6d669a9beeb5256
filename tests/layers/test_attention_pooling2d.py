import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.layers import AttentionPooling2D
from tests.layer_test import run_layer_test


def test_starts_as_an_average_and_a_strong_score_picks_one_position():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 7, 3)).astype(np.float32)
    x[..., 0] = np.stack([rng.permutation(35).reshape(5, 7) / 35 for _ in range(2)])  # Gaps of 1/35.
    pool = AttentionPooling2D()
    np.testing.assert_allclose(pool(x).numpy(), x.mean((1, 2)), rtol=1e-5)
    # Channel 0 scores: the position with the largest channel 0 wins outright.
    pool.score_kernel.assign(np.array([[500.0], [0.0], [0.0]], np.float32))
    flat = x.reshape(2, -1, 3)
    best = flat[np.arange(2), flat[..., 0].argmax(1)]
    np.testing.assert_allclose(pool(x).numpy(), best, rtol=1e-4)


def test_weights_are_shared_by_the_channels_and_sum_to_one():
    x = np.random.default_rng(1).random((1, 4, 4, 2)).astype(np.float32)
    x[..., 1] = 1.0  # A constant channel comes out unchanged, whatever the weights.
    pool = AttentionPooling2D()
    pool.build(x.shape)
    pool.score_kernel.assign(np.random.default_rng(2).normal(0, 3, (2, 1)).astype(np.float32))
    np.testing.assert_allclose(pool(x).numpy()[0, 1], 1.0, rtol=1e-6)


def test_any_size_in_a_model_and_saved(tmp_path):
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, AttentionPooling2D(name="pool")(inputs))
    model.get_layer("pool").score_kernel.assign(np.ones((4, 1), np.float32))
    for size in (1, 6, 13):
        assert model(np.ones((2, size, size + 1, 4), np.float32)).shape == (2, 4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = np.random.default_rng(3).random((2, 6, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_unknown_channels_are_named():
    with pytest.raises(ValueError, match="AttentionPooling2D needs a known channel count"):
        AttentionPooling2D().build((None, None, None, None))


def test_the_layer_contract_holds(tmp_path):
    rng = np.random.default_rng(0)
    layer_inputs = [rng.random((2, 3, 4, 5), dtype=np.float32)]
    out = run_layer_test(AttentionPooling2D, {"name": "pool"}, layer_inputs, (2, 5), tmp_path=tmp_path)
    # A zero score is an average pool.
    np.testing.assert_allclose(out, layer_inputs[0].mean(axis=(1, 2)), rtol=1e-5)


def test_a_carried_map_is_pooled_by_the_scored_maps_weights():
    rng = np.random.default_rng(4)
    scored, carried = rng.random((2, 3, 5, 4), dtype=np.float32), rng.random((2, 3, 5, 6), dtype=np.float32)
    one, two = AttentionPooling2D(), AttentionPooling2D()
    one.build(scored.shape)
    two.build([scored.shape, carried.shape])
    kernel = rng.normal(0, 3, (4, 1)).astype(np.float32)
    one.score_kernel.assign(kernel)
    two.score_kernel.assign(kernel)
    assert two.score_kernel.shape == one.score_kernel.shape  # So it starts from a one-map layer's weights.
    out = two([scored, carried]).numpy()
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out[:, :4], one(scored).numpy(), rtol=1e-6)
    weights = one.attention_weights(scored).numpy()[..., None]
    np.testing.assert_allclose(out[:, 4:], (weights * carried).sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(two.attention_weights([scored, carried]).numpy(), weights[..., 0], rtol=1e-6)


def test_two_maps_in_a_saved_model_and_bad_pairs_named(tmp_path):
    wide, narrow = keras.Input((None, None, 3)), keras.Input((None, None, 2))
    model = keras.Model([wide, narrow], AttentionPooling2D(name="pool")([wide, narrow]))
    rng = np.random.default_rng(5)
    x = [rng.random((2, 4, 6, 3), dtype=np.float32), rng.random((2, 4, 6, 2), dtype=np.float32)]
    model.get_layer("pool").score_kernel.assign(np.ones((3, 1), np.float32))
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"same positions; got shapes \(2, 4, 6, 3\) \(scored\) and \(2, 5, 6, 2\)"):
        AttentionPooling2D().build([(2, 4, 6, 3), (2, 5, 6, 2)])
    with pytest.raises(ValueError, match="one map or two .* got 3 input shapes"):
        AttentionPooling2D().build([(2, 4, 6, 3)] * 3)
