"""The paper's comparison: coarse, fine, DCN without hints, DCN, and a k sweep."""

import dataclasses
import json
import os

import numpy as np

from dcn_keras.studies import benchmark
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import load_dataset
from dcn_keras.evaluation import error_by_key
from dcn_keras.evaluation import outcomes
from dcn_keras.evaluation import paired_counts
from dcn_keras.evaluation import save_picture
from dcn_keras.io_utils import write_json_atomically
from dcn_keras.studies.macs import model_macs
from dcn_keras.studies.timing import median_seconds
from dcn_keras.training import dataset_options
from dcn_keras.training.train_config import PER_DIGIT_DATASETS
from dcn_keras.training import dcn_for
from dcn_keras.workflows import train_and_export

# name -> TrainConfig overrides; every run shares the rest of the config.
RUNS = {
    "coarse": dict(model="coarse"),
    "fine": dict(model="fine"),
    "dcn_no_hint": dict(model="dcn", hint_weight=0.0),
    "dcn": dict(model="dcn"),
    "dcn_k4": dict(model="dcn", num_patches=4),
    "dcn_k16": dict(model="dcn", num_patches=16),
}


def _macs(config, image_shape, preset):
    macs = model_macs(dcn_for(config, image_shape, preset))
    return macs["dcn"] if config.model == "dcn" else macs[config.model]


def _images_per_second(model, image_shape, batch=64, repeats=20):
    x = tf.constant(np.random.default_rng(0).random((batch, *image_shape), dtype=np.float32))
    return batch / median_seconds(benchmark.inference_fn(model), (x,), 3, repeats)


def selection_quality(model, config, batch_size=100):
    """Where a cluttered-MNIST DCN puts its patches on the test canvases.

    Rebuilds the test canvases of `config` (a TrainConfig) with the digits'
    positions and returns `patches_on_digit`, the fraction of patches that
    contain at least one pixel of the labelled digit's ink, and
    `ink_covered`, the mean fraction of each digit's ink pixels inside the
    union of its canvas's patches, with that mean also over the canvases the
    DCN gets right and wrong (`ink_covered_right`, `ink_covered_wrong`).
    """
    images, labels, corners, index, digits, _ = cluttered_mnist.split_canvases(
        "test", config.digits, config.data_dir, config.seed, canvas_size=config.canvas_size,
        mnist_dir=config.mnist_dir)
    out = model.predict(images.astype(np.float32) / 255.0, batch_size=batch_size, verbose=0)
    size = images.shape[1]
    height, width = digits.shape[1:]
    on_digit, covered = [], []
    for n, boxes in enumerate(out["patch_boxes"]):
        ink = np.zeros((size, size), bool)
        (y, x) = corners[n]
        ink[y:y + height, x:x + width] = digits[index[n]] > 0
        union = np.zeros_like(ink)
        for top, left, bottom, right in np.clip(boxes, 0, size):
            union[top:bottom, left:right] = True
            on_digit.append(ink[top:bottom, left:right].any())
        covered.append((union & ink).sum() / max(1, ink.sum()))
    covered = np.array(covered)
    wrong = out["probabilities"].argmax(-1) != labels
    return {
        "patches_on_digit": float(np.mean(on_digit)),
        "ink_covered": float(covered.mean()),
        "ink_covered_right": float(covered[~wrong].mean()) if (~wrong).any() else None,
        "ink_covered_wrong": float(covered[wrong].mean()) if wrong.any() else None,
    }


def _finished(config):
    """The results of an earlier run of exactly `config`, or None.

    "Exactly" includes the preset's defaults the config left open (k, hint
    and coarse weights), so a changed preset retrains too.
    """
    try:
        with open(os.path.join(config.model_dir, "config.json")) as f:
            settings = json.load(f)
        with open(os.path.join(config.model_dir, "results.json")) as f:
            results = json.load(f)
        # A field added since that run (e.g. dtype_policy) takes its default.
        same = type(config)(**settings["config"]).to_dict() == config.to_dict()
        if same and config.model == "dcn":
            dcn = dcn_for(config, settings["image_shape"], settings["preset"])
            same = all(settings[name] == getattr(dcn, name)
                       for name in ("num_patches", "hint_weight", "coarse_weight"))
    except (OSError, ValueError, KeyError, TypeError):  # TypeError: a field since removed.
        return None
    exists = os.path.exists(os.path.join(config.model_dir, "model.keras"))
    return results if same and exists else None


def _paired_test(rows, right, canvases_per_digit):  # None: the test split's own count.
    """Each row's error on the larger test set, and its paired counts against the fine model's."""
    for name, r in right.items():
        rows[name]["paired_test"] = dict(canvases_per_digit=canvases_per_digit,
                                         examples=int(len(r)), error=float(1 - r.mean()))
        if "fine" in right and name != "fine":
            counts = paired_counts(right["fine"], r)
            rows[name]["paired_test"].update(only_fine_right=counts["only_a_right"],
                                             only_this_right=counts["only_b_right"],
                                             p_value=counts["p_value"])


def run_comparison(base, out_dir, runs=tuple(RUNS), picture=None, reuse=True,
                   test_examples_per_digit=None, log=print):
    """Trains each run of `RUNS` with `base` (a TrainConfig); returns the table rows.

    With `reuse`, a run whose directory holds a finished run of the same
    config is not trained again: its results are read back (inference speed
    and, for DCNs, `selection_quality` are measured again).

    With `test_examples_per_digit` (cluttered MNIST, MNIST numbers), every
    run is also scored on that many test canvases (numbers) per test digit,
    the same for all: one canvas per digit leaves a standard error of about
    half a point at 2% error. Each run's row then also holds the examples
    only the fine model or only it gets right, with an exact McNemar
    p-value (`evaluation.exact_mcnemar_p`). MNIST numbers are always scored
    so (on the test split's numbers by default), with their whole-number
    error by length (`error_by_length`).
    """
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise ValueError(f"Unknown runs {unknown}; choose from: {', '.join(RUNS)}.")
    paired = test_examples_per_digit is not None or base.dataset == "mnist_numbers"
    if paired:
        options = dataset_options(base, training=False)
        if test_examples_per_digit is not None:
            if base.dataset not in PER_DIGIT_DATASETS:
                raise ValueError(f"test_examples_per_digit={test_examples_per_digit} applies to "
                                 f"{' and '.join(PER_DIGIT_DATASETS)} only, not {base.dataset!r}.")
            cluttered_mnist.check_examples_per_digit(test_examples_per_digit, "test_examples_per_digit")
            options["examples_per_digit"] = test_examples_per_digit
        # Every run is scored on the same examples: made once here.
        paired_data, _ = load_dataset(base.dataset, "test", **options)
    rows, right = {}, {}
    for name in runs:
        config = dataclasses.replace(base, model_dir=os.path.join(out_dir, name), **RUNS[name])
        results = _finished(config) if reuse else None
        if results is None:
            log(f"dcn_compare: training {name} ({RUNS[name]})")
            results = train_and_export(config, print_fn=log)
        else:
            log(f"dcn_compare: reusing the finished run in {config.model_dir}")
        settings = json.load(open(os.path.join(config.model_dir, "config.json")))
        model = keras.models.load_model(os.path.join(config.model_dir, "model.keras"))
        rows[name] = dict(
            results,
            macs_per_image=_macs(config, settings["image_shape"], settings["preset"]),
            images_per_s_b64=_images_per_second(model, settings["image_shape"]),
            num_patches=settings.get("num_patches"),
            hint_weight=settings.get("hint_weight"),
        )
        if config.model == "dcn" and config.dataset == "cluttered_mnist":
            rows[name].update(selection_quality(model, config))
        if paired:
            right[name], keys = outcomes(model, paired_data)
            if isinstance(paired_data.element_spec[1], dict):  # Numbers: by length.
                rows[name]["error_by_length"] = error_by_key(right[name], keys)
        if picture and name == "dcn":
            save_picture(picture, os.path.join(config.model_dir, "model.keras"), config.dataset, "test",
                         **dataset_options(config, training=False))
        write_json_atomically(os.path.join(out_dir, "comparison.json"),
                              {"config": base.to_dict(), "rows": rows})
    if right:
        _paired_test(rows, right, test_examples_per_digit)
        write_json_atomically(os.path.join(out_dir, "comparison.json"),
                              {"config": base.to_dict(), "rows": rows})
    return rows


def _p(value):
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def format_markdown(rows):
    """The comparison as a Markdown table."""
    paired = [r["paired_test"] for r in rows.values() if "paired_test" in r]
    by_length = any("error_by_length" in r for r in rows.values())
    extra_head = extra_rule = ""
    if paired:
        n = paired[0]["canvases_per_digit"]
        examples = (f"{n} per digit, " if n else "") + f"{paired[0]['examples']:,} images"
        extra_head = (f" test error % ({examples}) | vs fine: only fine right / "
                      "only this right (p) |")
        extra_rule = "---|---|"
    if by_length:
        extra_head += " whole-number error % by length 1 / 2 / 3 / 4 / 5 |"
        extra_rule += "---|"
    lines = ["| model | k | hint weight | test error % | coarse-head error % | MMAC/image | "
             "images/s (b64) | training time (s) | patches on digit % | digit ink covered % |"
             + extra_head,
             "|---|---|---|---|---|---|---|---|---|---|" + extra_rule]

    def percent(r, key):
        return f"{100 * r[key]:.2f}" if r.get(key) is not None else "-"

    for name, r in rows.items():
        coarse = percent(r, "coarse_test_error")
        line = (
            f"| {name} | {r['num_patches'] or '-'} | "
            f"{'-' if r['hint_weight'] is None else r['hint_weight']} | {100 * r['test_error']:.2f} | "
            f"{coarse} | {r['macs_per_image'] / 1e6:.2f} | {r['images_per_s_b64']:.0f} | "
            f"{r['fit_seconds']:.0f} | {percent(r, 'patches_on_digit')} | {percent(r, 'ink_covered')} |")
        if paired:
            t = r.get("paired_test", {})
            versus = (f"{t['only_fine_right']} / {t['only_this_right']} ({_p(t['p_value'])})"
                      if "p_value" in t else "-")
            line += f" {percent(t, 'error')} | {versus} |"
        if by_length:
            errors = r.get("error_by_length", {})
            line += " " + " / ".join(f"{100 * errors[k]:.1f}" for k in sorted(errors)) + " |"
        lines.append(line)
    return "\n".join(lines)
