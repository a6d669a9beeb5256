import collections
import os
import re

import pytest
import tensorflow as tf

from dcn_keras.evaluation import evaluate_saved_model
from dcn_keras.serving import export_model
from tests.helpers import saved_model_nodes
from tests.helpers import saved_model_stored_values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "saved_models", "cluttered_mnist_dcn", "1")


def test_shipped_model_has_the_test_error_the_readme_states():
    readme = open(os.path.join(ROOT, "README.md")).read()
    stated = re.search(r"reserved test digits is \*\*([0-9.]+)%\*\*", readme)
    assert stated, "README must state the shipped model's test error"
    result = evaluate_saved_model(SHIPPED, "cluttered_mnist", "test", digits="embedded")
    assert result["examples"] == 1000
    assert abs(100 * result["error"] - float(stated.group(1))) < 0.05

    stated = re.search(r"5 canvases per test\s+digit .*? error is \*\*([0-9.]+)%\*\* on 5,000", readme,
                       re.DOTALL)
    assert stated, "README must state the shipped model's error on 5 canvases per test digit"
    result = evaluate_saved_model(SHIPPED, "cluttered_mnist", "test", digits="embedded",
                                  examples_per_digit=5)
    assert result["examples"] == 5000
    assert abs(100 * result["error"] - float(stated.group(1))) < 0.05


# Each shipped SavedModel and the preset it is an export of.
SHIPPED_MODELS = {SHIPPED: "cluttered_mnist",
                  os.path.join(ROOT, "saved_models", "cluttered_mnist_fast_full_dcn", "1"): "cluttered_mnist_fast",
                  os.path.join(ROOT, "saved_models", "svhn_reader_numbers_dcn", "1"): "svhn_reader_one_pool",
                  os.path.join(ROOT, "saved_models", "svhn_reader_numbers_dcn", "2"): "svhn_reader",
                  os.path.join(ROOT, "saved_models", "svhn_reader_numbers_dcn", "3"): "svhn_reader",
                  os.path.join(ROOT, "saved_models", "svhn_reader_numbers_dcn", "4"): "svhn_reader",
                  os.path.join(ROOT, "saved_models", "megapixel_mnist_dcn", "1"): "megapixel_mnist"}


def test_saved_models_holds_the_shipped_models_and_nothing_else():
    shipped = sorted(os.listdir(os.path.join(ROOT, "saved_models")))
    assert shipped == sorted({os.path.basename(os.path.dirname(p)) for p in SHIPPED_MODELS}
                             | {"cluttered_mnist_fast.tflite"})
    for name in shipped:  # Every version of a model is one of the shipped ones.
        versions = os.path.join(ROOT, "saved_models", name)
        if os.path.isdir(versions):
            assert {os.path.join(versions, v) for v in os.listdir(versions)} <= set(SHIPPED_MODELS)


@pytest.mark.parametrize("path", sorted(SHIPPED_MODELS))
def test_shipped_model_is_small_and_in_serving_layout(path):
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    assert size < 5 * 2**20
    signatures = tf.saved_model.load(path).signatures
    assert {"serving_default", "serving_bytes", "serving_xla"} <= set(signatures)
    from dcn_keras import DynamicCapacityNetwork
    from dcn_keras.serving.export import signature_image_shape

    assert signature_image_shape(path) == DynamicCapacityNetwork.from_preset(SHIPPED_MODELS[path]).image_shape


@pytest.mark.parametrize("path", sorted(SHIPPED_MODELS))
def test_shipped_model_stores_each_weight_once(path):
    from dcn_keras import DynamicCapacityNetwork

    assert saved_model_stored_values(path) == DynamicCapacityNetwork.from_preset(SHIPPED_MODELS[path]).count_params()


@pytest.mark.parametrize("path", sorted(SHIPPED_MODELS))
def test_shipped_models_hold_the_graph_this_code_exports(tmp_path, path):
    # A graph change (a faster inference pass, say) must reach the shipped
    # models too: same op types, same counts, as a fresh export of the preset.
    from dcn_keras import DynamicCapacityNetwork

    fresh = export_model(DynamicCapacityNetwork.from_preset(SHIPPED_MODELS[path]), str(tmp_path / "dcn" / "1"))
    ops = collections.Counter(node.op for node in saved_model_nodes(fresh))
    shipped = collections.Counter(node.op for node in saved_model_nodes(path))
    assert shipped == ops, (
        f"{os.path.relpath(path, ROOT)} is stale: re-export it with the README's command "
        f"(ops only in the fresh export: {dict(ops - shipped)}; only in the shipped one: "
        f"{dict(shipped - ops)})")


def test_shipped_fast_litert_file_is_the_fast_preset_in_two_stages():
    import numpy as np

    from dcn_keras.datasets import cluttered_mnist
    from dcn_keras.models import DynamicCapacityNetwork
    from dcn_keras.serving import LiteRTModel

    path = os.path.join(ROOT, "saved_models", "cluttered_mnist_fast.tflite")
    assert os.path.getsize(path) < 2**20
    file = LiteRTModel(path)
    assert file.two_stage and file.batch_size == 1
    canvases = cluttered_mnist.split_canvases("test", "embedded")[0][:200]
    images = canvases.astype(np.float32) / 255.0
    out = file(images)
    model = DynamicCapacityNetwork.from_preset("cluttered_mnist_fast", weights="pretrained")
    expected = model.predict(images, verbose=0)
    # Confidences within rounding of the threshold could go either way; here none do.
    np.testing.assert_array_equal(out["refined"], expected["refined"])
    assert 0 < out["refined"].sum() < len(images)
    np.testing.assert_array_equal(out["classes"], expected["probabilities"].argmax(-1))
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-4)
