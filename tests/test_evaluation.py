import math
import os

import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.evaluation import blank_filled_logits
from dcn_keras.evaluation import compare_saved_models
from dcn_keras.evaluation import evaluate_saved_model
from dcn_keras.evaluation import exact_mcnemar_p
from dcn_keras.evaluation import right_answers
from tests.helpers import number_reader
from tests.helpers import preset_model
from tests.helpers import random_images


def test_exact_mcnemar_p_is_twice_the_binomial_tail():
    assert exact_mcnemar_p(9, 3) == pytest.approx(2 * (1 + 12 + 66 + 220) / 4096)
    assert exact_mcnemar_p(3, 9) == exact_mcnemar_p(9, 3)
    assert exact_mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert exact_mcnemar_p(5, 5) == 1.0 and exact_mcnemar_p(0, 0) == 1.0


@pytest.mark.parametrize("a,b,name", [(-1, 2, "only_a_right=-1"), (2, 1.5, "only_b_right=1.5")])
def test_exact_mcnemar_p_rejects_non_counts(a, b, name):
    with pytest.raises(ValueError, match=f"{name} must be a count"):
        exact_mcnemar_p(a, b)


def _always(label, path):
    """A saved baseline that predicts `label` for every canvas."""
    images = keras.Input((100, 100, 1))
    logits = keras.layers.Dense(10, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(
        np.eye(10)[label]))(keras.layers.GlobalMaxPooling2D()(images))
    keras.Model(images, logits).save(path)
    return str(path)


def test_a_number_is_right_only_when_every_head_is():
    one_hot = lambda y, classes: np.eye(classes)[y]  # noqa: E731
    heads = {"length": one_hot([2, 2, 1], 6), "digit_1": one_hot([4, 4, 7], 11), "digit_2": one_hot([1, 0, 10], 11)}
    labels = {"length": np.array([2, 2, 1]), "digit_1": np.array([4, 4, 7]), "digit_2": np.array([1, 1, 10])}
    np.testing.assert_array_equal(right_answers(heads, labels), [True, False, True])
    np.testing.assert_array_equal(right_answers(one_hot([3, 1], 4), np.array([3, 0])), [True, False])
    with pytest.raises(ValueError, match=r"labels have no \['digit_2'\]"):
        right_answers(heads, {k: v for k, v in labels.items() if k != "digit_2"})
    with pytest.raises(ValueError, match=r"heads \(one head\) do not fit the labels \(a dict"):
        right_answers(one_hot([3, 1], 4), labels)


def test_paired_comparison_counts_the_examples_only_one_model_gets_right(tmp_path):
    zeros, ones = _always(0, tmp_path / "zeros.keras"), _always(1, tmp_path / "ones.keras")
    options = dict(digits="embedded", examples_per_digit=2)
    labels = cluttered_mnist.split_canvases("test", "embedded", examples_per_digit=2)[1]
    reported = []
    result = compare_saved_models(zeros, ones, "cluttered_mnist", "test", **options,
                                  progress=lambda done, total: reported.append((done, total)))
    # After each batch of 64, over both models' passes.
    assert reported[0] == (64, 4000) and reported[31] == (2000, 4000) and reported[-1] == (4000, 4000)
    assert len(reported) == 64 and all(a[0] < b[0] for a, b in zip(reported, reported[1:]))
    n0, n1 = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    assert result["examples"] == 2000 and (result["only_a_right"], result["only_b_right"]) == (n0, n1)
    assert result["error_a"] == pytest.approx(1 - n0 / 2000)
    assert result["error_b"] == pytest.approx(1 - n1 / 2000)
    assert result["p_value"] == pytest.approx(exact_mcnemar_p(n0, n1))
    reported.clear()
    alone = evaluate_saved_model(zeros, "cluttered_mnist", "test", batch_size=500, **options,
                                 progress=lambda done, total: reported.append((done, total)))
    assert reported == [(500, 2000), (1000, 2000), (1500, 2000), (2000, 2000)]
    assert alone["error"] == pytest.approx(result["error_a"]) and alone["examples"] == 2000

    same = compare_saved_models(zeros, zeros, "cluttered_mnist", "test", digits="embedded")
    assert (same["only_a_right"], same["only_b_right"], same["p_value"]) == (0, 0, 1.0)
    assert not math.isnan(same["error_a"]) and same["examples"] == 1000


def test_a_paired_comparison_of_number_readers_says_where_each_ones_errors_come_from(tmp_path):
    options = dict(digits="embedded", examples_per_digit=1, max_digits=2)
    ones, sevens = number_reader(tmp_path / "ones.keras", 1, 1), number_reader(tmp_path / "sevens.keras", 2, 7)
    paired = compare_saved_models(ones, sevens, "mnist_numbers", "test", **options)
    for name, path in (("a", ones), ("b", sevens)):
        alone = evaluate_saved_model(path, "mnist_numbers", "test", **options)
        assert paired[f"breakdown_{name}"] == alone["breakdown"]
        assert paired[f"error_{name}"] == pytest.approx(alone["breakdown"]["whole_number"])
    # Reading every number as one digit: the length head is wrong on every two-digit number,
    # and the second digit head on all of them; a reader of two-digit 77s the other way round.
    a, b = paired["breakdown_a"], paired["breakdown_b"]
    assert a["per_length"][2]["error"] == 1.0 and b["per_length"][1]["error"] == 1.0
    assert a["per_position"][2]["error"] == 1.0 and b["per_position"][2]["error"] < 1.0
    assert a["length_head"] + b["length_head"] == pytest.approx(1.0)
    assert paired["examples"] == a["examples"] == 1000 and "patches" not in a  # Baselines choose no patches.
    # A split without digit boxes gets no breakdown.
    zeros, ones = _always(0, tmp_path / "zeros.keras"), _always(1, tmp_path / "o.keras")
    assert "breakdown_a" not in compare_saved_models(zeros, ones, "cluttered_mnist", "test", digits="embedded")


def test_blank_filled_logits_keep_the_selected_fine_vectors_and_blank_the_rest():
    dcn = preset_model(num_patches=8)
    rng = np.random.default_rng(1)
    for layer in dcn.fine.layers:  # Zero biases would make the blank vector zero.
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.uniform(0.01, 0.1, layer.bias.shape))
    images = tf.constant(random_images(3))
    out = dcn.forward(images)
    blank = dcn.fine(tf.zeros([1, *dcn.geometry.patch_size, 1])).numpy().reshape(-1)
    assert np.any(blank > 0)
    grid = np.tile(blank, (3, *dcn.geometry.grid_shape, 1))
    for b, cells in enumerate(out.locations.numpy()):
        for (row, col), vector in zip(cells, out.fine_vectors.numpy()[b]):
            grid[b, row, col] = vector
    np.testing.assert_allclose(blank_filled_logits(dcn, images), dcn.top(grid), rtol=1e-5, atol=1e-5)
    assert not np.allclose(blank_filled_logits(dcn, images), out.logits, atol=1e-3)

    # Every cell refined: nothing is left to fill, so the DCN's own logits.
    everything = dcn.with_num_patches(int(np.prod(dcn.geometry.grid_shape)))
    np.testing.assert_allclose(blank_filled_logits(everything, images), everything.forward(images).logits,
                               rtol=1e-5, atol=1e-5)


def test_unrefined_blank_is_checked(tmp_path):
    options = dict(digits="embedded")
    with pytest.raises(ValueError, match="unrefined='empty' is not one of coarse, blank"):
        evaluate_saved_model(_always(0, tmp_path / "zeros.keras"), "cluttered_mnist", unrefined="empty", **options)
    with pytest.raises(ValueError, match="unrefined='blank' needs a DCN; .*zeros.keras holds a Functional"):
        evaluate_saved_model(str(tmp_path / "zeros.keras"), "cluttered_mnist", unrefined="blank", **options)
    with pytest.raises(ValueError, match="unrefined='blank' needs a .keras DCN, not the SavedModel"):
        evaluate_saved_model("saved_models/cluttered_mnist_dcn/1", "cluttered_mnist", unrefined="blank", **options)


def test_save_picture_draws_the_first_images_of_a_split(tmp_path):
    from PIL import Image

    from dcn_keras.evaluation import save_picture

    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "saved_models", "cluttered_mnist_dcn", "1")
    path = save_picture(str(tmp_path / "p.png"), shipped, "cluttered_mnist", count=2, digits="embedded")
    two = np.asarray(Image.open(path))
    save_picture(str(tmp_path / "q.png"), shipped, "cluttered_mnist", count=1, digits="embedded")
    one = np.asarray(Image.open(tmp_path / "q.png"))
    assert two.shape[1] == one.shape[1] and 1.7 < two.shape[0] / one.shape[0] < 2.3
    with pytest.raises(ValueError, match="picture=p.jpg must name a .png file"):
        save_picture("p.jpg", shipped, "cluttered_mnist")


def test_a_keras_dcn_is_evaluated_with_another_saliency_and_a_saved_model_says_it_cannot(tmp_path):
    from tests.helpers import preset_model

    model = preset_model()
    model.save(str(tmp_path / "dcn.keras"))
    result = evaluate_saved_model(str(tmp_path / "dcn.keras"), "cluttered_mnist", "validation",
                                  digits="embedded", saliency="cam")
    assert result["examples"] == 500
    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "saved_models", "cluttered_mnist_dcn", "1")
    with pytest.raises(ValueError, match="saliency='cam' needs a .keras DCN; a SavedModel's saliency is fixed"):
        evaluate_saved_model(shipped, "cluttered_mnist", "validation", digits="embedded", saliency="cam")


def test_keras_models_are_scored_at_the_canvas_asked_for(tmp_path):
    # A 100-px DCN and its fine model, scored on 60-px canvases: each runs there
    # (same weights), and both see the same images.
    model = preset_model()
    dcn_path, fine_path = str(tmp_path / "dcn.keras"), str(tmp_path / "fine.keras")
    model.save(dcn_path)
    model.fine_only_model().save(fine_path)
    options = dict(digits="embedded", canvas_size=60)
    alone = evaluate_saved_model(dcn_path, "cluttered_mnist", "test", **options)
    paired = compare_saved_models(dcn_path, fine_path, "cluttered_mnist", "test", **options)
    assert alone["examples"] == paired["examples"] == 1000
    assert paired["error_a"] == pytest.approx(alone["error"])


def test_a_batch_too_large_for_memory_names_batch_size(tmp_path, monkeypatch):
    import dcn_keras.evaluation

    def out_of_memory(images):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,1509,1509,16]")

    path = _always(0, tmp_path / "zeros.keras")
    monkeypatch.setattr(dcn_keras.evaluation, "_predictor", lambda *args, **kwargs: out_of_memory)
    with pytest.raises(ValueError, match=r"batch_size=8 does not fit in memory on images of shape \(100, 100, 1\); "
                                         r"use a smaller batch_size \(TensorFlow: OOM when allocating"):
        evaluate_saved_model(path, "cluttered_mnist", "test", digits="embedded", batch_size=8)
