import numpy as np
import pytest

from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.patch_geometry import PatchGeometry


def _towers():
    towers = presets.cluttered_mnist_towers()
    return towers["coarse"], towers["fine"]


def test_paper_geometry_is_derived_from_the_towers():
    g = PatchGeometry.from_towers(*_towers(), (100, 100, 1))
    assert g.grid_shape == (23, 23)
    assert g.stride == (4, 4)
    assert g.receptive_field == (11, 11)
    assert g.patch_size == (14, 14)
    # The 11x11 window widened by 3: 2 pixels before, 1 after.
    assert g.offset == (-2, -2)
    assert g.padding == ((2, 0), (2, 0))


def test_same_padding_and_pooling_shift_the_windows():
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(4, 5, padding="same")(x)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(h)
    coarse = keras.Model(x, h)
    p = keras.Input((None, None, 3))
    fine = keras.Model(p, keras.layers.Conv2D(4, 13)(p))
    g = PatchGeometry.from_towers(coarse, fine, (32, 32, 3))
    # 5x5 same (pad 2) -> pool 2 (field 6, jump 2) -> 3x3/2 same on 16
    # (pad 0 before) -> field 10, jump 4, starting at -2.
    assert g.grid_shape == (8, 8)
    assert g.stride == (4, 4)
    assert g.receptive_field == (10, 10)
    assert g.patch_size == (13, 13)
    assert g.offset == (-2 - 2, -2 - 2)


def test_explicit_override_is_checked():
    coarse, fine = _towers()
    g = PatchGeometry.from_towers(coarse, fine, (100, 100, 1), patch_size=17, patch_offset=(-3, -3))
    assert g.patch_size == (17, 17) and g.offset == (-3, -3)
    with pytest.raises(ValueError, match=r"patch_size=\(18, 18\).*exactly one fine vector"):
        PatchGeometry.from_towers(coarse, fine, (100, 100, 1), patch_size=18)


@pytest.mark.parametrize(
    "image_shape,message",
    [
        ((100, 100, 3), "3 channels but the coarse tower takes 1"),
        ((12, 12, 1), r"(smaller than|grid)"),
        ((100, 100), "image_shape"),
    ],
)
def test_bad_images_are_named(image_shape, message):
    with pytest.raises(ValueError, match=message):
        PatchGeometry.from_towers(*_towers(), image_shape)


def test_unknown_resampling_layer_is_rejected():
    x = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(4, 3)(x)
    h = keras.layers.UpSampling2D()(h)
    coarse = keras.Model(x, h)
    p = keras.Input((None, None, 1))
    fine = keras.Model(p, keras.layers.Conv2D(4, 3)(p))
    with pytest.raises(ValueError, match="UpSampling2D.*patch_size"):
        PatchGeometry.from_towers(coarse, fine, (20, 20, 1))


def test_covered_cells_are_those_whose_central_square_touches_a_box():
    from dcn_keras import DynamicCapacityNetwork

    geometry = DynamicCapacityNetwork.from_preset("svhn_patch_exact").geometry  # 14x14 cells, 4-px steps
    boxes = np.zeros((2, 2, 4), np.float32)
    boxes[0, 0] = (10, 10, 8, 4)  # 8 rows x 4 columns of pixels
    covered = geometry.covered_cells(boxes)
    assert covered.shape == (2, 14, 14) and not covered[1].any()  # no box: nothing covered
    rows, cols = np.nonzero(covered[0])
    centres = geometry.offset[0] + geometry.patch_size[0] / 2 + 4 * np.arange(14)
    touching = [i for i, c in enumerate(centres) if c - 2 < 18 and c + 2 > 10]
    assert sorted(set(rows)) == touching and covered[0].sum() == len(touching) * len(
        [j for j, c in enumerate(centres) if c - 2 < 14 and c + 2 > 10])
