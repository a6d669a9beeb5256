import os

import numpy as np
import pytest
import tensorflow as tf

import dcn_keras
from dcn_keras.datasets import cluttered_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("preset, weights, saved_model", [
    ("cluttered_mnist", "pretrained", "cluttered_mnist_dcn"),
    ("cluttered_mnist_fast", "pretrained", "cluttered_mnist_fast_full_dcn")])
def test_pretrained_weights_predict_as_the_shipped_saved_model(preset, weights, saved_model):
    shipped = os.path.join(ROOT, "saved_models", saved_model, "1")
    model = dcn_keras.DynamicCapacityNetwork.from_preset(preset, weights=weights)
    canvases = cluttered_mnist.split_canvases("test", "embedded")[0][:128]
    images = canvases.astype(np.float32) / 255.0
    served = tf.saved_model.load(shipped).signatures["serving_default"](images=tf.constant(images))
    out = model.predict(images, verbose=0)
    np.testing.assert_array_equal(out["probabilities"].argmax(-1), served["classes"].numpy())
    np.testing.assert_allclose(out["probabilities"], served["probabilities"], atol=1e-6)
    np.testing.assert_allclose(out["coarse_probabilities"], served["coarse_probabilities"], atol=1e-6)
    np.testing.assert_array_equal(out["locations"], served["locations"])
    if model.exit_threshold is not None:  # The export keeps the preset's early exit.
        np.testing.assert_array_equal(out["refined"], served["refined"].numpy())
        assert 0 < out["refined"].sum() < len(images)
    # Trained weights, not the random ones weights=None gives.
    fresh = dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist")
    assert not np.allclose(fresh.predict(images[:4], verbose=0)["probabilities"], out["probabilities"][:4])


@pytest.mark.parametrize("preset, weights", [
    (preset, name) for preset, names in dcn_keras.presets.PRETRAINED.items() for name in names])
def test_every_shipped_weights_file_reads_the_embedded_test_canvases(preset, weights):
    # Those without a SavedModel too. (The full-MNIST ones have seen these digits in training.)
    model = dcn_keras.DynamicCapacityNetwork.from_preset(preset, weights=weights)
    canvases, labels = cluttered_mnist.split_canvases("test", "embedded")[:2]
    predicted = model.predict(canvases[:300].astype(np.float32) / 255.0, verbose=0)["probabilities"].argmax(-1)
    assert (predicted != labels[:300]).mean() < 0.06


def test_pretrained_weights_files_are_small():
    for preset, names in dcn_keras.presets.PRETRAINED.items():
        for name in names:
            assert os.path.getsize(dcn_keras.presets.weights_path(preset, name)) < 2**20


def test_weights_from_a_file_and_overrides(tmp_path):
    source = dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist")
    path = str(tmp_path / "mine.weights.h5")
    source.save_weights(path)
    model = dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist", weights=path, num_patches=16)
    assert model.num_patches == 16
    for a, b in zip(source.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("weights, message", [
    ("imagenet", "weights='imagenet' is not valid; use None \\(random\\), a shipped name \\(pretrained, "
                 "pretrained_embedded, pretrained_full_mnist\\) or the path"),
    ("pretrained_imagenet", "Preset 'cluttered_mnist' has no 'pretrained_imagenet' weights; its shipped weights: "
                            "\\['pretrained', 'pretrained_full_mnist'\\]"),
    ("missing.weights.h5", "weights='missing.weights.h5': no such file"),
    (3, "weights=3 is not valid"),
])
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist", weights=weights)


def test_a_preset_without_pretrained_weights_says_which_have_them():
    with pytest.raises(ValueError, match="Preset 'svhn' has no 'pretrained' weights; its shipped weights: none; "
                                         "presets with 'pretrained': \\['cluttered_mnist', 'cluttered_mnist_fast'\\]"):
        dcn_keras.DynamicCapacityNetwork.from_preset("svhn", weights="pretrained")
