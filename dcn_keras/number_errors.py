"""Where a number reader's errors come from: heads, lengths, positions, digit size, place, patches.

A multi-digit model reads a number right only when every head is right (the
whole number). `number_error_breakdown` splits that error by what the labels
and the digits' boxes tell: the length head alone, each digit position, the
number's length, its digits' height and its place on the canvas; for a DCN,
also how much of the number's ink its patches held, so that the saliency's
misses (a digit never refined) are told apart from the top's misreads.
`bin/dcn_eval` prints it for multi-digit models.
"""

import numpy as np

from dcn_keras.datasets.number_labels import MAX_DIGITS

# Ink: pixels at least this bright (in [0, 1]) inside a digit's box.
INK = 0.25
HEIGHT_BINS = (0, 14, 18, 22, 26, np.inf)  # Digit heights in pixels; the last bin is named "26+".
PLACES = ("top", "middle", "bottom")


def _rate(wrong, mask):
    """`(error, count)` of the examples in `mask`, or None when there are none."""
    count = int(mask.sum())
    return None if count == 0 else {"error": float(wrong[mask].mean()), "examples": count}


def _heads_right(predictions, labels):
    return {head: np.argmax(np.asarray(p), -1) == np.asarray(labels[head]) for head, p in predictions.items()}


def _height_bins(heights):
    # `(name, mask)` per bin of HEIGHT_BINS: "14-18", ..., the open last one "26+".
    for low, high in zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:]):
        yield (f"{low}+" if high == np.inf else f"{low}-{high}"), (heights >= low) & (heights < high)


def ink_share_in_patches(images, boxes, patch_boxes):
    """Per number, the share of its ink inside the union of its patches, float `[N]`.

    `images` `[N, H, W, C]` in [0, 1]; `boxes` `[N, digits, 4]`
    `[top, left, height, width]` (zero height: no digit); `patch_boxes`
    `[N, k, 4]` `[ymin, xmin, ymax, xmax)` (-1: none, an image that exited).
    """
    images = np.asarray(images)
    shares = np.ones(len(images))
    height, width = images.shape[1:3]
    for n, image in enumerate(images):
        ink = np.zeros((height, width), bool)
        for top, left, h, w in np.asarray(boxes[n], int):
            if h > 0:
                ink[top:top + h, left:left + w] = image[top:top + h, left:left + w].max(-1) >= INK
        seen = np.zeros_like(ink)
        for ymin, xmin, ymax, xmax in np.asarray(patch_boxes[n], int):
            if ymax > 0:
                seen[max(ymin, 0):ymax, max(xmin, 0):xmax] = True
        if ink.any():
            shares[n] = (ink & seen).sum() / ink.sum()
    return shares


def number_error_breakdown(predictions, labels, boxes, image_size, ink_share=None):
    """Splits a number reader's whole-number error.

    Args:
        predictions: dict head -> probabilities `[N, classes]` (`length`,
            `digit_1` ...).
        labels: dict head -> class indices `[N]`.
        boxes: float `[N, digits, 4]` `[top, left, height, width]` of each
            digit (zero height past the number's end).
        image_size: int, the canvas side (for the number's place).
        ink_share: float `[N]` or None, a DCN's `ink_share_in_patches`.

    Returns:
        A dict: `whole_number` and `length_head` errors; `per_length`,
        `per_position` (each digit head over the numbers that reach it),
        `by_digit_height` (the number's mean digit height, pixels) and
        `by_place` (the number's centre in the top, middle or bottom third),
        each `{key: {"error", "examples"}}`; with `ink_share`, `patches`:
        the mean share of ink inside the patches for right and wrong numbers
        and how many wrong numbers had every digit mostly (90%) inside them.
    """
    right = _heads_right(predictions, labels)
    whole = np.logical_and.reduce(list(right.values()))
    wrong = ~whole
    lengths = np.asarray(labels["length"])
    boxes = np.asarray(boxes, np.float64)
    present = boxes[..., 2] > 0
    mean_height = (boxes[..., 2] * present).sum(1) / np.maximum(present.sum(1), 1)
    top = np.where(present, boxes[..., 0], np.inf).min(1)
    bottom = np.where(present, boxes[..., 0] + boxes[..., 2], -np.inf).max(1)
    third = np.clip(((top + bottom) / 2 * 3 // image_size).astype(int), 0, 2)
    report = {
        "examples": int(len(whole)),
        "whole_number": float(wrong.mean()),
        "length_head": float((~right["length"]).mean()),
        "per_length": {int(n): _rate(wrong, lengths == n) for n in np.unique(lengths)},
        "per_position": {i: _rate(~right[f"digit_{i}"], lengths >= i) for i in range(1, MAX_DIGITS + 1)
                         if f"digit_{i}" in right and (lengths >= i).any()},
        "by_digit_height": {name: _rate(wrong, in_bin) for name, in_bin in _height_bins(mean_height) if in_bin.any()},
        "by_place": {place: _rate(wrong, third == i) for i, place in enumerate(PLACES) if (third == i).any()},
    }
    if ink_share is not None:
        ink_share = np.asarray(ink_share)
        report["patches"] = {
            "ink_share_right": float(ink_share[whole].mean()) if whole.any() else None,
            "ink_share_wrong": float(ink_share[wrong].mean()) if wrong.any() else None,
            "wrong_with_ink_seen": int((wrong & (ink_share >= 0.9)).sum()),
            "wrong": int(wrong.sum()),
        }
    return report


def format_breakdown(report):
    """The breakdown as indented lines for `bin/dcn_eval`."""
    def rates(values):
        return ", ".join(f"{k}: {v['error']:.4f} ({v['examples']})" for k, v in values.items() if v)

    lines = [f"  length head error {report['length_head']:.4f}",
             f"  by length: {rates(report['per_length'])}",
             f"  digit heads by position (numbers that reach it): {rates(report['per_position'])}",
             f"  by mean digit height (px): {rates(report['by_digit_height'])}",
             f"  by place on the canvas: {rates(report['by_place'])}"]
    patches = report.get("patches")
    if patches:
        lines.append(f"  ink inside the patches: {patches['ink_share_right']:.3f} of right numbers', "
                     f"{patches['ink_share_wrong'] or 0:.3f} of wrong ones'; {patches['wrong_with_ink_seen']} of "
                     f"{patches['wrong']} wrong numbers had 90% of their ink refined (misread by the top), "
                     f"the rest missed by the saliency")
    return lines
