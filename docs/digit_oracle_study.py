"""How well can the digits of a 384-px `mnist_numbers` number be read at all, once found?

    python docs/digit_oracle_study.py /path/to/mnist docs/measurements/digit_oracle_n384.json

A bound for issue 52's reader: a plain CNN that is told where each digit is
(its box, which no model has at test time) reads the 32x32 pixels around the
digit's centre on the canvas as drawn: native resolution, the neighbouring
digits and clutter included. Trained on the digits of training numbers (one
number per training digit, 192-px canvases: the same digits, sizes, gaps and
clutter density as at 384 px, less empty canvas to draw), scored on the
10,000 384-px test numbers `bin/dcn_eval --dataset=mnist_numbers
--canvas_size=384` scores (seed 0, official MNIST test digits). A number is
read right when all its digits are (its length taken as known: the shipped
reader's length head errs on 0.09%).

Its whole-number error against the reader's says how much of the reader's
error is locating each place (the oracle is given it) and how much is
reading digits drawn this small (the oracle is not spared that).
"""

import json
import os
import sys
import time

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.datasets.mnist_numbers import split_numbers

CROP = 32
HEIGHTS = ((14, 18), (18, 22), (22, 26), (26, 1000))  # `dcn_eval`'s bins of a number's mean digit height


def crops(images, boxes):
    """The CROP x CROP pixels around each digit's box centre: `[digits, CROP, CROP, 1]`, and their (number, place)."""
    half = CROP // 2
    padded = np.pad(images[..., 0], ((0, 0), (half, half), (half, half)))
    number, place = np.nonzero(boxes[..., 2] > 0)
    y, x, h, w = (boxes[number, place, i] for i in range(4))
    cy, cx = np.round(y + h / 2).astype(int), np.round(x + w / 2).astype(int)
    out = np.stack([padded[n, r:r + CROP, c:c + CROP] for n, r, c in zip(number, cy, cx)])
    return out[..., None], number, place


def digit_labels(labels, number, place):
    return np.array([labels[f"digit_{p + 1}"][n] for n, p in zip(number, place)])


def reader():
    layers = keras.layers
    x = keras.Input((CROP, CROP, 1))
    h = layers.Rescaling(1 / 255)(x)
    for filters in (32, 64, 128):  # About 10 M multiply-adds a digit: a plain MNIST CNN's size.
        h = layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization()(h))
        h = layers.MaxPooling2D(2)(h)
    h = layers.Dropout(0.3)(layers.Dense(256, activation="relu")(layers.Flatten()(h)))
    return keras.Model(x, layers.Dense(10)(h))


def draw(mnist_dir):
    """The training and test crops, their labels, and the test numbers' places and boxes."""
    train_images, train_labels, train_boxes, _ = split_numbers(
        "train", mnist_dir=mnist_dir, seed=6, examples_per_digit=1, image_size=192, digit_scale=1.0)
    x, number, place = crops(train_images, train_boxes)
    y = digit_labels(train_labels, number, place)
    del train_images
    test_images, test_labels, test_boxes, _ = split_numbers(
        "test", mnist_dir=mnist_dir, seed=0, image_size=384, digit_scale=1.0)
    tx, t_number, t_place = crops(test_images, test_boxes)
    ty = digit_labels(test_labels, t_number, t_place)
    return x, y, tx, ty, t_number, t_place, test_boxes


def main(mnist_dir, output, epochs=5):
    started = time.time()
    cache = output + ".crops.npz"  # Drawing takes minutes; a second run reads the same crops.
    if os.path.exists(cache):
        x, y, tx, ty, t_number, t_place, test_boxes = np.load(cache).values()
    else:
        drawn = draw(mnist_dir)
        np.savez(cache + ".tmp.npz", *drawn)
        os.replace(cache + ".tmp.npz", cache)
        x, y, tx, ty, t_number, t_place, test_boxes = drawn
    print(f"{len(x)} training digits, {len(tx)} test digits, drawn in {time.time() - started:.0f} s", flush=True)

    keras.utils.set_random_seed(0)
    model = reader()
    steps = epochs * -(-len(x) // 128)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(tx[:2000], ty[:2000]), verbose=2)
    wrong = model.predict(tx, batch_size=512, verbose=0).argmax(-1) != ty

    numbers = len(test_boxes)
    number_wrong = np.zeros(numbers, bool)
    np.logical_or.at(number_wrong, t_number, wrong)
    lengths = (test_boxes[..., 2] > 0).sum(1)
    heights = np.array([test_boxes[n, :lengths[n], 2].mean() for n in range(numbers)])
    report = {
        "digits": int(len(ty)), "digit_error": float(wrong.mean()),
        "whole_number": float(number_wrong.mean()), "numbers": numbers,
        "per_position": {str(p + 1): float(wrong[t_place == p].mean()) for p in range(t_place.max() + 1)},
        "per_length": {str(n): float(number_wrong[lengths == n].mean()) for n in np.unique(lengths)},
        "by_digit_height": {f"{lo}-{hi}": {"error": float(number_wrong[(heights >= lo) & (heights < hi)].mean()),
                                           "examples": int(((heights >= lo) & (heights < hi)).sum())}
                            for lo, hi in HEIGHTS},
        "training_digits": int(len(y)), "epochs": epochs, "seconds": round(time.time() - started),
    }
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    with open(output + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(output + ".tmp", output)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
