import dataclasses
import json
import os
import re
import warnings

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from dcn_keras.backend import keras
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.training import TrainConfig
from dcn_keras.training import train
from dcn_keras.workflows import train_and_export
from tests.helpers import preset_model


def _config(tmp_path, **overrides):
    values = dict(dataset="cluttered_mnist", digits="embedded", examples_per_digit=1,
                  epochs=2, steps_per_epoch=3, batch_size=8, eval_batch_size=64,
                  model_dir=str(tmp_path / "run"), verbose=0)
    return TrainConfig(**{**values, **overrides})


def warnings_recorded():
    manager = warnings.catch_warnings(record=True)
    return manager


def _photos(tmp_path, count=40):
    from dcn_keras.studies.photo_folder import make_photo_folder

    return make_photo_folder(str(tmp_path / "photos"), count=count, size=64)


def _events(log_dir):
    acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def test_train_writes_config_logs_checkpoints_model_and_saved_model(tmp_path):
    config = _config(tmp_path, num_patches=4)
    results = train_and_export(config, print_fn=lambda *_: None)
    run = tmp_path / "run"
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["config"]["num_patches"] == 4 and resolved["grid_shape"] == [23, 23]
    assert resolved["patch_size"] == [14, 14]
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch_001.weights.h5", "epoch_002.weights.h5"]
    assert "coarse_test_error" in results and results["test_examples"] == 1000
    # The reported error is the exported model's on the test split, counted anew.
    from dcn_keras.evaluation import evaluate_saved_model

    served = evaluate_saved_model(results["export_dir"], "cluttered_mnist", "test", digits="embedded",
                                  examples_per_digit=1)
    assert served["examples"] == 1000 and served["error"] == pytest.approx(results["test_error"], abs=1e-6)

    scalars = _events(str(run / "logs" / "train")).Tags()["tensors"]
    for tag in ("epoch_loss", "epoch_refined_loss", "epoch_coarse_loss", "epoch_hint_loss",
                "epoch_accuracy", "epoch_coarse_accuracy", "epoch_learning_rate"):
        assert tag in scalars, scalars
    images = _events(str(run / "logs" / "images"))
    events = images.Tensors("patches_and_saliency")
    assert [e.step for e in events] == [0, 1]
    # Two rendered images side by side, 4 shown images (+ width and height).
    assert len(events[0].tensor_proto.string_val) == 2 + 4

    loaded = keras.models.load_model(str(run / "model.keras"))
    assert loaded.num_patches == 4
    served = tf.saved_model.load(results["export_dir"])
    assert results["export_dir"] == str(run / "export" / "1")
    images = np.zeros((2, 100, 100, 1), np.float32)
    assert "serving_default" in served.signatures
    out = served.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"], loaded(images)["probabilities"], atol=1e-5)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash after epoch 2")


def test_training_alone_exports_nothing_and_train_and_export_adds_the_saved_model(tmp_path):
    results = train(_config(tmp_path, epochs=1, steps_per_epoch=1), print_fn=lambda *_: None)
    assert "export_dir" not in results and not os.path.exists(tmp_path / "run" / "export")
    assert os.path.exists(tmp_path / "run" / "model.keras")


def _weights(path):
    return keras.models.load_model(str(path)).get_weights()


@pytest.mark.parametrize("dataset", ["cluttered_mnist", "folder"])
def test_an_interrupted_run_resumes_where_it_stopped_to_the_same_weights(tmp_path, dataset):
    # Records read after the shuffle: indices into arrays, and files decoded by py_function
    # (megapixel_mnist's drawn canvases: test_megapixel_mnist's seeded stream).
    options = {"cluttered_mnist": {},
               "folder": dict(dataset=dataset, digits="auto", data_dir=_photos(tmp_path))}[dataset]
    config = _config(tmp_path, epochs=4, steps_per_epoch=2, lr_schedule="cosine", **options)
    with pytest.raises(KeyboardInterrupt):
        train_and_export(config, callbacks=[_Interrupt()], print_fn=lambda *_: None)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch_001.weights.h5", "epoch_002.weights.h5"]
    printed = []
    results = train_and_export(config, print_fn=printed.append)
    assert results["first_epoch"] == 2 and results["epochs_run"] == 2
    assert any("resuming after epoch 2 of 4" in line and "optimizer step 4" in line for line in printed), printed
    assert len(os.listdir(tmp_path / "run" / "checkpoints")) == 4
    # The optimizer state came back too: 4 epochs x 2 steps in all.
    assert int(keras.models.load_model(str(tmp_path / "run" / "model.keras")).optimizer.iterations.numpy()) == 8
    # And the data stream: the same weights as a run never interrupted.
    keras.utils.set_random_seed(0)
    train(_config(tmp_path, epochs=4, steps_per_epoch=2, lr_schedule="cosine", model_dir=str(tmp_path / "whole"),
                  **options), print_fn=lambda *_: None)
    for resumed, whole in zip(_weights(tmp_path / "run" / "model.keras"), _weights(tmp_path / "whole" / "model.keras")):
        np.testing.assert_array_equal(resumed, whole)


class _Poison(keras.callbacks.Callback):
    """Makes the weights NaN during the second epoch, as a diverging run would."""

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch == 1 and batch == 1:
            for variable in self.model.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, np.float32))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint_and_model(tmp_path):
    config = _config(tmp_path, epochs=3, steps_per_epoch=3)
    train(dataclasses.replace(config, epochs=1), print_fn=lambda *_: None)
    good = (tmp_path / "run" / "model.keras").read_bytes()
    with pytest.raises(FloatingPointError, match=r"at epoch 2, batch 2 .*epoch_001\.weights\.h5"):
        train(config, callbacks=[_Poison()], print_fn=lambda *_: None)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch_001.weights.h5"]
    assert (tmp_path / "run" / "model.keras").read_bytes() == good
    model = preset_model()
    model.compile(optimizer="adam")
    model.optimizer.build(model.trainable_variables)
    model.load_weights(str(tmp_path / "run" / "checkpoints" / "epoch_001.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_checkpoint_past_the_runs_epochs_is_a_clear_error(tmp_path):
    train(_config(tmp_path, epochs=2, steps_per_epoch=1), print_fn=lambda *_: None)
    with pytest.raises(ValueError, match="epoch 2, past epochs=1"):
        train(_config(tmp_path, epochs=1, steps_per_epoch=1), print_fn=lambda *_: None)


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_run(tmp_path):
    config = _config(tmp_path, model="coarse", lr_schedule="cosine", epochs=3, steps_per_epoch=2)
    train_and_export(config, print_fn=lambda *_: None)
    model = keras.models.load_model(str(tmp_path / "run" / "model.keras"))
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(3)) == pytest.approx(5e-4, rel=1e-3)  # half-way: cosine midpoint
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # after 6 steps
    logged = _events(str(tmp_path / "run" / "logs" / "train")).Tensors("epoch_learning_rate")
    rates = [float(tf.make_ndarray(e.tensor_proto)) for e in logged]
    assert rates[0] > rates[1] > rates[2] >= 0.0


def test_mirrored_strategy_uses_both_logical_devices(tmp_path):
    train_and_export(_config(tmp_path, strategy="mirrored", epochs=1), print_fn=lambda *_: None)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["replicas"] == 2


@pytest.mark.parametrize("model", ["fine", "coarse"])
def test_baselines_train_and_report_their_error(tmp_path, model):
    from dcn_keras.evaluation import evaluate_saved_model

    results = train_and_export(_config(tmp_path, model=model, epochs=1), print_fn=lambda *_: None)
    assert "coarse_test_error" not in results
    kept = evaluate_saved_model(str(tmp_path / "run" / "model.keras"), "cluttered_mnist", "test",
                                digits="embedded", examples_per_digit=1)
    assert kept["error"] == pytest.approx(results["test_error"], abs=1e-6)
    assert tf.saved_model.load(results["export_dir"]) is not None


def _convolutions(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _convolutions(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            yield layer


@pytest.mark.parametrize("model,policy", [("dcn", "mixed_bfloat16"), ("fine", "mixed_float16")])
def test_a_run_trains_saves_and_exports_under_its_dtype_policy(tmp_path, model, policy):
    results = train_and_export(_config(tmp_path, model=model, epochs=1, dtype_policy=policy), print_fn=lambda *_: None)
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored.
    run = tmp_path / "run"
    assert json.load(open(run / "config.json"))["config"]["dtype_policy"] == policy
    saved = keras.models.load_model(str(run / "model.keras"))
    convolutions = list(_convolutions(saved.fine if model == "dcn" else saved))
    assert len(convolutions) >= 5 and {c.compute_dtype for c in convolutions} == {policy[6:]}
    assert {w.dtype for w in saved.trainable_weights} == {"float32"}
    assert 0.0 <= results["test_error"] <= 1.0
    served = tf.saved_model.load(results["export_dir"]).signatures["serving_default"]
    assert served(images=tf.zeros([1, 100, 100, 1]))["probabilities"].dtype == tf.float32


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dataset="imagenet"), "dataset='imagenet'.*cluttered_mnist, folder, megapixel_mnist, mnist_numbers, svhn, svhn_cropped, or tfds:NAME"),
        (dict(batch_size=0), "batch_size=0.*>= 1"),
        (dict(batch_size=-4), "batch_size=-4"),
        (dict(eval_batch_size=0), "eval_batch_size=0.*>= 1"),
        (dict(learning_rate=0.0), "learning_rate=0.0.*> 0"),
        (dict(num_patches=0), "num_patches=0"),
        (dict(strategy="tpu"), "strategy='tpu'.*default, mirrored, multi_worker"),
        (dict(model="resnet"), "model='resnet'.*dcn, fine, coarse"),
        (dict(hint_weight=-0.5), "hint_weight=-0.5"),
        (dict(place_weight=-1.0), "place_weight=-1.0"),
        (dict(place_weight=0.1), "place_weight=0.1 needs each digit's box: dataset=mnist_numbers and model=dcn "
                                 r"\(got dataset=cluttered_mnist, model=dcn\)"),
        (dict(place_weight=0.1, dataset="mnist_numbers", model="fine"), "got dataset=mnist_numbers, model=fine"),
        (dict(lr_schedule="step"), "lr_schedule='step'.*constant, cosine"),
        (dict(dtype_policy="float16"), "dtype_policy='float16'.*float32, mixed_float16, mixed_bfloat16"),
        (dict(init_from="runs/dcn/export/1"), "init_from='runs/dcn/export/1'.*a .keras file"),
        (dict(verbose="3"), "verbose='3' is not valid; choose one of: auto, 0, 1, 2"),
        (dict(saliency="grad"), "saliency='grad' is not valid; choose one of: entropy_gradient, cam, cam_top_class"),
        (dict(init_from="f.keras", freeze=["head"]), "freeze='head' is not valid; choose one of: coarse, fine, top"),
        (dict(init_from="f.keras", freeze=["fine", "top", "coarse"]), "freeze=fine,top,coarse.*not all"),
        (dict(init_from="f.keras", freeze=["fine", "fine"]), "freeze=fine,fine.*at most once"),
        (dict(freeze=["fine"]), "freeze=fine keeps weights from init_from; give init_from"),
    ],
)
def test_bad_settings_are_named_with_what_is_allowed(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **overrides)


def test_auto_progress_is_a_bar_on_a_terminal_and_a_line_per_epoch_elsewhere():
    import io

    from dcn_keras.training.trainer import progress_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_verbosity("auto", Terminal()) == 1
    assert progress_verbosity("auto", io.StringIO()) == 2
    assert progress_verbosity(0, Terminal()) == 0 and progress_verbosity(1, io.StringIO()) == 1


def test_num_patches_above_the_grid_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"num_patches=600 .*\[1, 529\]"):
        train_and_export(_config(tmp_path, num_patches=600), print_fn=lambda *_: None)


def test_multi_digit_svhn_trains_evaluates_and_exports_per_head(tmp_path):
    from dcn_keras.evaluation import evaluate_saved_model
    from tests.svhn_fixture import write_svhn_copy

    data_dir = tmp_path / "data"
    write_svhn_copy(str(data_dir / "downloads" / "manual"))
    config = TrainConfig(dataset="svhn", data_dir=str(data_dir), epochs=1, steps_per_epoch=2,
                         batch_size=2, model_dir=str(tmp_path / "run"), verbose=0)
    results = train_and_export(config, print_fn=lambda *_: None)
    assert 0.0 <= results["test_error"] <= 1.0 and results["test_examples"] == 2
    served = tf.saved_model.load(results["export_dir"]).signatures["serving_default"]
    out = served(images=tf.zeros((1, 64, 64, 3)))
    heads = ["length"] + [f"digit_{i}" for i in range(1, 6)]
    assert {f"probabilities_{h}" for h in heads} <= set(out)
    assert {f"classes_{h}" for h in heads} <= set(out)
    assert out["probabilities_length"].shape == (1, 6) and out["probabilities_digit_1"].shape == (1, 11)
    evaluated = evaluate_saved_model(results["export_dir"], "svhn", "test", data_dir=str(data_dir))
    assert evaluated["examples"] == 2
    assert abs(evaluated["error"] - results["test_error"]) < 1e-6
    assert set(evaluated["per_class_error"]) == {1, 2}  # keyed by number length
    blank = evaluate_saved_model(str(tmp_path / "run" / "model.keras"), "svhn", "test",
                                 data_dir=str(data_dir), unrefined="blank")  # Every head blank-filled.
    assert blank["examples"] == 2 and 0.0 <= blank["error"] <= 1.0


def test_a_run_starts_from_init_from_and_records_it(tmp_path):
    preset_model().fine_only_model().save(tmp_path / "fine.keras")
    lines = []
    train_and_export(_config(tmp_path, epochs=1, steps_per_epoch=1, init_from=str(tmp_path / "fine.keras")),
          print_fn=lines.append)
    assert f"dcn_train: fine, top initialized from {tmp_path / 'fine.keras'}" in lines
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["config"]["init_from"] == str(tmp_path / "fine.keras")


def test_frozen_parts_keep_their_init_from_weights_and_the_rest_learns(tmp_path):
    source = preset_model()
    source.save(tmp_path / "dcn.keras")  # All three parts start from it; two stay.
    source.fine_only_model().save(tmp_path / "fine.keras")
    lines = []
    train(_config(tmp_path, epochs=1, steps_per_epoch=2, init_from=str(tmp_path / "dcn.keras"),
                  freeze=["fine", "top"]), print_fn=lines.append)
    assert "dcn_train: fine, top frozen (not trained)" in lines
    trained = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    for part in ("fine", "top"):
        for before, after in zip(source.get_layer(part).get_weights(), trained.get_layer(part).get_weights()):
            np.testing.assert_array_equal(before, after)
    coarse_moved = [not np.array_equal(a, b) for a, b in zip(source.get_layer("coarse").get_weights(),
                                                             trained.get_layer("coarse").get_weights())]
    assert any(coarse_moved)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["config"]["freeze"] == ["fine", "top"]
    with pytest.raises(ValueError, match="freeze=coarse: coarse did not come from init_from "
                                         "\\(it gave fine, top\\)"):
        train(_config(tmp_path, epochs=1, steps_per_epoch=1, init_from=str(tmp_path / "fine.keras"),
                      freeze=["coarse"], model_dir=str(tmp_path / "other")), print_fn=lines.append)


def test_a_missing_init_from_fails_before_the_data_is_loaded(tmp_path):
    lines = []
    with pytest.raises(FileNotFoundError, match="none.keras: no such file"):
        train_and_export(_config(tmp_path, init_from=str(tmp_path / "none.keras")), print_fn=lines.append)
    assert lines == []  # The data line comes first once loading has begun.


def test_a_multi_digit_baseline_sums_the_heads_losses_and_is_scored_on_the_whole_number():
    from dcn_keras.datasets import cluttered_mnist
    from dcn_keras.datasets.mnist_numbers import make_numbers
    from dcn_keras.datasets.number_labels import HEADS
    from dcn_keras.training import trainer

    config = TrainConfig(dataset="mnist_numbers", model="coarse", lr_schedule="constant")
    keras.utils.set_random_seed(0)
    model = trainer.build_model(config, (64, 64, 3), "svhn")
    digits, labels = cluttered_mnist.embedded_digits("validation")
    images, _, _ = make_numbers(digits, labels, 12, seed=0)
    x = np.repeat(images.astype("float32") / 255.0, 3, -1)
    # Labels the model's own answers for the first 8 numbers, so the whole
    # number is right for exactly those; one head off for the last 4.
    answers = {h: np.argmax(v, -1) for h, v in model(x).items()}
    heads = {h: answers[h].copy() for h in HEADS}
    heads["digit_3"][8:] = (heads["digit_3"][8:] + 1) % 11
    data = tf.data.Dataset.from_tensor_slices((x, heads)).batch(5)
    assert trainer._errors(model, data, config) == {"test_error": pytest.approx(4 / 12)}
    logs = model.evaluate(x, heads, batch_size=12, return_dict=True, verbose=0)
    logits = model(x)
    summed = sum(float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(heads[h], logits[h])))
                 for h in HEADS)
    assert logs["loss"] == pytest.approx(summed, rel=1e-4)
    assert logs["digit_3_accuracy"] == pytest.approx(8 / 12) and logs["length_accuracy"] == 1.0


def test_the_objects_coverage_is_reported_with_a_warning_when_too_high():
    from dcn_keras.training.trainer import COVERAGE_LIMIT
    from dcn_keras.training.trainer import report_coverage

    geometry = DynamicCapacityNetwork.from_preset("svhn_patch_exact").geometry
    small = np.array([[[10, 10, 8, 8]]], np.float32)
    lines = []
    share = report_coverage(geometry, small, lines.append)
    assert share < COVERAGE_LIMIT and len(lines) == 1
    assert lines[0].startswith(f"dcn_train: the objects cover {100 * share:.1f}% of the 196 coarse cells")
    lines = []
    assert report_coverage(geometry, np.array([[[0, 0, 64, 64]]], np.float32), lines.append) == 1.0
    assert len(lines) == 2 and "unlikely to be much faster" in lines[1] and "--canvas_size" in lines[1]
    # Numbers at 128 px cover 9.4% and did not pay (docs/scaling.md): a share that low is warned about.
    lines = []
    share = report_coverage(geometry, np.array([[[20, 20, 14, 14]]], np.float32), lines.append)
    assert 0.08 < share < 0.2 and len(lines) == 2


def test_a_folder_file_that_fails_to_decode_in_training_is_skipped_and_reported(tmp_path, monkeypatch):
    from dcn_keras.datasets import image_folder

    root = _photos(tmp_path)
    good = os.path.join(root, "bar", "00000.jpg")
    data = open(good, "rb").read()
    for n in range(3):  # Sound headers, cut bodies: they pass the scan.
        with open(os.path.join(root, "bar", f"cut_{n}.jpg"), "wb") as f:
            f.write(data[:data.index(b"\xff\xda") + 12])
    monkeypatch.setattr(image_folder, "_READ_FAILURES", set())
    lines = []
    config = _config(tmp_path, dataset="folder", data_dir=root, digits="auto", epochs=1, steps_per_epoch=6,
                     batch_size=8)
    with warnings_recorded() as caught:
        results = train(config, print_fn=lines.append)
    assert results["test_examples"] > 0 and results["epochs_run"] == 1
    skipped = [line for line in lines if "failed to decode when read" in line]
    assert len(skipped) == 1 and skipped[0].startswith("dcn_train: 3 file(s)"), lines
    assert not [w for w in caught if "ran out of data" in str(w.message)]


def test_megapixel_mnist_trains_on_a_small_rung_and_reports_its_digits_coverage(tmp_path):
    lines = []
    config = _config(tmp_path, dataset="megapixel_mnist", canvas_size=128, num_noise=3, num_canvases=300, epochs=1,
                     steps_per_epoch=2, batch_size=4)
    results = train(config, print_fn=lines.append)
    assert results["test_examples"] == 1000 and results["epochs_run"] == 1
    # Said before the splits are drawn (minutes for large canvases), and how long they took.
    assert lines[0] == "dcn_train: reading the megapixel_mnist splits (train, validation, test)"
    assert any(re.search(r"128x128 canvases with 3 noise blocks; 300 training images \(read in \d+ s\)$", line)
               for line in lines), lines
    assert any("the objects cover" in line for line in lines)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["preset"] == "megapixel_mnist" and resolved["config"]["num_noise"] == 3
    with pytest.raises(ValueError, match="num_noise=3 applies to megapixel_mnist only"):
        _config(tmp_path, num_noise=3)
    with pytest.raises(ValueError, match="num_canvases=10 applies to megapixel_mnist only"):
        _config(tmp_path, num_canvases=10)
    # The config asks the loaders which datasets take an option, so both say the same.
    with pytest.raises(ValueError, match=r"image_size='64' applies to folder and tfds:NAME only, not dataset="):
        _config(tmp_path, image_size="64")
    with pytest.raises(ValueError, match="canvas_size=100 is not valid; it must be an integer >= 112"):
        _config(tmp_path, dataset="megapixel_mnist", canvas_size=100)
