"""Imports Keras on the TensorFlow backend, which dcn_keras requires."""

import contextlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def _quiet_stderr_if_asked():
    # TensorFlow prints its start-up lines (oneDNN, CUDA stubs) before it
    # reads TF_CPP_MIN_LOG_LEVEL; when that asks for warnings or less, the
    # import is made with file descriptor 2 closed to them. Python errors
    # still surface: they are raised after it is restored.
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") not in ("2", "3"):
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_stderr_if_asked():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "dcn_keras needs the TensorFlow backend (its saliency layer runs a "
        f"tf.GradientTape), but Keras is using {keras.backend.backend()!r}. Set "
        "KERAS_BACKEND=tensorflow before importing keras."
    )


__all__ = ["keras", "tf"]
