import numpy as np
import pytest

from dcn_keras.datasets import DATASETS
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import load_dataset
from dcn_keras.datasets import megapixel_mnist


def _test_digits():
    return cluttered_mnist.embedded_digits("test")


def test_each_canvas_holds_three_target_digits_and_two_others_without_overlap():
    digits, labels = _test_digits()
    described = megapixel_mnist.describe_canvases(labels, 200, canvas_size=300, num_noise=7, seed=3)
    assert len(described) == 200 and described.noise_index.shape == (200, 7)
    classes = labels[described.digit_index]  # [N, 5]
    assert (classes[:, :3] == described.labels[:, None]).all()
    assert (classes[:, 3:] != described.labels[:, None]).all()
    corners = described.digit_corners
    assert corners.min() >= 0 and corners.max() <= 300 - 28
    apart = np.abs(corners[:, :, None] - corners[:, None, :]).max(-1)  # Chebyshev distance, [N, 5, 5]
    assert (apart + 28 * np.eye(5, dtype=int) >= 28).all()  # No two 28x28 boxes overlap.
    assert described.noise_corners.min() >= 28 and described.noise_corners.max() < 300 - 28
    assert set(np.unique(described.labels)) == set(range(10))


def test_descriptions_are_seeded_and_tiny():
    _, labels = _test_digits()
    a = megapixel_mnist.describe_canvases(labels, 50, seed=1)
    b = megapixel_mnist.describe_canvases(labels, 50, seed=1)
    c = megapixel_mnist.describe_canvases(labels, 50, seed=2)
    np.testing.assert_array_equal(a.digit_corners, b.digit_corners)
    assert not np.array_equal(a.digit_corners, c.digit_corners)
    # A 1500-pixel canvas is described by a few hundred bytes, not its 2.25 MB.
    size = sum(getattr(a, f).nbytes for f in ("labels", "digit_index", "digit_corners", "noise_index",
                                               "noise_corners"))
    assert size / len(a) < 1000


def test_the_noise_bank_is_two_lines_through_corners_at_high_intensity():
    bank = megapixel_mnist.noise_patterns(seed=0)
    assert bank.shape == (50, 28, 28) and bank.dtype == np.uint8
    lit = bank > 0
    assert ((bank[lit] >= 0.8 * 255 - 1) & (bank[lit] <= 255)).all()
    # Each pattern's first line starts at the top-left corner; a line of 28 pixels at least.
    assert lit[:, 0, 0].all() and (lit.sum((1, 2)) >= 28).all()
    np.testing.assert_array_equal(bank, megapixel_mnist.noise_patterns(seed=0))


def test_a_drawn_canvas_keeps_every_digit_whole_over_the_noise():
    digits, labels = _test_digits()
    described = megapixel_mnist.describe_canvases(labels, 6, canvas_size=200, num_noise=40, seed=5)
    canvases = megapixel_mnist.draw_canvases(described, digits)
    bank = megapixel_mnist.noise_patterns()
    assert canvases.shape == (6, 200, 200, 1) and canvases.dtype == np.uint8
    expected = np.zeros((6, 200, 200), np.uint8)
    for n in range(6):
        for index, (y, x) in zip(described.noise_index[n], described.noise_corners[n]):
            np.maximum(expected[n, y:y + 28, x:x + 28], bank[index], out=expected[n, y:y + 28, x:x + 28])
        for index, (y, x) in zip(described.digit_index[n], described.digit_corners[n]):
            box = canvases[n, y:y + 28, x:x + 28, 0]
            assert (box >= digits[index]).all()  # Noise never erases a digit's ink.
            np.maximum(expected[n, y:y + 28, x:x + 28], digits[index], out=expected[n, y:y + 28, x:x + 28])
    np.testing.assert_array_equal(canvases[..., 0], expected)


def test_the_loader_shuffles_descriptions_and_draws_canvases_as_read():
    records, decode, info = DATASETS["megapixel_mnist"]("test", digits="embedded", canvas_size=160,
                                                        num_canvases=12)
    # What a shuffle buffer holds: the description, not the pixels.
    shapes = [tuple(spec.shape) for spec in records.element_spec]
    assert shapes == [(5,), (5, 2), (1,), (1, 2), ()], shapes  # 50 noise blocks per 1500^2: 1 on 160^2.
    assert info.image_shape == (160, 160, 1) and info.num_examples == 12 and info.preset == "megapixel_mnist"
    assert info.object_boxes.shape == (12, 5, 4)

    data, _ = load_dataset("megapixel_mnist", "test", digits="embedded", canvas_size=160, num_canvases=12)
    images, labels = zip(*[(x.numpy(), int(y)) for x, y in data])
    assert len(images) == 12 and images[0].shape == (160, 160, 1) and images[0].dtype == np.float32
    assert 0.0 == min(x.min() for x in images) and max(x.max() for x in images) <= 1.0
    described, digits, _ = megapixel_mnist.split_descriptions("test", "embedded", canvas_size=160, num_canvases=12)
    np.testing.assert_array_equal(labels, described.labels)
    np.testing.assert_allclose(np.stack(images), megapixel_mnist.draw_canvases(described, digits) / 255.0,
                               atol=1e-6)
    # A seeded endless stream: the same seed, the same order; each pass reshuffled.
    first = [int(y) for _, y in load_dataset("megapixel_mnist", "test", shuffle_seed=3, digits="embedded",
                                             canvas_size=160, num_canvases=12)[0].take(24)]
    again = [int(y) for _, y in load_dataset("megapixel_mnist", "test", shuffle_seed=3, digits="embedded",
                                             canvas_size=160, num_canvases=12)[0].take(24)]
    assert first == again and sorted(first[:12]) == sorted(labels) == sorted(first[12:])


def test_splits_differ_and_default_to_the_benchmark_sizes():
    test, _, _ = megapixel_mnist.split_descriptions("test", "embedded")
    validation, _, _ = megapixel_mnist.split_descriptions("validation", "embedded")
    assert (len(test), len(validation), test.canvas_size, test.noise_index.shape[1]) == (1000, 1000, 1500, 50)
    assert not np.array_equal(test.digit_corners, validation.digit_corners)
    assert megapixel_mnist.default_noise(500) == 6 and megapixel_mnist.SPLIT_SIZES["train"] == 5000


@pytest.mark.parametrize("options, message", [
    (dict(canvas_size=100), "canvas_size=100 is not valid; it must be an integer >= 112"),
    (dict(num_noise=-1), "num_noise=-1 is not valid"),
    (dict(num_canvases=0), "num_canvases=0 must be an integer >= 1"),
])
def test_bad_sizes_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        megapixel_mnist.split_descriptions("test", "embedded", **options)
