"""Where each digit head of an `svhn_reader` model looks, against the digits' boxes.

    python docs/where_heads_look_study.py MODEL.keras /path/to/mnist OUT.json [numbers]

Each head (`top_pool_digit_i`) pools the top's wide readings (`top_read`,
one per 16-pixel step) by its own attention weights. On 384-px test numbers
of official MNIST test digits (`split_numbers(..., num_numbers=...)`: a
sample, not the 10,000 of `dcn_eval`), read by the fine model (every cell
refined: version 4's DCN reads as it does), this finds each head's most
weighted reading, the pixel column at the centre of that reading's window
(found from the gradient of the reading with respect to the grid, not
assumed), and which digit of the number that column is nearest. A head that
locates its place looks at its own digit. `by_window_centre` does the same
with the centre of each reading's window (`HeadPlaces`: the place the
place loss trains a head to put there), which the trained weights of
version 4 lean about 11 pixels left of; `place_loss`, each head's mean
place loss over the numbers that have its digit.
"""

import json
import os
import sys

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.datasets.mnist_numbers import split_numbers
from dcn_keras.models import load_model
from dcn_keras.models.head_places import HeadPlaces


def column_centres(dcn, read, grid_shape):
    """The pixel column at the centre of each `top_read` column's window on the canvas."""
    grid = tf.fill((1, *grid_shape), 0.5)  # Positive everywhere, so the ReLUs pass gradients.
    centres = []
    for q in range(read(grid).shape[2]):  # One column at a time: its weight on each grid column.
        with tf.GradientTape() as tape:
            tape.watch(grid)
            out = tf.reduce_sum(tf.abs(read(grid)[0, :, q]))
        weight = tf.reduce_sum(tf.abs(tape.gradient(out, grid)[0]), axis=(0, 2)).numpy()
        cell = (weight * np.arange(len(weight))).sum() / weight.sum()
        centres.append(dcn.geometry.offset[1] + dcn.geometry.stride[1] * cell + dcn.geometry.patch_size[1] / 2)
    return np.array(centres)


def main(model_path, mnist_dir, output, numbers=200):
    dcn = load_model(model_path)
    images, _, boxes, _ = split_numbers("test", mnist_dir=mnist_dir, num_numbers=numbers, image_size=384,
                                        digit_scale=1.0)
    read = keras.Model(dcn.top.input, dcn.top.get_layer("top_read").output)
    pad = ((0, 0), *dcn.geometry.padding, (0, 0))
    rows = {i: [] for i in range(1, 6)}
    by_window = {i: [] for i in range(1, 6)}
    places = HeadPlaces(dcn.top, dcn.geometry)
    window_centres, place_losses = places.column_centres, []
    centres = None
    for s in range(0, numbers, 25):
        x = np.pad(np.repeat(images[s:s + 25].astype(np.float32) / 255, 3, -1), pad)
        grid = dcn.fine(x)
        if centres is None:
            centres = column_centres(dcn, read, grid.shape[1:])
        h = read(grid)
        place_losses.append(places.head_losses(boxes[s:s + 25], grid).numpy())
        for i in rows:
            weights = dcn.top.get_layer(f"top_pool_digit_{i}").attention_weights(h).numpy()
            column = weights.max(1).argmax(1)
            for b in range(len(weights)):
                length = int((boxes[s + b, :, 2] > 0).sum())
                if length >= i:
                    middles = boxes[s + b, :length, 1] + boxes[s + b, :length, 3] / 2
                    for found, at in ((rows, centres), (by_window, window_centres)):
                        peak = at[column[b]]
                        nearest = int(np.argmin(np.abs(middles - peak))) + 1
                        found[i].append((nearest, abs(peak - middles[i - 1])))
    place_losses = np.concatenate(place_losses)
    lengths = (boxes[:numbers, :, 3] > 0).sum(1)
    report = {"model": model_path, "numbers": numbers, "heads": _heads(rows),
              "by_window_centre": _heads(by_window),
              # The mean of what the place loss trains down, per head over the numbers that have its digit.
              "place_loss": {f"digit_{i}": float(place_losses[lengths >= i, i - 1].mean()) for i in range(1, 6)}}
    with open(output + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(output + ".tmp", output)
    print(json.dumps(report, indent=1))


def _heads(rows):
    return {f"digit_{i}": {"numbers": len(r), "looks_at_its_digit": float(np.mean([n == i for n, _ in r])),
                           "looks_at_digit": {str(d): float(np.mean([n == d for n, _ in r])) for d in range(1, 6)},
                           "median_px_from_its_digit": float(np.median([o for _, o in r]))}
            for i, r in rows.items()}


if __name__ == "__main__":
    main(*sys.argv[1:4], *(int(a) for a in sys.argv[4:]))
