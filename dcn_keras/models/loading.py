"""Loads a saved `.keras` model, optionally as a DCN refining another number of cells."""

import os
import zipfile

from dcn_keras.backend import keras
from dcn_keras.models.dynamic_capacity_network import DynamicCapacityNetwork


def load_model(path, num_patches=None):
    """Loads a `.keras` file; with `num_patches`, the DCN in it refining that many cells.

    A DCN trained with one `k` runs with another (`with_num_patches`; the
    weights are shared): fewer patches cost less, more refine more.

    Args:
        path: str, a `.keras` file.
        num_patches: int or None, the `k` to run a DCN with; None keeps its own.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive, or `num_patches` is
            given but `path` holds no DCN, or it is out of range for the
            DCN's grid.
    """
    check_keras_file(path)
    model = keras.models.load_model(path)
    return with_num_patches(model, num_patches, path)


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
