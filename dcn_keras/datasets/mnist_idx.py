"""MNIST from the standard IDX files in a directory, read and checked offline.

The format people download by hand (and many tools write):
`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
and `t10k-labels-idx1-ubyte`, each optionally gzipped (`.gz`).

Splits: train and validation are 5/6 and 1/6 of the training files (50,000
and 10,000 for MNIST's 60,000), test is the t10k files. Before splitting,
the digits are ordered by a hash of their pixels (and label), so the split
and every canvas made from it are the same whatever order the files hold the
digits in: the official files and a shuffled copy give the same runs.
"""

import functools
import gzip
import hashlib
import os

import numpy as np

_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801
_NUM_CLASSES = 10


def _find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"mnist_dir={directory} has no {name} (nor {name}.gz): it needs "
                            f"{', '.join(n for pair in _FILES.values() for n in pair)}, each plain or gzipped.")


def _read(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:  # A truncated or corrupt gzip stream.
        raise ValueError(f"{path} cannot be read: {error}.") from None


def read_idx(path, magic):
    """The uint8 array an IDX file holds, after checking its header and size.

    Args:
        path: str, a plain or gzipped IDX file.
        magic: int, the expected magic number (0x803: images, 0x801: labels).

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    data = _read(path)
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path} is {len(data)} bytes, shorter than an IDX header ({header}).")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        raise ValueError(f"{path} has magic number {found:#010x}; MNIST {kind} files have {magic:#010x}.")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{path} holds {len(data)} bytes; its header {shape} needs {expected}.")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=4)
def _checked_pair(directory, prefix, _stamp):
    images_name, labels_name = _FILES[prefix]
    images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
    images, labels = read_idx(images_path, _IMAGES_MAGIC), read_idx(labels_path, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"{len(labels)} labels.")
    if len(images) < 2:
        raise ValueError(f"{images_path} holds {len(images)} images; at least 2 are needed.")
    bad = np.flatnonzero(labels >= _NUM_CLASSES)
    if len(bad):
        raise ValueError(f"{labels_path} has label {labels[bad[0]]} at index {bad[0]} "
                         f"({len(bad)} such); MNIST labels are 0..9.")
    # Content order: a hash of each digit's pixels and label, so the file order does not matter.
    keys = [hashlib.blake2b(image.tobytes() + bytes([label]), digest_size=8).digest()
            for image, label in zip(images, labels)]
    order = np.array(sorted(range(len(keys)), key=keys.__getitem__))
    return images[order], labels[order].astype(np.int64)


def _stamp(directory, prefix):
    return tuple(os.stat(_find(directory, name)).st_mtime_ns for name in _FILES[prefix])


def idx_digits(mnist_dir, split):
    """The digits of `split` from the IDX files in `mnist_dir`.

    Args:
        mnist_dir: str, the directory holding the four MNIST files.
        split: str, `"train"`, `"validation"` or `"test"`.

    Returns:
        `(images, labels)`: uint8 `[N, rows, cols]` and int64 `[N]`, in
        content-hash order.

    Raises:
        FileNotFoundError: the directory or one of the files is missing
            (the message names it).
        ValueError: a file is not a valid MNIST IDX file (named, with what
            is wrong).
    """
    if not os.path.isdir(mnist_dir):
        raise FileNotFoundError(f"mnist_dir={mnist_dir} is not a directory.")
    directory = os.path.abspath(mnist_dir)
    prefix = "t10k" if split == "test" else "train"
    images, labels = _checked_pair(directory, prefix, _stamp(directory, prefix))
    if split == "test":
        return images, labels
    validation = round(len(images) / 6)
    cut = len(images) - validation
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])

