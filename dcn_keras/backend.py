"""Imports Keras on the TensorFlow backend, which dcn_keras requires."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "dcn_keras needs the TensorFlow backend (its saliency layer runs a "
        f"tf.GradientTape), but Keras is using {keras.backend.backend()!r}. Set "
        "KERAS_BACKEND=tensorflow before importing keras."
    )

__all__ = ["keras", "tf"]
