"""SavedModels for TensorFlow Serving: everything in the graph, no Python of ours.

A DCN export has these signatures:
- `serving_default`: `images`, float32 `[batch, H, W, C]` in [0, 1] ->
  `probabilities`, `classes`, `coarse_probabilities`, `saliency`,
  `locations` and `patch_boxes` (multi-head models: `probabilities_<head>`,
  `classes_<head>`, `coarse_probabilities_<head>` for each head, and
  for multi-digit models `number`, the number read as a string such as
  `"4071"`, and `number_confidence`, the product of the heads' top
  probabilities).
- `serving_bytes`: `image_bytes`, a string vector of encoded PNG/JPEG images
  (REST clients send them as `{"b64": ...}`), decoded, converted to [0, 1]
  and resized to `H x W` in the graph; same outputs.
- `serving_xla` (with `xla=True`): `serving_default` compiled with XLA,
  for lower batch-1 latency on servers built with XLA (a DCN with
  `fine_tile` > 1 runs patch by patch there: the same outputs, static shapes).

Inputs are checked in the graph: a wrong rank, size or channel count fails
with a message naming the expected shape instead of producing garbage. The
graph's `images` input takes any shape so that those checks run (TF Serving
feeds a request to the graph without comparing it with the signature); the
SignatureDef states `[-1, H, W, C]`, which is what `saved_model_cli show`
and TF Serving's metadata endpoint give clients (`signature_image_shape`).
"""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
import os

from tensorflow.core.protobuf import saved_model_pb2

from dcn_keras.datasets.number_labels import NO_DIGIT
from dcn_keras.io_utils import atomic_path
from dcn_keras.io_utils import replace_directory
from dcn_keras.models.objective import coarse_confidence
from dcn_keras.models.objective import probabilities


def image_shape(model):
    """The `(H, W, C)` a DCN or a baseline takes."""
    shape = getattr(model, "image_shape", None)
    return tuple(shape) if shape is not None else tuple(model.inputs[0].shape[1:])


def checked_images(images, image_shape):
    """`images` as float32 `[batch, H, W, C]`, or an error naming the shape."""
    height, width, channels = image_shape
    expected = f"float32 images of shape [batch, {height}, {width}, {channels}] in [0, 1]"
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    with tf.control_dependencies([
        tf.debugging.assert_equal(tf.rank(images), 4, message=f"Expected {expected}; got a different rank."),
    ]):
        size = tf.shape(shape)[0]
        # Compare the last three sizes only once the rank is known to be 4.
        tail = tf.cond(tf.equal(size, 4), lambda: shape[1:4], lambda: tf.constant([-1, -1, -1]))
        check = tf.debugging.assert_equal(
            tail, tf.constant([height, width, channels]),
            message=f"Expected {expected}; got [batch, height, width, channels] with these sizes:")
    with tf.control_dependencies([check]):
        nonempty = _assert_nonempty(shape[0])
    with tf.control_dependencies([nonempty]):
        # Pixels of 0-255 or NaN would give confident nonsense, not an error.
        low, high = tf.reduce_min(images), tf.reduce_max(images)
        in_range = tf.debugging.Assert(
            tf.logical_and(low >= 0.0, high <= 1.0),  # False for NaN too
            [f"Expected {expected}; got pixel values (min, max, any NaN):", low, high,
             tf.reduce_any(tf.math.is_nan(images))])
    with tf.control_dependencies([in_range]):
        images = tf.identity(images)
    return tf.ensure_shape(images, (None, height, width, channels))


def _assert_nonempty(batch):
    # oneDNN's convolutions fail on an empty batch with an unrelated message.
    return tf.debugging.assert_positive(
        batch, message="Expected at least one image; got an empty batch")


def decode_images(image_bytes, image_shape):
    """Decodes a string vector of PNG/JPEG bytes to `[batch, H, W, C]` in [0, 1]."""
    height, width, channels = image_shape

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, (height, width))

    return tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
        (height, width, channels), tf.float32))


def number_strings(probabilities):
    """The number a dict of multi-digit head probabilities reads, and its confidence.

    The string holds as many digits as the `length` head's argmax, each the
    argmax of its `digit_i` head (`"?"` where that head says "no digit"
    within the number), as `pictures.describe` spells it; the confidence is
    the product of every head's top probability (`coarse_confidence`), the
    whole number's.

    Returns:
        `(number, confidence)`: string `[batch]` and float32 `[batch]`.
    """
    count = sum(1 for head in probabilities if head.startswith("digit_"))
    length = tf.argmax(probabilities["length"], -1, output_type=tf.int32)
    digits = tf.stack([tf.argmax(probabilities[f"digit_{i}"], -1, output_type=tf.int32)
                       for i in range(1, count + 1)], -1)
    text = tf.where(digits == NO_DIGIT, tf.constant("?"), tf.strings.as_string(digits))
    text = tf.where(tf.sequence_mask(length, count), text, tf.constant(""))
    return tf.strings.reduce_join(text, axis=-1), coarse_confidence(probabilities)


def flat_outputs(model, images, numbers=True):
    """The model's outputs as one flat dict of tensors.

    A DCN with `class_names` also gets `class_name` and `coarse_class_name`
    (strings). A multi-digit model (heads `length`, `digit_1`, ...) also gets `number`
    (the number read, a string such as `"4071"`) and `number_confidence`
    (`number_strings`), unless `numbers` is False (LiteRT has no strings).
    """
    out = model(images, training=False)
    if not isinstance(out, dict) or "probabilities" not in out:  # A baseline: logits, or a dict of heads'.
        out = {"probabilities": probabilities(out)}
    flat = {}
    for key in ("probabilities", "coarse_probabilities"):
        value = out.get(key)
        if isinstance(value, dict):
            for head, head_probabilities in value.items():
                flat[f"{key}_{head}"] = head_probabilities
                if key == "probabilities":
                    flat[f"classes_{head}"] = tf.argmax(head_probabilities, -1)
        elif value is not None:
            flat[key] = value
            if key == "probabilities":
                flat["classes"] = tf.argmax(value, -1)
    for key in ("saliency", "locations", "patch_boxes", "refined"):
        if key in out:  # "refined": a DCN with an exit threshold.
            flat[key] = out[key]
    names = getattr(model, "class_names", None)
    if names and numbers:  # A user's own classes, by name (strings: not on LiteRT).
        flat["class_name"] = tf.gather(tf.constant(names), flat["classes"])
        if "coarse_probabilities" in flat:
            flat["coarse_class_name"] = tf.gather(tf.constant(names), tf.argmax(flat["coarse_probabilities"], -1))
    return with_numbers(flat) if numbers else flat


def with_numbers(flat):
    """`flat` outputs plus `number` and `number_confidence` when they come from a multi-digit model."""
    prefix = "probabilities_"
    heads = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    if "length" in heads:
        flat = dict(flat)
        flat["number"], flat["number_confidence"] = number_strings(heads)
    return flat


def export_model(model, path, xla=True):
    """Writes `model` as a SavedModel at `path`, atomically; returns the path.

    `path` is written beside itself first and renamed into place, so TF
    Serving never sees a half-written version directory.
    """
    shape = image_shape(model)

    def serve(images):
        return flat_outputs(model, checked_images(images, shape))

    def serve_bytes(image_bytes):
        with tf.control_dependencies([_assert_nonempty(tf.size(image_bytes))]):
            image_bytes = tf.identity(image_bytes)
        return flat_outputs(model, decode_images(image_bytes, shape))

    # XLA runs a varying number of fine-tower windows (`fine_tile` > 1) slowly
    # (the numbers DCN at batch 1: 23.5 ms against 8.4 ms patch by patch,
    # docs/serving.md); patch by patch the shapes are static. Same outputs.
    static = model.with_settings(fine_tile=1) if getattr(model, "fine_tile", 1) > 1 else model
    compiled = tf.function(lambda images: flat_outputs(static, images, numbers=False), jit_compile=True)

    def serve_xla(images):
        # The checks stay outside the XLA cluster, where XLA would drop the
        # asserts and report a bad shape as a failed tf2xla conversion; the
        # number's string too (XLA has no strings).
        return with_numbers(compiled(checked_images(images, shape)))

    def build(tmp):
        # No `archive.track(model)`: the endpoints' traces already hold the
        # variables, and tracking the model too stores every weight twice
        # (keras-team/keras#23553: its keras.Variable wrappers and their
        # tf.Variables are separate objects to the checkpoint).
        archive = keras.export.ExportArchive()
        # Unknown rank: the checks above run in the graph, where TF Serving
        # (which does not check shapes against the signature) needs them.
        images_spec = tf.TensorSpec(None, tf.float32, name="images")
        archive.add_endpoint("serving_default", serve, input_signature=[images_spec])
        archive.add_endpoint("serving_bytes", serve_bytes,
                             input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        if xla:
            archive.add_endpoint("serving_xla", serve_xla, input_signature=[images_spec])
        archive.write_out(tmp, verbose=False)
        _state_image_shape(tmp, shape)

    return replace_directory(build, path)


def _read_saved_model(directory):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    return saved_model


def _state_image_shape(directory, image_shape):
    # The SignatureDef is what clients read (saved_model_cli, TF Serving's
    # metadata); the traced graph keeps its any-shape input and the checks.
    saved_model = _read_saved_model(directory)
    for meta_graph in saved_model.meta_graphs:
        for signature in meta_graph.signature_def.values():
            if "images" in signature.inputs:
                shape = signature.inputs["images"].tensor_shape
                shape.Clear()
                for size in (-1, *image_shape):
                    shape.dim.add(size=size)
    with open(os.path.join(directory, "saved_model.pb"), "wb") as file:
        file.write(saved_model.SerializeToString())


def signature_image_shape(directory):
    """The `(H, W, C)` the SavedModel at `directory` states for its `serving_default` images, or None.

    None for a SavedModel whose signature states no size (exported before
    the signatures stated it, or not by `export_model`).
    """
    signature = _read_saved_model(directory).meta_graphs[0].signature_def.get("serving_default")
    if signature is None or "images" not in signature.inputs:
        return None
    shape = signature.inputs["images"].tensor_shape
    sizes = tuple(d.size for d in shape.dim)
    return sizes[1:] if not shape.unknown_rank and len(sizes) == 4 and min(sizes[1:]) > 0 else None


def export_weights(model, path):
    """Writes `model`'s weights to `path` (a `.weights.h5` file), atomically.

    `DynamicCapacityNetwork.from_preset(preset, weights=path)` loads them.
    """
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"{path} must end in .weights.h5 (Keras's weights format).")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
    return path
