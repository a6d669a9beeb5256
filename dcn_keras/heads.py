"""A top network's softmax heads: its logits as a list, and the entropy of its prediction."""

from dcn_keras.backend import tf

# A label dict's key for each digit's box, `[batch, digits, 4]`
# `[top, left, height, width]` (zeros past the number's end): not a head's
# labels, but what the place loss (`HeadPlaces`) reads.
PLACE_KEY = "boxes"


def head_list(logits):
    """Logits of every softmax head: a dict (in key order), a list, or one tensor."""
    if isinstance(logits, dict):
        return [logits[name] for name in sorted(logits)]
    if isinstance(logits, (list, tuple)):
        return list(logits)
    return [logits]


def prediction_entropy(logits):
    """Per-example entropy in float32, summed over softmax heads."""
    total = 0.0
    for head in head_list(logits):
        head = tf.cast(head, tf.float32)
        log_p = tf.nn.log_softmax(head, axis=-1)
        total += -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
    return total
