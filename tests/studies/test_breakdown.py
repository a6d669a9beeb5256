import numpy as np
import pytest

from dcn_keras.studies import breakdown
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.phase_gradient_conv2d import phase_kernel
from dcn_keras.layers.phase_gradient_conv2d import phase_products
from tests.helpers import preset_model
from tests.helpers import traced_ops


def test_only_single_path_networks_are_cut_into_layers():
    from dcn_keras.models import DynamicCapacityNetwork

    dcn = preset_model()
    assert [layer.name for layer in breakdown.chain_layers(dcn.coarse)] == ["coarse_conv1", "coarse_conv2"]
    x = keras.Input((4,))
    branching = keras.Model(x, keras.layers.Add()([keras.layers.Dense(4)(x), keras.layers.Dense(4)(x)]))
    multi_head = DynamicCapacityNetwork.from_preset("svhn").top
    for model in (branching, multi_head, dcn.fine_only_model()):  # The last nests towers.
        assert breakdown.chain_layers(model) is None
    grids = tf.constant(np.random.default_rng(0).random((2, 6, 6, 48), dtype=np.float32))
    times = breakdown.time_layers(multi_head, grids, warmup=1, repeats=1)
    assert list(times) == ["whole"] and times["whole"] > 0


def test_a_network_timed_whole_is_timed_through_every_output():
    # Outputs that do not feed the fetched number would be pruned, not timed.
    outputs = {"a": tf.ones([2, 3]), "b": tf.ones([2, 5], dtype="bfloat16")}
    with tf.GradientTape() as tape:
        tape.watch(outputs)
        number = breakdown._one_number(outputs)
    grads = tape.gradient(number, outputs)
    assert all(grads[name] is not None for name in outputs)
    assert float(number) == 3 + 5


def test_the_full_top_pass_is_timed_with_its_scatter_stage():
    images = tf.constant(np.random.default_rng(1).random((2, 100, 100, 1), dtype=np.float32))
    parts = breakdown.time_parts(preset_model(top_pass="full"), images, warmup=1, repeats=1)
    assert list(parts) == ["coarse", "saliency", "top_k", "gather", "fine", "scatter", "top", "whole"]
    assert all(ms > 0 for ms in parts.values())


def _op_counts(fn, args, types):
    ops = [op.type for op in traced_ops(fn, *args)]
    return {t: ops.count(t) for t in types}


def test_the_floor_runs_the_dcns_convolutions_and_pools_and_nothing_else():
    images = tf.constant(np.random.default_rng(2).random((3, 100, 100, 1), dtype=np.float32))
    kinds = ("Conv2D", "MaxPool", "TopKV2", "GatherV2", "TensorScatterAdd", "TensorScatterUpdate",
             "Softmax", "MatMul")
    for top_pass, top_convolutions in (("incremental", 2), ("full", 3)):
        dcn = preset_model(num_patches=2, top_pass=top_pass)
        fn, args = breakdown.convolution_floor(dcn, images)
        pass_counts = _op_counts(lambda x: dcn(x)["probabilities"], (images,), kinds)
        floor_counts = _op_counts(fn, args, kinds)
        # coarse 2 + fine 5 + the top's: forward, saliency backward (+ refined, full pass).
        assert floor_counts["Conv2D"] == pass_counts["Conv2D"] == 7 + top_convolutions
        assert floor_counts["MaxPool"] == pass_counts["MaxPool"] == 2
        assert all(floor_counts[t] == 0 for t in kinds[2:]), floor_counts
        assert pass_counts["TopKV2"] == 1

    # The number it returns is made of the real maps: the first image's.
    conv = dcn.top.get_layer("top_conv")
    grid = dcn.coarse(images)
    pre = tf.nn.conv2d(grid, conv.kernel, 2, "VALID") + conv.bias
    out = dcn.forward(images)
    patches = tf.reshape(dcn.patch_gather(images, out.locations), [-1, 14, 14, 1])
    phased = phase_products(pre, phase_kernel(conv.kernel, 2))
    expected = breakdown._one_number([pre, phased, dcn.fine(patches), pre])
    np.testing.assert_allclose(tf.function(fn)(*args), expected, rtol=1e-5)


def test_the_floor_runs_its_convolutions_one_after_another():
    # Control dependencies chain them as the pass does; independent, the
    # inter-op pool would overlap them and time less than the pass could.
    dcn = preset_model(num_patches=2)
    images = tf.constant(np.random.default_rng(3).random((2, 100, 100, 1), dtype=np.float32))
    fn, args = breakdown.convolution_floor(dcn, images)
    convolutions = [op for op in traced_ops(fn, *args) if op.type == "Conv2D"]

    def ancestors(op, seen):
        for parent in [t.op for t in op.inputs] + list(op.control_inputs):
            if parent not in seen:
                seen.add(parent)
                ancestors(parent, seen)
        return seen

    # Each convolution (in creation order) depends on the one before it.
    for before, after in zip(convolutions, convolutions[1:]):
        assert before in ancestors(after, set()), (before.name, after.name)


def test_the_floor_names_a_top_it_cannot_split():
    from dcn_keras.models import DynamicCapacityNetwork

    dcn = preset_model()
    grid = keras.Input((None, None, 24))
    pooled = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(8, 3, padding="same")(grid))
    top = keras.Model(grid, keras.layers.Dense(10)(pooled), name="same_padded_top")
    dcn = DynamicCapacityNetwork(coarse=dcn.coarse, fine=dcn.fine, top=top, image_shape=dcn.image_shape)
    images = tf.constant(np.random.default_rng(4).random((1, 100, 100, 1), dtype=np.float32))
    with pytest.raises(ValueError, match=r"floor needs a top network .*'same_padded_top' does not"):
        breakdown.convolution_floor(dcn, images)
