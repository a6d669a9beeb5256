"""The DCN objective's pieces: per-head softmax, cross-entropy, accuracy."""

from dcn_keras.backend import tf
from dcn_keras.heads import PLACE_KEY
from dcn_keras.heads import head_list

# Starts the message of every input assert inside a step, so `fit` can tell
# them from other graph errors (`fit_checks.graph_checks_as_value_errors`).
CHECK_MARKER = "dcn_keras input check: "


def probabilities(logits):
    """Softmax of each head, in float32."""
    if isinstance(logits, dict):
        return {name: probabilities(head) for name, head in logits.items()}
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)


def coarse_confidence(probabilities):
    """Each example's confidence, float32 `[batch]`: its top probability.

    For several heads (a dict), the product of the heads' top probabilities:
    the confidence in the whole answer (for SVHN, the whole number).
    """
    heads = probabilities.values() if isinstance(probabilities, dict) else [probabilities]
    confidence = None
    for head in heads:
        top = tf.reduce_max(tf.cast(head, tf.float32), axis=-1)
        confidence = top if confidence is None else confidence * top
    return confidence


def labels_per_head(labels, logits):
    """The integer labels of each head, in `head_list(logits)` order, checked.

    One head takes class indices `[batch]` (or `[batch, 1]`); several heads
    take a dict keyed by head name (a dict of logits) or a list in head
    order; a dict may also hold `PLACE_KEY`, the digits' boxes, which are
    passed over here. Shapes and kinds are checked while tracing (`ValueError`); values
    (whole, in `[0, classes)`) when the step runs, since the loss kernel
    gives no error for a bad index on GPU (it returns NaN).
    """
    heads = head_list(logits)
    if isinstance(logits, dict):
        names = sorted(logits)
        if not isinstance(labels, dict):
            raise ValueError(
                f"This model has softmax heads {names}: labels must be a dict of class "
                f"indices with those keys; got {_kind(labels)}."
            )
        missing = [n for n in names if n not in labels]
        unknown = sorted(str(n) for n in labels if n not in logits and n != PLACE_KEY)
        if missing or unknown:
            raise ValueError(
                f"Label keys must be the heads {names}; missing {missing}, "
                f"unknown {unknown}."
            )
        named = [(n, labels[n]) for n in names]
    elif len(heads) > 1:
        if not isinstance(labels, (list, tuple)) or len(labels) != len(heads):
            raise ValueError(
                f"This model has {len(heads)} softmax heads: labels must be a list of "
                f"{len(heads)} class-index tensors; got {_kind(labels)}."
            )
        named = [(f"head {i}", y) for i, y in enumerate(labels)]
    else:
        if isinstance(labels, (dict, list, tuple)):
            raise ValueError(
                "This model has one softmax head: labels must be one tensor of class "
                f"indices; got {_kind(labels)}."
            )
        named = [("labels", labels)]
    return [_class_indices(name, y, head) for (name, y), head in zip(named, heads)]


def _kind(labels):
    if isinstance(labels, dict):
        return f"a dict with keys {sorted(str(k) for k in labels)}"
    if isinstance(labels, (list, tuple)):
        return f"a {type(labels).__name__} of {len(labels)}"
    return f"one tensor of shape {tuple(getattr(labels, 'shape', ()))}"


def _class_indices(name, y, head):
    y = tf.convert_to_tensor(y)
    classes = head.shape[-1]
    shape = tuple(y.shape)
    if not (y.dtype.is_integer or y.dtype.is_floating):
        raise ValueError(f"{name}: class indices must be numbers; got dtype {y.dtype.name}.")
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        hint = " (one-hot? pass np.argmax(labels, -1))" if len(shape) == 2 else ""
        raise ValueError(
            f"{name}: expected class indices of shape [batch] or [batch, 1]; got shape "
            f"{shape}{hint}."
        )
    if shape[0] is not None and head.shape[0] is not None and shape[0] != head.shape[0]:
        raise ValueError(f"{name}: {shape[0]} labels for a batch of {head.shape[0]} images.")
    y = tf.reshape(y, [-1])
    if y.dtype.is_integer:
        y = tf.cast(y, tf.int64)  # a narrow dtype might not hold `classes`
    bad = tf.logical_or(y < 0, y >= tf.cast(classes, y.dtype))
    if y.dtype.is_floating:
        bad = tf.logical_or(bad, tf.not_equal(y, tf.floor(y)))
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [f"{CHECK_MARKER}{name}: class indices must be whole numbers in [0, {classes}); got",
         tf.boolean_mask(y, bad)],
        summarize=5,
    )
    with tf.control_dependencies([check]):
        return tf.cast(y, tf.int32)


def per_example_ce_and_correct(labels, logits):
    """Cross-entropy summed over heads, and whether every head is right.

    `labels` is what `labels_per_head` returns for these heads.
    """
    ce, correct = 0.0, True
    for y, head in zip(labels, head_list(logits)):
        head = tf.cast(head, tf.float32)
        ce += tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=head)
        correct = tf.logical_and(correct, tf.equal(tf.argmax(head, -1, tf.int32), y))
    return ce, tf.cast(correct, tf.float32)


def weighted_mean(values, sample_weight):
    # Keras's "sum_over_batch_size": mean over the (local) batch of w * value.
    if sample_weight is None:
        return tf.reduce_mean(values)
    sample_weight = tf.convert_to_tensor(sample_weight)
    shape, batch = tuple(sample_weight.shape), values.shape[0]
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or (
        None not in (shape[0], batch) and shape[0] != batch
    ):
        raise ValueError(
            f"sample_weight must have shape [batch] or [batch, 1] for a batch of {batch}; "
            f"got shape {shape}."
        )
    weight = tf.cast(tf.reshape(sample_weight, [-1]), values.dtype)
    return tf.reduce_mean(values * weight)
