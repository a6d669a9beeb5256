"""TensorBoard images of the selected patches beside the saliency map."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf


def render_patches_and_saliency(images, saliency, patch_boxes):
    """`[B, H, 2W, 3]` float images: input with patch boxes | saliency map.

    Boxes are drawn in red on the input (grey images become RGB); the
    saliency map is scaled to [0, 1] per image and resized to the input.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    scale = tf.constant([height, width, height, width], tf.float32)
    boxes = tf.clip_by_value(tf.cast(patch_boxes, tf.float32) / scale, 0.0, 1.0)
    drawn = tf.image.draw_bounding_boxes(images, boxes, colors=[[1.0, 0.0, 0.0, 1.0]])
    saliency = tf.convert_to_tensor(saliency, tf.float32)
    peak = tf.reduce_max(saliency, axis=[1, 2], keepdims=True)
    saliency = saliency / tf.maximum(peak, 1e-12)
    heat = tf.image.resize(saliency[..., None], [height, width], method="nearest")
    return tf.concat([drawn, tf.image.grayscale_to_rgb(heat)], axis=2)


class PatchImageLogger(keras.callbacks.Callback):
    """Each epoch, logs a few images with their k patch boxes and saliency.

    Args:
        images: float array `[n, H, W, C]` in [0, 1], the images to show
            (a few; keep it small).
        log_dir: str, the TensorBoard directory to write to.
        name: str, the summary name. Defaults to `"patches_and_saliency"`.

    Example:
    ```python
    model.fit(data, callbacks=[PatchImageLogger(val_images[:4], "runs/x/logs/images")])
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, images, log_dir, name="patches_and_saliency"):
        super().__init__()
        self.images = images
        self.log_dir = log_dir
        self.name = name
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        out = self.model(self.images, training=False)
        picture = render_patches_and_saliency(self.images, out["saliency"], out["patch_boxes"])
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(self.name, picture, step=epoch, max_outputs=len(self.images))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
