import numpy as np
import pytest
import tensorflow as tf

from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models.class_activation_map import ClassActivationMap
from tests.helpers import preset_model
from tests.helpers import random_images
from tests.helpers import traced_ops


def _numpy_cam(model, images, top_class=False):
    """The CAM saliency from the layers' weights, in NumPy, independently of the model's code."""
    grid = model.coarse(images).numpy()
    kernel, bias = (w.numpy() for w in model.top.get_layer("top_conv").weights)
    dense = model.top.get_layer("logits").get_weights()[0]  # [F, C]
    batch, rows, cols, _ = grid.shape
    kh, kw, _, filters = kernel.shape
    out_rows, out_cols = (rows - kh) // 2 + 1, (cols - kw) // 2 + 1
    activation = np.zeros((batch, out_rows, out_cols, filters))
    for q in range(out_rows):
        for r in range(out_cols):
            window = grid[:, 2 * q:2 * q + kh, 2 * r:2 * r + kw, :]
            activation[:, q, r] = np.einsum("bhwc,hwcf->bf", window, kernel) + bias
    activation = np.maximum(activation, 0)
    pool = model.top.get_layer("top_pool")
    if isinstance(pool, keras.layers.GlobalMaxPooling2D):
        attention, pooled = 1.0, activation.max(axis=(1, 2))
    else:  # AttentionPooling2D: a softmax over positions of a linear score.
        score_kernel, score_bias = (w.numpy() for w in pool.weights)
        scores = np.einsum("bqrf,f->bqr", activation, score_kernel[:, 0]) + score_bias[0]
        attention = np.exp(scores - scores.max(axis=(1, 2), keepdims=True))
        attention /= attention.sum(axis=(1, 2), keepdims=True)
        pooled = np.einsum("bqr,bqrf->bf", attention, activation)
    logits = pooled @ dense + model.top.get_layer("logits").get_weights()[1]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    weights = np.eye(p.shape[-1])[p.argmax(-1)] if top_class else p
    scores = np.maximum(attention * np.einsum("bqrf,fc,bc->bqr", activation, dense, weights), 0)
    saliency = np.zeros((batch, rows, cols))
    for q in range(out_rows):
        for r in range(out_cols):
            saliency[:, 2 * q:2 * q + kh, 2 * r:2 * r + kw] += scores[:, q, r, None, None]
    return saliency, p


@pytest.mark.parametrize("top_pass,saliency_name", [("incremental", "cam"), ("full", "cam"),
                                                    ("incremental", "cam_top_class")])
def test_cam_saliency_is_the_numpy_class_activation_map_and_picks_its_top_k(top_pass, saliency_name):
    model = preset_model(saliency=saliency_name, top_pass=top_pass)
    images = random_images(3, seed=2)
    out = model.predict(images, verbose=0)
    saliency, p = _numpy_cam(model, images, top_class=saliency_name == "cam_top_class")
    np.testing.assert_allclose(out["saliency"], saliency, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["coarse_probabilities"], p, atol=1e-5)
    flat = out["saliency"].reshape(3, -1)
    chosen = np.sort(flat, axis=1)[:, ::-1][:, :8]
    picked = np.take_along_axis(flat, out["locations"][..., 0] * 23 + out["locations"][..., 1], axis=1)
    np.testing.assert_array_equal(np.sort(picked, axis=1)[:, ::-1], chosen)
    # The refined prediction is the DCN's on those cells.
    same_cells = preset_model(top_pass=top_pass)
    same_cells.set_weights(model.get_weights())
    gradient = same_cells.predict(images, verbose=0)["saliency"]
    assert model.saliency == saliency_name and not np.allclose(out["saliency"], gradient)


def test_cam_behind_an_attention_pool_weights_each_position_by_its_attention():
    # The megapixel_mnist top: conv, AttentionPooling2D, dense. The pool's
    # score starts at zero (an average pool); random scores make the
    # attention weights matter.
    model = DynamicCapacityNetwork.from_preset("megapixel_mnist", image_shape=(160, 160, 1), num_patches=4,
                                               saliency="cam")
    pool = model.top.get_layer("top_pool")
    rng = np.random.default_rng(0)
    pool.score_kernel.assign(rng.normal(0, 2, pool.score_kernel.shape).astype("float32"))
    images = random_images(2, shape=(160, 160, 1), seed=4)
    out = model.predict(images, verbose=0)
    saliency, p = _numpy_cam(model, images)
    np.testing.assert_allclose(out["coarse_probabilities"], p, atol=1e-5)
    np.testing.assert_allclose(out["saliency"], saliency, rtol=1e-4, atol=1e-7)
    # At a zero score (uniform attention) the map is another one, not the same map scaled.
    pool.score_kernel.assign(np.zeros(pool.score_kernel.shape, "float32"))
    uniform = model.predict(images, verbose=0)["saliency"]
    np.testing.assert_allclose(uniform, _numpy_cam(model, images)[0], rtol=1e-4, atol=1e-7)
    norm = lambda s: s / s.sum(axis=(1, 2), keepdims=True)
    assert not np.allclose(norm(uniform), norm(saliency), rtol=0.05)
    assert _gradient_ops(model, (160, 160, 1)) == []


def _gradient_ops(model, shape=(100, 100, 1)):
    ops = {op.type for op in traced_ops(lambda x: model(x), tf.zeros([2, *shape]))}
    return [op for op in ops if op.endswith("Grad") or "Backprop" in op or op == "BroadcastGradientArgs"]


def test_cam_inference_graph_has_no_gradient_op():
    assert _gradient_ops(preset_model(saliency="cam")) == []
    assert _gradient_ops(preset_model(saliency="cam", top_pass="full")) == []
    assert _gradient_ops(preset_model(saliency="cam_top_class")) == []
    assert _gradient_ops(preset_model())  # The entropy gradient's graph has them: the check can fail.


def test_a_top_without_a_class_activation_map_is_named():
    with pytest.raises(ValueError, match="needs the pool to feed one Dense layer that gives the top's logits; "
                                         "'top' has 'top_dense' after 'top_pool'"):
        DynamicCapacityNetwork.from_preset("svhn", saliency="cam")
    towers = presets.cluttered_mnist_towers()
    grid = keras.Input((None, None, 24))
    h = keras.layers.Conv2D(8, 4, strides=2, activation="tanh", name="c")(grid)
    top = keras.Model(grid, keras.layers.Dense(10)(keras.layers.GlobalMaxPooling2D()(h)))
    with pytest.raises(ValueError, match="first convolution to use ReLU; 'c' uses tanh"):
        ClassActivationMap(top)
    with pytest.raises(ValueError, match="saliency='gradcam' is not valid; choose one of: "
                                         "entropy_gradient, cam, cam_top_class"):
        DynamicCapacityNetwork(towers["coarse"], towers["fine"], towers["top"], image_shape=(100, 100, 1),
                               saliency="gradcam")


def test_cam_round_trips_and_trains(tmp_path):
    model = preset_model(saliency="cam")
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    assert loaded.saliency == "cam" and model.with_num_patches(4).saliency == "cam"
    images, labels = random_images(4, seed=3), np.arange(4)
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["saliency"],
                               model.predict(images, verbose=0)["saliency"], atol=1e-6)
    model.compile(optimizer="adam")
    before = [w.numpy().copy() for w in model.coarse.weights]
    logs = model.fit(images, labels, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["hint_loss"][0] > 0
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, model.coarse.weights))
