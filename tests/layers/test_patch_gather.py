import numpy as np
import pytest

from dcn_keras.backend import keras
from dcn_keras.layers import PatchGather
from tests.layer_test import run_layer_test


def _numpy_patches(images, locations, patch, stride, offset):
    """Reference: zero-pad generously, then slice each window."""
    pad = 64
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = []
    for b, locs in enumerate(locations):
        row = []
        for r, c in locs:
            y = pad + offset[0] + r * stride[0]
            x = pad + offset[1] + c * stride[1]
            row.append(padded[b, y : y + patch[0], x : x + patch[1]])
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("method", ["index", "extract_patches"])
@pytest.mark.parametrize(
    "patch,stride,offset,grid,image",
    [
        ((14, 14), (4, 4), (-2, -2), (23, 23), (100, 100, 1)),  # the paper's preset
        ((7, 5), (3, 2), (-3, 1), (11, 14), (31, 29, 3)),  # uneven, both borders
    ],
)
def test_matches_numpy_slicing_including_borders(method, patch, stride, offset, grid, image):
    rng = np.random.default_rng(0)
    images = rng.random((3, *image), dtype=np.float32)
    corners = [(0, 0), (0, grid[1] - 1), (grid[0] - 1, 0), (grid[0] - 1, grid[1] - 1)]
    locations = np.array(
        [corners + [tuple(rng.integers(0, grid)) for _ in range(2)] for _ in range(3)],
        np.int32,
    )
    layer = PatchGather(patch, strides=stride, offset=offset, grid_shape=grid, method=method)
    got = keras.ops.convert_to_numpy(layer(images, locations))
    np.testing.assert_array_equal(got, _numpy_patches(images, locations, patch, stride, offset))


def test_methods_agree_on_every_cell():
    images = np.random.default_rng(1).random((2, 100, 100, 1), dtype=np.float32)
    cells = np.stack(np.meshgrid(np.arange(23), np.arange(23), indexing="ij"), -1)
    locations = np.broadcast_to(cells.reshape(1, -1, 2), (2, 529, 2)).astype(np.int32)
    args = dict(patch_size=14, strides=4, offset=-2, grid_shape=(23, 23))
    a = PatchGather(method="index", **args)(images, locations)
    b = PatchGather(method="extract_patches", **args)(images, locations)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_config_round_trip():
    layer = PatchGather((7, 5), strides=(3, 2), offset=(-3, 1), grid_shape=(11, 14),
                        method="extract_patches")
    clone = PatchGather.from_config(layer.get_config())
    for name in ("patch_size", "strides", "offset", "grid_shape", "method"):
        assert getattr(clone, name) == getattr(layer, name)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="glimpse"), "method"),
        (dict(patch_size=0), "patch_size"),
        (dict(strides=(1, 2, 3)), "strides"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    args = dict(patch_size=14, strides=4, offset=-2, grid_shape=(23, 23))
    with pytest.raises(ValueError, match=message):
        PatchGather(**{**args, **kwargs})


def test_the_layer_contract_holds(tmp_path):
    images = np.arange(2 * 7 * 7, dtype=np.float32).reshape(2, 7, 7, 1)
    locations = np.array([[[0, 0], [2, 1]], [[1, 1], [0, 2]]], np.int32)
    args = {"patch_size": (3, 3), "strides": (2, 2), "offset": (0, 0), "grid_shape": (3, 3), "method": "index"}
    out = run_layer_test(PatchGather, args, [images, locations], (2, 2, 3, 3, 1), tmp_path=tmp_path)
    np.testing.assert_array_equal(np.asarray(out)[0, 1, ..., 0], images[0, 4:7, 2:5, 0])
