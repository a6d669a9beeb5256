import numpy as np
from PIL import Image

from dcn_keras import pictures
from tests.helpers import preset_model
from tests.helpers import random_images


def _heads(length, digits, top=0.9):
    """One image's multi-head probabilities reading `digits` (10 = none) with `length`."""
    def one_hot(index, classes):
        p = np.full(classes, (1 - top) / (classes - 1))
        p[index] = top
        return p
    heads = {"length": one_hot(length, 6)}
    for i, d in enumerate(digits, 1):
        heads[f"digit_{i}"] = one_hot(d, 11)
    return heads


def test_describe_reads_a_class_or_the_number_and_its_whole_confidence():
    assert pictures.describe(np.array([0.1, 0.7, 0.2])) == ("1", 0.7)
    number, confidence = pictures.describe(_heads(3, [4, 0, 7, 10, 10]))
    assert number == "407"
    np.testing.assert_allclose(confidence, 0.9 ** 6)  # Every head's top probability, not just the read ones.
    assert pictures.describe(_heads(0, [10] * 5))[0] == "-"
    assert pictures.describe(_heads(2, [3, 10, 10, 10, 10]))[0] == "3?"


def test_label_text_and_titles():
    assert pictures.label_text(np.int64(7)) == "7"
    assert pictures.label_text({"length": 2, "digit_1": 4, "digit_2": 1, "digit_3": 10}) == "41"
    assert (pictures.title("a.png", np.array([0.4, 0.6]), np.array([0.1, 0.9]), label=1)
            == "a.png | label 1 | coarse 1 (0.60) | DCN 1 (0.90)")


def test_saved_picture_has_a_row_per_image_and_the_saliency_on_the_image_pixels(tmp_path):
    model = preset_model()
    images = random_images(3)
    out = model.predict(images, verbose=0)
    # The preset's cells are 4 pixels apart, cell (0, 0)'s patch centred on pixel 5.
    assert pictures._cell_extent(out["saliency"], out["patch_boxes"], out["locations"], 100, 100) == (
        3.0, 95.0, 95.0, 3.0)
    one = pictures.render(images[:1], {k: v[:1] for k, v in out.items()}, labels=["4"])
    path = pictures.save(images, out, str(tmp_path / "p.png"), names=["a", "b", "c"])
    assert Image.open(path).format == "PNG"
    three = np.asarray(Image.open(path))
    assert one.dtype == np.uint8 and one.shape[1] == three.shape[1] and 2.5 < three.shape[0] / one.shape[0] < 3.5
    # Red boxes are drawn where the patches are: every patch moved to the
    # top-left cell, then to the bottom-right one, moves the red pixels so.
    def red_centre(row_col):
        moved = {k: v[:1] for k, v in out.items()}
        moved["locations"] = np.tile(np.array(row_col, np.int32), (1, 8, 1))
        moved["patch_boxes"] = np.asarray(model.geometry.boxes(moved["locations"]))
        drawn = pictures.render(images[:1], moved)
        red = (drawn[..., 0] > 200) & (drawn[..., 1] < 60) & (drawn[..., 2] < 60)
        assert red.sum() > 20
        return np.argwhere(red).mean(axis=0)

    top_left, bottom_right = red_centre((0, 0)), red_centre((22, 22))
    assert np.all(bottom_right - top_left > 0.3 * np.array(one.shape[:2]) / np.array([1, 2]))


def test_an_image_that_exited_early_is_drawn_without_patches():
    model = preset_model()
    images = random_images(4, seed=3)
    threshold = float(np.median(model.predict(images, verbose=0)["coarse_probabilities"].max(-1)))
    out = model.with_settings(exit_threshold=threshold).predict(images, verbose=0)
    exited, kept = np.flatnonzero(~out["refined"])[0], np.flatnonzero(out["refined"])[0]
    # The extent is read off the refined images' cells alone, as without a threshold.
    assert pictures._cell_extent(out["saliency"], out["patch_boxes"], out["locations"], 100, 100) == (
        3.0, 95.0, 95.0, 3.0)

    def red_pixels(n):
        one = pictures.render(images[n:n + 1], {k: v[n:n + 1] for k, v in out.items()})
        return ((one[..., 0] > 200) & (one[..., 1] < 60) & (one[..., 2] < 60)).sum()
    assert red_pixels(exited) == 0 and red_pixels(kept) > 100


def test_a_patch_at_the_image_edge_is_drawn_even_though_its_box_starts_below_zero():
    model = preset_model()
    images = random_images(1, seed=4)
    out = {k: np.array(v) for k, v in model.predict(images, verbose=0).items()}
    out["locations"][0, 0], out["patch_boxes"][0, 0] = (0, 0), (-2, -2, 12, 12)  # Cell (0, 0)'s patch.
    fig = pictures.figure(images, out)
    assert fig.axes[1].get_title() == "saliency, 8 patches"
    assert len(fig.axes[0].patches) == 8


def test_a_large_image_is_averaged_down_for_display_with_its_patches_in_place():
    image = np.zeros((1500, 1500, 1), np.float32)
    image[:30, :30] = 1.0
    shown, spans = pictures.display_image(image)
    assert shown.shape == (500, 500, 1) and spans == (1500, 1500)
    np.testing.assert_allclose(shown[:10, :10], 1.0) and np.testing.assert_allclose(shown[10:, 10:], 0.0)
    odd, spans = pictures.display_image(np.ones((1030, 700, 3), np.float32))
    assert odd.shape == (344, 234, 3) and spans == (1032, 702)  # Zero-padded to whole 3x3 blocks.
    small, spans = pictures.display_image(np.ones((100, 100, 1), np.float32))
    assert small.shape == (100, 100, 1) and spans == (100, 100)

    out = {"probabilities": np.eye(10)[[3]], "coarse_probabilities": np.eye(10)[[3]],
           "saliency": np.random.default_rng(0).random((1, 93, 93)), "locations": np.array([[[40, 60]]]),
           "patch_boxes": np.array([[[631, 951, 677, 997]]])}
    fig = pictures.figure(image[None], out)
    picture = fig.axes[0]
    assert picture.get_images()[0].get_array().shape == (500, 500)
    box = picture.patches[0]
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (951, 631, 46, 46)
    assert picture.get_xlim() == (0, 1500)
