"""Bad data given to `fit` or `evaluate`: a ValueError naming it, and no weight changed."""

import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.models import DynamicCapacityNetwork
from tests.helpers import random_images


def _model():
    model = DynamicCapacityNetwork.from_preset("cluttered_mnist", num_patches=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def _unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


@pytest.mark.parametrize("labels, message", [
    (np.array([12, 1, 2, 3]), r"whole numbers in \[0, 10\); got \[12\]"),
    (np.array([-1, 1, 2, 3]), r"whole numbers in \[0, 10\); got \[-1\]"),
    (np.array([2.5, 1, 2, 3], np.float32), r"whole numbers in \[0, 10\); got \[2.5\]"),
    (np.array([1, 2, 3]), "3 labels for a batch of 4 images"),
])
def test_bad_labels_in_arrays_are_named_before_any_step(labels, message):
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        model.fit(random_images(4), labels, batch_size=4, epochs=1, verbose=0)
    assert _unchanged(model, before)


def test_a_nan_image_is_named_by_its_row_and_nothing_trains():
    model = _model()
    images = random_images(6)
    images[4, 10, 10, 0] = np.nan
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"NaN or infinite pixels in 1 image\(s\), at rows \[4\]"):
        model.fit(images, np.arange(6), batch_size=2, epochs=1, verbose=0)
    assert _unchanged(model, before)


def test_bad_data_after_the_first_batch_of_a_dataset_stops_the_step_with_a_value_error():
    # The first batch is good, so only the in-step checks can see the rest.
    model = _model()
    images = random_images(8)
    images[5, 0, 0, 0] = np.inf
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 10)).batch(4)
    model.fit(data.take(1), epochs=1, verbose=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"NaN or infinite pixels in batch rows \[1\]; nothing was trained"):
        model.fit(data, epochs=1, verbose=0)
    # The second batch's step stopped before the optimizer: only the first batch's update happened.
    assert not _unchanged(model, before)
    labels = np.array([0, 1, 2, 3, 4, 11, 6, 7])
    after_first = model.get_weights()
    bad_labels = tf.data.Dataset.from_tensor_slices((random_images(8), labels)).batch(4).skip(1)
    with pytest.raises(ValueError, match=r"whole numbers in \[0, 10\); got \[11\]"):
        model.fit(bad_labels, epochs=1, verbose=0)
    assert _unchanged(model, after_first)


def test_three_channels_after_training_on_one_is_a_value_error_not_a_graph_error():
    model = _model()
    model.fit(random_images(4), np.arange(4), batch_size=4, epochs=1, verbose=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"Expected images of shape \(None, 100, 100, 1\); got \(4, 100, 100, 3\)"):
        model.fit(random_images(4, (100, 100, 3)), np.arange(4), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="got no labels"):
        model.fit(random_images(4), batch_size=4, epochs=1, verbose=0)
    assert _unchanged(model, before)


def test_evaluate_checks_the_same_way():
    model = _model()
    with pytest.raises(ValueError, match=r"got \[10\]"):
        model.evaluate(random_images(4), np.array([10, 1, 2, 3]), verbose=0)


def test_checking_a_dataset_does_not_iterate_it():
    # A new iterator of a shuffled dataset draws a new order: checking by reading
    # the first batch would change which batches fit sees.
    model = _model()
    images = random_images(8)
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(8))).shuffle(8, seed=1).batch(4)
    order = [list(y.numpy()) for _, y in data]
    fresh = tf.data.Dataset.from_tensor_slices((images, np.arange(8))).shuffle(8, seed=1).batch(4)
    from dcn_keras.models.fit_checks import check_fit_data
    check_fit_data(model, fresh)
    assert [list(y.numpy()) for _, y in fresh] == order
    with pytest.raises(ValueError, match=r"Expected images of shape \(None, 100, 100, 1\); the dataset yields"):
        model.fit(tf.data.Dataset.from_tensor_slices((random_images(4, (100, 100, 3)), np.arange(4))).batch(2))
    with pytest.raises(ValueError, match="the dataset yields no labels"):
        model.fit(tf.data.Dataset.from_tensor_slices(random_images(4)).batch(2))


def _trained_on(images, labels, as_dataset):
    keras.utils.set_random_seed(0)
    model = _model()
    if as_dataset:
        model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(4), epochs=1, verbose=0)
    else:
        model.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return model.get_weights(), model.evaluate(images, labels, verbose=0, return_dict=True)


@pytest.mark.parametrize("as_dataset", [True, False])
def test_uint8_images_train_and_evaluate_as_their_floats_over_255(as_dataset):
    pixels = np.random.default_rng(3).integers(0, 256, (8, 100, 100, 1)).astype(np.uint8)
    labels = np.arange(8)
    eight_bit = _trained_on(pixels, labels, as_dataset)
    floats = _trained_on(pixels.astype(np.float32) / np.float32(255), labels, as_dataset)
    assert all(np.array_equal(a, b) for a, b in zip(eight_bit[0], floats[0]))
    assert eight_bit[1] == floats[1]


def test_other_integer_images_are_named_with_what_is_allowed():
    model = _model()
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 100, 100, 1), np.int32), np.arange(4))).batch(2)
    with pytest.raises(ValueError, match=r"float32 tensors in \[0, 1\] \(or uint8, 0-255\); the dataset yields"):
        model.fit(data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Expected at least one image"):
        model.fit(np.zeros((0, 100, 100, 1), np.uint8), np.zeros(0, int), verbose=0)
    with pytest.raises(ValueError, match=r"Expected images of shape \(None, 100, 100, 1\)"):
        model.fit(np.zeros((4, 100, 100, 3), np.uint8), np.arange(4), verbose=0)
