"""Error of a saved model on a dataset split, per class, and paired against another model."""

import math
import os

import numpy as np

from dcn_keras import number_errors
from dcn_keras import pictures
from dcn_keras import prediction
from dcn_keras.backend import tf
from dcn_keras.datasets import load_dataset
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models import load_model
from dcn_keras.models.loading import check_dtype_policy
from dcn_keras.models.objective import probabilities

UNREFINED = ("coarse", "blank")


def blank_filled_logits(dcn, images):
    """A DCN's refined logits with every unrefined cell blank instead of coarse.

    The `k` cells the DCN selects hold their fine vectors as usual; every
    other cell holds the fine tower's vector for an empty (all-zero) patch,
    as if the rest of the image were blank. The error this gives is what the
    `k` patches alone tell the top network; the gap to the DCN's own error is
    what its coarse cells add.
    """
    out = dcn.forward(images)
    height, width = dcn.geometry.patch_size
    blank = dcn.fine(tf.zeros([1, height, width, dcn.image_shape[-1]], images.dtype))
    grid = tf.zeros_like(out.grid) + tf.reshape(blank, [1, 1, 1, -1])
    return dcn.top(dcn.cell_scatter(grid, out.locations, out.fine_vectors))


def _keras_predictor(model, unrefined="coarse"):
    """A function images -> `(refined probabilities, patch boxes or None)` for a loaded DCN or baseline."""
    if unrefined == "blank":
        return lambda images: (probabilities(blank_filled_logits(model, tf.convert_to_tensor(images))), None)

    def predict(images):
        out = model(images, training=False)
        if isinstance(out, dict) and "probabilities" in out:
            return out["probabilities"], out["patch_boxes"]
        return probabilities(out), None  # A baseline returns logits (a dict of them for several heads).
    return predict


def _predictor(path, num_patches=None, unrefined="coarse", dtype_policy=None, saliency=None, image_shape=None):
    """A function images -> `(refined probabilities, patch boxes or None)`, for .keras or SavedModel.

    A `.keras` model runs on images of `image_shape` (`with_image_shape`);
    a SavedModel takes the size it was exported for.
    """
    if unrefined not in UNREFINED:
        raise ValueError(f"unrefined={unrefined!r} is not one of {', '.join(UNREFINED)}.")
    check_dtype_policy(dtype_policy)
    if path.endswith(".keras"):
        model = load_model(path, num_patches, dtype_policy, image_shape)
        if saliency is not None:
            if not isinstance(model, DynamicCapacityNetwork):
                raise ValueError(f"saliency={saliency!r} needs a DCN; {path} holds a {type(model).__name__}.")
            model = model.with_settings(saliency=saliency)
        if unrefined != "coarse" and not isinstance(model, DynamicCapacityNetwork):
            raise ValueError(f"unrefined={unrefined!r} needs a DCN; {path} holds a "
                             f"{type(model).__name__}.")
        return _keras_predictor(model, unrefined)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        if unrefined != "coarse":
            raise ValueError(f"unrefined={unrefined!r} needs a .keras DCN, not the SavedModel {path}.")
        if saliency is not None:
            raise ValueError(f"saliency={saliency!r} needs a .keras DCN; a SavedModel's saliency is fixed at "
                             f"export ({path}).")
        if num_patches is not None:
            raise ValueError(f"num_patches={num_patches} needs a .keras DCN; a SavedModel's k is "
                             f"fixed at export ({path}).")
        if dtype_policy is not None:
            raise ValueError(f"dtype_policy={dtype_policy!r} needs a .keras model; a SavedModel's "
                             f"precision is fixed at export ({path}).")
        served = tf.saved_model.load(path)
        def predict(images):
            out = served.signatures["serving_default"](images=tf.convert_to_tensor(images))
            heads = {k[len("probabilities_"):]: v for k, v in out.items() if k.startswith("probabilities_")}
            return heads or out["probabilities"], out.get("patch_boxes")
        return predict
    raise FileNotFoundError(f"{path} is neither a .keras file nor a SavedModel directory.")


def _outcomes(predict, data, batch_size, boxes=None, progress=None):
    """Per-example `(right, key, breakdown)`: key is the label, or the number's length for multi-digit models.

    A multi-digit example is right when every head is: the length and all
    five digit heads, "no digit" past the end included (the whole number).
    With `boxes` (a multi-digit split's digit boxes), `breakdown` is
    `number_errors.number_error_breakdown` of the run, else None.
    """
    right_parts, keys, heads, labelled, shares, seen = [], [], [], [], [], 0
    for images, labels in data.batch(batch_size):
        try:
            predicted, patch_boxes = predict(images)
        except tf.errors.ResourceExhaustedError as error:
            # A whole-image model on megapixel canvases: 64 of them need tens of GB.
            raise ValueError(f"batch_size={batch_size} does not fit in memory on images of shape "
                             f"{tuple(images.shape[1:])}; use a smaller batch_size "
                             f"(TensorFlow: {str(error).splitlines()[0][:200]}).") from None
        right_parts.append(right_answers(predicted, labels))
        keys.append(np.asarray(labels["length"] if isinstance(labels, dict) else labels))
        if boxes is not None:
            heads.append({h: np.asarray(p) for h, p in predicted.items()})
            labelled.append({h: np.asarray(v) for h, v in labels.items()})
            if patch_boxes is not None:
                shares.append(number_errors.ink_share_in_patches(
                    images.numpy(), boxes[seen:seen + len(keys[-1])], np.asarray(patch_boxes)))
        seen += len(keys[-1])
        if progress is not None:
            progress(len(keys[-1]))
    breakdown = None
    if boxes is not None and heads:
        joined = [{h: np.concatenate([part[h] for part in parts]) for h in parts[0]} for parts in (heads, labelled)]
        breakdown = number_errors.number_error_breakdown(
            *joined, boxes[:len(joined[1]["length"])], int(data.element_spec[0].shape[0]),
            np.concatenate(shares) if shares else None)
    return np.concatenate(right_parts), np.concatenate(keys), breakdown


def _digit_boxes(data, info):
    # A multi-digit split's digit boxes (for `number_errors`' breakdown), or None.
    return info.object_boxes if isinstance(data.element_spec[1], dict) else None


def _counter(progress, total):
    # `_outcomes` reports each batch's size; `progress` is told the running count.
    if progress is None:
        return None
    scored = [0]

    def count(batch):
        scored[0] += batch
        progress(scored[0], total)
    return count


def right_answers(probabilities, labels):
    """Whether each example's answer is right: a bool array `[batch]`.

    `probabilities` is one head's `[batch, classes]` and `labels` its class
    indices `[batch]`; or both are dicts keyed by head name (a multi-digit
    model), and an example is right only when every head is (the whole
    number).
    """
    if isinstance(probabilities, dict) != isinstance(labels, dict):
        heads = sorted(probabilities) if isinstance(probabilities, dict) else "one head"
        kind = f"a dict with keys {sorted(labels)}" if isinstance(labels, dict) else "one array of class indices"
        raise ValueError(f"The model's heads ({heads}) do not fit the labels ({kind}): "
                         "a multi-digit model needs multi-digit labels, and the other way round.")
    if not isinstance(probabilities, dict):
        return np.argmax(probabilities, -1) == np.asarray(labels)
    missing = sorted(set(probabilities) - set(labels))
    if missing:
        raise ValueError(f"The labels have no {missing}; the model's heads are {sorted(probabilities)}.")
    right = True
    for head, p in probabilities.items():
        right = right & (np.argmax(p, -1) == np.asarray(labels[head]))
    return right


def outcomes(model, data, batch_size=64):
    """Which examples of `data` (an unbatched `(image, label)` dataset) a loaded model gets right.

    `model` is a Keras DCN or baseline, already in memory. Datasets built by
    `load_dataset` with the same options hold the same examples in the same
    order, so two models' arrays line up example by example.

    Returns:
        `(right, keys)`: a bool array, one entry per example, and each
        example's label (for multi-digit labels, the number's length), for
        `error_by_key`.
    """
    return _outcomes(_keras_predictor(model), data, batch_size)[:2]


def evaluate_saved_model(path, dataset, split="test", batch_size=64, num_patches=None,
                         unrefined="coarse", dtype_policy=None, saliency=None, progress=None, **dataset_options):
    """Returns `{"error", "examples", "per_class_error", "whole_number", "source", "class_names"}` for a saved model.

    Multi-head models (`svhn`, `mnist_numbers`) count an example as right
    only when every head is (`whole_number` is then True: the error is the
    whole-number error); `per_class_error` is then keyed by the number's
    length, and where the split knows its digits' boxes (`mnist_numbers`)
    `breakdown` says where the errors come from
    (`number_errors.number_error_breakdown`). With
    `num_patches`, a `.keras` DCN is run refining that many cells instead of
    the `k` it was trained with; with `unrefined="blank"`, its unrefined
    cells are blank (`blank_filled_logits`); with `dtype_policy`, a `.keras`
    model computes under that policy (`with_dtype_policy`); with `saliency`,
    a `.keras` DCN scores cells so (`"entropy_gradient"` or `"cam"`). With
    `progress`, `progress(scored, total)` is called after each batch: the
    examples scored so far and the split's count (None if unknown).
    """
    data, info = load_dataset(dataset, split, **dataset_options)
    predict = _predictor(path, num_patches, unrefined, dtype_policy, saliency, info.image_shape)
    numbers = isinstance(data.element_spec[1], dict)
    right, keys, breakdown = _outcomes(predict, data, batch_size, _digit_boxes(data, info),
                                       _counter(progress, info.num_examples))
    wrong = ~right
    result = {"error": float(wrong.mean()), "examples": int(len(wrong)), "per_class_error": error_by_key(right, keys),
              "whole_number": numbers, "source": info.source, "class_names": info.class_names}
    if breakdown is not None:
        result["breakdown"] = breakdown
    return result


def error_by_key(right, keys):
    """`{key: error}` of the examples with each key (a class, or a number's length)."""
    return {int(k): float(1 - right[keys == k].mean()) for k in np.unique(keys)}


def exact_mcnemar_p(only_a_right, only_b_right):
    """Two-sided exact McNemar p-value from the two discordant counts.

    Under "both models are equally accurate", each example that exactly one
    of them gets right is a fair coin flip: the p-value is twice the
    binomial tail of the smaller count (capped at 1).
    """
    for name, value in (("only_a_right", only_a_right), ("only_b_right", only_b_right)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}={value!r} must be a count (an integer >= 0).")
    n, low = int(only_a_right + only_b_right), int(min(only_a_right, only_b_right))
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare_saved_models(path_a, path_b, dataset, split="test", batch_size=64, num_patches=None,
                         unrefined="coarse", dtype_policy=None, saliency=None, progress=None, **dataset_options):
    """Paired comparison of two saved models on the same examples.

    Two errors measured on one test set differ by chance; the examples only
    one model gets right say whether the difference is real. With
    `num_patches`, model A (a `.keras` DCN) refines that many cells, and
    with `unrefined`, fills the others so; with `dtype_policy`, model A
    computes under that policy (A and B may be the same file). With
    `progress`, as `evaluate_saved_model`'s, over both models' passes (the
    total is twice the split's count).

    Returns:
        `{"error_a", "error_b", "examples", "only_a_right", "only_b_right",
        "p_value"}`, the last from `exact_mcnemar_p`; where the split knows
        its digits' boxes (`mnist_numbers`), also `breakdown_a` and
        `breakdown_b`, each model's `number_errors.number_error_breakdown`
        (from the same passes, so both come at no extra cost).
    """
    data, info = load_dataset(dataset, split, **dataset_options)  # Made once, scored twice.
    predict_a = _predictor(path_a, num_patches, unrefined, dtype_policy, saliency, info.image_shape)
    predict_b = _predictor(path_b, image_shape=info.image_shape)
    count = _counter(progress, None if info.num_examples is None else 2 * info.num_examples)
    boxes = _digit_boxes(data, info)
    right_a, _, breakdown_a = _outcomes(predict_a, data, batch_size, boxes, progress=count)
    right_b, _, breakdown_b = _outcomes(predict_b, data, batch_size, boxes, progress=count)
    result = paired_counts(right_a, right_b)
    if breakdown_a is not None:
        result.update(breakdown_a=breakdown_a, breakdown_b=breakdown_b)
    return result


def paired_counts(right_a, right_b):
    """`compare_saved_models`' result from two models' `right` arrays."""
    if np.shape(right_a) != np.shape(right_b):
        raise ValueError(f"The models were scored on different examples: {np.shape(right_a)} vs "
                         f"{np.shape(right_b)}.")
    right_a, right_b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    return {"error_a": float(1 - right_a.mean()), "error_b": float(1 - right_b.mean()),
            "examples": int(len(right_a)), "only_a_right": only_a, "only_b_right": only_b,
            "p_value": exact_mcnemar_p(only_a, only_b)}


def save_picture(path, model_path, dataset, split="test", count=6, **dataset_options):
    """Draws the first `count` images of a split with the DCN's patches and saliency, titled with
    their true labels and the coarse and refined predictions (`pictures.save`); returns `path`.

    `model_path` is a DCN's `.keras` file or SavedModel.
    """
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"picture={path} must name a .png file.")
    predict, _ = prediction.load_predictor(model_path)
    data, _ = load_dataset(dataset, split, **dataset_options)
    shown = list(data.take(count).as_numpy_iterator())
    images = np.stack([x for x, _ in shown])
    outputs = prediction.picture_outputs(predict(images))
    return pictures.save(images, outputs, path, labels=[pictures.label_text(y) for _, y in shown])
