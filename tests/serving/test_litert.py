import os

import numpy as np
import pytest

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.workflows import export_from
from dcn_keras.serving import export_litert
from dcn_keras.serving import LiteRTModel
from dcn_keras.serving import litert_predict
from dcn_keras.serving.litert import interpreter
from dcn_keras.serving.litert import litert_bytes
from tests.helpers import preset_model
from tests.helpers import random_images


def _real_canvases(count):
    return cluttered_mnist.split_canvases("test", "embedded")[0][:count].astype(np.float32) / 255.0


def _op_names(path):
    return set(_ops(path))


def _ops(path):
    # Without XNNPACK, which would show the ops it takes as one DELEGATE.
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    plain = Interpreter(model_path=path,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    return [op["op_name"] for op in plain._get_ops_details()]


@pytest.mark.parametrize("top_pass", ["incremental", "full"])
def test_a_dcn_runs_on_litert_with_builtin_ops_as_in_keras(tmp_path, top_pass):
    model = preset_model(top_pass=top_pass)
    path = export_litert(model, str(tmp_path / "dcn.tflite"))
    assert os.listdir(tmp_path) == ["dcn.tflite"]
    signatures = interpreter(path).get_signature_list()
    assert signatures == {"serving_default": {
        "inputs": ["images"],
        "outputs": ["classes", "coarse_probabilities", "locations", "patch_boxes", "probabilities", "saliency"]}}
    ops = _op_names(path)
    # Builtin ops only, weights frozen: no Flex (Select TF) op, no variables, no gradient kernels.
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert not ops & {"READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE"}
    images = np.concatenate([random_images(3), _real_canvases(5)])
    out = litert_predict(path, images)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["coarse_probabilities"], expected["coarse_probabilities"], atol=1e-5)
    np.testing.assert_array_equal(out["locations"], expected["locations"])
    np.testing.assert_array_equal(out["patch_boxes"], expected["patch_boxes"])
    np.testing.assert_array_equal(out["classes"], expected["probabilities"].argmax(-1))


def test_a_fixed_batch_runs_any_number_of_images_and_baselines_export_too(tmp_path):
    model = preset_model(num_patches=4)
    model.save(str(tmp_path / "dcn.keras"))
    path = export_from(str(tmp_path / "dcn.keras"), str(tmp_path), "m", format="litert", batch_size=4)
    assert path == str(tmp_path / "m.tflite")
    images = random_images(6)
    out = litert_predict(path, images)  # One full chunk of 4, one padded.
    assert out["locations"].shape == (6, 4, 2)
    np.testing.assert_allclose(out["probabilities"], model.predict(images, verbose=0)["probabilities"], atol=1e-5)
    fine = export_from(str(tmp_path / "dcn.keras"), str(tmp_path), "fine", format="litert", baseline="fine")
    logits = model.fine_only_model().predict(images, verbose=0)
    out = litert_predict(fine, images)
    assert sorted(out) == ["classes", "probabilities"]
    np.testing.assert_allclose(out["probabilities"], np.exp(logits) / np.exp(logits).sum(-1, keepdims=True),
                               atol=1e-5)
    full = export_from(str(tmp_path / "dcn.keras"), str(tmp_path), "full", format="litert", top_pass="full")
    # The full pass runs the top convolution again on the refined grid.
    assert _ops(full).count("CONV_2D") == _ops(path).count("CONV_2D") + 1
    np.testing.assert_allclose(litert_predict(full, images)["probabilities"],
                               model.predict(images, verbose=0)["probabilities"], atol=1e-5)
    with pytest.raises(ValueError, match="baseline='medium' is not valid; choose one of: fine, coarse"):
        export_from(str(tmp_path / "dcn.keras"), str(tmp_path), "m", format="litert", baseline="medium")


def test_bad_requests_and_settings_are_named(tmp_path):
    model = preset_model()
    path = export_litert(model, str(tmp_path / "dcn.tflite"))
    expected = "Expected float32 images of shape \\[batch, 100, 100, 1\\] in \\[0, 1\\]; got"
    with pytest.raises(ValueError, match=f"{expected} shape \\[2, 64, 64, 1\\]"):
        litert_predict(path, np.zeros((2, 64, 64, 1), np.float32))
    with pytest.raises(ValueError, match=f"{expected} shape \\[100, 100, 1\\]"):
        litert_predict(path, np.zeros((100, 100, 1), np.float32))
    with pytest.raises(ValueError, match=f"{expected} dtype uint8"):
        litert_predict(path, np.zeros((1, 100, 100, 1), np.uint8))
    with pytest.raises(ValueError, match=f"{expected} values in \\[255, 255\\]"):
        litert_predict(path, np.full((1, 100, 100, 1), 255.0, np.float32))
    with pytest.raises(ValueError, match="got an empty batch"):
        litert_predict(path, np.zeros((0, 100, 100, 1), np.float32))
    with pytest.raises(FileNotFoundError, match="nope.tflite: no such .tflite file"):
        litert_predict(str(tmp_path / "nope.tflite"), np.zeros((1, 100, 100, 1), np.float32))
    with pytest.raises(ValueError, match="dcn.lite must end in .tflite"):
        export_litert(model, str(tmp_path / "dcn.lite"))
    with pytest.raises(ValueError, match="batch_size=0 is not valid; it must be an integer >= 1"):
        export_litert(model, str(tmp_path / "b.tflite"), batch_size=0)
    assert os.listdir(tmp_path) == ["dcn.tflite"]


def test_an_exit_threshold_makes_a_two_stage_file_that_refines_only_what_does_not_exit(tmp_path):
    plain = preset_model()
    images = np.concatenate([random_images(3, seed=9), _real_canvases(5)])
    confidence = np.sort(plain.predict(images, verbose=0)["coarse_probabilities"].max(-1))
    # Midway between two confidences, so LiteRT's rounding cannot move an image across.
    model = plain.with_settings(exit_threshold=float(confidence[3:5].mean()))
    path = export_litert(model, str(tmp_path / "exit.tflite"))
    signatures = interpreter(path).get_signature_list()
    assert signatures == {
        "coarse": {"inputs": ["images"], "outputs": ["classes", "exit", "probabilities"]},
        "refine": {"inputs": ["images"], "outputs": [
            "classes", "coarse_probabilities", "locations", "patch_boxes", "probabilities", "saliency"]}}
    assert not [op for op in _op_names(path) if op.startswith("Flex") or op in ("CUSTOM", "IF")]
    expected = model.predict(images, verbose=0)
    assert 0 < expected["refined"].sum() < len(images)
    for batch_size in (1, 3):  # A batch of 3: the refined images are packed, the last chunk padded.
        out = litert_predict(export_litert(model, str(tmp_path / f"b{batch_size}.tflite"), batch_size), images)
        assert sorted(out) == sorted([*expected, "classes"])
        np.testing.assert_array_equal(out["refined"], expected["refined"])
        for key in ("probabilities", "coarse_probabilities", "saliency"):
            np.testing.assert_allclose(out[key], expected[key], atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(out["classes"], expected["probabilities"].argmax(-1))
        for key in ("locations", "patch_boxes"):
            np.testing.assert_array_equal(out[key], expected[key], err_msg=key)
    file = LiteRTModel(path)
    assert file.two_stage and file.batch_size == 1
    for threshold, refined in ((1.0, len(images)), (1e-6, 0)):  # None exit; all exit.
        out = litert_predict(export_litert(plain.with_settings(exit_threshold=threshold),
                                           str(tmp_path / "edge.tflite")), images)
        assert out["refined"].sum() == refined
    np.testing.assert_allclose(out["probabilities"], out["coarse_probabilities"])
    assert (out["locations"] == -1).all() and (out["saliency"] == 0).all()
    np.testing.assert_allclose(out["probabilities"], expected["coarse_probabilities"], atol=1e-5)


def test_a_two_stage_file_of_several_heads_exits_on_the_whole_numbers_confidence():
    import dcn_keras
    from dcn_keras.models.objective import coarse_confidence

    plain = dcn_keras.DynamicCapacityNetwork.from_preset("svhn", num_patches=4)
    images = random_images(6, shape=(64, 64, 3))
    confidence = np.sort(coarse_confidence(plain(images, training=False)["coarse_probabilities"]).numpy())
    model = plain.with_settings(exit_threshold=float(confidence[2:4].mean()))
    out, expected = LiteRTModel(litert_bytes(model, 2))(images), model.predict(images, verbose=0)
    assert expected["refined"].sum() == 3
    np.testing.assert_array_equal(out["refined"], expected["refined"])
    for head, probabilities in expected["probabilities"].items():
        np.testing.assert_allclose(out[f"probabilities_{head}"], probabilities, atol=1e-5, err_msg=head)
        np.testing.assert_array_equal(out[f"classes_{head}"], probabilities.argmax(-1))


def test_a_dcn_with_the_positional_top_converts_with_builtin_ops(tmp_path):
    # Its band pooling is differentiated by the saliency: sliced, that gradient
    # (StridedSliceGrad) was no LiteRT builtin and the multi-digit positional
    # presets could not be exported.
    import dcn_keras

    model = dcn_keras.DynamicCapacityNetwork.from_preset("svhn_patch_exact", num_patches=4)
    path = export_litert(model, str(tmp_path / "numbers.tflite"))
    assert not [op for op in _op_names(path) if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
    images = random_images(3, shape=(64, 64, 3))
    out, expected = litert_predict(path, images), model.predict(images, verbose=0)
    np.testing.assert_array_equal(out["locations"], expected["locations"])
    for head, probabilities in expected["probabilities"].items():
        np.testing.assert_allclose(out[f"probabilities_{head}"], probabilities, atol=1e-5, err_msg=head)
