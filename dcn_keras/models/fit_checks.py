"""Checks of the data `fit` and `evaluate` get: errors that name the bad value, before any weight changes.

Two layers. `check_fit_data` looks at the data before Keras traces
anything: whole NumPy arrays (shapes, dtypes, finite pixels, label values),
or a dataset's element spec (shapes, dtypes, labels; its elements are not
read, since a new iterator of a shuffled dataset draws a new order and would
change what `fit` then sees). A dataset's values are checked inside the
step (`step_images` here, which checks float pixels finite and scales uint8
ones, and the label assert in `objective.labels_per_head`), which stops the
step before the optimizer touches a weight; `graph_checks_as_value_errors`
turns those assert failures from a long `InvalidArgumentError` into a
`ValueError` with the same words.
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


# k / 255 for each 8-bit value k, correctly rounded as the loaders' scaling
# gives it (a graph may turn `x / 255` into `x * (1 / 255)`, an ulp off).
_EIGHT_BIT = np.arange(256, dtype=np.float32) / np.float32(255)


def step_images(images):
    """A step's images as the model reads them: float32 in [0, 1].

    uint8 images (0-255) are scaled by 1/255, as the loaders scale their
    8-bit pixels, so the two give the same numbers. They are a quarter of
    the bytes through tf.data, whose batching and prefetch buffers hold
    several batches (`dcn_train` carries 8-bit datasets that way: 1500-px
    float32 canvases held 1.2 GB there). Float images are checked finite.
    """
    if images.dtype == tf.uint8:
        return tf.gather(tf.constant(_EIGHT_BIT), tf.cast(images, tf.int32))
    return finite_images(images)


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


def _check_dataset_spec(model, dataset):
    """Checks a dataset's element spec, not its elements: iterating would draw a shuffle order."""
    images, labels, _ = keras.utils.unpack_x_y_sample_weight(dataset.element_spec)
    if not isinstance(images, tf.TensorSpec) or not (images.dtype.is_floating or images.dtype == tf.uint8):
        raise ValueError(f"Images must be float32 tensors in [0, 1] (or uint8, 0-255); the dataset yields {images}.")
    shape = images.shape
    expected = (None,) + tuple(model.image_shape)
    if shape.rank is not None and (shape.rank != 4 or any(
            s is not None and s != e for s, e in zip(shape[1:], model.image_shape))):
        raise ValueError(f"Expected images of shape {expected}; the dataset yields {tuple(shape)}.")
    if labels is None:
        raise ValueError("A DynamicCapacityNetwork trains on (images, labels); the dataset yields no labels.")


def check_fit_data(model, x, y=None):
    """Checks what `fit` is given before any step: NumPy arrays whole, a dataset by its element spec.

    Label values and pixels of a dataset are checked inside each step
    (`step_images`, `objective.labels_per_head`), before the optimizer
    touches a weight.

    Raises:
        ValueError: images of the wrong dtype, shape or with non-finite
            pixels, missing labels, or labels that are not class indices of
            `model`'s heads (whole numbers in `[0, classes)`).
    """
    if isinstance(x, tf.data.Dataset):
        _check_dataset_spec(model, x)
        return
    if not isinstance(x, (np.ndarray, tf.Tensor)):
        return  # A generator or PyDataset: the in-step checks cover it.
    if tf.as_dtype(x.dtype) == tf.uint8:
        # The shape only: 8-bit pixels are finite, and a float copy of the whole array is what uint8 saves.
        model._check_images(tf.zeros((min(len(x), 1),) + tuple(x.shape[1:])))
    else:
        images = model._check_images(x)
        bad = np.flatnonzero(~np.isfinite(np.reshape(images.numpy(), (images.shape[0], -1))).all(axis=1))
        if bad.size:
            raise ValueError(f"images must be finite numbers in [0, 1]; NaN or infinite pixels in "
                             f"{bad.size} image(s), at rows {bad[:5].tolist()}.")
    if y is None:
        raise ValueError("A DynamicCapacityNetwork trains on (images, labels); got no labels.")
    n = x.shape[0]
    heads = keras.tree.map_structure(lambda t: tf.zeros((n, t.shape[-1])), model.top.output)
    with graph_checks_as_value_errors():
        labels_per_head(y, heads)
