"""Exports a model as a SavedModel, atomically."""

from dcn_keras.backend import tf
from dcn_keras.io_utils import replace_directory


def _image_shape(model):
    shape = getattr(model, "image_shape", None)
    return tuple(shape) if shape is not None else tuple(model.inputs[0].shape[1:])


def export_model(model, path):
    """Writes `model` as a SavedModel to `path` (beside it first, then renamed)."""
    spec = tf.TensorSpec((None, *_image_shape(model)), tf.float32, name="images")
    return replace_directory(
        lambda tmp: model.export(tmp, input_signature=[spec], verbose=False), path)
