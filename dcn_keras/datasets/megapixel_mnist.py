"""Megapixel MNIST: five MNIST digits at full size on a large noisy canvas.

The benchmark of Katharopoulos & Fleuret, "Processing Megapixel Images with
Deep Attention-Sampling Models" (ICML 2019), made with the recipe of their
`scripts/make_mnist.py`, re-written here:

- a black single-channel canvas, 1500 x 1500 pixels by default;
- 5 MNIST digits at their native 28 x 28: 3 of the target class (drawn with
  replacement), 2 of other classes; digit boxes never overlap; the label is
  the target class, the majority;
- 50 noise blocks of 28 x 28 per canvas, drawn from a bank of 50 patterns:
  each the union of two straight lines through a corner (slopes
  tan(U * pi / 2.5); the second line a shuffled copy, mirrored with
  probability 1/3), pixel intensities U(0.8, 1.0); top-left corners uniform
  in [28, side - 28);
- 5,000 training, 1,000 validation and 1,000 test canvases; validation is
  drawn from the validation digits (carved from MNIST's training digits),
  test from the test digits (`cluttered_mnist.load_digits`).

One deliberate change: the noise is laid first and the digits over it by
pixel maximum, so no digit is ever erased (the original pastes noise blocks
over digits).

A split is held as a compact description of each canvas (digit indices and
places, noise pattern ids and places, a few dozen numbers); a canvas is drawn
with TensorFlow ops when the pipeline reads it, so no split's pixels are ever
held whole (5,000 canvases are 11 GB as uint8). Seeded and deterministic.
"""

import dataclasses

import numpy as np

from dcn_keras.backend import tf
from dcn_keras.datasets import cluttered_mnist

CANVAS_SIZE = 1500
DIGIT_SIZE = 28
DIGITS_PER_CANVAS = 5
TARGET_DIGITS = 3
NUM_PATTERNS = 50
NOISE_PER_CANVAS = 50  # On a 1500-pixel canvas; other sizes keep the density.
SPLIT_SIZES = {"train": 5000, "validation": 1000, "test": 1000}
# Five non-overlapping digits fit by rejection sampling with room to spare.
MIN_CANVAS = 4 * DIGIT_SIZE


def default_noise(canvas_size):
    """Noise blocks on a `canvas_size` canvas: 50 per 1500 x 1500 pixels, rounded."""
    return round(NOISE_PER_CANVAS * (canvas_size / CANVAS_SIZE) ** 2)


def noise_patterns(seed=0):
    """The bank of `NUM_PATTERNS` noise patterns: uint8 `[50, 28, 28]`, seeded."""
    rng = np.random.default_rng(seed)
    last = DIGIT_SIZE - 0.51  # The farthest pixel centre a rounded line may reach.
    slopes = np.tan(rng.random(NUM_PATTERNS) * np.pi / 2.5)
    lines = np.zeros((NUM_PATTERNS, DIGIT_SIZE, DIGIT_SIZE), bool)
    for i, slope in enumerate(slopes):
        x = np.linspace(0, min(last, last / slope), 2 * DIGIT_SIZE)
        lines[i, np.round(x).astype(int), np.round(slope * x).astype(int)] = True
    second = lines[rng.permutation(NUM_PATTERNS)]
    mirror = rng.random(NUM_PATTERNS) < 1 / 3
    second[mirror] = second[mirror, :, ::-1]
    intensity = rng.random((NUM_PATTERNS, DIGIT_SIZE, DIGIT_SIZE)) * 0.2 + 0.8
    return np.round(255 * (lines | second) * intensity).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class CanvasDescriptions:
    """What each canvas of a split holds, without its pixels.

    Args:
        labels: int64 `[N]`, the target class of each canvas.
        digit_index: int32 `[N, 5]`, indices into the split's digits.
        digit_corners: int32 `[N, 5, 2]`, each digit's top-left `(row, col)`.
        noise_index: int32 `[N, n]`, indices into the noise bank.
        noise_corners: int32 `[N, n, 2]`, each noise block's top-left corner.
        canvas_size: int, the canvas side in pixels.
    """

    labels: np.ndarray
    digit_index: np.ndarray
    digit_corners: np.ndarray
    noise_index: np.ndarray
    noise_corners: np.ndarray
    canvas_size: int

    def __len__(self):
        return len(self.labels)


def _check_sizes(canvas_size, num_noise):
    if isinstance(canvas_size, bool) or not isinstance(canvas_size, (int, np.integer)) or canvas_size < MIN_CANVAS:
        raise ValueError(f"canvas_size={canvas_size!r} is not valid; it must be an integer >= {MIN_CANVAS} "
                         f"(five {DIGIT_SIZE}-pixel digits side by side without overlap).")
    if isinstance(num_noise, bool) or not isinstance(num_noise, (int, np.integer)) or num_noise < 0:
        raise ValueError(f"num_noise={num_noise!r} is not valid; it must be an integer >= 0.")


def describe_canvases(labels, num_canvases, canvas_size=CANVAS_SIZE, num_noise=NOISE_PER_CANVAS, seed=0):
    """Draws the descriptions of `num_canvases` canvases from a split's digit labels.

    Args:
        labels: int array `[D]`, the labels of the split's digits (all ten
            classes present).
        num_canvases: int, canvases to describe.
        canvas_size: int, the canvas side. Defaults to 1500.
        num_noise: int, noise blocks per canvas. Defaults to 50.
        seed: int, the generator's seed.

    Returns:
        A `CanvasDescriptions`.
    """
    _check_sizes(canvas_size, num_noise)
    labels = np.asarray(labels)
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    if any(len(indices) == 0 for indices in by_class):
        raise ValueError("Megapixel MNIST needs digits of all ten classes; "
                         f"missing: {[c for c in range(10) if len(by_class[c]) == 0]}.")
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 10, num_canvases)
    index = np.empty((num_canvases, DIGITS_PER_CANVAS), np.int32)
    corners = np.empty((num_canvases, DIGITS_PER_CANVAS, 2), np.int32)
    span = canvas_size - DIGIT_SIZE + 1
    for n, target in enumerate(targets):
        others = rng.choice(np.delete(np.arange(10), target), DIGITS_PER_CANVAS - TARGET_DIGITS)
        classes = [target] * TARGET_DIGITS + list(others)
        index[n] = [rng.choice(by_class[c]) for c in classes]
        placed = 0
        while placed < DIGITS_PER_CANVAS:
            corner = rng.integers(0, span, 2)
            if placed and (np.abs(corners[n, :placed] - corner) < DIGIT_SIZE).all(-1).any():
                continue  # Overlaps a digit already placed.
            corners[n, placed] = corner
            placed += 1
    noise_index = rng.integers(0, NUM_PATTERNS, (num_canvases, num_noise)).astype(np.int32)
    # Corners in [28, side - 28) as the original; the whole canvas on a small one.
    low, high = (DIGIT_SIZE, canvas_size - DIGIT_SIZE) if canvas_size >= 3 * DIGIT_SIZE else (0, span)
    noise_corners = rng.integers(low, high, (num_canvases, num_noise, 2)).astype(np.int32)
    return CanvasDescriptions(targets.astype(np.int64), index, corners, noise_index, noise_corners, canvas_size)


def canvas_drawer(digits, canvas_size, pattern_seed=0):
    """A TensorFlow function drawing one canvas from a description's entries.

    Args:
        digits: uint8 `[D, 28, 28]`, the split's digits.
        canvas_size: int, the canvas side.
        pattern_seed: int, the noise bank's seed.

    Returns:
        `draw(digit_index, digit_corners, noise_index, noise_corners)` ->
        float32 `[S, S, 1]` in [0, 1]: the noise blocks, then the digits over
        them by pixel maximum.
    """
    digits = tf.constant(np.asarray(digits, np.uint8))
    bank = tf.constant(noise_patterns(pattern_seed))
    offsets = tf.stack(tf.meshgrid(tf.range(DIGIT_SIZE), tf.range(DIGIT_SIZE), indexing="ij"), -1)

    def draw(digit_index, digit_corners, noise_index, noise_corners):
        blocks = tf.concat([tf.gather(bank, noise_index), tf.gather(digits, digit_index)], 0)
        corners = tf.concat([noise_corners, digit_corners], 0)
        pixels = tf.reshape(corners[:, None, None, :] + offsets, [-1, 2])
        canvas = tf.tensor_scatter_nd_max(tf.zeros([canvas_size, canvas_size], tf.uint8), pixels,
                                          tf.reshape(blocks, [-1]))
        return tf.cast(canvas, tf.float32)[..., None] / 255.0

    return draw


def draw_canvases(descriptions, digits, pattern_seed=0):
    """All canvases of `descriptions` as uint8 `[N, S, S, 1]` (for tests and pictures; small N only)."""
    draw = canvas_drawer(digits, descriptions.canvas_size, pattern_seed)
    canvases = [draw(descriptions.digit_index[n], descriptions.digit_corners[n], descriptions.noise_index[n],
                     descriptions.noise_corners[n]) for n in range(len(descriptions))]
    return np.round(np.stack(canvases) * 255).astype(np.uint8)


def digit_boxes(descriptions, digits):
    """Each canvas's digits as boxes of their ink: float32 `[N, 5, 4]` `[top, left, height, width]`."""
    n = len(descriptions)
    boxes = cluttered_mnist.ink_boxes(digits, descriptions.digit_corners.reshape(-1, 2),
                                      descriptions.digit_index.reshape(-1))
    return boxes.reshape(n, DIGITS_PER_CANVAS, 4)


def split_descriptions(split, source="auto", data_dir=None, seed=0, canvas_size=None, num_noise=None,
                       mnist_dir=None, num_canvases=None):
    """One split's canvases, described: `(descriptions, digits, source)`.

    Each split gets its own generator seed (apart from the other MNIST
    datasets'); `canvas_size` defaults to 1500, `num_noise` to 50 per
    1500 x 1500 pixels, `num_canvases` to `SPLIT_SIZES[split]`.
    """
    canvas_size = CANVAS_SIZE if canvas_size is None else canvas_size
    num_noise = default_noise(canvas_size) if num_noise is None else num_noise
    _check_sizes(canvas_size, num_noise)
    num_canvases = SPLIT_SIZES[split] if num_canvases is None else num_canvases
    cluttered_mnist.check_examples_per_digit(num_canvases, "num_canvases")
    digits, labels, source = cluttered_mnist.load_digits(split, source, data_dir, mnist_dir)
    descriptions = describe_canvases(labels, num_canvases, canvas_size, num_noise,
                                     seed=2000 + seed * 3 + cluttered_mnist.SPLITS.index(split))
    return descriptions, digits, source
