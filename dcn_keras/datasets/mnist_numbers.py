"""Multi-digit numbers written with real MNIST digits, in the label format of `svhn`.

Each image holds a number of 1 to `max_digits` handwritten digits, laid left
to right on a cluttered background:

- length: uniform over 1..`max_digits` (default 5), from the seed;
- digits: drawn at random, with replacement, from the split's MNIST digits
  (the same splits as cluttered MNIST: reserved test digits stay test),
  each trimmed to its ink;
- scale: one per number, a digit height uniform in [16, 26] pixels on a 64
  canvas (scaled with the canvas), shrunk when the number would not fit
  (five wide digits come out about 13 pixels tall, still legible: MNIST at
  14x14 is);
- spacing: 0 to 3 pixels between digits (scaled), vertical jitter of up to
  a tenth of the digit height per digit, the number placed at random fully
  inside the canvas;
- clutter: `num_distractors` 6x6-pixel fragments (scaled) of other digits,
  pasted at random below the number; pixels are summed and clipped;
- canvas: 64 pixels by default; `canvas_size` (the loader's) keeps the digits
  at their 64-pixel sizes on a larger canvas, with clutter over all of it at
  the same density, so the number is small against the image;
- stored as uint8 `[N, S, S, 1]`; the loader serves three equal channels
  in [0, 1], as the `svhn` preset (64x64x3) takes them.

Ba et al. (2015) and Sønderby et al. (2015) test attention models on such
numbers. Generation is seeded and deterministic.
"""

import functools

import numpy as np

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets.number_labels import MAX_DIGITS
from dcn_keras.datasets.number_labels import NO_DIGIT
from dcn_keras.datasets.number_labels import check_max_digits
from dcn_keras.datasets.number_labels import number_labels

MIN_DIGIT_WIDTH = 12  # Pixels a digit needs to stay legible; sizes the smallest canvas.
_REFERENCE_SIZE = 64  # Heights, gaps and fragments below are for a 64-pixel canvas.
_TEST_NUMBERS = 5000  # Evaluation splits hold at least this many numbers.


def check_image_size(image_size, max_digits):
    """Raises a `ValueError` naming `image_size` unless it holds `max_digits` legible digits."""
    smallest = MIN_DIGIT_WIDTH * max_digits + 2
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < smallest:
        raise ValueError(f"image_size={image_size!r} cannot hold {max_digits} legible digits: it must be an "
                         f"integer >= {smallest} ({MIN_DIGIT_WIDTH} pixels per digit and a margin).")


# Kept: a 384-px number pastes 216 clutter fragments, all of one size, and
# building their matrices was half of its drawing time.
@functools.lru_cache(maxsize=4096)
def _resize_matrix(size_in, size_out):
    """`[size_out, size_in]` weights of a triangle filter widened when shrinking (antialiased); read-only."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    centres = (np.arange(size_out) + 0.5) * scale - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / support)
    weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-8)
    weights.flags.writeable = False
    return weights


def _resize(image, height, width):
    rows, cols = _resize_matrix(image.shape[0], height), _resize_matrix(image.shape[1], width)
    return rows @ image.astype(np.float64) @ cols.T


def _ink(digit):
    """The digit trimmed to the rows and columns that hold ink."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    if rows.size == 0:
        return digit
    return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def make_numbers(digits, labels, num_images, image_size=64, max_digits=MAX_DIGITS, num_distractors=6,
                 seed=0, digit_scale=None):
    """Builds `num_images` numbers from the digits of one split.

    Args:
        digits: uint8 array `[N, h, w]`, the split's digits.
        labels: int array `[N]`, their classes 0-9.
        num_images: int, numbers to make.
        image_size: int, side of the square canvas. Defaults to 64.
        max_digits: int, 1 to 5: lengths are uniform over 1..max_digits.
        num_distractors: int, clutter fragments per 64x64 pixels of canvas
            (at `digit_scale`). Defaults to 6.
        seed: int, the generator's seed.
        digit_scale: float or None. None (default): digits, gaps and clutter
            grow with the canvas (the 64-pixel recipe scaled by
            `image_size / 64`). A number: their sizes are the 64-pixel
            recipe's times `digit_scale` whatever the canvas, and clutter
            covers the whole canvas at the same density, so a larger canvas
            holds the same number, smaller against the image.

    Returns:
        `(images, labels, boxes)`: uint8 `[num_images, S, S, 1]`; the heads'
        labels (`number_labels`); and float32 `[num_images, max_digits, 4]`
        boxes `[top, left, height, width]` of each digit (zeros past the end).
    """
    check_max_digits(max_digits)
    check_image_size(image_size, max_digits)
    digits, labels = np.asarray(digits), np.asarray(labels)
    if len(digits) < 2:
        raise ValueError(f"Need at least 2 digits to draw numbers and clutter from; got {len(digits)}.")
    if num_distractors < 0:
        raise ValueError(f"num_distractors={num_distractors} must be >= 0.")
    unit = image_size / _REFERENCE_SIZE if digit_scale is None else float(digit_scale)
    if not unit > 0:
        raise ValueError(f"digit_scale={digit_scale!r} must be a number > 0.")
    if 26 * unit > image_size - 2:
        raise ValueError(f"image_size={image_size} cannot hold digits of up to {26 * unit:.0f} pixels "
                         f"(digit_scale={digit_scale}).")
    num_distractors = round(num_distractors * (image_size / (_REFERENCE_SIZE * unit)) ** 2)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_digits + 1, num_images)
    padded = np.full((num_images, MAX_DIGITS), NO_DIGIT, np.int64)
    boxes = np.zeros((num_images, max_digits, 4), np.float32)
    images = np.zeros((num_images, image_size, image_size, 1), np.uint8)
    fragment = max(2, round(6 * unit))
    for n in range(num_images):
        chosen = rng.integers(0, len(digits), lengths[n])
        padded[n, :lengths[n]] = labels[chosen]
        inks = [_ink(digits[i]) for i in chosen]
        height = rng.uniform(16, 26) * unit
        gaps = rng.uniform(0, 3, lengths[n] - 1) * unit
        tallest = max(ink.shape[0] for ink in inks)
        widths = np.array([ink.shape[1] for ink in inks]) * height / tallest
        fit = (image_size - 2 - gaps.sum()) / widths.sum()
        if fit < 1:
            height, widths = height * fit, widths * fit
        total = widths.sum() + gaps.sum()
        left = rng.uniform(1, max(1.0, image_size - 1 - total))
        jitter = rng.uniform(-0.1, 0.1, lengths[n]) * height
        top = rng.uniform(1 + max(0, -jitter.min()), image_size - 1 - height - max(0, jitter.max()))
        canvas = np.zeros((image_size, image_size))
        for m in range(num_distractors):
            source = digits[rng.integers(0, len(digits))]
            y, x = rng.integers(0, source.shape[0] - 6 + 1), rng.integers(0, source.shape[1] - 6 + 1)
            piece = _resize(source[y:y + 6, x:x + 6], fragment, fragment)
            py, px = rng.integers(0, image_size - fragment + 1, 2)
            canvas[py:py + fragment, px:px + fragment] += piece
        x = left
        for i, ink in enumerate(inks):
            h = max(1, round(ink.shape[0] * height / tallest))
            w = max(1, round(widths[i]))
            y, xi = int(round(top + jitter[i])), int(round(x))
            h, w = min(h, image_size - y), min(w, image_size - xi)
            canvas[y:y + h, xi:xi + w] += _resize(ink, h, w)
            boxes[n, i] = (y, xi, h, w)
            x += widths[i] + (gaps[i] if i < len(gaps) else 0)
        images[n, ..., 0] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return images, number_labels(lengths, padded), boxes


def split_numbers(split, source="auto", data_dir=None, seed=0, examples_per_digit=None, image_size=64,
                  max_digits=MAX_DIGITS, mnist_dir=None, digit_scale=None, num_numbers=None):
    """The numbers of one split, as `load_dataset("mnist_numbers", ...)` serves them.

    The loader's `canvas_size` is `image_size` with `digit_scale=1`: digits
    of the 64-pixel recipe on a larger canvas.

    `examples_per_digit` numbers are made per digit of the split; None makes
    4 per training digit and, for validation and test, enough for at least
    5,000 numbers (5 per embedded test digit, 1 per full-MNIST one). With
    `num_numbers`, that many are made instead, from the same digits and
    seed (a sample for timing or a quick check: not the first numbers of
    the whole split, whose draw depends on its count).

    Returns:
        `(images, labels, boxes, source)`: `make_numbers`' outputs and the
        digit source used (`"tfds"`, `"embedded"` or `"IDX"`).
    """
    digits, labels, source = cluttered_mnist.load_digits(split, source, data_dir, mnist_dir)
    if examples_per_digit is None:
        examples_per_digit = 4 if split == "train" else -(-_TEST_NUMBERS // len(digits))
    cluttered_mnist.check_examples_per_digit(examples_per_digit)
    if num_numbers is None:
        num_numbers = len(digits) * examples_per_digit
    else:
        cluttered_mnist.check_examples_per_digit(num_numbers, "num_numbers", "numbers to make")
    # Seeds apart from cluttered MNIST's (seed * 3 + split) so the two never share placements.
    made = make_numbers(digits, labels, num_numbers, image_size, max_digits,
                        seed=1000 + seed * 3 + cluttered_mnist.SPLITS.index(split), digit_scale=digit_scale)
    return (*made, source)
