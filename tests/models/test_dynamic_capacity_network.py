import numpy as np
import pytest
import tensorflow as tf

import dcn_keras
from dcn_keras import presets
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.backend import keras
from tests.helpers import preset_model
from tests.helpers import random_images
from tests.helpers import traced_ops
from tests.helpers import variable_groups


def test_outputs_have_the_documented_keys_shapes_and_dtypes():
    out = preset_model()(random_images(3), training=False)
    assert out["probabilities"].shape == (3, 10)
    assert out["coarse_probabilities"].shape == (3, 10)
    assert out["saliency"].shape == (3, 23, 23) and out["saliency"].dtype == tf.float32
    assert out["locations"].shape == (3, 8, 2) and out["locations"].dtype == tf.int32
    assert out["patch_boxes"].shape == (3, 8, 4)
    np.testing.assert_allclose(tf.reduce_sum(out["probabilities"], -1), 1.0, rtol=1e-5)


def test_saliency_matches_an_independent_tape_and_locations_are_its_top_k():
    model = preset_model()
    images = tf.constant(random_images(4, seed=1))
    out = model(images)
    with tf.GradientTape() as tape:
        grid = model.coarse(images)
        tape.watch(grid)
        p = tf.nn.softmax(model.top(grid))
        entropy = -tf.reduce_sum(p * tf.math.log(p + 1e-30), -1)
    expected = tf.norm(tape.gradient(entropy, grid), axis=-1).numpy()
    np.testing.assert_allclose(out["saliency"], expected, rtol=1e-4, atol=1e-8)
    for b in range(4):
        ranked = np.argsort(-expected[b].ravel())[:8]
        chosen = [r * 23 + c for r, c in out["locations"][b].numpy()]
        assert sorted(chosen) == sorted(ranked.tolist())


def _numpy_fine_vectors(model, images, locations):
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    patches = [
        padded[b, 4 * r : 4 * r + 14, 4 * c : 4 * c + 14]
        for b in range(len(images))
        for r, c in locations[b]
    ]
    vectors = model.fine(np.stack(patches)).numpy()
    return vectors.reshape(len(images), len(locations[0]), -1)


@pytest.mark.parametrize("num_patches", [8, 529])
def test_refined_grid_is_coarse_except_fine_vectors_at_the_right_windows(num_patches):
    # With all 529 cells selected, every border cell is checked too.
    model = preset_model(num_patches=num_patches)
    images = random_images(2, seed=2)
    out = model.forward(images)
    grid, refined = out.grid.numpy(), out.refined_grid.numpy()
    locations = out.locations.numpy()
    fine = _numpy_fine_vectors(model, images, locations)
    expected = grid.copy()
    for b in range(2):
        for (r, c), v in zip(locations[b], fine[b]):
            expected[b, r, c] = v
    np.testing.assert_allclose(refined, expected, rtol=1e-5, atol=1e-6)
    changed = np.any(refined != grid, axis=-1).sum()
    assert changed > 0 and changed <= 2 * num_patches


def _one_sgd_step(model, images, labels):
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = {k: [v.numpy().copy() for v in vs] for k, vs in variable_groups(model).items()}
    model.train_on_batch(images, labels)
    return {
        k: [v.numpy() - b for v, b in zip(vs, before[k])]
        for k, vs in variable_groups(model).items()
    }


def test_hint_term_changes_the_coarse_update_and_nothing_else():
    images, labels = random_images(8, seed=3), np.arange(8) % 10
    without = preset_model(hint_weight=0.0)
    with_hint = preset_model(hint_weight=50.0)
    with_hint.set_weights(without.get_weights())
    a = _one_sgd_step(without, images, labels)
    b = _one_sgd_step(with_hint, images, labels)
    for name in ("fine", "top"):
        for da, db in zip(a[name], b[name]):
            np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-8)
    gap = max(np.abs(da - db).max() for da, db in zip(a["coarse"], b["coarse"]))
    assert gap > 1e-6


def test_mirrored_strategy_matches_one_device_for_the_same_global_batch():
    images, labels = random_images(8, seed=4), np.arange(8) % 10
    single = preset_model()
    weights = single.get_weights()
    single.compile(optimizer=keras.optimizers.SGD(0.5))
    single.fit(images, labels, batch_size=8, epochs=1, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = preset_model()
        mirrored.set_weights(weights)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5))
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    mirrored.fit(dataset, epochs=1, verbose=0)
    moved = max(np.abs(w - w0).max() for w, w0 in zip(single.get_weights(), weights))
    assert moved > 1e-4
    for w1, w2 in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_saliency_and_losses(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = preset_model()
    model.compile(optimizer="adam")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    images, labels = random_images(8, seed=5), np.arange(8) % 10
    before = model.coarse.get_weights()[0].copy()
    logs = model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history
    assert all(np.isfinite(v[0]) for v in logs.values())
    assert np.abs(model.coarse.get_weights()[0] - before).max() > 0
    out = model(images[:2])
    assert out["saliency"].dtype == tf.float32
    assert out["probabilities"].dtype == tf.float32


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = preset_model(num_patches=5, hint_weight=0.3, gather="extract_patches", top_pass="full")
    model.compile(optimizer="adam")
    images = random_images(3, seed=6)
    model.fit(images, np.arange(3), epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, dcn_keras.DynamicCapacityNetwork)
    assert (loaded.num_patches, loaded.hint_weight, loaded.gather, loaded.top_pass) == (
        5, 0.3, "extract_patches", "full")
    assert loaded.incremental_top is None and loaded.with_num_patches(4).top_pass == "full"
    a, b = model(images), loaded(images)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_keras_export_needs_no_input_signature_and_serves_any_batch_size(tmp_path):
    model = preset_model(num_patches=3)
    model.export(str(tmp_path / "saved"), verbose=False)
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    for batch in (1, 3):
        images = random_images(batch, seed=batch)
        out, expected = serve(images=tf.constant(images)), model(images)
        np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(out["locations"], expected["locations"])


def test_fit_evaluate_predict_on_datasets_and_arrays_report_every_term():
    model = preset_model()
    model.compile(optimizer="adam")
    images, labels = random_images(8, seed=7), np.arange(8) % 10
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history
    expected = {"loss", "refined_loss", "coarse_loss", "hint_loss", "accuracy", "coarse_accuracy"}
    assert set(history) == expected
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    assert set(model.evaluate(dataset, verbose=0, return_dict=True)) == expected
    predicted = model.predict(dataset, verbose=0)
    assert predicted["probabilities"].shape == (8, 10)
    assert predicted["locations"].shape == (8, 8, 2)


def test_fine_and_coarse_baselines_share_the_towers():
    model = preset_model()
    images = random_images(2, seed=8)
    fine_model, coarse_model = model.fine_only_model(), model.coarse_only_model()
    padded = np.pad(images, ((0, 0), (2, 0), (2, 0), (0, 0)))
    np.testing.assert_allclose(fine_model(images), model.top(model.fine(padded)), rtol=1e-5)
    np.testing.assert_allclose(coarse_model(images), model.top(model.coarse(images)), rtol=1e-5)
    assert model.fine(padded).shape[1:3] == (23, 23)


def test_with_num_patches_shares_weights_and_refines_more_cells():
    model = preset_model()
    images = random_images(2, seed=9)
    more = model.with_num_patches(16)
    assert more.num_patches == 16 and more.fine is model.fine and more.top is model.top
    out, out_more = model(images), more(images)
    np.testing.assert_allclose(out_more["saliency"], out["saliency"], rtol=1e-6)
    # top_k ranks cells, so the 16 cells start with the 8 most salient.
    np.testing.assert_array_equal(out_more["locations"][:, :8], out["locations"])
    assert not np.allclose(out_more["probabilities"], out["probabilities"])
    with pytest.raises(ValueError, match=r"num_patches=600 must be an int in \[1, 529\]"):
        model.with_num_patches(600)


def test_with_settings_changes_a_setting_and_keeps_the_rest_and_the_weights():
    model = preset_model(num_patches=4, coarse_weight=0.3)
    full = model.with_settings(top_pass="full")
    assert full.top_pass == "full" and full.incremental_top is None
    assert (full.num_patches, full.coarse_weight, full.coarse) == (4, 0.3, model.coarse)
    images = random_images(2, seed=3)
    np.testing.assert_allclose(full(images)["probabilities"], model(images)["probabilities"], atol=1e-6)
    with pytest.raises(ValueError, match="with_settings\\(\\) cannot change \\['top'\\]; it changes: "):
        model.with_settings(top=model.top)


def _towers(**kwargs):
    return presets.cluttered_mnist_towers(**kwargs)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: preset_model(num_patches=0), r"num_patches=0 .*\[1, 529\]"),
        (lambda: preset_model(num_patches=530), r"num_patches=530 .*\[1, 529\]"),
        (lambda: preset_model(image_shape=(100, 100, 3)), "3 channels"),
        (lambda: preset_model(image_shape=(10, 10, 1)), r"too small for the coarse tower"),
        (lambda: preset_model(image_shape=(12, 12, 1)), r"12x12 are smaller than the 14x14 fine patch"),
        (lambda: preset_model(patch_size=18, patch_offset=-2), "exactly one fine vector"),
        (lambda: preset_model(patch_size=13), "exactly one fine vector"),
        (lambda: preset_model(gather="glimpse"), "gather"),
        (lambda: preset_model(top_pass="sparse"), r"`top_pass` must be one of .*'sparse'"),
        (lambda: preset_model(hint_weight=-1), "hint_weight"),
        (
            lambda: dcn_keras.DynamicCapacityNetwork(
                coarse=_towers()["coarse"],
                fine=_towers(features=16)["fine"],
                top=_towers()["top"],
                image_shape=(100, 100, 1),
            ),
            "24 channels but fine vectors have 16",
        ),
        (lambda: dcn_keras.DynamicCapacityNetwork.from_preset("imagenet"), "cluttered_mnist"),
    ],
)
def test_bad_configuration_raises_a_clear_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "images,message",
    [
        (np.zeros((2, 64, 64, 1), np.float32), r"shape \(None, 100, 100, 1\).*\(2, 64, 64, 1\)"),
        (np.zeros((2, 100, 100, 3), np.float32), r"\(2, 100, 100, 3\)"),
        (np.zeros((100, 100, 1), np.float32), r"\(100, 100, 1\)"),
        (np.zeros((2, 100, 100, 1), np.uint8), "uint8"),
        (np.zeros((0, 100, 100, 1), np.float32), "empty batch"),
    ],
)
def test_bad_images_raise_a_clear_value_error(images, message):
    with pytest.raises(ValueError, match=message):
        preset_model()(images)


def test_compile_rejects_a_loss():
    with pytest.raises(ValueError, match="built-in objective"):
        preset_model().compile(optimizer="adam", loss="mse")


def _random_biases(model, seed=1):
    # Zero biases leave many ReLUs at their kink; random ones make the test general.
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "bias" in v.path:
            v.assign(rng.normal(0, 0.05, v.shape).astype(np.float32))


@pytest.mark.parametrize("preset,shape", [("cluttered_mnist", (100, 100, 1)), ("svhn", (64, 64, 3))])
def test_incremental_and_full_top_passes_give_the_same_outputs(preset, shape):
    incremental = dcn_keras.DynamicCapacityNetwork.from_preset(preset)
    _random_biases(incremental)
    assert incremental.incremental_top is not None
    full = dcn_keras.DynamicCapacityNetwork(
        incremental.coarse, incremental.fine, incremental.top, image_shape=shape,
        num_patches=incremental.num_patches, top_pass="full")
    images = tf.constant(random_images(4, shape, seed=7))
    a, b = tf.function(incremental)(images), tf.function(full)(images)
    np.testing.assert_array_equal(a["locations"], b["locations"])
    np.testing.assert_allclose(a["saliency"], b["saliency"], rtol=1e-5, atol=1e-9)
    for key in ("probabilities", "coarse_probabilities"):
        for x, y in zip(tf.nest.flatten(a[key]), tf.nest.flatten(b[key])):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _op_types(model, images, training=False):
    return [op.type for op in traced_ops(lambda x: model.forward(x, training=training).logits, images)]


def test_the_incremental_top_pass_runs_one_top_convolution_fewer_and_not_in_training():
    model = preset_model()
    full = dcn_keras.DynamicCapacityNetwork(
        model.coarse, model.fine, model.top, image_shape=model.image_shape, top_pass="full")
    images = tf.constant(random_images(2))
    # Coarse 2, fine 5, the top's forward and its phase-form gradient: 9; the full pass adds the top again.
    incremental = _op_types(model, images)
    assert incremental.count("Conv2D") == 9 and "TensorScatterAdd" in incremental
    assert _op_types(full, images).count("Conv2D") == 10
    # Training: the top runs twice on whole grids (the saliency's gradient is Conv2D's own there).
    trained = _op_types(model, images, training=True)
    assert trained.count("Conv2D") == 9 and "Conv2DBackpropInput" in trained
    assert "TensorScatterUpdate" in trained and "TensorScatterAdd" not in trained


def test_a_top_that_cannot_be_split_takes_the_full_pass():
    towers = _towers()
    grid = keras.Input((None, None, 24))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(grid)
    top = keras.Model(grid, keras.layers.Dense(10)(keras.layers.GlobalMaxPooling2D()(h)))
    model = dcn_keras.DynamicCapacityNetwork(towers["coarse"], towers["fine"], top, image_shape=(100, 100, 1))
    assert model.top_pass == "incremental" and model.incremental_top is None
    out = model(random_images(2))
    assert out["probabilities"].shape == (2, 10)


def test_a_fine_pass_per_block_gives_the_patch_by_patch_outputs_and_trains():
    keras.utils.set_random_seed(0)
    patches = dcn_keras.DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(96, 96, 3),
                                                           num_patches=24, fine_tile=1)
    _random_biases(patches)
    images = tf.constant(random_images(3, (96, 96, 3), seed=5))
    expected = tf.function(patches)(images)
    for tile in (2, 4):
        tiled = patches.with_settings(fine_tile=tile)
        assert tiled.fine_tile == tile and tiled.tile_gather.tile == tile
        got = tf.function(tiled)(images)
        np.testing.assert_array_equal(got["locations"], expected["locations"])
        for x, y in zip(tf.nest.flatten(got["probabilities"]), tf.nest.flatten(expected["probabilities"])):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Training takes the same path: the fine tower's gradients flow through the blocks.
    tiled = patches.with_settings(fine_tile=3)
    tiled.compile(optimizer="adam")
    labels = {"length": np.array([1, 2, 3]), **{f"digit_{i}": np.array([i, 10, 10]) for i in range(1, 6)}}
    before = [v.numpy().copy() for v in tiled.fine.trainable_variables]
    tiled.fit(images, labels, epochs=1, batch_size=3, verbose=0)
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before, tiled.fine.trainable_variables))
    again = dcn_keras.DynamicCapacityNetwork.from_config(tiled.get_config())
    assert again.fine_tile == 3


@pytest.mark.parametrize("fine_tile,message", [
    (0, r"fine_tile=0 must be an int >= 1"),
    (True, r"fine_tile=True must be an int >= 1"),
    # Padded convolutions: a block's window is not its cells' patches (though its grid is 2x2).
    (2, r"fine_tile=2 needs a fine tower of unpadded layers that maps a 18x18 window to a 2x2 grid "
        r".* this one pads in fine_conv2, fine_conv3, fine_conv4"),
])
def test_a_fine_pass_per_block_needs_a_valid_tile_and_a_patch_exact_tower(fine_tile, message):
    with pytest.raises(ValueError, match=message):
        preset_model(fine_tile=fine_tile)


def test_every_copy_keeps_every_setting_it_does_not_change_class_names_included():
    from dcn_keras.models.settings import SETTINGS

    names = [f"c{i}" for i in range(10)]
    model = preset_model(num_patches=5, coarse_weight=0.3, hint_weight=0.5, exit_threshold=0.9, saliency="cam",
                         top_pass="full", class_names=names)
    values = {name: getattr(model, name) for name in SETTINGS}
    assert values["class_names"] == tuple(names)
    for changed, value in [("num_patches", 7), ("top_pass", "incremental"), ("exit_threshold", None),
                           ("saliency", "entropy_gradient"), ("class_names", None)]:
        copy = model.with_settings(**{changed: value})
        assert getattr(copy, changed) == value
        assert {n: getattr(copy, n) for n in SETTINGS if n != changed} == {
            n: v for n, v in values.items() if n != changed}, changed
    assert model.with_num_patches(9).class_names == tuple(names)
    restored = DynamicCapacityNetwork.from_config(model.get_config())
    assert {n: getattr(restored, n) for n in SETTINGS} == values


def test_an_export_with_another_k_keeps_the_class_name_output(tmp_path):
    import tensorflow as tf

    from dcn_keras.serving import export_model

    names = ("cat", "dog", "fox")
    model = DynamicCapacityNetwork.from_preset("images", image_shape=(48, 48, 3), num_classes=3, class_names=names)
    served = tf.saved_model.load(export_model(model.with_num_patches(2), str(tmp_path / "s" / "1"), xla=False))
    out = served.signatures["serving_default"](images=tf.zeros((1, 48, 48, 3)))
    assert out["class_name"].numpy()[0].decode() in names and out["locations"].shape == (1, 2, 2)
