import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.models import load_model
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
