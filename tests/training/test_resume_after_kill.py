"""A training process killed with SIGKILL resumes to the weights of a run never interrupted."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dcn_keras.backend import keras

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = ["--digits=embedded", "--examples_per_digit=1", "--epochs=4", "--steps_per_epoch=12",
        "--batch_size=8", "--eval_batch_size=64", "--lr_schedule=cosine", "--verbose=0"]


def _train(model_dir):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bin", "dcn_train"), *ARGS, f"--model_dir={model_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def _finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_sigkill_after_an_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    whole = _train(tmp_path / "whole")
    killed_dir = tmp_path / "killed"
    killed = _train(killed_dir)
    second = killed_dir / "checkpoints" / "epoch_002.weights.h5"
    deadline = time.monotonic() + 300
    while not second.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)  # in epoch 3: no chance to clean up
    killed.wait()
    assert not (killed_dir / "model.keras").exists()
    assert (killed_dir / "checkpoints" / "epoch_002.weights.h5").exists()

    out = _finish(_train(killed_dir))
    assert "resuming after epoch 2 of 4" in out or "resuming after epoch 3 of 4" in out, out
    _finish(whole)
    resumed = keras.models.load_model(str(killed_dir / "model.keras"))
    uninterrupted = keras.models.load_model(str(tmp_path / "whole" / "model.keras"))
    assert int(resumed.optimizer.iterations.numpy()) == 4 * 12
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_array_equal(a, b)
