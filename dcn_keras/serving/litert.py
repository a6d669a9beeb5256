"""LiteRT (TensorFlow Lite) files of a DCN or a baseline, builtin ops only, and running them.

The `.tflite` file holds the inference pass the SavedModel serves
(`serving_default`'s outputs, by the same names), at a fixed batch size, with
the weights frozen in, so the small LiteRT runtime (with XNNPACK) runs it with
no TensorFlow. Two things make a DCN's pass convertible with builtin ops
only: the weights are folded to constants (the phase kernel of the saliency's
backward convolution then folds away too), and ReLU's gradient inside the
saliency pass is taken as a select (`where(x > 0, dy, 0)`, the same values)
instead of TensorFlow's `ReluGrad`, which LiteRT has no builtin for.
"""

import contextlib
import os
import shutil
import tempfile

import numpy as np
from absl import logging

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.io_utils import atomic_path
from dcn_keras.serving.export import flat_outputs
from dcn_keras.serving.export import image_shape


@tf.custom_gradient
def _relu_with_select_gradient(x):
    def gradient(dy):
        return tf.where(x > 0, dy, tf.zeros_like(dy))

    return tf.nn.relu(x), gradient


@contextlib.contextmanager
def _select_relu_gradients(model):
    # While tracing: every ReLU-activated layer of `model` takes its gradient
    # with builtin ops. Its forward values are unchanged.
    swapped = [layer for layer in _all_layers(model)
               if getattr(layer, "activation", None) is keras.activations.relu]
    for layer in swapped:
        layer.activation = _relu_with_select_gradient
    try:
        yield
    finally:
        for layer in swapped:
            layer.activation = keras.activations.relu


def _all_layers(model):
    # Every layer of `model` and of the models inside it, each once.
    seen = {}
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if id(layer) not in seen:
            seen[id(layer)] = layer
            stack.extend(getattr(layer, "layers", []))
    return list(seen.values())


def litert_bytes(model, batch_size=1):
    """The `.tflite` flatbuffer of `model`'s inference at `batch_size`, builtin ops only.

    Raises:
        ValueError: a bad `batch_size`, or the model needs an op LiteRT has
            no builtin for (named in the message).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not valid; it must be an integer >= 1.")
    if (batch_size > 1 and getattr(model, "exit_threshold", None) is not None
            and getattr(model, "saliency", None) == "entropy_gradient"):
        raise ValueError(f"A LiteRT file of a DCN with exit_threshold={model.exit_threshold} and the entropy-"
                         f"gradient saliency takes batch_size=1, not {batch_size}: its gradient on the images "
                         "left to refine needs ops LiteRT has no builtin for. Use batch_size=1, "
                         "saliency='cam', or no exit threshold.")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([batch_size, *image_shape(model)], tf.float32, name="images")
    with _select_relu_gradients(model):
        # No `number` string: LiteRT builtins have no string joins (its heads stay).
        traced = tf.function(lambda images: flat_outputs(model, images, numbers=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    names = sorted(traced.structured_outputs)  # The frozen function returns them in this order.

    @tf.function(input_signature=[spec])
    def serve(images):
        return dict(zip(names, frozen(images)))

    # Through a SavedModel: the converter names the signature's input and
    # outputs only when it reads them from one.
    directory = tempfile.mkdtemp(prefix="dcn_litert_")
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # The temporary SavedModel's save and load chatter.
    try:
        module = tf.Module()
        module.serve = serve
        tf.saved_model.save(module, directory, signatures={"serving_default": serve.get_concrete_function()},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            return converter.convert()
        except Exception as error:  # ConverterError: its text names the ops.
            ops = [line.strip() for line in str(error).splitlines() if "TF Select ops" in line]
            raise ValueError(f"{getattr(model, 'name', model)} cannot be converted to LiteRT with "
                             f"builtin ops only ({'; '.join(ops) or str(error)[:500]}).") from None
    finally:
        logging.set_verbosity(verbosity)
        shutil.rmtree(directory, ignore_errors=True)


def export_litert(model, path, batch_size=1):
    """Writes `model`'s inference as a LiteRT `.tflite` file at `path`, atomically; returns `path`.

    The file has one signature, `serving_default`: input `images` (float32
    `[batch_size, H, W, C]` in [0, 1]) and the SavedModel's outputs by name
    (`probabilities`, `classes`, `coarse_probabilities`, `saliency`,
    `locations`, `patch_boxes`; a baseline: `probabilities`, `classes`).
    Weights are frozen in; only builtin ops are used (no Flex/Select ops).

    Args:
        model: a DCN or a baseline (`fine_only_model()`, `coarse_only_model()`).
        path: str, ending in `.tflite`.
        batch_size: int, the file's fixed batch size. Defaults to 1.
    """
    if not str(path).endswith(".tflite"):
        raise ValueError(f"{path} must end in .tflite.")
    data = litert_bytes(model, batch_size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def interpreter(path_or_bytes, num_threads=None):
    """A LiteRT interpreter of a `.tflite` file (or its bytes), tensors allocated.

    Uses the maintained `ai_edge_litert` package (`pip install
    'dcn_keras[litert]'`) and falls back to TensorFlow's deprecated
    `tf.lite.Interpreter` where it is not installed.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    source = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {
        "model_path": str(path_or_bytes)}
    result = Interpreter(**source, num_threads=num_threads)
    result.allocate_tensors()
    return result


def litert_predict(path, images, num_threads=None):
    """Runs a `.tflite` file of `export_litert` on images; returns its outputs by name.

    Any number of images: they go through the file's fixed batch in chunks
    (the last one padded and cut back).

    Args:
        path: str, the `.tflite` file.
        images: float array `[n, H, W, C]` in [0, 1].
        num_threads: int or None, the interpreter's threads.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: images of another shape or dtype than the file takes,
            values outside [0, 1], or no images.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such .tflite file.")
    runner = interpreter(path, num_threads).get_signature_runner("serving_default")
    (spec,) = runner.get_input_details().values()
    batch, *file_shape = [int(d) for d in spec["shape"]]
    expected = f"float32 images of shape [batch, {', '.join(map(str, file_shape))}] in [0, 1]"
    images = np.asarray(images)
    if images.dtype.kind != "f":
        raise ValueError(f"Expected {expected}; got dtype {images.dtype}.")
    if images.ndim != 4 or list(images.shape[1:]) != file_shape:
        raise ValueError(f"Expected {expected}; got shape {list(images.shape)}.")
    if len(images) == 0:
        raise ValueError("Expected at least one image; got an empty batch.")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"Expected {expected}; got values in [{images.min():g}, {images.max():g}].")
    images = images.astype(np.float32)
    chunks = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *file_shape), np.float32)])
        chunks.append({k: v[:len(chunk)] for k, v in runner(images=padded).items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
