"""Error and per-class error of a saved model on a dataset split."""

import os

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.datasets import load_dataset
from dcn_keras.models import DynamicCapacityNetwork


def _predictor(path, num_patches=None):
    """A function images -> refined probabilities, for .keras or SavedModel."""
    if path.endswith(".keras"):
        model = keras.models.load_model(path)
        if num_patches is not None:
            if not isinstance(model, DynamicCapacityNetwork):
                raise ValueError(f"num_patches={num_patches} needs a DCN; {path} holds a "
                                 f"{type(model).__name__}.")
            model = model.with_num_patches(num_patches)
        def predict(images):
            out = model(images, training=False)
            if isinstance(out, dict) and "probabilities" in out:
                return out["probabilities"]
            return tf.nn.softmax(out)  # A baseline returns logits.
        return predict
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        if num_patches is not None:
            raise ValueError(f"num_patches={num_patches} needs a .keras DCN; a SavedModel's k is "
                             f"fixed at export ({path}).")
        served = tf.saved_model.load(path)
        def predict(images):
            out = served.signatures["serving_default"](images=tf.convert_to_tensor(images))
            heads = {k[len("probabilities_"):]: v for k, v in out.items() if k.startswith("probabilities_")}
            return heads or out["probabilities"]
        return predict
    raise FileNotFoundError(f"{path} is neither a .keras file nor a SavedModel directory.")


def evaluate_saved_model(path, dataset, split="test", batch_size=64, num_patches=None,
                         **dataset_options):
    """Returns `{"error", "examples", "per_class_error"}` for a saved model.

    Multi-head models (SVHN) count an example as right only when every head
    is; `per_class_error` is then keyed by the number's length. With
    `num_patches`, a `.keras` DCN is run refining that many cells instead of
    the `k` it was trained with.
    """
    predict = _predictor(path, num_patches)
    data, info = load_dataset(dataset, split, **dataset_options)
    wrong, keys = [], []
    for images, labels in data.batch(batch_size):
        probabilities = predict(images)
        if isinstance(probabilities, dict):
            right = np.ones(len(images), bool)
            for head, p in probabilities.items():
                right &= np.argmax(p, -1) == labels[head].numpy()
            keys.append(labels["length"].numpy())
        else:
            right = np.argmax(probabilities, -1) == labels.numpy()
            keys.append(labels.numpy())
        wrong.append(~right)
    wrong, keys = np.concatenate(wrong), np.concatenate(keys)
    per_class = {int(k): float(wrong[keys == k].mean()) for k in np.unique(keys)}
    return {"error": float(wrong.mean()), "examples": int(len(wrong)), "per_class_error": per_class,
            "source": info.source}
