import numpy as np
import pytest

from dcn_keras.backend import keras
from tests.helpers import glyph_task
from tests.helpers import preset_model


def _overlaps_glyph(boxes, corners, glyph=10):
    y, x = corners[:, 0:1], corners[:, 1:2]
    return (
        (boxes[..., 0] < y + glyph)
        & (boxes[..., 2] > y)
        & (boxes[..., 1] < x + glyph)
        & (boxes[..., 3] > x)
    )


@pytest.mark.slow
def test_fit_learns_a_cluttered_glyph_task_and_attends_to_the_glyph():
    images, labels, _ = glyph_task(2400, num_classes=4, seed=0)
    test_images, test_labels, corners = glyph_task(400, num_classes=4, seed=1)
    model = preset_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(images, labels, batch_size=32, epochs=6, verbose=0)

    result = model.evaluate(test_images, test_labels, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.7  # chance is 0.25

    boxes = model.predict(test_images, verbose=0)["patch_boxes"]
    hit_rate = _overlaps_glyph(boxes, corners).mean()
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 23, boxes.shape[:2] + (2,))
    random_boxes = np.concatenate([cells * 4 - 2, cells * 4 + 12], axis=-1)
    random_rate = _overlaps_glyph(random_boxes, corners).mean()
    assert hit_rate > 0.5
    assert hit_rate > 5 * random_rate
