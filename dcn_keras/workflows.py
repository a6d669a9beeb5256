"""Workflows above training and serving: train then export, and export a saved run.

Training (`dcn_keras.training`) and serving (`dcn_keras.serving`) both build
on the models and never import each other; what needs both lives here:
`bin/dcn_train` trains then exports (`train_and_export`), `bin/dcn_export`
loads a `.keras` file or a training directory's newest checkpoint and writes
a SavedModel, Keras weights or a LiteRT file (`export_from`).
"""

import dataclasses
import glob
import json
import os

from dcn_keras.models import load_model
from dcn_keras.models import with_num_patches
from dcn_keras.models.loading import model_input_shape
from dcn_keras.models.loading import with_image_shape
from dcn_keras.models.loading import check_dtype_policy
from dcn_keras.serving import export_litert
from dcn_keras.serving import export_model
from dcn_keras.serving import export_weights
from dcn_keras.training import TrainConfig
from dcn_keras.training import build_model
from dcn_keras.training import train

FORMATS = ("saved_model", "weights", "litert")
BASELINES = ("fine", "coarse")


def train_and_export(config, callbacks=(), print_fn=print):
    """`training.train(config)`, then the trained model as a SavedModel for TF Serving.

    The SavedModel goes to `config.export_dir` (default
    `<model_dir>/export/1`); `results["export_dir"]` says where.
    """
    return train(config, callbacks=callbacks, print_fn=print_fn, export=export_model)


def _next_version(base):
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def _load(source, num_patches, dtype_policy):
    if source.endswith(".keras"):
        return load_model(source, num_patches, dtype_policy)
    config_path = os.path.join(source, "config.json")
    checkpoints = sorted(glob.glob(os.path.join(source, "checkpoints", "epoch_*.weights.h5")))
    if not os.path.isfile(config_path) or not checkpoints:
        raise FileNotFoundError(
            f"{source} is neither a .keras file nor a training directory with config.json "
            "and checkpoints/epoch_*.weights.h5.")
    resolved = json.load(open(config_path))
    config = TrainConfig(**resolved["config"])
    if dtype_policy is not None:  # Built so, rather than rebuilt after.
        config = dataclasses.replace(config, dtype_policy=dtype_policy)
    # The run's length only sets the schedule of an optimizer that exporting never steps.
    model = build_model(config, resolved["image_shape"], resolved["preset"],
                        total_steps=config.epochs * (config.steps_per_epoch or 1),
                        class_names=resolved.get("class_names", ()))
    model.load_weights(checkpoints[-1])
    return with_num_patches(model, num_patches, source)


def export_from(source, export_base="saved_models", name="cluttered_mnist_dcn", version=None, xla=True,
                num_patches=None, dtype_policy=None, format="saved_model", output=None, batch_size=1,
                baseline=None, top_pass=None, exit_threshold=None, image_size=None, fine_tile=None):
    """Exports `source` to `<export_base>/<name>/<version>/` (TF Serving's layout).

    Args:
        source: a `.keras` file, or a `--model_dir` of `bin/dcn_train` (its
            newest `checkpoints/epoch_*.weights.h5` is used).
        export_base: str, the model base path TF Serving watches.
        name: str, the model name.
        version: int or None; None takes one more than the newest version.
        xla: bool, add the XLA-compiled `serving_xla` signature.
        num_patches: int or None; a DCN is exported refining this many
            cells instead of the `k` it was trained with (None keeps it).
        dtype_policy: str or None; the model is exported computing under this
            Keras dtype policy (`float32`, `mixed_float16`, `mixed_bfloat16`)
            instead of its own. Inputs and probabilities stay float32.
        format: str, `"saved_model"` (default), `"weights"` (the Keras
            weights alone, a `.weights.h5` file at `output`, default
            `<export_base>/<name>.weights.h5`) or `"litert"` (a LiteRT
            `.tflite` file with builtin ops only, `export_litert`; default
            `<export_base>/<name>.tflite`).
        output: str or None, the file a file format writes.
        batch_size: int, the fixed batch size of a `"litert"` file. Defaults to 1.
        baseline: None (the model itself), or `"fine"` / `"coarse"`: that
            baseline of a DCN (`fine_only_model()`, `coarse_only_model()`),
            so both run on the same runtime.
        top_pass: None (as trained), or `"incremental"` / `"full"`: the
            DCN's refined top pass in the export (on LiteRT with two threads
            the full pass is the faster one; docs/performance.md).
        exit_threshold: None (as trained), or a number in (0, 1]: the
            exported DCN refines only images whose coarse confidence is below
            it (`DynamicCapacityNetwork`'s `exit_threshold`).
        fine_tile: None (as trained), or an int >= 1: the DCN's fine tower
            runs once per `fine_tile` x `fine_tile` block of cells holding a
            chosen one (`DynamicCapacityNetwork`'s `fine_tile`; the same
            outputs, less work where the chosen cells crowd together).
        image_size: None (as trained), or an int: the model is exported for
            square images of that side (`with_image_shape`; the towers are
            convolutional, so a model trained on one canvas runs on another).

    Returns:
        The version directory (or file) written.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not valid; choose one of: {', '.join(FORMATS)}.")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise ValueError(f"version={version!r} must be an integer >= 1.")
    if baseline not in (None,) + BASELINES:
        raise ValueError(f"baseline={baseline!r} is not valid; choose one of: {', '.join(BASELINES)}.")
    check_dtype_policy(dtype_policy)
    model = _load(source, num_patches, dtype_policy)
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r} must be an integer >= 1 (pixels a side).")
        model = with_image_shape(model, (image_size, image_size, model_input_shape(model)[-1]), source)
    changes = {k: v for k, v in (("top_pass", top_pass), ("exit_threshold", exit_threshold),
                                 ("fine_tile", fine_tile)) if v is not None}
    if changes:
        if not hasattr(model, "with_settings"):
            raise ValueError(f"{', '.join(f'{k}={v!r}' for k, v in changes.items())} needs a DCN; {source} "
                             f"holds a {type(model).__name__}.")
        model = model.with_settings(**changes)
    if baseline is not None:
        if not hasattr(model, "fine_only_model"):
            raise ValueError(f"baseline={baseline!r} needs a DCN; {source} holds a {type(model).__name__}.")
        model = model.fine_only_model() if baseline == "fine" else model.coarse_only_model()
    if format == "weights":
        return export_weights(model, output or os.path.join(export_base, f"{name}.weights.h5"))
    if format == "litert":
        return export_litert(model, output or os.path.join(export_base, f"{name}.tflite"), batch_size)
    base = os.path.join(export_base, name)
    version = version or _next_version(base)
    return export_model(model, os.path.join(base, str(version)), xla=xla)
