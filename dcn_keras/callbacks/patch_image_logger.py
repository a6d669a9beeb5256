"""TensorBoard images of the selected patches beside the saliency map."""

import numpy as np

from dcn_keras import pictures
from dcn_keras.backend import keras
from dcn_keras.backend import tf


class PatchImageLogger(keras.callbacks.Callback):
    """Each epoch, logs a few images with their k patch boxes and saliency.

    Each logged image is one row of `pictures.figure`: titled with the true
    label (when given), the coarse and the refined prediction with their
    probabilities; the image with the patches boxed beside the saliency map
    on the same pixels, with a colour bar.

    Args:
        images: float array `[n, H, W, C]` in [0, 1], the images to show
            (a few; keep it small).
        log_dir: str, the TensorBoard directory to write to.
        name: str, the summary name. Defaults to `"patches_and_saliency"`.
        labels: optional list of n true labels (class indices, or dicts of
            heads for multi-digit numbers), shown in the titles. Defaults to
            None.

    Example:
    ```python
    model.fit(data, callbacks=[PatchImageLogger(val_images[:4], "runs/x/logs/images", labels=val_labels[:4])])
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, images, log_dir, name="patches_and_saliency", labels=None):
        super().__init__()
        self.images = images
        self.log_dir = log_dir
        self.name = name
        self.labels = labels
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        out = self.model(self.images, training=False)
        out = tf.nest.map_structure(lambda t: t.numpy(), out)
        labels = None if self.labels is None else [pictures.label_text(y) for y in self.labels]
        rows = [pictures.render(self.images[n:n + 1], tf.nest.map_structure(lambda v: v[n:n + 1], out),
                                labels=None if labels is None else labels[n:n + 1])
                for n in range(len(self.images))]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(self.name, np.stack(rows), step=epoch, max_outputs=len(rows))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
