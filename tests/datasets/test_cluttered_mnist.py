import numpy as np
import pytest
import tensorflow_datasets as tfds

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import load_dataset


def _digits(count=20, value=1):
    return np.full((count, 28, 28), value, np.uint8), np.arange(count) % 10


def test_digit_is_fully_inside_and_values_are_in_range():
    digits, labels = cluttered_mnist.embedded_digits("train")
    images, _, corners = cluttered_mnist.make_canvases(
        digits[:200], labels[:200], num_images=300, num_distractors=0, seed=1)
    assert images.shape == (300, 100, 100, 1) and images.dtype == np.uint8
    assert (corners >= 0).all() and (corners + 28 <= 100).all()
    known = {d.tobytes(): d for d in digits[:200]}
    for n in range(300):
        y, x = corners[n]
        placed = images[n, y:y + 28, x:x + 28, 0]
        # All of the digit's ink is inside the canvas, at its corner.
        assert placed.tobytes() in known
        assert int(images[n].sum()) == int(placed.sum())
    cluttered, _, _ = cluttered_mnist.make_canvases(digits[:200], labels[:200], seed=1)
    scaled = cluttered.astype(np.float32) / 255.0
    assert scaled.min() == 0.0 and scaled.max() == 1.0


def test_exactly_eight_distractors_of_eight_by_eight():
    # Every pixel of every digit is 1, so the canvas sum counts pasted pixels
    # exactly, overlaps included (nothing reaches the 255 clip).
    digits, labels = _digits()
    images, _, _ = cluttered_mnist.make_canvases(digits, labels, num_images=50, seed=2)
    totals = images.reshape(50, -1).sum(axis=1)
    np.testing.assert_array_equal(totals, 28 * 28 + 8 * 8 * 8)
    images, _, _ = cluttered_mnist.make_canvases(
        digits, labels, num_images=5, num_distractors=3, distractor_size=5, seed=2)
    np.testing.assert_array_equal(images.reshape(5, -1).sum(axis=1), 28 * 28 + 3 * 25)


def test_pixels_are_clipped_not_wrapped():
    digits, labels = _digits(value=200)
    images, _, _ = cluttered_mnist.make_canvases(digits, labels, num_images=30, seed=3)
    assert images.max() == 255  # 200 + 200 clipped, not wrapped around to 144


def test_same_seed_same_data_and_other_seed_other_data():
    digits, labels = cluttered_mnist.embedded_digits("validation")
    a = cluttered_mnist.make_canvases(digits, labels, seed=7)
    b = cluttered_mnist.make_canvases(digits, labels, seed=7)
    c = cluttered_mnist.make_canvases(digits, labels, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_embedded_splits_are_disjoint_and_test_is_the_reserved_last_thousand():
    train, _ = cluttered_mnist.embedded_digits("train")
    val, _ = cluttered_mnist.embedded_digits("validation")
    test, test_labels = cluttered_mnist.embedded_digits("test")
    assert (len(train), len(val), len(test)) == (3500, 500, 1000)
    seen = {d.tobytes() for d in np.concatenate([train, val])}
    assert not any(d.tobytes() in seen for d in test)
    with np.load(cluttered_mnist.EMBEDDED_PATH) as data:
        np.testing.assert_array_equal(test, data["images"][4000:])
    assert np.bincount(test_labels).tolist() == [100] * 10


def test_no_test_digit_in_training_canvases():
    train_digits, train_labels = cluttered_mnist.embedded_digits("train")
    test_digits, _ = cluttered_mnist.embedded_digits("test")
    images, _, corners = cluttered_mnist.make_canvases(
        train_digits, train_labels, num_images=200, num_distractors=0, seed=4)
    test_set = {d.tobytes() for d in test_digits}
    train_set = {d.tobytes() for d in train_digits}
    for n in range(200):
        y, x = corners[n]
        placed = images[n, y:y + 28, x:x + 28, 0]
        assert placed.tobytes() in train_set and placed.tobytes() not in test_set


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(cluttered_mnist, "tfds_unavailable_reason", lambda *a, **k: "offline (test)")


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(cluttered_mnist, "tfds_unavailable_reason", lambda *a, **k: None)


def test_load_dataset_falls_back_to_embedded_digits_offline(offline, tmp_path):
    dataset, info = load_dataset("cluttered_mnist", "test", digits="auto", data_dir=str(tmp_path))
    assert info.num_examples == 1000 and "embedded" in info.source
    x, y = next(iter(dataset.batch(4)))
    assert x.shape == (4, 100, 100, 1) and float(x.numpy().max()) <= 1.0


def test_tfds_digits_are_used_when_available(online):
    with tfds.testing.mock_data(num_examples=60):
        dataset, info = load_dataset("cluttered_mnist", "validation", digits="tfds")
    assert "tfds" in info.source
    assert info.num_examples > 0
    x, _ = next(iter(dataset.batch(2)))
    assert x.shape[1:] == (100, 100, 1)


def test_explicit_tfds_source_without_network_says_what_to_do(offline, tmp_path):
    with pytest.raises(RuntimeError, match="offline \\(test\\).*digits=embedded"):
        cluttered_mnist.load_digits("test", "tfds", data_dir=str(tmp_path))


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(ValueError, match="cluttered_mnist, folder, megapixel_mnist, mnist_numbers, svhn, svhn_cropped, or tfds:NAME"):
        load_dataset("mnist_cluttered", "train")


def test_split_canvases_are_what_the_loader_serves_with_each_digit_where_it_says():
    dataset, _ = load_dataset("cluttered_mnist", "validation", digits="embedded", seed=4)
    images, labels, corners, index, digits, source = cluttered_mnist.split_canvases(
        "validation", "embedded", seed=4)
    served = list(dataset.batch(1000).as_numpy_iterator())[0]
    np.testing.assert_allclose(served[0], images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(served[1], labels)
    assert source == "embedded" and len(digits) == 500
    for n in range(0, 500, 50):  # The digit's ink is on the canvas at its corner.
        y, x = corners[n]
        window = images[n, y:y + 28, x:x + 28, 0]
        assert np.all(window >= np.minimum(digits[index[n]], 255))


def test_more_canvases_per_digit_use_each_digit_that_many_times():
    _, labels, _, index, digits, _ = cluttered_mnist.split_canvases(
        "validation", "embedded", examples_per_digit=3)
    assert len(labels) == 3 * len(digits) == 1500
    np.testing.assert_array_equal(np.bincount(index, minlength=len(digits)), 3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "2"])
def test_bad_examples_per_digit_is_named(bad):
    with pytest.raises(ValueError, match=f"examples_per_digit={bad!r} must be an integer >= 1"):
        cluttered_mnist.split_canvases("test", "embedded", examples_per_digit=bad)


def test_object_boxes_hold_exactly_each_digits_ink():
    dataset, info = load_dataset("cluttered_mnist", "test", digits="embedded", canvas_size=60, num_distractors=0)
    boxes = info.object_boxes
    assert boxes.shape == (info.num_examples, 1, 4)
    for (image, _), (top, left, height, width) in zip(dataset.take(20).as_numpy_iterator(), boxes[:20, 0]):
        top, left, height, width = (int(v) for v in (top, left, height, width))
        ink = image[..., 0] > 0  # No clutter: every inked pixel is the digit's.
        assert ink[top:top + height, left:left + width].sum() == ink.sum()
        inside = ink[top:top + height, left:left + width]
        # Tight: each edge row and column of the box holds ink.
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
