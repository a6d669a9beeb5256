"""Whole training state after each epoch, written so a killed run resumes exactly."""

import glob
import math
import os
import re

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.io_utils import atomic_path

_PATTERN = re.compile(r"epoch_(\d+)\.weights\.h5$")


def latest_checkpoint(directory):
    """`(epoch, path)` of the newest `epoch_NNN.weights.h5` in `directory`, or None."""
    found = []
    for path in glob.glob(os.path.join(directory, "epoch_*.weights.h5")):
        match = _PATTERN.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found, default=None)


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves weights and optimizer state after every epoch; stops on a non-finite loss.

    Each epoch's state goes to `<directory>/epoch_NNN.weights.h5` through a
    temporary file and a rename, so a run killed at any moment (SIGKILL
    included) leaves only whole checkpoints: the newest is where it resumes
    (`latest_checkpoint`). A batch whose loss is NaN or infinite stops
    training at once, and the state it led to is never written: the last
    good checkpoint stays the newest. `diverged` then says where it happened.

    Unlike `keras.callbacks.BackupAndRestore`, the checkpoints stay after
    the run (`bin/dcn_export` reads the newest), and the epoch is in the
    file's name, so weights and epoch can never disagree after a crash.

    Args:
        directory: str, where the checkpoints go (made if missing).

    Example:
    ```python
    checkpoint = ResumableCheckpoint("runs/x/checkpoints")
    model.fit(data, epochs=10, steps_per_epoch=100, callbacks=[checkpoint])
    ```

    Reference: used by `dcn_keras.training.train` for Almahairi et al.,
    "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, directory):
        super().__init__()
        if not directory:
            raise ValueError("ResumableCheckpoint needs a directory; got an empty path.")
        self.directory = directory
        self.diverged = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        # A kill during a write leaves its temporary file; it was never a checkpoint.
        for path in glob.glob(os.path.join(self.directory, "epoch_*.tmp-*")):
            os.remove(path)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = {"epoch": self._epoch + 1, "batch": batch + 1, "loss": float(loss)}
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged or not all(np.isfinite(w).all() for w in self.model.get_weights()):
            self.diverged = self.diverged or {"epoch": epoch + 1, "batch": None, "loss": None}
            self.model.stop_training = True
            return
        os.makedirs(self.directory, exist_ok=True)
        with atomic_path(os.path.join(self.directory, f"epoch_{epoch + 1:03d}.weights.h5")) as tmp:
            self.model.save_weights(tmp)
