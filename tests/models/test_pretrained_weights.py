import os

import numpy as np
import pytest
import tensorflow as tf

import dcn_keras
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import megapixel_mnist
from dcn_keras.datasets import mnist_numbers
from dcn_keras.evaluation import right_answers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _test_images(preset, count):
    # Real test images of the preset's data at its size: cluttered or megapixel
    # canvases (at most 24 of those: a 1500-px canvas is 9 MB as float32), or numbers.
    model = dcn_keras.DynamicCapacityNetwork.from_preset(preset)
    size = model.image_shape[0]
    if preset.startswith("megapixel"):
        descriptions, digits, _ = megapixel_mnist.split_descriptions("test", "embedded", num_canvases=24)
        canvases = megapixel_mnist.draw_canvases(descriptions, digits)[:count]
        return canvases.astype(np.float32) / 255.0, descriptions.labels[:count]
    if model.image_shape[-1] == 1:
        canvases, labels = cluttered_mnist.split_canvases("test", "embedded", canvas_size=size)[:2]
        return canvases[:count].astype(np.float32) / 255.0, labels[:count]
    numbers, labels = mnist_numbers.split_numbers("test", "embedded", num_numbers=count, image_size=size,
                                                  digit_scale=1.0)[:2]
    return np.repeat(numbers, 3, axis=-1).astype(np.float32) / 255.0, labels


def _cells(locations):
    """Each image's `(row, col)` locations in row-major order."""
    locations = np.asarray(locations)
    keys = locations[..., 0] * 100_000 + locations[..., 1]
    return np.take_along_axis(locations, np.argsort(keys, axis=1)[..., None], axis=1)


@pytest.mark.parametrize("preset, weights, saved_model", [
    ("cluttered_mnist", "pretrained", "cluttered_mnist_dcn"),
    ("cluttered_mnist_fast", "pretrained", "cluttered_mnist_fast_full_dcn"),
    ("svhn_reader_one_pool", "pretrained", "svhn_reader_numbers_dcn/1"),
    ("svhn_reader", "pretrained", "svhn_reader_numbers_dcn/4"),
    ("megapixel_mnist", "pretrained", "megapixel_mnist_dcn")])
def test_pretrained_weights_predict_as_the_shipped_saved_model(preset, weights, saved_model):
    shipped = os.path.join(ROOT, "saved_models", saved_model if "/" in saved_model else f"{saved_model}/1")
    model = dcn_keras.DynamicCapacityNetwork.from_preset(preset, weights=weights)
    images, _ = _test_images(preset, 128)
    served = tf.saved_model.load(shipped).signatures["serving_default"](images=tf.constant(images))
    out = model.predict(images, verbose=0)
    served_heads = {k[len("probabilities_"):]: v for k, v in served.items() if k.startswith("probabilities_")}
    for head, p in (out["probabilities"].items() if served_heads else [(None, out["probabilities"])]):
        np.testing.assert_allclose(p, served_heads[head] if head else served["probabilities"], atol=1e-5)
    # The same cells refined. Their order is by saliency, and two cells a float
    # rounding apart may come in either order on the two runtimes (seen for
    # svhn_reader_numbers_dcn/1: ranks 55 and 56 of 192 in one of 128 images).
    np.testing.assert_array_equal(_cells(out["locations"]), _cells(served["locations"]))
    if model.exit_threshold is not None:  # The export keeps the preset's early exit.
        np.testing.assert_array_equal(out["refined"], served["refined"].numpy())
        assert 0 < out["refined"].sum() < len(images)
    # Trained weights, not the random ones weights=None gives.
    fresh = dcn_keras.DynamicCapacityNetwork.from_preset(preset)
    fresh_p, out_p = fresh.predict(images[:4], verbose=0)["probabilities"], out["probabilities"]
    assert not all(np.allclose(a, b[:4]) for a, b in zip(tf.nest.flatten(fresh_p), tf.nest.flatten(out_p)))


@pytest.mark.parametrize("preset, weights", [
    (preset, name) for preset, names in dcn_keras.presets.PRETRAINED.items() for name in names])
def test_every_shipped_weights_file_reads_the_embedded_test_images(preset, weights):
    # Those without a SavedModel too. (The full-MNIST ones have seen these digits in training.)
    model = dcn_keras.DynamicCapacityNetwork.from_preset(preset, weights=weights)
    images, labels = _test_images(preset, 300)
    right = right_answers(model.predict(images, verbose=0)["probabilities"], labels)
    # Megapixel: 24 canvases, where 4% error on 1,000 would allow up to 3 wrong.
    bound = 0.2 if preset.startswith("megapixel") else 0.06 if model.image_shape[-1] == 1 else 0.15
    assert 1 - right.mean() < bound


def test_pretrained_weights_files_are_small():
    # They ship inside the package. The largest, the numbers reader with a
    # pool and a dense layer per head, is 2.1 MB.
    for preset, names in dcn_keras.presets.PRETRAINED.items():
        for name in names:
            assert os.path.getsize(dcn_keras.presets.weights_path(preset, name)) < 3 * 2**20


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
                                         "presets with 'pretrained': \\['cluttered_mnist', 'cluttered_mnist_fast', 'megapixel_mnist', "
                                         "'svhn_reader', 'svhn_reader_one_pool'\\]"):
        dcn_keras.DynamicCapacityNetwork.from_preset("svhn", weights="pretrained")
