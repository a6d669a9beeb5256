"""Predictions on image files from a saved DCN (`.keras` or SavedModel): `bin/dcn_predict`."""

import os

import numpy as np

from dcn_keras import pictures
from dcn_keras.backend import tf
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models import load_model
from dcn_keras.serving.export import flat_outputs
from dcn_keras.serving.export import signature_image_shape

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
_DCN_OUTPUTS = ("saliency", "locations", "patch_boxes")
PRESET_PREFIX = "preset:"  # `preset:NAME`: the preset's model with its shipped "pretrained" weights.
DEFAULT_PRESET = "cluttered_mnist_fast"
DEFAULT_SAVED_MODEL = os.path.join("saved_models", "cluttered_mnist_fast_full_dcn", "1")


def default_model():
    """The default model: its SavedModel in a checkout (beside the package), else `preset:cluttered_mnist_fast`.

    An installed package (`pip install .`) holds the shipped weights, not the
    SavedModels; the preset with those weights and its exit threshold is
    the same model.
    """
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DEFAULT_SAVED_MODEL)
    return checkout if os.path.isfile(os.path.join(checkout, "saved_model.pb")) else PRESET_PREFIX + DEFAULT_PRESET


def image_files(paths):
    """`(file, problem)` for each image `paths` name: files as given, directories' images sorted by name.

    `problem` is None, or why the entry cannot be read (a missing path, a
    directory without images), so a batch goes on with the rest.

    Raises:
        ValueError: no path was given.
    """
    if not paths:
        raise ValueError("no image given: name image files or directories.")
    entries = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            entries.extend((f, None) for f in found)
            if not found:
                entries.append((path, f"{path} holds no image ({', '.join(IMAGE_EXTENSIONS)})."))
        elif os.path.isfile(path):
            entries.append((path, None))
        else:
            entries.append((path, f"{path}: no such file or directory."))
    return entries


def _saved_model_image_shape(path, signature=None):
    # The SignatureDef states it (serving.export); a SavedModel exported
    # before it did holds it only in the EnsureShape of its input checks,
    # which needs the model loaded (`signature`, if the caller has it).
    shape = signature_image_shape(path)
    if shape is not None:
        return shape
    if signature is None:
        signature = tf.saved_model.load(path).signatures["serving_default"]
    for function in signature.graph.as_graph_def().library.function:
        for node in function.node_def:
            if node.op == "EnsureShape":
                dims = [d.size for d in node.attr["shape"].shape.dim]
                if len(dims) == 4 and min(dims[1:]) > 0:
                    return tuple(dims[1:])
    raise ValueError(f"{path}: cannot tell the image size its serving_default signature takes; "
                     "export it with bin/dcn_export.")


def load_predictor(path):
    """`(predict, image_shape)` for a saved DCN, or `preset:NAME` (the preset with its "pretrained" weights).

    `predict(images)` maps float32 `[batch, H, W, C]` images to the serving
    signature's flat outputs as NumPy arrays (`probabilities`,
    `coarse_probabilities`, `saliency`, `locations`, `patch_boxes`; for
    several heads `probabilities_<head>`, ...).

    Raises:
        FileNotFoundError: `path` is neither a `.keras` file nor a SavedModel.
        ValueError: the model is not a DCN (it has no patches or saliency).
    """
    if path.startswith(PRESET_PREFIX) or path.endswith(".keras"):
        if path.startswith(PRESET_PREFIX):
            model = DynamicCapacityNetwork.from_preset(path[len(PRESET_PREFIX):], weights="pretrained")
        else:
            model = load_model(path)
        if not isinstance(model, DynamicCapacityNetwork):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a DynamicCapacityNetwork: "
                             "it has no patches or saliency to show.")
        return (lambda images: tf.nest.map_structure(np.asarray, flat_outputs(model, images)),
                tuple(model.image_shape))
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        signature = tf.saved_model.load(path).signatures.get("serving_default")
        outputs = set(signature.structured_outputs) if signature is not None else set()
        if not set(_DCN_OUTPUTS) <= outputs:
            raise ValueError(f"{path} is not a DCN's SavedModel: its serving_default has no "
                             f"{', '.join(o for o in _DCN_OUTPUTS if o not in outputs)} output.")
        shape = _saved_model_image_shape(path, signature)
        return (lambda images: {k: v.numpy() for k, v in signature(images=tf.constant(images)).items()},
                shape)
    raise FileNotFoundError(f"{path} is neither a .keras file nor a SavedModel directory.")


def model_image_shape(path):
    """`(height, width, channels)` a saved model (`.keras` or SavedModel, a DCN or a baseline) takes.

    A `.keras` baseline takes any size: its height and width are None.

    Raises:
        FileNotFoundError: `path` is neither a `.keras` file nor a SavedModel.
    """
    if path.endswith(".keras"):
        model = load_model(path)
        shape = getattr(model, "image_shape", None) or tuple(model.input_shape[1:])
    elif os.path.isfile(os.path.join(path, "saved_model.pb")):
        shape = _saved_model_image_shape(path)
    else:
        raise FileNotFoundError(f"{path} is neither a .keras file nor a SavedModel directory.")
    return tuple(shape)


def read_image(path, image_shape):
    """`(image, original_size)`: float32 `[H, W, C]` in [0, 1], resized as the serving signature does.

    Raises:
        ValueError: the file is not an image TensorFlow can decode (named).
    """
    height, width, channels = image_shape
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        raise ValueError(f"{path} is not an image TensorFlow can decode (PNG, JPEG, GIF, BMP).") from None
    size = tuple(image.shape[:2])
    image = tf.image.convert_image_dtype(image, tf.float32)
    if size != (height, width):
        image = tf.image.resize(image, (height, width))
    return image.numpy(), size


def _heads(flat, key, n):
    """One image's probabilities: an array, or a dict of heads."""
    if key in flat:
        return flat[key][n]
    prefix = key + "_"
    return {k[len(prefix):]: v[n] for k, v in flat.items() if k.startswith(prefix)}


def _record(path, outputs, n):
    """The record of image `n` of a batch's flat `outputs`."""
    answer, confidence = pictures.describe(_heads(outputs, "probabilities", n))
    coarse, coarse_confidence = pictures.describe(_heads(outputs, "coarse_probabilities", n))
    record = {"file": path, "class": answer, "probability": round(confidence, 6),
              "coarse_class": coarse, "coarse_probability": round(coarse_confidence, 6),
              "patch_boxes": outputs["patch_boxes"][n].tolist(),
              "locations": outputs["locations"][n].tolist()}
    if "class_name" in outputs:  # A model of a user's own classes: their names.
        record.update(class_index=int(answer), **{
            "class": outputs["class_name"][n].decode(), "coarse_class": outputs["coarse_class_name"][n].decode()})
    if "refined" in outputs:  # An exit threshold: False kept the coarse answer, no patch.
        record["refined"] = bool(outputs["refined"][n])
    if "number" in outputs:  # A multi-digit model: the graph's reading, and its heads raw.
        record.update(number=outputs["number"][n].decode(),
                      number_confidence=round(float(outputs["number_confidence"][n]), 6),
                      heads={head: int(np.argmax(p)) for head, p in _heads(outputs, "probabilities", n).items()})
    return record


def predict_files(model_path, paths, batch_size=32, warn=print, keep=None):
    """Runs a saved DCN on image files; returns `(records, images, outputs)`.

    Each record is a dict: `file`, `class` (the answer: a class index, or
    the number a multi-digit model reads, as a string), `probability` (its
    confidence; for several heads the product of their top probabilities),
    `coarse_class`, `coarse_probability`, `patch_boxes` and `locations`
    (-1 for an image that exited early; then `refined` is False);
    a multi-digit model's also has `number` and `number_confidence` (the
    serving signature's, e.g. `"4071"`) and `heads`, each head's class.
    A file that cannot be read (missing, not an image, a directory without
    images) gets a record of its own, `{"file": ..., "error": ...}`, in its
    place, and the rest are still classified. Images of another size than
    the model's are resized (bilinear, as the `serving_bytes` signature
    does), with a call to `warn` naming them.

    Files are read and classified `batch_size` at a time, so memory does not
    grow with their number. `images` and `outputs` are the first `keep`
    readable images (None: all), resized, and the model's flat outputs on
    them, for `pictures.save`.
    """
    entries = image_files(paths)
    predict, image_shape = load_predictor(model_path)
    records, kept, kept_outputs = [], [], []
    batch, where = [], []

    def flush():
        outputs = predict(np.stack(batch))
        for n, index in enumerate(where):
            records[index] = _record(entries[index][0], outputs, n)
        room = len(batch) if keep is None else max(0, keep - sum(len(x) for x in kept))
        if room:
            kept.append(np.stack(batch[:room]))
            kept_outputs.append({k: v[:room] for k, v in outputs.items()})
        batch.clear()
        where.clear()

    for n, (path, problem) in enumerate(entries):
        records.append(None)
        if problem is None:
            try:
                image, size = read_image(path, image_shape)
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            records[n] = {"file": path, "error": problem}
            continue
        if size != image_shape[:2]:
            warn(f"{path} is {size[0]}x{size[1]}; resized to {image_shape[0]}x{image_shape[1]} "
                 "as the serving signature does.")
        batch.append(image)
        where.append(n)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not kept:
        return records, np.zeros((0, *image_shape), np.float32), {}
    outputs = {k: np.concatenate([b[k] for b in kept_outputs]) for k in kept_outputs[0]}
    return records, np.concatenate(kept), outputs


def format_line(record):
    """One line per image: file, answer and probability, coarse answer, the k patch boxes."""
    boxes = " ".join("[{},{},{},{}]".format(*box) for box in record["patch_boxes"])
    if not record.get("refined", True):
        boxes = "none (exited: the coarse answer is kept)"
    return (f"{record['file']}: {record['class']} ({record['probability']:.4f}); coarse "
            f"{record['coarse_class']} ({record['coarse_probability']:.4f}); patches {boxes}")


def picture_outputs(outputs):
    """The flat outputs regrouped as `pictures.figure` takes them (heads as dicts)."""
    return {key: _heads(outputs, key, slice(None)) for key in
            ("probabilities", "coarse_probabilities", "saliency", "locations", "patch_boxes")}
