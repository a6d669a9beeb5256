"""Checks of the data `fit` and `evaluate` get: errors that name the bad value, before any weight changes.

Two layers. `check_first_batch` looks at the data eagerly before Keras
traces anything: whole NumPy arrays, or a dataset's first batch (shapes,
dtypes, finite pixels, label values). Later batches of a dataset are checked
inside the step (`finite_images` here, the label assert in
`objective.labels_per_head`), which stops the step before the optimizer
touches a weight; `graph_checks_as_value_errors` turns those assert failures
from a long `InvalidArgumentError` into a `ValueError` with the same words.
"""

import contextlib
import re

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.models.objective import CHECK_MARKER
from dcn_keras.models.objective import labels_per_head

# A failed assert reads "assertion failed: [<marker><text>] [<values>]" in a
# graph, "Summarized data: b'<marker><text>'\n<values>" when eager.
_FAILED = (re.compile(re.escape(CHECK_MARKER) + r"(.*?)\] \[(.*?)\]", re.S),
           re.compile(re.escape(CHECK_MARKER) + r"(.*?)'\n(.*)", re.S))


def finite_images(images):
    """`images`, after an in-graph check that every pixel is finite."""
    finite = tf.reduce_all(tf.math.is_finite(images), axis=[1, 2, 3])
    check = tf.debugging.Assert(
        tf.reduce_all(finite),
        [f"{CHECK_MARKER}images must be finite numbers in [0, 1]; NaN or infinite pixels in batch rows",
         tf.where(tf.logical_not(finite))[:, 0]],
        summarize=5,
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


@contextlib.contextmanager
def graph_checks_as_value_errors():
    """Re-raises a failed input check from inside a step as a `ValueError` with its words."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = [m for m in (p.search(str(error)) for p in _FAILED) if m]
        if not found:
            raise
        text, values = found[0].group(1).strip(), " ".join(found[0].group(2).split())
        raise ValueError(f"{text} [{values}]; nothing was trained on that batch.") from None


def _first_batch(x, y):
    """`(images, labels)` of the first batch `fit` would see, or None when it cannot be had cheaply."""
    if isinstance(x, tf.data.Dataset):
        for element in x.take(1):
            images, labels, _ = keras.utils.unpack_x_y_sample_weight(element)
            return images, labels
        return None
    if isinstance(x, (np.ndarray, tf.Tensor)):
        return x, y
    return None  # A generator or PyDataset: the in-step checks cover it.


def check_first_batch(model, x, y=None):
    """Checks images and labels eagerly: whole arrays, or a dataset's first batch.

    Raises:
        ValueError: images of the wrong dtype, shape or with non-finite
            pixels, missing labels, or labels that are not class indices of
            `model`'s heads (whole numbers in `[0, classes)`).
    """
    batch = _first_batch(x, y)
    if batch is None:
        return
    images, labels = batch
    images = model._check_images(images)
    bad = np.flatnonzero(~np.isfinite(np.reshape(images.numpy(), (images.shape[0], -1))).all(axis=1))
    if bad.size:
        raise ValueError(f"images must be finite numbers in [0, 1]; NaN or infinite pixels in "
                         f"{bad.size} image(s), at rows {bad[:5].tolist()}.")
    if labels is None:
        raise ValueError("A DynamicCapacityNetwork trains on (images, labels); got no labels.")
    n = images.shape[0]
    heads = keras.tree.map_structure(lambda t: tf.zeros((n, t.shape[-1])), model.top.output)
    with graph_checks_as_value_errors():
        labels_per_head(labels, heads)
