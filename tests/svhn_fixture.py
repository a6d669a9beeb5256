"""Writes a tiny SVHN format-1 copy: PNGs and digitStruct.mat in the real layout."""

import os

import h5py
import numpy as np
from PIL import Image

# (file name, digits as the file stores them (10 means 0), boxes [top, left, height, width])
NUMBERS = {
    "train": [
        ("1.png", [1, 9], [[5, 10, 20, 9], [6, 20, 20, 10]]),
        ("2.png", [2], [[4, 8, 22, 12]]),
        ("3.png", [10, 3, 5], [[3, 4, 18, 8], [3, 13, 18, 8], [4, 22, 18, 8]]),
        ("4.png", [7, 7], [[8, 12, 16, 9], [8, 22, 16, 9]]),
        ("5.png", [1, 2, 3, 4, 5, 6], [[2, 2 + 6 * i, 10, 5] for i in range(6)]),
    ] + [  # Enough numbers that TFDS's 5% validation slice is not empty.
        (f"{n}.png", [(n % 9) + 1, (n * 7) % 10 or 10], [[5, 8, 20, 10], [5, 19, 20, 10]])
        for n in range(6, 26)
    ],
    "test": [
        ("1.png", [4], [[6, 10, 20, 11]]),
        ("2.png", [8, 10], [[5, 6, 20, 10], [5, 17, 20, 10]]),
    ],
}


def _write_digit_struct(path, numbers):
    with h5py.File(path, "w") as h5:
        refs = h5.create_group("#refs#")
        group = h5.create_group("digitStruct")
        names = group.create_dataset("name", (len(numbers), 1), dtype=h5py.ref_dtype)
        bboxes = group.create_dataset("bbox", (len(numbers), 1), dtype=h5py.ref_dtype)
        for i, (name, digits, boxes) in enumerate(numbers):
            chars = np.array([[ord(c)] for c in name], np.uint16)
            names[i, 0] = refs.create_dataset(f"name{i}", data=chars).ref
            box = refs.create_group(f"bbox{i}")
            columns = {"label": digits, "top": [b[0] for b in boxes], "left": [b[1] for b in boxes],
                       "height": [b[2] for b in boxes], "width": [b[3] for b in boxes]}
            for key, values in columns.items():
                if len(values) == 1:  # MATLAB stores one digit's fields inline.
                    box.create_dataset(key, data=np.array([[float(values[0])]]))
                else:
                    field = box.create_dataset(key, (len(values), 1), dtype=h5py.ref_dtype)
                    for j, v in enumerate(values):
                        field[j, 0] = refs.create_dataset(f"{key}{i}_{j}", data=np.array([[float(v)]])).ref
            bboxes[i, 0] = box.ref


def write_svhn_copy(manual_dir, splits=("train", "test")):
    """Writes `<manual_dir>/<split>/{digitStruct.mat, N.png}`; returns NUMBERS."""
    rng = np.random.default_rng(0)
    for split in splits:
        folder = os.path.join(manual_dir, split)
        os.makedirs(folder, exist_ok=True)
        for name, _, _ in NUMBERS[split]:
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, name))
        _write_digit_struct(os.path.join(folder, "digitStruct.mat"), NUMBERS[split])
    return NUMBERS
