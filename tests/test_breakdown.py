import numpy as np

from dcn_keras import breakdown
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from tests.helpers import preset_model


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
