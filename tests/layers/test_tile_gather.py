import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers import PatchGather
from dcn_keras.layers import TileGather
from dcn_keras.presets.blocks import patch_exact_fine_tower
from tests.layer_test import run_layer_test


def _locations(rng, grid, batch, k):
    # The grid's corners and random cells: blocks past the grid's edge read padding.
    corners = [(0, 0), (0, grid[1] - 1), (grid[0] - 1, 0), (grid[0] - 1, grid[1] - 1)]
    return np.array([corners + [tuple(rng.integers(0, grid)) for _ in range(k - 4)] for _ in range(batch)],
                    np.int32)


@pytest.mark.parametrize("method", ["index", "extract_patches"])
@pytest.mark.parametrize("tile", [1, 2, 3, 5])
def test_picked_vectors_are_the_fine_towers_vectors_of_each_cells_own_patch(method, tile):
    keras.utils.set_random_seed(0)
    fine = patch_exact_fine_tower(3, 8)
    rng = np.random.default_rng(tile)
    grid, offset = (13, 11), (-2, 3)  # Uneven grid (blocks cut at its edges), a padded and a shifted side.
    images = rng.random((3, 4 * 12 + 10, 4 * 10 + 16, 3), dtype=np.float32)
    locations = _locations(rng, grid, 3, 9)
    patches = PatchGather(14, 4, offset, grid, method=method)(images, locations)
    expected = np.reshape(fine(np.reshape(patches, (-1, 14, 14, 3))), (3, 9, 8))

    windows, pick = TileGather(14, 4, offset, grid, tile=tile, method=method)(images, locations)
    assert windows.shape[1:] == (14 + 4 * (tile - 1),) * 2 + (3,)
    blocks = {(b, r // tile, c // tile) for b, cells in enumerate(locations) for r, c in cells}
    assert windows.shape[0] == len(blocks)  # One window per block holding a chosen cell.
    got = tf.gather(tf.reshape(fine(windows), [-1, 8]), pick)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_block_chosen_in_two_images_is_cut_from_each():
    images = np.stack([np.zeros((30, 30, 1), np.float32), np.ones((30, 30, 1), np.float32)])
    locations = np.array([[[0, 0], [0, 1]], [[1, 1], [0, 0]]], np.int32)
    windows, pick = TileGather(14, 4, 0, (5, 5), tile=2)(images, locations)
    assert windows.shape[0] == 2
    np.testing.assert_array_equal(np.asarray(windows).max(axis=(1, 2, 3)), [0.0, 1.0])
    np.testing.assert_array_equal(pick, [[0, 1], [7, 4]])  # Window * 4 + row-major place in its block.


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(tile=0), r"`tile` must be an int >= 1; got 0"),
        (dict(tile=True), r"`tile` must be an int >= 1; got True"),
        (dict(tile=2.0), r"`tile` must be an int >= 1; got 2.0"),
        (dict(method="glimpse"), r"`method` must be one of .*'glimpse'"),
        (dict(patch_size=0), r"`patch_size` must be an int or a pair of ints >= 1; got 0"),
    ],
)
def test_bad_arguments_raise_a_clear_value_error(kwargs, message):
    args = {**dict(patch_size=14, strides=4, offset=0, grid_shape=(5, 5)), **kwargs}
    with pytest.raises(ValueError, match=message):
        TileGather(**args)


def test_config_round_trip():
    layer = TileGather((14, 12), strides=(4, 2), offset=(-2, 1), grid_shape=(7, 9), tile=3,
                       method="extract_patches", name="tiles")
    again = TileGather.from_config(layer.get_config())
    for name in ("patch_size", "strides", "offset", "grid_shape", "tile", "method", "name",
                 "window_size", "tile_grid"):
        assert getattr(again, name) == getattr(layer, name)
    assert (again.window_size, again.tile_grid) == ((22, 16), (3, 3))  # 14 + 2 * 4, 12 + 2 * 2.


def test_a_tower_that_pads_or_misses_the_block_grid_is_refused():
    keras.utils.set_random_seed(0)
    layer = TileGather(14, 4, 0, (5, 5), tile=2)
    layer.check_fine_tower(patch_exact_fine_tower(3, 8), 3)  # Exact: no error.
    x = keras.Input((None, None, 3))
    padded = keras.Model(x, keras.layers.Conv2D(8, 14, padding="same", name="wide")(x))
    with pytest.raises(ValueError, match=r"tile=2 needs .* 18x18 window to a 2x2 grid .* this one pads in wide"):
        layer.check_fine_tower(padded, 3)
    coarse_step = keras.Model(x, keras.layers.Conv2D(8, 14, strides=8, name="big_step")(x))
    with pytest.raises(ValueError, match=r"this one gives 1x1\. Use tile=1"):
        layer.check_fine_tower(coarse_step, 3)


def test_the_layer_contract_holds(tmp_path):
    images = np.random.default_rng(0).random((2, 9, 9, 1), dtype=np.float32)
    # Image 0's two cells share one 2x2 block, image 1's lie in two: three windows.
    locations = np.array([[[0, 0], [0, 1]], [[0, 0], [3, 3]]], np.int32)
    args = {"patch_size": (3, 3), "strides": (2, 2), "offset": (0, 0), "grid_shape": (4, 4), "tile": 2}
    windows, pick = run_layer_test(TileGather, args, [images, locations], [(3, 5, 5, 1), (2, 2)],
                                   tmp_path=tmp_path)
    np.testing.assert_array_equal(np.asarray(windows)[0], images[0, :5, :5])
