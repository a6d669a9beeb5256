import re

import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.models.objective import labels_per_head
from dcn_keras.models.objective import per_example_ce_and_correct
from dcn_keras.models.objective import weighted_mean
from tests.helpers import preset_model
from tests.helpers import random_images

LOGITS = tf.zeros([4, 10])
HEADS = {"length": tf.zeros([4, 6]), "digit_1": tf.zeros([4, 11])}


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 3, 9, 2]),
        np.array([[0], [3], [9], [2]], np.int64),
        np.array([0.0, 3.0, 9.0, 2.0], np.float32),
        np.array([0, 3, 9, 2], np.uint8),
    ],
)
def test_class_indices_of_one_head_come_back_as_an_int32_vector(labels):
    (y,) = labels_per_head(labels, LOGITS)
    assert y.dtype == tf.int32
    np.testing.assert_array_equal(y.numpy(), [0, 3, 9, 2])


def test_several_heads_take_a_dict_in_head_name_order():
    labels = {"length": np.array([1, 2, 3, 5]), "digit_1": np.array([10, 0, 4, 9])}
    ys = labels_per_head(labels, HEADS)
    np.testing.assert_array_equal([y.numpy() for y in ys], [[10, 0, 4, 9], [1, 2, 3, 5]])
    ce, correct = per_example_ce_and_correct(ys, HEADS)
    np.testing.assert_allclose(ce.numpy(), np.full(4, np.log(6) + np.log(11)), rtol=1e-6)


def test_the_digits_boxes_beside_the_heads_labels_are_passed_over():
    labels = {"length": np.array([1, 2, 3, 5]), "digit_1": np.array([10, 0, 4, 9]), "boxes": np.zeros((4, 5, 4))}
    ys = labels_per_head(labels, HEADS)
    np.testing.assert_array_equal([y.numpy() for y in ys], [[10, 0, 4, 9], [1, 2, 3, 5]])


@pytest.mark.parametrize(
    "labels,logits,message",
    [
        (np.eye(10)[:4], LOGITS, r"shape \[batch\] or \[batch, 1\]; got shape \(4, 10\) \(one-hot"),
        (np.zeros((4, 1, 1)), LOGITS, r"got shape \(4, 1, 1\)"),
        (np.array(["1", "2", "3", "4"]), LOGITS, "numbers; got dtype string"),
        (np.arange(5), LOGITS, "5 labels for a batch of 4"),
        ({"y": np.arange(4)}, LOGITS, r"one softmax head.*got a dict with keys \['y'\]"),
        (np.arange(4), HEADS, r"heads \['digit_1', 'length'\].*dict.*got one tensor of shape \(4,\)"),
        ({"length": np.arange(4), "digit_0": np.arange(4)}, HEADS,
         r"missing \['digit_1'\], unknown \['digit_0'\]"),
        ([np.arange(4)], [LOGITS, LOGITS], "2 softmax heads.*list of 2.*got a list of 1"),
    ],
)
def test_labels_of_the_wrong_kind_or_shape_raise_a_clear_value_error(labels, logits, message):
    with pytest.raises(ValueError, match=message):
        labels_per_head(labels, logits)


@pytest.mark.parametrize(
    "labels,bad",
    [
        (np.array([0, 10, 2, 3]), r"\[10\]"),
        (np.array([0, -1, 2, -4]), r"\[-1 -4\]"),
        (np.array([0.0, 2.5, 2.0, 3.0], np.float32), r"\[2.5\]"),
    ],
)
def test_class_indices_out_of_range_or_not_whole_name_the_bad_values(labels, bad):
    # Traced, as in a train step: values are checked when the graph runs.
    check = tf.function(lambda y: labels_per_head(y, LOGITS))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"whole numbers in \[0, 10\); got\] " + bad):
        check(labels)


def test_fit_stops_on_a_label_out_of_range_instead_of_training_on_it():
    model = preset_model()
    model.compile(optimizer="adam")
    before = [w.numpy() for w in model.trainable_weights]
    with pytest.raises(ValueError, match=r"in \[0, 10\); got \[10\]"):
        model.fit(random_images(4), np.array([0, 1, 10, 3]), batch_size=4, verbose=0)
    for old, new in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_sample_weight_weights_each_example_and_must_have_one_per_example():
    values = tf.constant([1.0, 2.0, 3.0, 4.0])
    assert weighted_mean(values, np.array([[1.0], [0.0], [0.0], [2.0]])).numpy() == 9.0 / 4
    for bad in (np.ones((4, 3)), np.ones(5), np.ones((4, 1, 1))):
        message = r"\[batch\] or \[batch, 1\] for a batch of 4; got shape " + re.escape(str(bad.shape))
        with pytest.raises(ValueError, match=message):
            weighted_mean(values, bad)
