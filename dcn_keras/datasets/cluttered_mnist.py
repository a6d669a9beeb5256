"""Cluttered MNIST as the paper used it (DeepMind's mnist-cluttered recipe).

Each canvas holds `num_distractors` 8x8 crops of random *other* digits of the
same split, each pasted at a random place, then the labelled digit at a
uniformly random place fully inside the canvas; pixels are summed and clipped
to [0, 1]. Canvases are stored as uint8 (so values are multiples of 1/255).
Generation is seeded and deterministic.

Digit sources:
- `"tfds"`: TFDS `mnist`; train = its first 50,000 training digits,
  validation = the last 10,000, test = its test set (the paper's split).
- `"embedded"`: the 5,000 real digits shipped in `dcn_keras/data/mnist_5k.npz`;
  train = entries 0-3,499, validation = 3,500-3,999, test = 4,000-4,999
  (reserved, never trained on). Needs no network.
- `"auto"` (default): TFDS when it can be had, else the embedded digits, with
  a warning saying so.
- `mnist_dir=DIR` (with `"auto"`): the standard MNIST IDX files in DIR
  (`mnist_idx.idx_digits`); train/validation 50,000/10,000 of the training
  files, split by a hash of each digit's pixels, test = the t10k files.
"""

import functools
import os

import numpy as np
from absl import logging

from dcn_keras.datasets.mnist_idx import idx_digits
from dcn_keras.io_utils import unreachable_reason

SPLITS = ("train", "validation", "test")
DIGIT_SOURCES = ("auto", "tfds", "embedded")
EMBEDDED_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "mnist_5k.npz")
_EMBEDDED_RANGES = {"train": (0, 3500), "validation": (3500, 4000), "test": (4000, 5000)}
_TFDS_RANGES = {"train": ("train", 0, 50000), "validation": ("train", 50000, 60000),
                "test": ("test", 0, 10000)}


def embedded_digits(split):
    """The shipped digits of `split`: uint8 `[N, 28, 28]` images and labels."""
    start, stop = _EMBEDDED_RANGES[split]
    with np.load(EMBEDDED_PATH) as data:
        return data["images"][start:stop], data["labels"][start:stop].astype(np.int64)


def tfds_digits(split, data_dir=None):
    """TFDS `mnist` digits of `split` (downloads if needed and allowed)."""
    import tensorflow_datasets as tfds

    source, start, stop = _TFDS_RANGES[split]
    # Batches, not batch_size=-1: that path aborts the process under
    # tfds.testing.mock_data for a sliced split.
    dataset = tfds.load("mnist", split=f"{source}[{start}:{stop}]", data_dir=data_dir)
    images, labels = [], []
    for batch in tfds.as_numpy(dataset.batch(10_000)):
        images.append(batch["image"][..., 0])
        labels.append(batch["label"])
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


_WARNED = set()


@functools.lru_cache(maxsize=None)
def tfds_unavailable_reason(data_dir=None, timeout=5.0):
    """Why TFDS mnist cannot be had right now, or None if it can.

    A prepared copy needs no network. Otherwise one quick connection to the
    download host decides, because TFDS itself retries a failing download
    with back-off for minutes before giving up. Asked once per process and
    data directory (a run loads three splits).
    """
    import tensorflow_datasets as tfds

    # TFDS warns of a half-made copy's folder ("Variant folder ... has no
    # dataset_info.json"); the fallback warning below says it in the user's terms.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        builder = tfds.builder("mnist", data_dir=data_dir)
        prepared = builder.is_prepared()
    finally:
        logging.set_verbosity(verbosity)
    if prepared:
        return None
    reason = unreachable_reason(getattr(builder, "URL", ""), timeout)
    return reason and f"no prepared copy in {builder.data_dir} and {reason}"


def check_mnist_dir(source, mnist_dir):
    """Raises a `ValueError` when `mnist_dir` is given with a source other than `"auto"`."""
    if mnist_dir and source != "auto":
        raise ValueError(f"mnist_dir={mnist_dir} reads the digits from that directory; it does "
                         f"not go with digits={source} (leave digits at auto).")


def load_digits(split, source="auto", data_dir=None, mnist_dir=None):
    """Returns `(images, labels, source_used)` for a split of the digits.

    `source_used` is `"tfds"`, `"embedded"` or, with `mnist_dir`, `"IDX"`.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    if source not in DIGIT_SOURCES:
        raise ValueError(f"Unknown digit source {source!r}; expected one of {DIGIT_SOURCES}.")
    check_mnist_dir(source, mnist_dir)
    if mnist_dir:
        return (*idx_digits(mnist_dir, split), "IDX")
    if source == "embedded":
        return (*embedded_digits(split), "embedded")
    reason = tfds_unavailable_reason(data_dir)
    if reason is None:
        try:
            return (*tfds_digits(split, data_dir), "tfds")
        except Exception as error:  # A download that failed after all.
            reason = f"{type(error).__name__}: {error}"
    if source == "tfds":
        raise RuntimeError(
            f"TFDS mnist could not be loaded: {reason}. "
            "Use digits=embedded to train on the 5,000 shipped digits."
        )
    if reason not in _WARNED:
        _WARNED.add(reason)
        logging.warning(
            "TFDS mnist is not available (%s); cluttered_mnist falls back to the "
            "5,000 embedded MNIST digits (3,500 train / 500 validation / 1,000 test).",
            reason,
        )
    return (*embedded_digits(split), "embedded")


def check_examples_per_digit(value, name="examples_per_digit", meaning="canvases made per digit"):
    """Raises a `ValueError` naming `value` (and what it counts) unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1 ({meaning}).")


def split_canvases(split, source="auto", data_dir=None, seed=0, examples_per_digit=1,
                   canvas_size=None, num_distractors=None, mnist_dir=None):
    """The canvases of one split, as `load_dataset("cluttered_mnist", ...)` serves them.

    Each split gets its own generator seed: one seed for all would place the
    digits of every split identically. `canvas_size` defaults to the
    paper's 100; `num_distractors` to its 8 per 100x100 pixels, so a larger
    canvas is cluttered all over at the same density.

    Returns:
        `(images, labels, corners, index, digits, source)`: `make_canvases`'s
        outputs with `return_digit_index=True`, then the split's digits and
        the digit source used (`"tfds"`, `"embedded"` or `"IDX"`).
    """
    check_examples_per_digit(examples_per_digit)
    canvas_size = canvas_size or 100
    if num_distractors is None:
        num_distractors = round(8 * (canvas_size / 100) ** 2)
    digits, labels, source = load_digits(split, source, data_dir, mnist_dir)
    canvases = make_canvases(
        digits, labels, num_images=len(digits) * examples_per_digit, canvas_size=canvas_size,
        num_distractors=num_distractors, seed=seed * 3 + SPLITS.index(split),
        return_digit_index=True)
    return (*canvases, digits, source)


def ink_boxes(digits, corners, index):
    """Each canvas's digit as a box of its ink: float32 `[N, 1, 4]` `[top, left, height, width]`.

    `split_canvases`' corners and digit index, and the split's digits.
    """
    ink = np.asarray(digits)[np.asarray(index)] > 0
    rows, cols = ink.any(2), ink.any(1)
    top, left = rows.argmax(1), cols.argmax(1)
    height = rows.shape[1] - rows[:, ::-1].argmax(1) - top
    width = cols.shape[1] - cols[:, ::-1].argmax(1) - left
    boxes = np.stack([corners[:, 0] + top, corners[:, 1] + left, height, width], -1)
    return boxes[:, None, :].astype(np.float32)


def make_canvases(digits, labels, num_images=None, canvas_size=100, num_distractors=8,
                  distractor_size=8, seed=0, return_digit_index=False):
    """Builds cluttered canvases from digits of one split.

    Args:
        digits: uint8 array `[N, h, w]`, the split's digits.
        labels: int array `[N]`.
        num_images: int, canvases to make; defaults to `N` (each digit once).
            Larger values cycle through fresh permutations of the digits.
        canvas_size: int, side of the square canvas. Defaults to 100.
        num_distractors: int, distractor crops per canvas. Defaults to 8.
        distractor_size: int, side of each distractor crop. Defaults to 8.
        seed: int, the generator's seed.
        return_digit_index: bool, also return which digit each canvas holds.

    Returns:
        `(images, labels, corners)`: uint8 `[num_images, S, S, 1]`, int64
        labels, and each digit's top-left `(row, col)` on the canvas; with
        `return_digit_index`, a fourth array: the index into `digits` of
        each canvas's digit.
    """
    digits = np.asarray(digits)
    count, height, width = digits.shape
    if count < 2:
        raise ValueError(f"Need at least 2 digits to draw distractors from; got {count}.")
    if canvas_size < max(height, width):
        raise ValueError(f"canvas_size={canvas_size} is smaller than the {height}x{width} digits.")
    if not 0 < distractor_size <= min(height, width):
        raise ValueError(
            f"distractor_size={distractor_size} must be in [1, {min(height, width)}]."
        )
    if num_distractors < 0:
        raise ValueError(f"num_distractors={num_distractors} must be >= 0.")
    num_images = count if num_images is None else num_images
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(count) for _ in range(-(-num_images // count))]
    )[:num_images]

    # Distractors: a random digit other than the canvas's own, a random crop
    # of it, a random place fully inside the canvas.
    shift = rng.integers(1, count, (num_images, num_distractors))
    sources = (order[:, None] + shift) % count
    crop_y = rng.integers(0, height - distractor_size + 1, sources.shape)
    crop_x = rng.integers(0, width - distractor_size + 1, sources.shape)
    paste = rng.integers(0, canvas_size - distractor_size + 1, sources.shape + (2,))
    corners = np.stack(
        [rng.integers(0, canvas_size - height + 1, num_images),
         rng.integers(0, canvas_size - width + 1, num_images)], axis=-1)

    images = np.zeros((num_images, canvas_size, canvas_size, 1), np.uint8)
    canvas = np.zeros((canvas_size, canvas_size), np.uint16)
    d = distractor_size
    for n in range(num_images):
        canvas[:] = 0
        for m in range(num_distractors):
            src = digits[sources[n, m], crop_y[n, m]:crop_y[n, m] + d, crop_x[n, m]:crop_x[n, m] + d]
            y, x = paste[n, m]
            canvas[y:y + d, x:x + d] += src
        y, x = corners[n]
        canvas[y:y + height, x:x + width] += digits[order[n]]
        images[n, ..., 0] = np.minimum(canvas, 255)
    labels = np.asarray(labels)[order].astype(np.int64)
    if return_digit_index:
        return images, labels, corners, order
    return images, labels, corners
