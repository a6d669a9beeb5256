"""The training half of `DynamicCapacityNetwork`: its objective, steps, metrics and data checks."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.heads import PLACE_KEY
from dcn_keras.models.fit_checks import check_fit_data
from dcn_keras.models.fit_checks import graph_checks_as_value_errors
from dcn_keras.models.fit_checks import step_images
from dcn_keras.models.objective import labels_per_head
from dcn_keras.models.objective import per_example_ce_and_correct
from dcn_keras.models.objective import weighted_mean

METRICS = ("loss", "refined_loss", "coarse_loss", "hint_loss", "accuracy", "coarse_accuracy")


class DynamicCapacityTrainer:
    """What `keras.Model.fit` needs of a DCN, mixed into `DynamicCapacityNetwork`.

    As Keras's backend trainers are mixed into `keras.Model`, this holds the
    training side apart from the inference path: the objective (refined and
    coarse cross-entropies plus the hint term that trains the coarse tower
    only), the train and test steps (under `tf.distribute` the per-replica
    mean is divided by the replicas and `optimizer.scale_loss` is applied, so
    mixed precision works), the loss and accuracy trackers, `compile` with
    an optimizer only, and `fit`/`evaluate` that name bad data
    (`fit_checks`) before any weight changes. With `place_weight` above 0,
    the loss adds the place loss (`HeadPlaces`) on the labels' boxes. The
    model provides `forward`, `coarse_weight`, `hint_weight`,
    `place_weight`, `head_places` and `self._trackers` (one `Mean` per name
    of `METRICS`, and `place_loss` with the place loss).

    It takes no arguments of its own: `DynamicCapacityNetwork`'s are its.

    Example:
    ```python
    model = DynamicCapacityNetwork.from_preset("cluttered_mnist")
    model.compile(optimizer="adam")   # the objective is built in
    model.fit(images, labels, epochs=1)
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016, Sec. 3.
    """

    def compute_losses(self, labels, out, sample_weight=None):
        """Each loss term, as a per-replica mean over the batch."""
        boxes = self._place_boxes(labels)
        labels = labels_per_head(labels, out.logits)
        refined_ce, correct = per_example_ce_and_correct(labels, out.logits)
        coarse_ce, coarse_correct = per_example_ce_and_correct(labels, out.coarse_logits)
        diff = tf.cast(out.coarse_vectors, tf.float32) - tf.stop_gradient(
            tf.cast(out.fine_vectors, tf.float32)
        )
        hint = tf.reduce_mean(tf.square(diff), axis=[1, 2])
        terms = {
            "refined_loss": weighted_mean(refined_ce, sample_weight),
            "coarse_loss": weighted_mean(coarse_ce, sample_weight),
            "hint_loss": weighted_mean(hint, sample_weight),
            "accuracy": weighted_mean(correct, sample_weight),
            "coarse_accuracy": weighted_mean(coarse_correct, sample_weight),
        }
        terms["loss"] = (
            terms["refined_loss"]
            + self.coarse_weight * terms["coarse_loss"]
            + self.hint_weight * terms["hint_loss"]
        )
        if boxes is not None:
            terms["place_loss"] = weighted_mean(self.head_places.loss(boxes, out.refined_grid), sample_weight)
            terms["loss"] += self.place_weight * terms["place_loss"]
        return terms

    def _place_boxes(self, labels):
        # The digits' boxes the place loss reads, or None when it is off.
        if not self.place_weight:
            return None
        if not isinstance(labels, dict) or PLACE_KEY not in labels:
            raise ValueError(
                f"place_weight={self.place_weight} needs each digit's box in the labels: a dict entry "
                f"{PLACE_KEY!r} of shape [batch, digits, 4] ([top, left, height, width]; "
                "load_dataset('mnist_numbers', ..., place_boxes=True) gives it).")
        return labels[PLACE_KEY]

    def _update_metrics(self, terms, images):
        batch = tf.shape(images)[0]
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name], sample_weight=batch)
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces logs with reduce("MEAN", axis=0) there, which needs
            # an axis; the synced trackers hold the same value on every replica.
            results = {name: value[None] for name, value in results.items()}
        return results

    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras's `fit`, with bad data a `ValueError` naming it before any weight changes.

        NumPy arrays are checked whole and a dataset by its element spec
        (`fit_checks.check_fit_data`); a dataset's values inside the step.
        """
        check_fit_data(self, x, y)
        with graph_checks_as_value_errors():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras's `evaluate`, with `fit`'s checks of the data."""
        check_fit_data(self, x, y)
        with graph_checks_as_value_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def train_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images = step_images(images)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = self.forward(images, training=True)
            terms = self.compute_losses(labels, out, sample_weight)
            # The optimizer sums replica gradients: divide the per-replica
            # mean so the sum is the global-batch mean.
            loss = self.optimizer.scale_loss(terms["loss"] / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)
        return self._update_metrics(terms, images)

    def test_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images = step_images(images)
        out = self.forward(images, training=False)
        return self._update_metrics(self.compute_losses(labels, out, sample_weight), images)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Everything is built in __init__, so Keras's eager reduce of a first
        # distributed batch (which fails under MultiWorkerMirroredStrategy,
        # keras-team/keras#20585) is not needed; only the optimizer is built.
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        if loss is not None or metrics is not None:
            raise ValueError(
                "DynamicCapacityNetwork has a built-in objective and metrics; "
                f"compile it with an optimizer only (got loss={loss!r}, metrics={metrics!r})."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips custom `compile` methods on load; ours only forwards the
        # optimizer, so restoring it (and its slots) is safe.
        config = keras.saving.deserialize_keras_object(config)
        config = {k: v for k, v in config.items() if k not in ("loss", "metrics")}
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)
