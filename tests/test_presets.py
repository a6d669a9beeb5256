import numpy as np
import pytest
import tensorflow as tf

from dcn_keras import DynamicCapacityNetwork
from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.layers import AttentionPooling2D
from tests.helpers import random_images


def _moved_feature(top, shift):
    # One strong feature vector on an empty 14x14 grid, moved `shift` cells right.
    grid = np.zeros((2, 14, 14, top.input_shape[-1]), np.float32)
    vector = np.random.default_rng(0).random(top.input_shape[-1]) * 5
    grid[0, 6, 2], grid[1, 6, 2 + shift] = vector, vector
    return {name: p.numpy() for name, p in top(grid).items()}


def test_the_positional_top_tells_where_a_digit_is_and_the_svhn_top_does_not():
    # Moved by whole top-conv strides, a lone feature gives the svhn top (global
    # pool) the same output: it cannot tell the first digit from the last.
    # The positional top's answer depends on the column.
    pooled = _moved_feature(presets.svhn_towers()["top"], shift=8)
    positional = _moved_feature(presets.svhn_positional_towers()["top"], shift=8)
    for name in pooled:
        np.testing.assert_allclose(pooled[name][0], pooled[name][1], rtol=1e-5, atol=1e-6)
    assert max(np.abs(p[0] - p[1]).max() for p in positional.values()) > 1e-3


def test_the_reader_top_reads_a_number_wherever_it_is_and_in_order():
    # The reader reads windows at every position and pools them by score: a
    # number moved by whole strides (4 cells) gives the same answer; its
    # digits in another order give another one. Any grid size runs.
    top = presets.svhn_reader_towers()["top"]
    pool = top.get_layer("top_pool")
    pool.score_kernel.assign(np.random.default_rng(1).normal(0, 0.3, pool.score_kernel.shape))
    rng = np.random.default_rng(0)
    digits = [rng.random(48).astype(np.float32) * 5 for _ in range(3)]

    def answer(row, col, order=(0, 1, 2), size=80):
        grid = np.zeros((1, size, size, 48), np.float32)
        for i, d in enumerate(order):
            grid[0, row:row + 3, col + 3 * i:col + 3 * i + 2] = digits[d]
        return {name: p.numpy()[0] for name, p in top(grid).items()}

    # A grid wide enough that the window (34 cells) never reaches the padding.
    here = answer(36, 30)
    for row, col in ((40, 34), (32, 42), (44, 26)):
        moved = answer(row, col)
        for name in here:
            np.testing.assert_allclose(moved[name], here[name], rtol=1e-5, atol=1e-5)
    swapped = answer(36, 30, order=(2, 1, 0))
    assert max(np.abs(swapped[name] - here[name]).max() for name in here) > 1e-3
    for size in (9, 31, 64):
        assert answer(2, 1, size=size)["digit_5"].shape == (11,)


def test_the_positional_preset_runs_on_any_grid_and_both_top_passes_agree():
    top = presets.svhn_positional_towers()["top"]
    for size in (14, 9, 20):  # AdaptiveMaxPooling2D: no spatial size is fixed.
        out = top(np.ones((1, size, size, 48), np.float32))
        assert out["length"].shape == (1, 6) and out["digit_5"].shape == (1, 11)
    model = DynamicCapacityNetwork.from_preset("svhn_positional")
    full = DynamicCapacityNetwork.from_preset("svhn_positional", top_pass="full")
    full.set_weights(model.get_weights())
    images = random_images(3, shape=(64, 64, 3), seed=2)
    fast, slow = model.predict(images, verbose=0), full.predict(images, verbose=0)
    assert model.incremental_top is not None
    np.testing.assert_array_equal(fast["locations"], slow["locations"])
    for name in fast["probabilities"]:
        np.testing.assert_allclose(fast["probabilities"][name], slow["probabilities"][name], atol=1e-5)


def test_the_positional_preset_exports_and_names_why_cam_does_not_fit(tmp_path):
    from dcn_keras.serving import export_model

    model = DynamicCapacityNetwork.from_preset("svhn_positional", num_patches=4)
    images = random_images(2, shape=(64, 64, 3), seed=3)
    served = tf.saved_model.load(export_model(model, str(tmp_path / "1"), xla=False))
    out = served.signatures["serving_default"](images=tf.constant(images))
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(out["probabilities_digit_1"], expected["probabilities"]["digit_1"], atol=1e-5)
    assert out["number"].shape == (2,)
    with pytest.raises(ValueError, match="saliency='cam' needs a global pooling layer right after the top's first "
                                         "convolution; 'top' has 'top_pool' there"):
        DynamicCapacityNetwork.from_preset("svhn_positional", saliency="cam")


def _patch_and_grid_vectors(dcn, images):
    # The fine tower's vector for every cell from its own patch, and from the padded image.
    g = dcn.geometry
    (top, _), (left, _) = g.padding
    padded = np.pad(images, ((0, 0), g.padding[0], g.padding[1], (0, 0)))
    rows, cols = g.grid_shape
    boxes = g.boxes(np.array([(i, j) for i in range(rows) for j in range(cols)])).numpy()
    patches = np.stack([padded[:, y0 + top:y1 + top, x0 + left:x1 + left] for y0, x0, y1, x1 in boxes], axis=1)
    from_patches = dcn.fine(patches.reshape((-1,) + patches.shape[2:])).numpy()
    return from_patches.reshape(len(images), rows, cols, -1), dcn.fine(padded).numpy()


def test_the_patch_exact_fine_tower_reads_each_patch_as_the_whole_image_does():
    images = random_images(2, shape=(64, 64, 3), seed=4)
    exact = DynamicCapacityNetwork.from_preset("svhn_patch_exact")
    from_patches, from_image = _patch_and_grid_vectors(exact, images)
    assert from_image.shape == (2, 14, 14, 48)
    np.testing.assert_allclose(from_patches, from_image, rtol=1e-4, atol=1e-5)
    # So the DCN with every cell refined is the fine model.
    every_cell = exact.with_num_patches(exact.geometry.num_cells).predict(images, verbose=0)["probabilities"]
    fine = exact.fine_only_model().predict(images, verbose=0)
    for name in fine:
        np.testing.assert_allclose(every_cell[name], tf.nn.softmax(fine[name]).numpy(), atol=1e-5)
    # The svhn fine tower pads its middle convolutions: its patch vectors are not its grid's.
    same_padded = DynamicCapacityNetwork.from_preset("svhn_positional")
    from_patches, from_image = _patch_and_grid_vectors(same_padded, images)
    assert np.linalg.norm(from_patches - from_image) > 0.05 * np.linalg.norm(from_image)


@pytest.mark.parametrize("shape, grid, patch, k", [
    ((64, 64, 3), (14, 14), (14, 14), 4),
    ((128, 96, 1), (30, 22), (14, 14), 6),
    ((256, 256, 3), (30, 30), (29, 29), 8),
    ((400, 300, 3), (23, 17), (59, 59), 4),
    ((1024, 1024, 3), (62, 62), (59, 59), 30),
])
def test_the_images_preset_sizes_its_patches_and_k_from_the_image(shape, grid, patch, k):
    model = DynamicCapacityNetwork.from_preset("images", image_shape=shape, num_classes=4)
    assert model.geometry.grid_shape == grid and model.geometry.patch_size == patch
    assert model.num_patches == k and model.top.outputs[0].shape[-1] == 4
    # k patches cover about a tenth of the image (at least 4 patches).
    assert k == 4 or abs(k * patch[0] * patch[1] / (shape[0] * shape[1]) - 0.1) < 0.01
    out = model(np.zeros((1, *shape), np.float32))
    assert out["probabilities"].shape == (1, 4)


def test_the_images_preset_pools_the_coarse_view_only_and_the_fine_tower_sees_every_pixel():
    model = DynamicCapacityNetwork.from_preset("images", image_shape=(512, 512, 1), num_classes=2)
    # Two patches with the same 4x4 block means: a fine checkerboard and flat grey.
    size = model.geometry.patch_size[0] + 1
    checker = (np.indices((size, size)).sum(0) % 2).astype(np.float32)[None, ..., None]
    grey = np.full_like(checker, 0.5)
    pooled = [keras.layers.AveragePooling2D(4)(x).numpy() for x in (checker, grey)]
    np.testing.assert_allclose(pooled[0][:, :-1, :-1], pooled[1][:, :-1, :-1])
    fine = [model.fine(x[:, :size - 1, :size - 1]).numpy() for x in (checker, grey)]
    assert np.abs(fine[0] - fine[1]).max() > 1e-3  # The fine tower tells them apart.
    coarse = [model.coarse(np.tile(x[:, :16, :16], (1, 4, 4, 1))).numpy() for x in (checker, grey)]
    np.testing.assert_allclose(coarse[0], coarse[1], atol=1e-5)  # The coarse view cannot.


def test_class_names_are_kept_served_and_checked(tmp_path):
    import tensorflow as tf

    from dcn_keras.serving import export_model

    names = ("cat", "dog", "fox")
    model = DynamicCapacityNetwork.from_preset("images", image_shape=(48, 48, 3), num_classes=3, class_names=names)
    model.save(str(tmp_path / "m.keras"))
    assert keras.models.load_model(str(tmp_path / "m.keras")).class_names == names
    served = tf.saved_model.load(export_model(model, str(tmp_path / "s" / "1"), xla=False))
    out = served.signatures["serving_default"](images=tf.zeros((2, 48, 48, 3)))
    assert [n.decode() for n in out["class_name"].numpy()] == [names[c] for c in out["classes"].numpy()]
    assert out["coarse_class_name"].dtype == tf.string
    with pytest.raises(ValueError, match="class_names has 2 names; the top has 3 classes"):
        DynamicCapacityNetwork.from_preset("images", image_shape=(48, 48, 3), num_classes=3, class_names=("a", "b"))


def test_the_megapixel_preset_reads_a_cheap_view_and_full_resolution_patches():
    from dcn_keras.studies.macs import model_macs

    model = DynamicCapacityNetwork.from_preset("megapixel_mnist")
    g = model.geometry
    assert (model.image_shape, g.grid_shape, g.stride, g.patch_size) == ((1500, 1500, 1), (93, 93), (16, 16), (46, 46))
    assert model.num_patches == 32
    macs = model_macs(model)
    # The coarse view costs tens of multiply-adds per pixel, the fine tower thousands.
    assert macs["parts"]["coarse_tower"] / 1500 ** 2 < 80
    assert macs["parts"]["fine_whole"] / 1500 ** 2 > 2000
    assert macs["fine"] / macs["dcn"] > 15
    # Trained on one canvas size, it runs on another (the attention pool has no size).
    small = DynamicCapacityNetwork.from_preset("megapixel_mnist", image_shape=(256, 256, 1), num_patches=8)
    small.set_weights(model.get_weights())
    out = small(np.zeros((2, 256, 256, 1), np.float32))
    assert out["probabilities"].shape == (2, 10) and out["patch_boxes"].shape == (2, 8, 4)


def test_the_reader_takes_a_named_pool_and_names_the_choices():
    heads = presets.svhn_reader_towers(pool="per_head")["top"]
    pools = [layer.name for layer in heads.layers if isinstance(layer, AttentionPooling2D)]
    assert sorted(pools) == sorted(f"top_pool_{name}" for name in heads.output_names)
    with pytest.raises(ValueError, match=r"pool='mean' is not valid; choose one of: attention, max, per_head\."):
        presets.svhn_reader_towers(pool="mean")


def test_the_reader_takes_its_widths_and_names_a_bad_one():
    towers = presets.svhn_reader_towers(rows_width=96, fine_widths=(32, 40, 80))
    assert towers["top"].get_layer("top_rows").filters == 96
    assert [towers["fine"].get_layer(f"fine_conv{i}").filters for i in range(1, 5)] == [32, 40, 80, 48]
    with pytest.raises(ValueError, match=r"rows_width=0 is not valid: give a positive integer\."):
        presets.svhn_reader_towers(rows_width=0)
    with pytest.raises(ValueError, match=r"widths=\(48, 48\) is not valid: give three positive integers"):
        presets.svhn_reader_towers(fine_widths=(48, 48))


def test_the_placed_reader_pools_a_narrow_reading_where_each_head_looks():
    top = presets.svhn_reader_towers(pool="per_head", near_width=16)["top"]
    pool = top.get_layer("top_pool_digit_2")
    assert [t.shape[-1] for t in pool.input] == [192, 16]  # Scored by the wide reading, both pooled.
    assert top.get_layer("top_dense_digit_2").kernel.shape[0] == 192 + 16
    grid = np.random.default_rng(0).random((1, 20, 30, 48), dtype=np.float32)
    near = keras.Model(top.input, top.get_layer("top_near").output)(grid).numpy()
    pooled = keras.Model(top.input, pool.output)(grid).numpy()
    np.testing.assert_allclose(pooled[0, 192:], near[0].mean((0, 1)), rtol=1e-5)  # A zero score: an average.
    with pytest.raises(ValueError, match=r"near_width=0 is not valid: give a positive integer, or None"):
        presets.svhn_reader_towers(near_width=0)
    with pytest.raises(ValueError, match=r"near_width needs an attention pool .* pool='max' has none"):
        presets.svhn_reader_towers(pool="max", near_width=8)
