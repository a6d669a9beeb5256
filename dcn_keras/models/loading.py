"""Loads a saved `.keras` model, optionally as a DCN refining another number of cells
or computing in another precision."""

import contextlib
import os
import zipfile

from dcn_keras.backend import keras
from dcn_keras.models.dynamic_capacity_network import DynamicCapacityNetwork


DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def load_model(path, num_patches=None, dtype_policy=None, image_shape=None):
    """Loads a `.keras` file; with `num_patches`, the DCN in it refining that many cells.

    A DCN trained with one `k` runs with another (`with_num_patches`; the
    weights are shared): fewer patches cost less, more refine more. With
    `dtype_policy`, the model computes under that policy instead of the one
    it was saved with (`with_dtype_policy`).

    Args:
        path: str, a `.keras` file.
        num_patches: int or None, the `k` to run a DCN with; None keeps its own.
        dtype_policy: str or None, one of `DTYPE_POLICIES`; None keeps the
            saved one.
        image_shape: tuple or None, the image shape to run the model at
            (`with_image_shape`); None keeps its own.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive, or `num_patches` is
            given but `path` holds no DCN, or it is out of range for the
            DCN's grid, or `dtype_policy` is not one of `DTYPE_POLICIES`.
    """
    check_dtype_policy(dtype_policy)
    check_keras_file(path)
    model = with_image_shape(keras.models.load_model(path), image_shape, path)
    return with_dtype_policy(with_num_patches(model, num_patches, path), dtype_policy)


def model_input_shape(model):
    """The image shape a loaded DCN or baseline takes, without the batch axis."""
    if isinstance(model, DynamicCapacityNetwork):
        return tuple(model.image_shape)
    return tuple(model.inputs[0].shape[1:])


def _is_chain(model):
    # Each layer of a functional model takes the one before it, and only it.
    try:
        layers = model.get_config()["layers"]
    except (KeyError, NotImplementedError):
        return False
    for before, layer in zip(layers, layers[1:]):
        sources = [arg.get("config", {}).get("keras_history", [None])[0] if isinstance(arg, dict) else None
                   for node in layer["inbound_nodes"] for arg in node["args"]]
        if len(layer["inbound_nodes"]) != 1 or sources != [before["name"]]:
            return False
    return True


def with_image_shape(model, image_shape, source):
    """`model` run on images of `image_shape`, sharing its weights (itself when it already takes them).

    The presets' towers are convolutional and their tops take any grid, so
    a model trained on one canvas size runs on another: a DCN through
    `with_settings(image_shape=...)`, a baseline (`fine_only_model()`,
    `coarse_only_model()`: a chain of layers) rebuilt on a new input. Its
    accuracy there is what an evaluation measures.

    Raises:
        ValueError: the channels differ, or a baseline is not a chain of layers.
    """
    if image_shape is None or tuple(image_shape) == model_input_shape(model):
        return model
    image_shape = tuple(int(s) for s in image_shape)
    own = model_input_shape(model)
    if image_shape[-1] != own[-1]:
        raise ValueError(f"{source} takes {own[-1]}-channel images; these have {image_shape[-1]} channels.")
    if isinstance(model, DynamicCapacityNetwork):
        return model.with_settings(image_shape=image_shape)
    chain = model.layers[1:]
    if not _is_chain(model):
        raise ValueError(f"{source} takes {own} images and is not a chain of layers, so it cannot be "
                         f"run on {image_shape} images.")
    images = keras.Input(image_shape, name="images")
    h = images
    for layer in chain:
        h = layer(h)
    return keras.Model(images, h, name=model.name)


def check_dtype_policy(dtype_policy, name="dtype_policy"):
    """Raises unless `dtype_policy` is None or one of `DTYPE_POLICIES`."""
    if dtype_policy is not None and dtype_policy not in DTYPE_POLICIES:
        raise ValueError(f"{name}={dtype_policy!r} is not valid; choose one of: {', '.join(DTYPE_POLICIES)}.")


def with_dtype_policy(model, dtype_policy):
    """`model` itself, or with `dtype_policy` given, a copy computing under it.

    The copy (uncompiled) has the same weights (float32 variables under
    every policy) and is what building the model under the global policy
    `dtype_policy` gives: a float32-trained model can so be evaluated, or
    exported, in `mixed_bfloat16`. A DCN's entropy, softmax and saliency
    stay float32.
    """
    if dtype_policy is None:
        return model
    config = _replace_policies(keras.saving.serialize_keras_object(model), dtype_policy)
    # Functional sub-models and input layers do not serialize a policy: they
    # take the global one. The context also rejects a policy not in DTYPE_POLICIES.
    with global_dtype_policy(dtype_policy):
        copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def global_dtype_policy(dtype_policy):
    """Sets Keras' global dtype policy for the block (None: leaves it), then restores it.

    Models and layers built in the block compute under `dtype_policy`.
    """
    check_dtype_policy(dtype_policy)
    previous = keras.mixed_precision.global_policy()
    if dtype_policy is not None:
        keras.mixed_precision.set_global_policy(dtype_policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _replace_policies(config, dtype_policy):
    """`config` with every serialized layer policy set to `dtype_policy`.

    A saved policy overrides the global one, so it has to be rewritten.
    Input layers' `dtype` is a plain string (the input's dtype) and stays.
    """
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": dtype_policy}}
        return {key: _replace_policies(value, dtype_policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_replace_policies(value, dtype_policy) for value in config]
    return config


def check_keras_file(path, name=None):
    """Raises unless `path` is a file that can be a `.keras` model (a zip archive).

    Keras itself reports a file that is not a zip as "File not found".
    `name` is how the messages call the file (e.g. `"--init_from=PATH"`,
    the flag that gave it); it defaults to `path`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a zip archive.
    """
    name = path if name is None else name
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{name} is not a .keras model (not a zip archive).")


def with_num_patches(model, num_patches, source):
    """`model` itself, or with `num_patches` given, the DCN it is refining that many cells.

    `source` names where the model came from, for the error when it is not
    a DCN.
    """
    if num_patches is None:
        return model
    if not isinstance(model, DynamicCapacityNetwork):
        raise ValueError(f"num_patches={num_patches} needs a DCN; {source} holds a "
                         f"{type(model).__name__}.")
    return model.with_num_patches(num_patches)
