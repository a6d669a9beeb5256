import numpy as np

from dcn_keras import number_errors


def _one_hot(classes, size):
    return np.eye(size)[np.asarray(classes)]


def test_the_breakdown_splits_the_whole_number_error_by_head_length_height_place_and_patches():
    # Four numbers on a 90-px canvas: two of length 1, two of length 2.
    labels = {"length": np.array([1, 1, 2, 2]), "digit_1": np.array([3, 4, 5, 6]),
              "digit_2": np.array([10, 10, 7, 8])}
    read = {"length": [1, 2, 2, 2], "digit_1": [3, 4, 5, 6], "digit_2": [10, 10, 7, 1]}  # 1: length, 3: digit 2.
    predictions = {h: _one_hot(v, 11 if h != "length" else 6) for h, v in read.items()}
    boxes = np.zeros((4, 2, 4))
    boxes[0, 0] = (0, 0, 12, 8)         # top third, small
    boxes[1, 0] = (40, 0, 20, 8)        # middle, 20 px
    boxes[2] = [(70, 0, 20, 8), (70, 10, 20, 8)]   # bottom
    boxes[3] = [(64, 0, 26, 8), (64, 10, 26, 8)]  # 26 px: the last height bin, "26+"
    images = np.zeros((4, 90, 90, 1))
    for n, number in enumerate(boxes):
        for top, left, h, w in number.astype(int):
            images[n, top:top + h, left:left + w] = 1.0
    patches = np.full((4, 1, 4), -1)
    patches[3, 0] = (64, 0, 90, 8)  # Number 3: its first digit's ink seen, not the second's.
    patches[1, 0] = (30, -5, 70, 20)  # Number 1: all its ink seen.
    shares = number_errors.ink_share_in_patches(images, boxes, patches)
    np.testing.assert_allclose(shares, [0.0, 1.0, 0.0, 0.5])
    report = number_errors.number_error_breakdown(predictions, labels, boxes, 90, shares)
    assert report["whole_number"] == 0.5 and report["length_head"] == 0.25
    assert report["per_length"] == {1: {"error": 0.5, "examples": 2}, 2: {"error": 0.5, "examples": 2}}
    assert report["per_position"] == {1: {"error": 0.0, "examples": 4}, 2: {"error": 0.5, "examples": 2}}
    assert report["by_place"] == {"top": {"error": 0.0, "examples": 1}, "middle": {"error": 1.0, "examples": 1},
                                  "bottom": {"error": 0.5, "examples": 2}}
    assert report["by_digit_height"]["0-14"] == {"error": 0.0, "examples": 1}
    assert report["by_digit_height"]["26+"] == {"error": 1.0, "examples": 1}
    assert report["patches"] == {"ink_share_right": 0.0, "ink_share_wrong": 0.75, "wrong_with_ink_seen": 1,
                                 "wrong": 2}
    lines = number_errors.format_breakdown(report)
    assert lines[0] == "  length head error 0.2500" and "1 of 2 wrong numbers had 90% of their ink" in lines[-1]
