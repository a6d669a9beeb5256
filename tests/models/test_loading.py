import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.models import load_model
from dcn_keras.models.loading import global_dtype_policy
from dcn_keras.models.loading import model_input_shape
from tests.helpers import preset_model
from tests.helpers import random_images


def test_load_model_runs_a_dcn_with_another_k_on_the_same_weights(tmp_path):
    path = str(tmp_path / "dcn.keras")
    model = preset_model()
    model.save(path)
    images = random_images(2)
    same = load_model(path)
    np.testing.assert_allclose(same(images)["probabilities"], model(images)["probabilities"], atol=1e-6)
    more = load_model(path, num_patches=16)
    assert more.num_patches == 16 and more(images)["locations"].shape == (2, 16, 2)
    np.testing.assert_allclose(more(images)["probabilities"],
                               model.with_num_patches(16)(images)["probabilities"], atol=1e-6)


def test_load_model_runs_a_model_on_another_canvas_size_with_the_same_weights(tmp_path):
    model = preset_model()
    larger = random_images(2, shape=(140, 140, 1), seed=4)
    expected = model.with_settings(image_shape=(140, 140, 1))
    for name, saved, reference in [("dcn", model, expected), ("fine", model.fine_only_model(), None),
                                   ("coarse", model.coarse_only_model(), None)]:
        path = str(tmp_path / f"{name}.keras")
        saved.save(path)
        moved = load_model(path, image_shape=(140, 140, 1))
        if reference is not None:
            np.testing.assert_allclose(moved(larger)["probabilities"], reference(larger)["probabilities"],
                                       atol=1e-6)
        else:
            built = getattr(expected, f"{name}_only_model")()
            np.testing.assert_allclose(moved(larger), built(larger), atol=1e-5)
        assert model_input_shape(load_model(path, image_shape=(100, 100, 1))) == (100, 100, 1)
    with pytest.raises(ValueError, match="takes 1-channel images; these have 3 channels"):
        load_model(path, image_shape=(140, 140, 3))
    x = keras.Input((8, 8, 1))
    branched = keras.Model(x, keras.layers.Add()([keras.layers.Conv2D(1, 1)(x), x]))
    branched.save(str(tmp_path / "branched.keras"))
    with pytest.raises(ValueError, match=r"takes \(8, 8, 1\) images and is not a chain of layers"):
        load_model(str(tmp_path / "branched.keras"), image_shape=(16, 16, 1))


def test_load_model_with_a_dtype_policy_computes_under_it_on_the_same_weights(tmp_path):
    path = str(tmp_path / "dcn.keras")
    model = preset_model()
    model.save(path)
    images = random_images(2)
    bf16 = load_model(path, num_patches=4, dtype_policy="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored.
    assert bf16.num_patches == 4 and bf16.dtype_policy.name == "mixed_bfloat16"
    for tower in (bf16.coarse, bf16.fine, bf16.top):
        assert {layer.compute_dtype for layer in tower.layers} == {"bfloat16"}, tower.name
    assert bf16.patch_gather.compute_dtype == bf16.cell_scatter.compute_dtype == "bfloat16"
    assert len(bf16.weights) == len(model.weights)
    for ours, saved in zip(bf16.weights, model.weights):
        assert ours.dtype == "float32"
        np.testing.assert_array_equal(ours.numpy(), saved.numpy())
    out, reference = bf16(images), model.with_num_patches(4)(images)
    assert out["probabilities"].dtype == out["saliency"].dtype == "float32"
    assert bf16.forward(images).grid.dtype == "bfloat16"
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=0.02)
    assert not np.array_equal(out["probabilities"], reference["probabilities"])

    fine = str(tmp_path / "fine.keras")  # A functional baseline too.
    model.fine_only_model().save(fine)
    half = load_model(fine, dtype_policy="mixed_float16")
    assert half(images).dtype == "float16"
    np.testing.assert_allclose(half(images), model.fine_only_model()(images), atol=0.02)
    assert load_model(fine, dtype_policy=None).dtype_policy.name == "float32"
    with pytest.raises(ValueError, match=r"dtype_policy='float64' is not valid; choose one of: "
                                         r"float32, mixed_float16, mixed_bfloat16\."):
        load_model(path, dtype_policy="float64")


def test_a_dcn_keeps_its_own_dtype_policy_when_loaded_and_re_made(tmp_path):
    path = str(tmp_path / "dcn.keras")
    with global_dtype_policy("mixed_bfloat16"):
        preset_model().save(path)
    assert keras.mixed_precision.global_policy().name == "float32"
    for model in (load_model(path), load_model(path, num_patches=4)):
        assert model.dtype_policy.name == "mixed_bfloat16"
        made = (model.saliency_layer, model.patch_gather, model.cell_scatter)
        assert {layer.dtype_policy.name for layer in made} == {"mixed_bfloat16"}


def test_load_model_errors_name_the_file_and_the_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras: no such file"):
        load_model(str(tmp_path / "missing.keras"))
    (tmp_path / "junk.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="junk.keras is not a .keras model"):
        load_model(str(tmp_path / "junk.keras"))
    images = keras.Input((100, 100, 1))
    plain = str(tmp_path / "plain.keras")
    keras.Model(images, keras.layers.Dense(10)(keras.layers.GlobalMaxPooling2D()(images))).save(plain)
    with pytest.raises(ValueError, match="num_patches=4 needs a DCN; .*plain.keras holds a Functional"):
        load_model(plain, num_patches=4)
    dcn = str(tmp_path / "dcn.keras")
    preset_model().save(dcn)
    with pytest.raises(ValueError, match="num_patches=1000"):
        load_model(dcn, num_patches=1000)
