import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcn_keras.backend import keras
from dcn_keras.workflows import export_from
from dcn_keras.serving import export_model
from dcn_keras.serving import client
from dcn_keras.serving.export import signature_image_shape
from tests.helpers import preset_model
from tests.helpers import random_images
from tests.helpers import saved_model_nodes
from tests.helpers import saved_model_stored_values

HERE = os.path.dirname(os.path.abspath(__file__))


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray((image[..., 0] * 255).round().astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = preset_model()
    path = export_model(model, str(tmp_path_factory.mktemp("serving") / "dcn" / "1"))
    # Images on the 1/255 grid, so that PNG bytes decode to the same values.
    images = (np.round(random_images(3, seed=9) * 255) / 255).astype(np.float32)
    return model, path, images


def test_signatures_and_outputs_match_the_keras_model(exported):
    model, path, images = exported
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serving_xla"}
    expected = model(images)
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert set(out) == {"probabilities", "classes", "coarse_probabilities", "saliency",
                        "locations", "patch_boxes"}
    for key in expected:
        np.testing.assert_allclose(out[key].numpy(), np.asarray(expected[key]), atol=1e-5)
    np.testing.assert_array_equal(out["classes"], np.argmax(expected["probabilities"], -1))
    xla = loaded.signatures["serving_xla"](images=tf.constant(images[:1]))
    np.testing.assert_allclose(xla["probabilities"], expected["probabilities"][:1], atol=1e-4)


def test_bytes_signature_decodes_pngs_in_the_graph(exported):
    model, path, images = exported
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([_png(x) for x in images]))
    np.testing.assert_allclose(out["probabilities"], model(images)["probabilities"], atol=1e-5)


@pytest.mark.parametrize("name", ["serving_default", "serving_xla"])
@pytest.mark.parametrize(
    "shape,got",
    [((2, 64, 64, 1), "[64 64 1]"), ((2, 100, 100, 3), "[100 100 3]"), ((100, 100, 1), "[-1 -1 -1]")],
)
def test_wrong_inputs_get_an_error_naming_the_expected_shape(exported, name, shape, got):
    _, path, _ = exported
    signature = tf.saved_model.load(path).signatures[name]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(images=tf.zeros(shape))
    assert "Expected float32 images of shape [batch, 100, 100, 1]" in error.value.message
    assert got in error.value.message


def test_the_signatures_state_the_image_shape_where_tf_serving_reads_it(exported):
    # TF Serving's C++ loader reads the SignatureDefs and runs the graph as
    # the TF1 loader does: the metadata states [-1, 100, 100, 1], and a
    # request of another size still meets the checks in the graph.
    _, path, images = exported
    assert signature_image_shape(path) == (100, 100, 1)
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name in ("serving_default", "serving_xla"):
            signature = meta_graph.signature_def[name]
            assert [d.size for d in signature.inputs["images"].tensor_shape.dim] == [-1, 100, 100, 1]
        signature = meta_graph.signature_def["serving_default"]
        feed, fetch = signature.inputs["images"].name, signature.outputs["classes"].name
        assert session.run(fetch, {feed: images}).shape == (3,)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"shape \[batch, 100, 100, 1\]"):
            session.run(fetch, {feed: np.zeros((2, 64, 64, 1), np.float32)})


@pytest.mark.parametrize(
    "name,inputs",
    [
        ("serving_default", {"images": tf.zeros((0, 100, 100, 1))}),
        ("serving_xla", {"images": tf.zeros((0, 100, 100, 1))}),
        ("serving_bytes", {"image_bytes": tf.constant([], tf.string)}),
    ],
)
def test_an_empty_batch_gets_an_error_saying_so(exported, name, inputs):
    _, path, _ = exported
    signature = tf.saved_model.load(path).signatures[name]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one image; got an empty batch"):
        signature(**inputs)


def test_bytes_that_are_no_image_get_an_error_naming_the_formats(exported):
    _, path, images = exported
    signature = tf.saved_model.load(path).signatures["serving_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format. One of JPEG"):
        signature(image_bytes=tf.constant([_png(images[0]), b"not an image"]))


def test_runs_in_a_fresh_process_without_keras_or_dcn_keras(exported, tmp_path):
    model, path, images = exported
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, images=images, image_bytes=np.array([_png(x) for x in images], dtype=object).astype(bytes))
    outputs = tmp_path / "outputs.npz"
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "no_keras_runner.py"), path, str(inputs), str(outputs)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(outputs)
    expected = model(images)
    for key in expected:
        np.testing.assert_allclose(got[f"default/{key}"], np.asarray(expected[key]), atol=1e-5)
        np.testing.assert_allclose(got[f"bytes/{key}"], np.asarray(expected[key]), atol=1e-5)


def test_the_export_stores_each_weight_once(exported):
    # Tracking the model in the export archive as well as its endpoints
    # stored every weight twice (keras-team/keras#23553).
    model, path, _ = exported
    assert saved_model_stored_values(path) == model.count_params()


def _convolution_dtypes(path):
    return {tf.as_dtype(node.attr["T"].type) for node in saved_model_nodes(path) if node.op == "Conv2D"}


def test_graph_uses_only_core_tensorflow_ops(exported):
    _, path, _ = exported
    ops = {node.op for node in saved_model_nodes(path)}
    assert {"Conv2D", "TopKV2", "DecodeImage"} <= ops
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert [op for op in ops if not hasattr(tf.raw_ops, op)] == []
    assert os.listdir(os.path.join(path, "assets")) == []


def test_export_is_atomic_and_keeps_the_old_version_on_failure(tmp_path):
    model = preset_model()
    path = export_model(model, str(tmp_path / "m" / "1"))
    before = open(os.path.join(path, "saved_model.pb"), "rb").read()

    class Broken:
        image_shape = (100, 100, 1)

        def __call__(self, *args, **kwargs):
            raise RuntimeError("crash while tracing")

    with pytest.raises(Exception):
        export_model(Broken(), path)
    assert open(os.path.join(path, "saved_model.pb"), "rb").read() == before
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]  # no half-written leftovers


def test_export_from_keras_file_and_training_directory(tmp_path):
    from dcn_keras.training import TrainConfig
    from dcn_keras.training import train

    run = tmp_path / "run"  # Trained without an export: export_from makes them.
    train(TrainConfig(digits="embedded", examples_per_digit=1, epochs=1, steps_per_epoch=1,
                      batch_size=4, eval_batch_size=64, model_dir=str(run), verbose=0), print_fn=lambda *_: None)
    base = str(tmp_path / "saved_models")
    first = export_from(str(run / "model.keras"), base, "dcn", xla=False)
    second = export_from(str(run), base, "dcn", xla=False)
    assert first.endswith(os.path.join("dcn", "1")) and second.endswith(os.path.join("dcn", "2"))
    images = random_images(2)
    a = tf.saved_model.load(first).signatures["serving_default"](images=tf.constant(images))
    b = tf.saved_model.load(second).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
    # Served with another k: the run's weights, refining 16 cells.
    third = export_from(str(run), base, "dcn", xla=False, num_patches=16)
    c = tf.saved_model.load(third).signatures["serving_default"](images=tf.constant(images))
    assert c["locations"].shape == (2, 16, 2)
    trained = keras.models.load_model(str(run / "model.keras")).with_num_patches(16)
    np.testing.assert_allclose(c["probabilities"], trained(images)["probabilities"], atol=1e-6)
    # Served in bfloat16: the same weights, bfloat16 convolutions, float32 inputs and outputs.
    fourth = export_from(str(run), base, "dcn", xla=False, dtype_policy="mixed_bfloat16")
    served = tf.saved_model.load(fourth).signatures["serving_default"]
    d = served(images=tf.constant(images))
    assert d["probabilities"].dtype == d["saliency"].dtype == tf.float32
    np.testing.assert_allclose(d["probabilities"], a["probabilities"], atol=0.02)
    assert _convolution_dtypes(fourth) == {tf.bfloat16}
    assert _convolution_dtypes(first) == {tf.float32}
    with pytest.raises(FileNotFoundError, match="neither a .keras file nor a training directory"):
        export_from(str(tmp_path), base, "dcn")
    with pytest.raises(ValueError, match="dtype_policy='int8' is not valid; choose one of"):
        export_from(str(run), base, "dcn", dtype_policy="int8")


def test_rest_and_grpc_requests_are_answered_like_the_server(exported):
    model, path, images = exported
    expected = np.asarray(model(images)["probabilities"])
    body = client.rest_predict_body(images=images)
    rows = client.run_rest_request_locally(path, body)["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)
    body = client.rest_predict_body(image_bytes=[_png(x) for x in images])
    assert '"b64"' in body and '"signature_name": "serving_bytes"' in body
    rows = client.run_rest_request_locally(path, body)["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)

    request = client.grpc_predict_request("dcn", images=images)
    assert request.model_spec.signature_name == "serving_default"
    assert [d.size for d in request.inputs["images"].tensor_shape.dim] == [3, 100, 100, 1]
    response = client.run_grpc_request_locally(path, request)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=1e-5)
    request = client.grpc_predict_request("dcn", image_bytes=[_png(x) for x in images])
    assert request.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    response = client.run_grpc_request_locally(path, request)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        client.rest_predict_body()


def test_export_from_writes_keras_weights_that_from_preset_loads(tmp_path):
    import dcn_keras

    source = preset_model(num_patches=4)
    source.save(str(tmp_path / "dcn.keras"))
    base = str(tmp_path / "out")
    path = export_from(str(tmp_path / "dcn.keras"), base, "m", format="weights")
    assert path == os.path.join(base, "m.weights.h5") and os.listdir(base) == ["m.weights.h5"]
    loaded = dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist", weights=path)
    images = random_images(2)
    np.testing.assert_allclose(loaded(images)["coarse_probabilities"],
                               source(images)["coarse_probabilities"], atol=1e-7)
    other = export_from(str(tmp_path / "dcn.keras"), base, "m", format="weights",
                        output=str(tmp_path / "x" / "y.weights.h5"))
    assert os.path.isfile(other)
    with pytest.raises(ValueError, match="y.h5 must end in .weights.h5"):
        export_from(str(tmp_path / "dcn.keras"), base, "m", format="weights", output=str(tmp_path / "y.h5"))
    with pytest.raises(ValueError, match="format='onnx' is not valid; choose one of: saved_model, weights"):
        export_from(str(tmp_path / "dcn.keras"), base, "m", format="onnx")


def test_number_strings_read_the_heads_and_multiply_their_confidences():
    from dcn_keras.serving.export import number_strings

    def one_hot(classes, size, top=0.9):
        rows = np.full((len(classes), size), (1 - top) / (size - 1), np.float32)
        rows[np.arange(len(classes)), classes] = top
        return rows

    # Lengths 3, 1 and 5; "no digit" (10) inside the first number reads "?".
    probabilities = {"length": one_hot([3, 1, 5], 6)}
    digits = [[4, 7, 1], [10, 10, 2], [1, 10, 3], [10, 10, 4], [10, 10, 5]]
    for i, column in enumerate(digits, 1):
        probabilities[f"digit_{i}"] = one_hot(column, 11, top=0.5 if i == 2 else 0.9)
    number, confidence = number_strings({k: tf.constant(v) for k, v in probabilities.items()})
    assert [n.decode() for n in number.numpy()] == ["4?1", "7", "12345"]
    np.testing.assert_allclose(confidence, [0.9 ** 5 * 0.5] * 3, rtol=1e-6)


def test_a_multi_digit_baseline_is_served_with_its_heads_and_number():
    from dcn_keras.models import DynamicCapacityNetwork
    from dcn_keras.serving.export import flat_outputs

    baseline = DynamicCapacityNetwork.from_preset("svhn").coarse_only_model()
    images = random_images(2, (64, 64, 3))
    flat = flat_outputs(baseline, tf.constant(images))
    logits = baseline(images)
    for head, value in logits.items():
        np.testing.assert_allclose(flat[f"probabilities_{head}"], tf.nn.softmax(value), atol=1e-6)
        np.testing.assert_array_equal(flat[f"classes_{head}"], np.argmax(value, -1))
    assert flat["number"].shape == (2,) and "saliency" not in flat
    lengths = np.argmax(logits["length"], -1)
    assert [len(n) for n in flat["number"].numpy()] == lengths.tolist()


def test_export_from_serves_a_model_at_another_image_size(tmp_path):
    source = preset_model(num_patches=4)
    source.save(str(tmp_path / "dcn.keras"))
    path = export_from(str(tmp_path / "dcn.keras"), str(tmp_path / "out"), "m", xla=False, image_size=64)
    served = tf.saved_model.load(path).signatures["serving_default"]
    images = random_images(2, shape=(64, 64, 1), seed=5)
    expected = source.with_settings(image_shape=(64, 64, 1))(images)
    np.testing.assert_allclose(served(images=tf.constant(images))["probabilities"], expected["probabilities"],
                               atol=1e-5)
    with pytest.raises(ValueError, match="image_size=0 must be an integer >= 1"):
        export_from(str(tmp_path / "dcn.keras"), str(tmp_path / "out"), "m", image_size=0)


def test_export_from_serves_a_fine_pass_per_block_with_the_patch_by_patch_outputs(tmp_path):
    from dcn_keras.models import DynamicCapacityNetwork

    keras.utils.set_random_seed(0)
    source = DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=12, fine_tile=1)
    source.save(str(tmp_path / "dcn.keras"))
    path = export_from(str(tmp_path / "dcn.keras"), str(tmp_path / "out"), "m", fine_tile=3)
    loaded = tf.saved_model.load(path)
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert "Unique" in ops  # The blocks' pass is what is served.
    images = tf.constant(random_images(3, shape=(64, 64, 3), seed=2))
    expected = source(images)["probabilities"]
    for signature in ("serving_default", "serving_xla"):
        served = loaded.signatures[signature](images=images)
        for head, value in expected.items():
            np.testing.assert_allclose(served[f"probabilities_{head}"], value, atol=1e-5)
    preset_model(num_patches=4).save(str(tmp_path / "padded.keras"))
    with pytest.raises(ValueError, match=r"fine_tile=2 needs a fine tower of unpadded layers"):
        export_from(str(tmp_path / "padded.keras"), str(tmp_path / "out"), "p", fine_tile=2)


def test_the_xla_signature_of_a_fine_pass_per_block_runs_patch_by_patch(tmp_path):
    from dcn_keras.models import DynamicCapacityNetwork

    keras.utils.set_random_seed(0)
    model = DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=12)
    assert model.fine_tile == 4
    loaded = tf.saved_model.load(export_model(model, str(tmp_path / "m" / "1")))

    def ops(signature):
        graph = loaded.signatures[signature].graph.as_graph_def()
        return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}

    assert "Unique" in ops("serving_default") and "Unique" not in ops("serving_xla")
    assert saved_model_stored_values(str(tmp_path / "m" / "1")) == model.count_params()
