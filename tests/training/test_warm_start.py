"""Starting from another model's sub-networks: `--init_from`."""

import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.presets import cluttered_mnist_towers
from dcn_keras.training.warm_start import initialize_from
from tests.helpers import preset_model


def _same(a, b):
    """Whether two layers, or two lists of weights, hold equal weights."""
    a, b = (w.get_weights() if hasattr(w, "get_weights") else w for w in (a, b))
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))



def test_initialize_from_copies_the_networks_both_models_have(tmp_path):
    keras.utils.set_random_seed(1)
    trained = preset_model()
    trained.fine_only_model().save(tmp_path / "fine.keras")
    trained.save(tmp_path / "dcn.keras")
    keras.utils.set_random_seed(2)
    dcn = preset_model()
    coarse_before = dcn.coarse.get_weights()
    assert not _same(dcn.fine, trained.fine) and not _same(dcn.top, trained.top)

    assert initialize_from(dcn, str(tmp_path / "fine.keras")) == ["fine", "top"]
    assert _same(dcn.fine, trained.fine) and _same(dcn.top, trained.top)
    assert _same(dcn.coarse, coarse_before)
    assert initialize_from(dcn, str(tmp_path / "dcn.keras")) == ["coarse", "fine", "top"]
    assert _same(dcn.coarse, trained.coarse)
    fine_model = preset_model().fine_only_model()
    assert initialize_from(fine_model, str(tmp_path / "dcn.keras")) == ["fine", "top"]
    assert _same(fine_model.get_layer("fine"), trained.fine)


def test_initialize_from_names_what_does_not_fit(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from=.*nothing.keras: no such file"):
        initialize_from(preset_model(), str(tmp_path / "nothing.keras"))
    (tmp_path / "junk.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="init_from=.*junk.keras is not a .keras model"):
        initialize_from(preset_model(), str(tmp_path / "junk.keras"))
    images = keras.Input((100, 100, 1))
    keras.Model(images, keras.layers.Dense(10)(keras.layers.Flatten()(images))).save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="other.keras has no coarse, fine, top network in common"):
        initialize_from(preset_model(), str(tmp_path / "other.keras"))
    wide = DynamicCapacityNetwork(**cluttered_mnist_towers(features=64), image_shape=(100, 100, 1))
    wide.save(tmp_path / "wide.keras")
    with pytest.raises(ValueError,
                       match=r"wide.keras: its 'coarse' has weights of shapes \[.*64.*layer 'coarse_conv2'"):
        initialize_from(preset_model(), str(tmp_path / "wide.keras"))  # Narrower than its source: no copy.


def test_a_network_with_a_new_layer_is_copied_layer_by_layer(tmp_path):
    from dcn_keras import presets

    keras.utils.set_random_seed(3)
    max_pooled = DynamicCapacityNetwork(**presets.svhn_reader_towers(pool="max"), image_shape=(64, 64, 3))
    max_pooled.fine_only_model().save(tmp_path / "max.keras")
    attention = DynamicCapacityNetwork.from_preset("svhn_reader_one_pool")
    said = []
    assert initialize_from(attention, str(tmp_path / "max.keras"), said.append) == ["fine", "top"]
    assert said == ["dcn_train: top: top_pool not in --init_from, left as initialized"]
    assert _same(attention.fine, max_pooled.fine)
    for layer in attention.top.layers:
        if layer.weights and layer.name != "top_pool":
            assert _same(layer, max_pooled.top.get_layer(layer.name))
    assert not np.any(attention.top.get_layer("top_pool").get_weights()[0])  # Still its zero start.


def test_a_reader_with_a_pool_per_head_starts_as_the_one_pool_reader(tmp_path):
    # Each head's pool and dense layer start as the shared ones: the same
    # answers before any step; then each head's layers are its own.
    keras.utils.set_random_seed(4)
    shared = DynamicCapacityNetwork.from_preset("svhn_reader_one_pool", image_shape=(64, 64, 3), num_patches=8)
    pool = shared.top.get_layer("top_pool")
    pool.score_kernel.assign(np.random.default_rng(0).normal(0, 0.3, pool.score_kernel.shape))
    shared.fine_only_model().save(tmp_path / "shared.keras")
    heads = DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=8)
    said = []
    assert initialize_from(heads, str(tmp_path / "shared.keras"), said.append) == ["fine", "top"]
    assert said == []
    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    want, got = shared.fine_only_model()(images), heads.fine_only_model()(images)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    first, third = heads.top.get_layer("top_pool_digit_1"), heads.top.get_layer("top_pool_digit_3")
    assert first is not third and first.score_kernel is not third.score_kernel


def _grown_from(tmp_path, source, preset, seed):
    # `preset` started from a saved `source` model: the two networks, what
    # `initialize_from` said, and both models' outputs on two images.
    keras.utils.set_random_seed(seed)
    old = DynamicCapacityNetwork.from_preset(source, image_shape=(64, 64, 3), num_patches=8)
    old.save(tmp_path / "source.keras")
    new = DynamicCapacityNetwork.from_preset(preset, image_shape=(64, 64, 3), num_patches=8)
    said = []
    assert initialize_from(new, str(tmp_path / "source.keras"), said.append) == ["coarse", "fine", "top"]
    images = np.random.default_rng(seed).random((2, 64, 64, 3), dtype=np.float32)
    want, got = old(images), new(images)
    for name in want["probabilities"]:  # Before a step, the grown model answers as its source.
        np.testing.assert_allclose(got["probabilities"][name], want["probabilities"][name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["locations"], want["locations"])
    return old, new, said, images


def _gradient(model, images, head, weights):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.fine_only_model()(images)[head] ** 2)
    return tape.gradient(loss, weights).numpy()


def test_a_wider_reader_starts_as_the_narrower_one_then_learns_with_its_new_filters(tmp_path):
    # svhn_reader_wide from svhn_reader: top_rows and fine_conv3 have more
    # filters; the extra filters' outgoing weights start at zero and get gradients.
    narrow, wide, said, images = _grown_from(tmp_path, "svhn_reader", "svhn_reader_wide", 5)
    assert said == ["dcn_train: fine: fine_conv3, fine_conv4 wider than in --init_from, widened from it",
                    "dcn_train: top: top_rows, top_read wider than in --init_from, widened from it"]
    assert wide.top.get_layer("top_rows").filters == 2 * narrow.top.get_layer("top_rows").filters
    read = wide.top.get_layer("top_read").kernel
    assert not np.any(read.numpy()[:, :, 64:, :]) and np.array_equal(read.numpy()[:, :, :64, :],
                                                                     narrow.top.get_layer("top_read").kernel.numpy())
    assert np.any(_gradient(wide, images, "digit_1", read)[:, :, 64:, :])  # The zero start is not a fixed point.


def test_a_placed_reader_starts_as_the_reader_then_learns_its_narrow_reading(tmp_path):
    # svhn_reader_placed from svhn_reader: each head's dense layer takes the
    # narrow reading's 128 inputs beside the wide one's 192, from zero weight.
    _, placed, said, images = _grown_from(tmp_path, "svhn_reader", "svhn_reader_placed", 7)
    dense = [f"top_dense_{name}" for name in (*(f"digit_{i}" for i in range(1, 6)), "length")]
    assert said == ["dcn_train: top: top_near not in --init_from, left as initialized",
                    f"dcn_train: top: {', '.join(dense)} wider than in --init_from, widened from it"]
    kernel = placed.top.get_layer("top_dense_digit_3").kernel
    assert kernel.shape == (192 + 128, 192) and not np.any(kernel.numpy()[192:])
    assert np.any(_gradient(placed, images, "digit_3", kernel)[192:])


def test_a_layer_that_cannot_be_widened_is_named(tmp_path):
    keras.utils.set_random_seed(6)
    DynamicCapacityNetwork.from_preset("svhn_reader_wide", image_shape=(64, 64, 3), num_patches=8).save(
        tmp_path / "wide.keras")
    narrow = DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=8)
    with pytest.raises(ValueError, match=r"wide.keras: its 'fine' .*layer 'fine_conv3'"):
        initialize_from(narrow, str(tmp_path / "wide.keras"))
