import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcn_keras import prediction
from dcn_keras.backend import keras
from dcn_keras.datasets import cluttered_mnist
from tests.helpers import preset_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "saved_models", "cluttered_mnist_dcn", "1")


def write_canvases(directory, count=3):
    """PNGs of real test canvases; returns their paths and the float images."""
    canvases = cluttered_mnist.split_canvases("test", "embedded")[0][:count]
    os.makedirs(directory, exist_ok=True)
    paths = []
    for n, canvas in enumerate(canvases):
        paths.append(os.path.join(str(directory), f"canvas_{n}.png"))
        Image.fromarray(canvas[..., 0]).save(paths[-1])
    return paths, canvases.astype(np.float32) / 255.0


def test_saved_model_predictions_are_the_signatures_for_files_and_directories(tmp_path):
    paths, images = write_canvases(tmp_path / "dir")
    records, shown, outputs = prediction.predict_files(SHIPPED, [str(tmp_path / "dir")])
    assert [r["file"] for r in records] == paths  # A directory's images, sorted.
    np.testing.assert_allclose(shown, images, atol=1e-7)  # PNG is lossless: the same pixels.
    served = tf.saved_model.load(SHIPPED).signatures["serving_default"](images=tf.constant(shown))
    assert [r["class"] for r in records] == [str(c) for c in served["classes"].numpy()]
    np.testing.assert_allclose([r["probability"] for r in records],
                               served["probabilities"].numpy().max(-1), atol=1e-6)
    assert [r["coarse_class"] for r in records] == [
        str(c) for c in served["coarse_probabilities"].numpy().argmax(-1)]
    assert [r["patch_boxes"] for r in records] == served["patch_boxes"].numpy().tolist()
    assert outputs["saliency"].shape == (3, 23, 23)
    line = prediction.format_line(records[0])
    assert line.startswith(f"{paths[0]}: {records[0]['class']} (") and line.count("[") == 8


def test_a_keras_dcn_predicts_and_other_sizes_are_resized_with_a_warning(tmp_path):
    model = preset_model(num_patches=4)
    model.save(str(tmp_path / "dcn.keras"))
    path = str(tmp_path / "small.jpg")
    Image.fromarray(np.full((28, 40, 3), 200, np.uint8)).save(path)
    warnings = []
    records, shown, _ = prediction.predict_files(str(tmp_path / "dcn.keras"), [path], warn=warnings.append)
    assert warnings == [f"{path} is 28x40; resized to 100x100 as the serving signature does."]
    assert shown.shape == (1, 100, 100, 1) and len(records[0]["patch_boxes"]) == 4
    expected = model(shown)["probabilities"].numpy()[0]
    assert records[0]["class"] == str(expected.argmax())


def test_an_image_that_exits_early_is_reported_without_patches(tmp_path):
    paths, images = write_canvases(tmp_path / "dir", count=4)
    model = preset_model(num_patches=4)
    threshold = float(np.median(model.predict(images, verbose=0)["coarse_probabilities"].max(-1)))
    model.with_settings(exit_threshold=threshold).save(str(tmp_path / "gated.keras"))
    records, _, outputs = prediction.predict_files(str(tmp_path / "gated.keras"), paths)
    assert [r["refined"] for r in records] == outputs["refined"].tolist()
    exited = next(r for r in records if not r["refined"])
    refined = next(r for r in records if r["refined"])
    assert exited["class"] == exited["coarse_class"] and exited["patch_boxes"] == [[-1] * 4] * 4
    assert prediction.format_line(exited).endswith("patches none (exited: the coarse answer is kept)")
    assert prediction.format_line(refined).count("[") == 4


def test_bad_inputs_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.png").write_text("hello")
    os.makedirs(tmp_path / "empty")
    paths, _ = write_canvases(tmp_path / "good", count=2)
    bad = [str(tmp_path / "missing.png"), str(tmp_path / "empty"), str(tmp_path / "fake.png")]
    records, shown, _ = prediction.predict_files(SHIPPED, [paths[0], *bad, paths[1]])
    # Every bad item named in its place; the good ones still classified.
    assert [r["file"] for r in records] == [paths[0], *bad, paths[1]]
    assert [r.get("error", "").split(str(tmp_path))[-1] for r in records] == [
        "", "/missing.png: no such file or directory.", "/empty holds no image (.png, .jpg, .jpeg, .gif, .bmp).",
        "/fake.png is not an image TensorFlow can decode (PNG, JPEG, GIF, BMP).", ""]
    assert shown.shape == (2, 100, 100, 1) and "class" in records[0] and "class" in records[4]
    alone, _, _ = prediction.predict_files(SHIPPED, paths)
    assert [alone[0], alone[1]] == [records[0], records[4]]
    records, shown, outputs = prediction.predict_files(SHIPPED, bad[2:])
    assert records == [{"file": bad[2], "error": records[0]["error"]}] and len(shown) == 0 and outputs == {}
    with pytest.raises(ValueError, match="no image given"):
        prediction.predict_files(SHIPPED, [])
    inputs = keras.Input((100, 100, 1))
    keras.Model(inputs, keras.layers.GlobalMaxPooling2D()(inputs)).save(str(tmp_path / "plain.keras"))
    with pytest.raises(ValueError, match="plain.keras holds a Functional, not a DynamicCapacityNetwork"):
        prediction.load_predictor(str(tmp_path / "plain.keras"))
    with pytest.raises(FileNotFoundError, match="neither a .keras file nor a SavedModel"):
        prediction.load_predictor(str(tmp_path))


def test_a_saved_models_image_size_is_read_from_keras_files_and_saved_models(tmp_path):
    from dcn_keras.serving import export_model

    model = preset_model(image_shape=(120, 120, 1))
    model.save(str(tmp_path / "m.keras"))
    model.fine_only_model().save(str(tmp_path / "fine.keras"))
    assert prediction.model_image_shape(str(tmp_path / "m.keras")) == (120, 120, 1)
    assert prediction.model_image_shape(export_model(model, str(tmp_path / "s" / "1"), xla=False)) == (120, 120, 1)
    assert prediction.model_image_shape(str(tmp_path / "fine.keras")) == (120, 120, 1)
    with pytest.raises(FileNotFoundError, match="neither a .keras file nor a SavedModel"):
        prediction.model_image_shape(str(tmp_path))


def test_the_size_of_a_saved_model_whose_signature_states_none_is_read_from_its_checks(tmp_path):
    # SavedModels exported before the signatures stated the size.
    from tensorflow.core.protobuf import saved_model_pb2

    from dcn_keras.serving import export_model
    from dcn_keras.serving.export import signature_image_shape

    path = export_model(preset_model(image_shape=(120, 120, 1)), str(tmp_path / "s" / "1"), xla=False)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    shape = saved_model.meta_graphs[0].signature_def["serving_default"].inputs["images"].tensor_shape
    shape.Clear()
    shape.unknown_rank = True
    with open(os.path.join(path, "saved_model.pb"), "wb") as file:
        file.write(saved_model.SerializeToString())
    assert signature_image_shape(path) is None
    assert prediction.model_image_shape(path) == (120, 120, 1)


def test_files_are_classified_a_batch_at_a_time_and_only_the_pictures_images_are_kept(tmp_path, monkeypatch):
    paths, images = write_canvases(tmp_path / "dir", count=5)
    calls = []
    load = prediction.load_predictor

    def counting(path):
        predict, shape = load(path)
        return (lambda batch: calls.append(len(batch)) or predict(batch)), shape
    monkeypatch.setattr(prediction, "load_predictor", counting)
    records, shown, outputs = prediction.predict_files(SHIPPED, [*paths[:2], "missing.png", *paths[2:]],
                                                       batch_size=2, keep=3)
    assert calls == [2, 2, 1]  # Never the whole folder in one call.
    assert [r["file"] for r in records] == [*paths[:2], "missing.png", *paths[2:]] and "error" in records[2]
    np.testing.assert_allclose(shown, images[:3], atol=1e-7)
    assert outputs["saliency"].shape[0] == 3
    whole, _, _ = prediction.predict_files(SHIPPED, paths, batch_size=5)
    assert [r["class"] for r in records if "error" not in r] == [r["class"] for r in whole]
    assert len(prediction.predict_files(SHIPPED, paths, keep=0)[1]) == 0


def test_a_large_image_model_predicts_files_and_draws_them_scaled_for_display(tmp_path):
    from dcn_keras import pictures
    from dcn_keras.models import DynamicCapacityNetwork

    model = DynamicCapacityNetwork.from_preset("images", image_shape=(1024, 1024, 3), num_classes=2,
                                               class_names=("bar", "disc"))
    model.save(str(tmp_path / "big.keras"))
    rng = np.random.default_rng(0)
    paths = []
    for n in range(3):
        paths.append(str(tmp_path / f"photo_{n}.png"))
        Image.fromarray((rng.random((1024, 1024, 3)) * 255).astype(np.uint8)).save(paths[-1])
    records, shown, outputs = prediction.predict_files(str(tmp_path / "big.keras"), paths, batch_size=2, keep=2)
    assert all(r["class"] in ("bar", "disc") for r in records)
    assert len(records) == 3 and shown.shape == (2, 1024, 1024, 3) and len(records[0]["patch_boxes"]) == 30
    path = pictures.save(shown, prediction.picture_outputs(outputs), str(tmp_path / "big.png"))
    picture = np.asarray(Image.open(path))
    assert picture.shape[1] == 720 and picture.shape[0] < 2 * 400  # Two rows at the usual width.


def test_the_megapixel_model_reads_1500_px_pngs_and_draws_its_patches(tmp_path):
    from dcn_keras import pictures
    from dcn_keras.datasets import megapixel_mnist

    shipped = os.path.join(ROOT, "saved_models", "megapixel_mnist_dcn", "1")
    descriptions, digits, _ = megapixel_mnist.split_descriptions("test", "embedded", num_canvases=3)
    canvases = megapixel_mnist.draw_canvases(descriptions, digits)
    paths = []
    for n, canvas in enumerate(canvases):
        paths.append(str(tmp_path / f"canvas_{n}.png"))
        Image.fromarray(canvas[..., 0]).save(paths[-1])
    records, shown, outputs = prediction.predict_files(shipped, paths)
    assert shown.shape == (3, 1500, 1500, 1) and all(len(r["patch_boxes"]) == 32 for r in records)
    assert outputs["saliency"].shape == (3, 93, 93)
    # serving_bytes takes the PNG itself, as TF Serving is sent it.
    served = tf.saved_model.load(shipped).signatures["serving_bytes"](
        image_bytes=tf.constant([open(p, "rb").read() for p in paths]))
    assert [r["class"] for r in records] == [str(c) for c in served["classes"].numpy()]
    # Patches are 46 px on a 1500-px canvas; drawn at display size they still show.
    path = pictures.save(shown, prediction.picture_outputs(outputs), str(tmp_path / "mega.png"))
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (picture[..., 0] > 180) & (picture[..., 1] < 90) & (picture[..., 2] < 90)
    assert picture.shape[1] <= 1000 and red.sum() > 100
