"""LiteRT (TensorFlow Lite) files of a DCN or a baseline, builtin ops only (`litert_model` runs them).

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

from absl import logging

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.io_utils import atomic_path
from dcn_keras.models.objective import coarse_confidence
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

    A DCN with an exit threshold becomes a two-stage file (`export_litert`).

    Raises:
        ValueError: a bad `batch_size`, or the model needs an op LiteRT has
            no builtin for (named in the message).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not valid; it must be an integer >= 1.")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([batch_size, *image_shape(model)], tf.float32, name="images")
    stages = _stages(model)
    signatures = {}
    for key, (traced_model, fn) in stages.items():
        with _select_relu_gradients(traced_model):
            traced = tf.function(fn).get_concrete_function(spec)
        signatures[key] = _serving_function(convert_variables_to_constants_v2(traced),
                                            sorted(traced.structured_outputs), spec)

    # Through a SavedModel: the converter names the signatures' inputs and
    # outputs only when it reads them from one.
    directory = tempfile.mkdtemp(prefix="dcn_litert_")
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # The temporary SavedModel's save and load chatter.
    try:
        module = tf.Module()
        module.stages = signatures  # Tracked, so the functions are saved.
        tf.saved_model.save(module, directory, signatures={k: f.get_concrete_function() for k, f in signatures.items()},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(signatures))
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


def _stages(model):
    # `{signature: (model traced, fn images -> flat outputs)}`. An exit
    # threshold splits the pass in two (the caller decides between them):
    # inside one graph, LiteRT runs the refinement's conditional branch
    # outside XNNPACK and the DCN gets slower than without an exit
    # (docs/performance.md).
    # No `number` string anywhere: LiteRT builtins have no string joins (its heads stay).
    threshold = getattr(model, "exit_threshold", None)
    if threshold is None:
        return {"serving_default": (model, lambda images: flat_outputs(model, images, numbers=False))}
    coarse, refine = model.coarse_only_model(), model.with_settings(exit_threshold=None)

    def first(images):
        flat = flat_outputs(coarse, images, numbers=False)
        heads = {k: v for k, v in flat.items() if k.split("_")[0] == "probabilities"}
        flat["exit"] = coarse_confidence(heads) >= threshold
        return flat

    return {"coarse": (coarse, first),
            "refine": (refine, lambda images: flat_outputs(refine, images, numbers=False))}


def _serving_function(frozen, names, spec):
    @tf.function(input_signature=[spec])
    def serve(images):
        return dict(zip(names, frozen(images)))  # The frozen function returns them in `names`' order.

    return serve


def export_litert(model, path, batch_size=1):
    """Writes `model`'s inference as a LiteRT `.tflite` file at `path`, atomically; returns `path`.

    The file has one signature, `serving_default`: input `images` (float32
    `[batch_size, H, W, C]` in [0, 1]) and the SavedModel's outputs by name
    (`probabilities`, `classes`, `coarse_probabilities`, `saliency`,
    `locations`, `patch_boxes`; a baseline: `probabilities`, `classes`).
    Weights are frozen in; only builtin ops are used (no Flex/Select ops).

    A DCN with an exit threshold is a two-stage file instead, for a caller
    that runs the second stage only where it is needed (`LiteRTModel` does):
    signature `coarse` gives the coarse model's `probabilities` and
    `classes` and `exit` (bool `[batch]`: the coarse confidence is at least
    the threshold; for several heads, the product of their top
    probabilities), and for the images that do not exit, signature
    `refine` gives the DCN's outputs without a threshold. The two share
    their weights in the file.

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
