import numpy as np
import pytest

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import load_dataset
from dcn_keras.datasets import mnist_numbers
from dcn_keras.datasets.number_labels import NO_DIGIT
from dcn_keras.datasets.number_labels import check_max_digits
from dcn_keras.datasets.number_labels import labels_from_digits
from dcn_keras.datasets.number_labels import number_labels
from dcn_keras.training import TrainConfig


def _digits(count=20):
    """Distinct digits: digit n is a solid block of n + 1 ink rows, class n % 10."""
    digits = np.zeros((count, 28, 28), np.uint8)
    for n in range(count):
        digits[n, 4:5 + n % 20, 8:20] = 255
    return digits, np.arange(count) % 10


def _label_rows(labels):
    return np.stack([labels[f"digit_{i}"] for i in range(1, 6)], 1)


def test_labels_are_the_svhn_format_and_boxes_run_left_to_right_inside_the_canvas():
    digits, labels = cluttered_mnist.embedded_digits("validation")
    images, heads, boxes = mnist_numbers.make_numbers(digits, labels, 300, seed=3)
    assert images.shape == (300, 64, 64, 1) and images.dtype == np.uint8
    assert sorted(heads) == ["digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "length"]
    rows, lengths = _label_rows(heads), heads["length"]
    inside = np.arange(5)[None, :] < lengths[:, None]
    assert ((rows >= 0) & (rows <= 9))[inside].all()
    assert (rows[~inside] == NO_DIGIT).all()
    # One box per digit, left to right, inside the canvas; none past the end.
    top, left, height, width = np.moveaxis(boxes, -1, 0)
    assert ((height > 0) == inside).all()
    assert (top[inside] >= 0).all() and (top + height <= 64)[inside].all()
    assert (left + width <= 64)[inside].all()
    assert (np.diff(np.where(inside, left, 1e9), axis=1)[inside[:, 1:]] > 0).all()


def test_lengths_are_uniform_over_one_to_max_digits():
    digits, labels = _digits()
    _, heads, _ = mnist_numbers.make_numbers(digits, labels, 3000, max_digits=3, num_distractors=0, seed=1)
    counts = np.bincount(heads["length"], minlength=6)
    assert counts[0] == 0 and counts[4:].sum() == 0
    # 1000 expected each: 5 standard deviations is about 130.
    assert (np.abs(counts[1:4] - 1000) < 130).all(), counts


def test_every_digit_is_drawn_inside_its_box_and_nothing_outside_without_clutter():
    digits, labels = _digits()
    images, heads, boxes = mnist_numbers.make_numbers(digits, labels, 50, num_distractors=0, seed=2)
    for n in range(50):
        mask = np.zeros((64, 64), bool)
        for i in range(heads["length"][n]):
            y, x, h, w = boxes[n, i].astype(int)
            assert images[n, y:y + h, x:x + w, 0].max() > 0  # the digit's ink is there
            mask[y:y + h, x:x + w] = True
        assert images[n, ~mask, 0].max() == 0


def test_same_seed_same_numbers_other_seed_other_numbers():
    digits, labels = cluttered_mnist.embedded_digits("validation")
    a = mnist_numbers.make_numbers(digits, labels, 20, seed=7)
    b = mnist_numbers.make_numbers(digits, labels, 20, seed=7)
    c = mnist_numbers.make_numbers(digits, labels, 20, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(_label_rows(a[1]), _label_rows(b[1]))
    assert not np.array_equal(a[0], c[0])


def test_loader_serves_the_svhn_positional_preset_from_the_test_digits():
    data, info = load_dataset("mnist_numbers", "test", digits="embedded", examples_per_digit=1)
    assert info.image_shape == (64, 64, 3) and info.preset == "svhn_positional" and info.num_examples == 1000
    assert "embedded" in info.source
    test_digits, _ = cluttered_mnist.embedded_digits("test")
    images, labels = next(iter(data.batch(1000)))
    assert images.shape == (1000, 64, 64, 3) and 0.0 <= float(images.numpy().min())
    assert float(images.numpy().max()) <= 1.0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # three equal channels
    # The split's generator is `make_numbers` on the reserved test digits.
    expected, heads, _ = mnist_numbers.make_numbers(
        test_digits, cluttered_mnist.embedded_digits("test")[1], 1000, seed=1000 + 2)
    np.testing.assert_allclose(images[..., 0], expected[..., 0] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(labels["length"], heads["length"])


def test_evaluation_splits_default_to_at_least_5000_numbers():
    _, info = load_dataset("mnist_numbers", "test", digits="embedded")
    assert info.num_examples == 5000


def test_num_numbers_makes_that_many_from_the_split_digits_with_its_seed():
    images, labels, boxes, source = mnist_numbers.split_numbers("test", "embedded", num_numbers=3, image_size=96)
    assert images.shape == (3, 96, 96, 1) and len(labels["length"]) == len(boxes) == 3 and source == "embedded"
    again = mnist_numbers.split_numbers("test", "embedded", num_numbers=3, image_size=96)[0]
    np.testing.assert_array_equal(images, again)
    other = mnist_numbers.split_numbers("test", "embedded", num_numbers=3, image_size=96, seed=1)[0]
    assert not np.array_equal(images, other)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"num_numbers={bad!r} must be an integer >= 1"):
            mnist_numbers.split_numbers("test", "embedded", num_numbers=bad)


@pytest.mark.parametrize("value", [0, 6, -1, 2.5, True, "3"])
def test_bad_max_digits_is_named(value):
    with pytest.raises(ValueError, match=r"max_digits=.* must be an integer from 1 to 5"):
        check_max_digits(value)
    with pytest.raises(ValueError, match="max_digits"):
        TrainConfig(dataset="mnist_numbers", max_digits=value)


def test_a_canvas_too_small_for_the_digits_is_named():
    digits, labels = _digits()
    with pytest.raises(ValueError, match=r"image_size=40 cannot hold 5 legible digits: .* >= 62"):
        mnist_numbers.make_numbers(digits, labels, 1, image_size=40)
    mnist_numbers.make_numbers(digits, labels, 1, image_size=40, max_digits=3)  # 3 digits fit


@pytest.mark.parametrize("lengths, digits, message", [
    ([0], [[10] * 5], "Number 0 has length 0; lengths must be 1 to 5"),
    ([1, 6], [[1, 10, 10, 10, 10]] * 2, "Number 1 has length 6"),
    ([2], [[1, 11, 10, 10, 10]], "digit 11 at position 2; allowed: 0 to 9"),
    ([2], [[1, 2, 3, 10, 10]], r"digit 3 at position 3; allowed: 10 \(no digit\) past its length 2"),
    ([2], [[1, 2, 10, 10]], r"digits \[N, 5\]"),
])
def test_bad_labels_are_named(lengths, digits, message):
    with pytest.raises(ValueError, match=message):
        number_labels(lengths, digits)


def test_svhn_graph_labels_are_the_same_as_numpy_labels():
    for number in ([4], [8, 0], [1, 2, 3, 4, 5]):
        graph = {k: int(v) for k, v in labels_from_digits(np.array(number)).items()}
        padded = number + [NO_DIGIT] * (5 - len(number))
        expected = {k: int(v[0]) for k, v in number_labels([len(number)], [padded]).items()}
        assert graph == expected


def test_max_digits_goes_with_mnist_numbers_only():
    with pytest.raises(ValueError, match="max_digits=3 applies to mnist_numbers only, not dataset='svhn'"):
        TrainConfig(dataset="svhn", max_digits=3)
    assert TrainConfig(dataset="mnist_numbers", max_digits=3).max_digits == 3


def _real_digits():
    return cluttered_mnist.embedded_digits("test")[0][:200], cluttered_mnist.embedded_digits("test")[1][:200]


def test_a_larger_canvas_keeps_the_digits_size_and_the_clutter_density():
    digits, labels = _real_digits()
    small, _, small_boxes = mnist_numbers.make_numbers(digits, labels, 200, 64, seed=3, digit_scale=1.0)
    large, _, large_boxes = mnist_numbers.make_numbers(digits, labels, 200, 192, seed=3, digit_scale=1.0)
    assert large.shape == (200, 192, 192, 1)
    heights = lambda b: b[..., 2][b[..., 2] > 0]  # noqa: E731
    # Digit sizes stay the 64-pixel recipe's (heights in [16, 26], shrunk only to fit 64 pixels).
    assert 12 <= heights(large_boxes).min() and heights(large_boxes).max() <= 27
    # On 192 pixels no number needs shrinking: each one's tallest digit is its drawn height.
    assert 16 <= large_boxes[..., 2].max(1).min() and large_boxes[..., 2].max(1).max() <= 26
    # Clutter all over: ink outside the number's boxes, per pixel, as dense as on 64 pixels.
    def clutter_density(images, boxes):
        mask = np.ones(images.shape[:3], bool)
        for n, image_boxes in enumerate(boxes):
            for top, left, h, w in image_boxes.astype(int):
                mask[n, max(0, top - 2):top + h + 2, max(0, left - 2):left + w + 2] = False
        return (images[..., 0] > 0)[mask].mean()
    assert clutter_density(large, large_boxes) == pytest.approx(clutter_density(small, small_boxes), rel=0.25)


def test_the_default_canvas_is_the_recorded_recipe():
    digits, labels = _real_digits()
    default = mnist_numbers.make_numbers(digits, labels, 50, seed=1)
    explicit = mnist_numbers.make_numbers(digits, labels, 50, 64, seed=1, digit_scale=1.0)
    np.testing.assert_array_equal(default[0], explicit[0])
    data, info = load_dataset("mnist_numbers", "test", digits="embedded", canvas_size=96, examples_per_digit=1)
    assert info.image_shape == (96, 96, 3) and info.object_boxes.shape == (1000, 5, 4)
    assert next(iter(data))[0].shape == (96, 96, 3)


def test_place_boxes_puts_each_digits_box_beside_the_heads_labels():
    plain, _ = load_dataset("mnist_numbers", "test", digits="embedded", examples_per_digit=1)
    placed, info = load_dataset("mnist_numbers", "test", digits="embedded", examples_per_digit=1,
                                place_boxes=True)
    assert "boxes" not in plain.element_spec[1]
    for n, ((image, labels), (same_image, same_labels)) in enumerate(zip(placed.take(3), plain.take(3))):
        np.testing.assert_array_equal(labels["boxes"].numpy(), info.object_boxes[n])
        np.testing.assert_array_equal(image.numpy(), same_image.numpy())
        assert {k: int(v) for k, v in labels.items() if k != "boxes"} == {k: int(v) for k, v in same_labels.items()}
        # A box per digit the number has, zeros past its end.
        assert int((labels["boxes"][:, 3] > 0).numpy().sum()) == int(labels["length"])


@pytest.mark.parametrize("dataset, size, message", [
    ("mnist_numbers", 63, "canvas_size=63 is not valid; it must be an integer >= 64"),
    ("cluttered_mnist", 20, "canvas_size=20 is not valid; it must be an integer >= 28"),
    ("svhn", 128, "canvas_size=128 applies to cluttered_mnist, megapixel_mnist and mnist_numbers only"),
])
def test_bad_canvas_sizes_are_named(dataset, size, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(dataset=dataset, canvas_size=size)
