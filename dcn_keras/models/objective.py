"""The DCN objective's pieces: per-head softmax, cross-entropy, accuracy."""

from dcn_keras.backend import tf
from dcn_keras.layers.entropy_saliency import head_list


def probabilities(logits):
    """Softmax of each head, in float32."""
    if isinstance(logits, dict):
        return {name: probabilities(head) for name, head in logits.items()}
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)


def per_example_ce_and_correct(labels, logits):
    """Cross-entropy summed over heads, and whether every head is right."""
    heads = head_list(logits)
    if isinstance(logits, dict):
        labels = [labels[name] for name in sorted(logits)]
    elif len(heads) == 1:
        labels = [labels]
    ce, correct = 0.0, True
    for y, head in zip(labels, heads):
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        head = tf.cast(head, tf.float32)
        ce += tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=head)
        correct = tf.logical_and(correct, tf.equal(tf.argmax(head, -1, tf.int32), y))
    return ce, tf.cast(correct, tf.float32)


def weighted_mean(values, sample_weight):
    # Keras's "sum_over_batch_size": mean over the (local) batch of w * value.
    if sample_weight is None:
        return tf.reduce_mean(values)
    weight = tf.cast(tf.reshape(sample_weight, [-1]), values.dtype)
    return tf.reduce_mean(values * weight)
