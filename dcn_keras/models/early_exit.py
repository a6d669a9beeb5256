"""Inference with an early exit: the coarse answer decides which images are refined."""

from dcn_keras.backend import tf
from dcn_keras.models.objective import coarse_confidence
from dcn_keras.models.objective import probabilities
from dcn_keras.models.stages import Stages


def early_exit_pass(dcn, images):
    """`dcn`'s `Stages` on checked `images`, refining only the unsure ones.

    An image whose coarse prediction's confidence (`coarse_confidence`) is
    at least `dcn.exit_threshold` keeps the coarse answer and costs the
    coarse model alone (no saliency, no top-k); the others go through
    `dcn.forward` together (one fine-tower call; none left: skipped). An
    exited image gets a zero saliency map and locations of -1: no cell was
    chosen for it. `refined` says which images were refined.
    """
    grid = dcn.coarse(images, training=False)
    coarse = dcn.top(grid, training=False)
    refine = coarse_confidence(probabilities(coarse)) < dcn.exit_threshold
    batch = tf.shape(images)[0]
    rows, cols = dcn.geometry.grid_shape
    saliency = tf.zeros([batch, rows, cols], tf.float32)
    locations = tf.fill([batch, dcn.num_patches, 2], -1)
    if images.shape[0] == 1:
        # A fixed single image (a LiteRT file, a batch-1 trace) is refined
        # whole: no gather or scatter, and static shapes, so the saliency's
        # gradient has no shape ops (LiteRT has no BroadcastGradientArgs).
        pick, put, any_refined = _whole, _replace, refine[0]
    else:
        index = tf.where(refine)
        pick = lambda t: tf.gather_nd(t, index)  # noqa: E731
        put = lambda whole, part: tf.tensor_scatter_nd_update(whole, index, tf.cast(part, whole.dtype))  # noqa: E731
        any_refined = tf.size(index) > 0

    def refined():
        stages = dcn.forward(pick(images), grid=pick(grid))
        return (tf.nest.map_structure(put, coarse, stages.logits), put(saliency, stages.saliency),
                put(locations, stages.locations))

    logits, saliency, locations = tf.cond(any_refined, refined, lambda: (coarse, saliency, locations))
    return Stages(grid=grid, coarse_logits=coarse, saliency=saliency, locations=locations, logits=logits,
                  refined=refine)


def _whole(tensor):
    return tensor


def _replace(whole, part):
    return tf.cast(part, whole.dtype)
