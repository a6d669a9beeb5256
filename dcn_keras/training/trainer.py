"""Trains, evaluates and exports a DCN (or a baseline) from a `TrainConfig`."""

import contextlib
import json
import os
import sys
import time
import warnings

import numpy as np

from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.callbacks import PatchImageLogger
from dcn_keras.callbacks import ResumableCheckpoint
from dcn_keras.callbacks import latest_checkpoint
from dcn_keras.datasets import load_dataset
from dcn_keras.datasets.image_folder import read_failures
from dcn_keras.io_utils import save_keras_atomically
from dcn_keras.io_utils import write_json_atomically
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models.loading import check_keras_file
from dcn_keras.models.loading import global_dtype_policy
from dcn_keras.models.objective import labels_per_head
from dcn_keras.models.objective import per_example_ce_and_correct
from dcn_keras.training.input_pipeline import batched
from dcn_keras.training.input_pipeline import dataset_options
from dcn_keras.training.input_pipeline import steps_per_epoch
from dcn_keras.training.warm_start import freeze
from dcn_keras.training.warm_start import initialize_from

_NUM_LOGGED_IMAGES = 4
# Above this share of coarse cells covered by the objects, a DCN is unlikely
# to be as accurate as its fine model and faster: it must refine about every
# covered cell and its neighbours. Between the measured rows of docs/scaling.md:
# every row at 5.1% coverage or less paid (cluttered MNIST at 100 px: 4.6x at
# batch 64), mnist_numbers at 128 px (9.4%) did not (no k at the fine model's
# level; the closest 0.86x).
COVERAGE_LIMIT = 0.08


def make_strategy(name):
    """The `tf.distribute` strategy called `name`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy=multi_worker needs the TF_CONFIG environment variable "
                "describing the cluster and this worker's task."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _task():
    """`(is_chief, worker_id)` from TF_CONFIG (a single process is chief)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return is_chief, f"{kind}_{index}"


@contextlib.contextmanager
def _no_ran_out_warning():
    """Silences Keras's "Your input ran out of data" for the evaluation splits.

    A split that skips unreadable files has no known length, so Keras reads
    it to its end and then warns as if training had run short; the training
    stream is endless, so the warning never means that here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def progress_verbosity(verbose, stream=None):
    """Keras's `verbose` for `fit`: `"auto"` is a progress bar on a terminal, else one line per epoch.

    Keras's own `"auto"` draws the bar into logs and pipes too (thousands of
    redraws in a 10-epoch log); 2 prints one line per epoch there.
    """
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    return 1 if getattr(stream, "isatty", lambda: False)() else 2


def _learning_rate(config, total_steps):
    if config.lr_schedule == "cosine":
        if not total_steps:
            raise ValueError("lr_schedule='cosine' needs the run's total number of steps.")
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps)
    return config.learning_rate


def dcn_for(config, image_shape, preset, class_names=()):
    """The (uncompiled) DCN `config` describes: its preset with its overrides.

    `class_names`, a single-head dataset's, size a preset that takes
    `num_classes` (`images`) and are kept by the model.
    """
    overrides = {
        name: getattr(config, name)
        for name in ("num_patches", "hint_weight", "coarse_weight", "saliency", "place_weight")
        if getattr(config, name) is not None
    }
    name = config.preset or preset
    if class_names and "num_classes" in presets.preset_options(name):
        overrides.update(num_classes=len(class_names), class_names=tuple(class_names))
    return DynamicCapacityNetwork.from_preset(
        name, image_shape=tuple(image_shape), gather=config.gather, **overrides)


def build_model(config, image_shape, preset, total_steps=None, class_names=()):
    """The DCN for `config`, or its fine/coarse baseline, compiled.

    `total_steps`, the run's optimizer steps, sets the length of a decaying
    learning-rate schedule.
    """
    with global_dtype_policy(config.dtype_policy):
        dcn = dcn_for(config, image_shape, preset, class_names)
        optimizer = keras.optimizers.Adam(_learning_rate(config, total_steps))
        if config.model == "dcn":
            dcn.compile(optimizer=optimizer)
            return dcn
        model = dcn.fine_only_model() if config.model == "fine" else dcn.coarse_only_model()
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(model.output, dict):
        # Several heads (numbers): the loss is the sum of theirs, as in the DCN objective;
        # each head's accuracy is logged, the whole number's is measured by `_errors`.
        heads = sorted(model.output)
        model.compile(optimizer=optimizer, loss={h: cross_entropy for h in heads},
                      metrics={h: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] for h in heads})
    else:
        model.compile(optimizer=optimizer, loss=cross_entropy,
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def _whole_number_error(model, dataset):
    """Error of a several-head baseline: an example is right when all its heads are."""
    right = []
    for images, labels in dataset:
        logits = model(images, training=False)
        right.append(per_example_ce_and_correct(labels_per_head(labels, logits), logits)[1])
    return 1.0 - float(tf.reduce_mean(tf.concat(right, 0)))


def report_coverage(geometry, boxes, print_fn, sample=2000):
    """Prints the mean share of coarse cells the objects cover, and a warning above `COVERAGE_LIMIT`.

    Returns the share. `boxes`: `[N, objects, 4]` `[top, left, height, width]`
    (a sample of `sample` images is enough for a mean).
    """
    share = geometry.covered_share(boxes[:sample])
    print_fn(f"dcn_train: the objects cover {100 * share:.1f}% of the {geometry.num_cells} coarse cells "
             f"({share * geometry.num_cells:.0f} on average)")
    if share > COVERAGE_LIMIT:
        print_fn(f"dcn_train: above {100 * COVERAGE_LIMIT:.0f}% a DCN must refine much of the image to match its "
                 "fine model, so it is unlikely to be much faster; a larger canvas (--canvas_size) makes the "
                 "objects smaller against the image")
    return share


def _resume(model, checkpoint_dir, config, print_fn):
    """Loads the newest checkpoint into `model`; returns its epoch (0: a new run)."""
    newest = latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    epoch, path = newest
    if epoch > config.epochs:
        raise ValueError(f"{checkpoint_dir} holds a checkpoint of epoch {epoch}, past epochs={config.epochs}: "
                         "use a new --model_dir (or the same --epochs) to resume it.")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    print_fn(f"dcn_train: resuming after epoch {epoch} of {config.epochs} from {path} "
             f"(optimizer step {int(model.optimizer.iterations.numpy())})")
    return epoch


def _errors(model, dataset, config):
    if config.model != "dcn" and isinstance(model.output, dict):
        return {"test_error": _whole_number_error(model, dataset)}
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    errors = {"test_error": 1.0 - float(result["accuracy"])}
    if config.model == "dcn":
        errors["coarse_test_error"] = 1.0 - float(result["coarse_accuracy"])
    return errors


def train(config, callbacks=(), print_fn=print, export=None):
    """Runs `config`: fit with checkpoints and TensorBoard, test, save, and export.

    Resumes from `model_dir` when an earlier run with the same directory was
    interrupted. Returns a dict of results (also written to
    `model_dir/results.json`).

    `export(model, export_dir)`, when given, writes the trained model for
    serving and returns where (`workflows.train_and_export` passes
    `serving.export_model`; training itself does not depend on serving).
    """
    if config.init_from:
        # Before minutes of data loading.
        check_keras_file(config.init_from, f"init_from={config.init_from}")
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    is_chief, worker = _task()
    # Non-chief workers keep their (required) checkpoints apart from the chief's.
    model_dir = config.model_dir if is_chief else os.path.join(config.model_dir, "workers", worker)
    os.makedirs(model_dir, exist_ok=True)

    # Generated splits are drawn whole first: 70,000 384-px numbers take about 15 minutes.
    print_fn(f"dcn_train: reading the {config.dataset} splits (train, validation, test)")
    loading = time.perf_counter()
    train_data, info = load_dataset(config.dataset, "train", shuffle_seed=config.seed,
                                    **dataset_options(config, True))
    val_data, _ = load_dataset(config.dataset, "validation", **dataset_options(config, False))
    test_data, test_info = load_dataset(config.dataset, "test", **dataset_options(config, False))
    print_fn(f"dcn_train: {config.dataset} from {info.source}; {info.num_examples} training images "
             f"(read in {time.perf_counter() - loading:.0f} s)")

    steps = steps_per_epoch(config, info.num_examples)
    with strategy.scope():
        model = build_model(config, info.image_shape, info.preset, total_steps=config.epochs * steps,
                            class_names=info.class_names)
        if config.init_from:
            copied = initialize_from(model, config.init_from, print_fn)
            print_fn(f"dcn_train: {', '.join(copied)} initialized from {config.init_from}")
        if config.freeze:
            freeze(model, config.freeze, copied)
            print_fn(f"dcn_train: {', '.join(config.freeze)} frozen (not trained)")
    if test_info.object_boxes is not None and hasattr(model, "geometry"):
        report_coverage(model.geometry, test_info.object_boxes, print_fn)
    resolved = {"config": config.to_dict(), "preset": config.preset or info.preset,
                "image_shape": list(info.image_shape), "replicas": strategy.num_replicas_in_sync,
                "class_names": list(info.class_names)}
    if config.model == "dcn":
        g = model.geometry
        resolved.update(num_patches=model.num_patches, hint_weight=model.hint_weight,
                        coarse_weight=model.coarse_weight, place_weight=model.place_weight,
                        grid_shape=list(g.grid_shape), patch_size=list(g.patch_size), patch_offset=list(g.offset))
    write_json_atomically(os.path.join(model_dir, "config.json"), resolved)

    log_dir = os.path.join(model_dir, "logs")
    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    checkpoint = ResumableCheckpoint(checkpoint_dir)
    all_callbacks = [checkpoint, keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")]
    if config.model == "dcn":
        shown = list(val_data.take(_NUM_LOGGED_IMAGES).as_numpy_iterator())
        all_callbacks.append(PatchImageLogger(np.stack([x for x, _ in shown]), os.path.join(log_dir, "images"),
                                              labels=[y for _, y in shown]))
    os.makedirs(checkpoint_dir, exist_ok=True)
    with strategy.scope():
        first_epoch = _resume(model, checkpoint_dir, config, print_fn)
    eight_bit = config.model == "dcn" and info.eight_bit  # The baselines read float32 only.
    start = time.perf_counter()
    failed_before = set(read_failures())  # This run's own: others in this process are not its.
    with _no_ran_out_warning():
        history = model.fit(
            batched(train_data, config, training=True, skip_steps=first_epoch * steps, eight_bit=eight_bit),
            validation_data=batched(val_data, config, training=False, eight_bit=eight_bit),
            epochs=config.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps,
            callbacks=all_callbacks + list(callbacks),
            verbose=progress_verbosity(config.verbose),
            shuffle=False,  # The dataset is shuffled by load_dataset.
        )
    fit_seconds = time.perf_counter() - start
    failed = sorted(set(read_failures()) - failed_before)
    if failed:
        print_fn(f"dcn_train: {len(failed)} file(s) passed the scan but failed to decode when read, and were "
                 f"skipped: {', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}")
    if checkpoint.diverged:
        d = checkpoint.diverged
        where = f"epoch {d['epoch']}" + (f", batch {d['batch']} (loss {d['loss']})" if d["batch"] else "")
        newest = latest_checkpoint(checkpoint_dir)
        raise FloatingPointError(
            f"training stopped: the loss or weights became NaN or infinite at {where}. Nothing was saved "
            f"after that; the last good state is {newest[1] if newest else 'none (no epoch finished)'}. "
            "Lower --learning_rate, or check the data for non-finite pixels.")

    with _no_ran_out_warning():
        results = _errors(model, batched(test_data, config, training=False, eight_bit=eight_bit), config)
    results = {k: round(v, 5) for k, v in results.items()}
    results.update(test_examples=test_info.num_examples, epochs_run=len(history.epoch),
                   fit_seconds=round(fit_seconds, 1),
                   first_epoch=history.epoch[0] if history.epoch else None)
    if is_chief:
        save_keras_atomically(model, os.path.join(model_dir, "model.keras"))
        if export is not None:
            results["export_dir"] = export(model, config.export_dir or os.path.join(model_dir, "export", "1"))
        write_json_atomically(os.path.join(model_dir, "results.json"), results)
    summary = ", ".join(f"{k}={v:.4f}" for k, v in results.items() if k.endswith("error"))
    print_fn(f"dcn_train: test {summary} on {test_info.num_examples} images")
    if is_chief:
        print_fn(f"dcn_train: model {os.path.join(model_dir, 'model.keras')}; "
                 f"TensorBoard: tensorboard --logdir {log_dir}")
        if "export_dir" in results:
            print_fn(f"dcn_train: SavedModel {results['export_dir']}")
    return results
