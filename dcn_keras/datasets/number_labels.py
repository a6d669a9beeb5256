"""Labels of multi-digit numbers, one code path for `svhn` and `mnist_numbers`.

A number of 1 to `MAX_DIGITS` digits is labelled as Goodfellow et al. (2014)
label SVHN, one head per quantity: `length` (1-5) and `digit_1` ..
`digit_5`, each a digit 0-9 or `NO_DIGIT` (10) past the number's end. The
`svhn` preset's heads have these names and sizes.
"""

import numpy as np

from dcn_keras.backend import tf

MAX_DIGITS = 5
NO_DIGIT = 10
HEADS = ("length",) + tuple(f"digit_{i}" for i in range(1, MAX_DIGITS + 1))


def check_max_digits(max_digits):
    """Raises a `ValueError` naming `max_digits` unless it is an integer in 1..`MAX_DIGITS`."""
    if isinstance(max_digits, bool) or not isinstance(max_digits, (int, np.integer)) or not (
            1 <= max_digits <= MAX_DIGITS):
        raise ValueError(f"max_digits={max_digits!r} is not valid; it must be an integer from 1 to "
                         f"{MAX_DIGITS} (the svhn heads read at most {MAX_DIGITS} digits).")


def number_labels(lengths, digits):
    """The heads' labels of a batch of numbers, checked; NumPy in, NumPy out.

    Args:
        lengths: int array `[N]`, each number's length (1-5).
        digits: int array `[N, MAX_DIGITS]`: each number's digits left to
            right (0-9), then `NO_DIGIT` (10) past its length.

    Returns:
        A dict of int64 arrays `[N]`: `length`, `digit_1` .. `digit_5`.

    Raises:
        ValueError: a length outside 1..5, a digit outside 0..9 within a
            number, or anything but 10 past its end (the first such number
            is named).
    """
    lengths = np.asarray(lengths, np.int64)
    digits = np.asarray(digits, np.int64)
    if digits.ndim != 2 or digits.shape[1] != MAX_DIGITS or lengths.shape != digits.shape[:1]:
        raise ValueError(f"Expected lengths [N] and digits [N, {MAX_DIGITS}]; got {lengths.shape} and "
                         f"{digits.shape}.")
    bad = np.flatnonzero((lengths < 1) | (lengths > MAX_DIGITS))
    if bad.size:
        raise ValueError(f"Number {bad[0]} has length {lengths[bad[0]]}; lengths must be 1 to {MAX_DIGITS}.")
    inside = np.arange(MAX_DIGITS)[None, :] < lengths[:, None]
    wrong = np.where(inside, (digits < 0) | (digits > 9), digits != NO_DIGIT)
    if wrong.any():
        n, i = np.argwhere(wrong)[0]
        allowed = "0 to 9" if inside[n, i] else f"{NO_DIGIT} (no digit) past its length {lengths[n]}"
        raise ValueError(f"Number {n} has digit {digits[n, i]} at position {i + 1}; allowed: {allowed}.")
    labels = {"length": lengths}
    for i in range(MAX_DIGITS):
        labels[f"digit_{i + 1}"] = digits[:, i]
    return labels


def labels_from_digits(digits):
    """In the graph, one number's variable-length digits `[L]` -> its heads' labels (as `number_labels`)."""
    length = tf.shape(digits)[0]
    padded = tf.concat([tf.cast(digits, tf.int64), tf.fill([MAX_DIGITS], tf.constant(NO_DIGIT, tf.int64))], 0)
    labels = {"length": tf.cast(length, tf.int64)}
    for i in range(MAX_DIGITS):
        labels[f"digit_{i + 1}"] = padded[i]
    return labels

