"""A user's own images: one sub-folder per class, or any TFDS image-classification dataset.

Folder layout (`keras.utils.image_dataset_from_directory`'s): `DIR/<class>/*.png|jpg|...`,
class names sorted. Or `DIR/train/<class>/...` and `DIR/test/<class>/...` for a
test set of the user's own. Every file is decoded once when the folder is
scanned: unreadable files are skipped and counted (Keras's reader would stop
the whole run at the first one), and the most common size and channel count
become the defaults. Splits are carved by a fixed seed, independent of the
training seed, so runs with other seeds share their test images.
"""

import collections
import functools
import os

import numpy as np
from absl import logging

from dcn_keras.backend import tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1  # Only when the folder has no test/ of its own.
_SPLIT_SEED = 1337


def parse_image_size(value):
    """`(height, width)` from None, an int, `"N"`, `"HxW"` or a pair; None stays None.

    Raises:
        ValueError: anything else, or a size below 8 pixels.
    """
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            parts = [int(p) for p in value.lower().split("x")]
        elif isinstance(value, int):
            parts = [value]
        else:
            parts = [int(p) for p in value]
        size = (parts[0], parts[0]) if len(parts) == 1 else tuple(parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"--image_size={value!r} is not valid; give N or HxW with sides of at least 8 pixels.")
    return size


def _class_folders(directory):
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--data_dir={directory}: no such directory.")
    classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if len(classes) < 2:
        raise ValueError(f"--data_dir={directory} must hold one sub-folder of images per class, at least two; "
                         f"found {len(classes)} ({', '.join(classes) or 'none'}).")
    return classes


def _read(path, channels=0):
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def scan(directory, classes):
    """Decodes every image under `directory/<class>/`; returns `(files, labels, shapes, skipped)`."""
    files, labels, shapes, skipped = [], [], [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        for entry in sorted(os.listdir(folder)):
            if not entry.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(folder, entry)
            try:
                shape = tuple(_read(path).shape)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
                skipped.append(path)
                continue
            files.append(path)
            labels.append(label)
            shapes.append(shape)
    return files, np.array(labels, np.int64), shapes, skipped


def _carve(n, fractions):
    """Index arrays of consecutive shares of a fixed-seed permutation of `range(n)`; the last takes the rest."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    parts, start = [], 0
    for fraction in fractions:
        stop = start + max(1, int(round(fraction * n)))
        parts.append(order[start:stop])
        start = stop
    parts.append(order[start:])
    return parts


@functools.lru_cache(maxsize=8)
def _folder(directory):
    """Scans a folder once per process: its splits, classes, size and channels."""
    own_test = all(os.path.isdir(os.path.join(directory, d)) for d in ("train", "test"))
    root = os.path.join(directory, "train") if own_test else directory
    classes = _class_folders(root)
    files, labels, shapes, skipped = scan(root, classes)
    splits = {}
    if own_test:
        test_classes = _class_folders(os.path.join(directory, "test"))
        if test_classes != classes:
            raise ValueError(f"{directory}/test has classes {test_classes}; train/ has {classes}.")
        test = scan(os.path.join(directory, "test"), classes)
        splits["test"] = (test[0], test[1])
        shapes, skipped = shapes + test[2], skipped + test[3]
        validation, train = _carve(len(files), [VALIDATION_FRACTION])
    else:
        validation, test, train = _carve(len(files), [VALIDATION_FRACTION, TEST_FRACTION])
        splits["test"] = ([files[i] for i in test], labels[test])
    splits["validation"] = ([files[i] for i in validation], labels[validation])
    splits["train"] = ([files[i] for i in train], labels[train])
    if min(len(f) for f, _ in splits.values()) == 0 or len(files) < 10:
        raise ValueError(f"--data_dir={directory} has {len(files)} readable images; at least 10 are needed "
                         "to carve training, validation and test images.")
    if skipped:
        logging.warning("%s: skipped %d unreadable file(s) of %d, e.g. %s", directory, len(skipped),
                        len(skipped) + len(shapes), skipped[0])
    sizes = collections.Counter(s[:2] for s in shapes)
    channels = collections.Counter({1: 1, 2: 1, 3: 3, 4: 3}[s[2]] for s in shapes).most_common(1)[0][0]
    return {"splits": splits, "classes": tuple(classes), "sizes": sizes, "channels": channels}


def _pixels(image_size, channels):
    height, width = image_size

    def load(path, label):
        image = tf.image.convert_image_dtype(_read(path, channels), tf.float32)
        # Another size: scaled to fit, aspect kept, zero-padded.
        image = tf.image.resize_with_pad(image, height, width)
        return tf.ensure_shape(image, (height, width, channels)), label

    return load


def folder_split(split, data_dir=None, seed=0, training=False, image_size=None):
    """`(dataset, details)` of one split of an image folder; details: classes, image shape, source."""
    del seed, training  # The carve is fixed; shuffling is the trainer's.
    if not data_dir:
        raise ValueError("--dataset=folder needs --data_dir, the folder of one sub-folder per class.")
    directory = os.path.abspath(os.path.expanduser(data_dir))
    folder = _folder(directory)
    size = parse_image_size(image_size) or folder["sizes"].most_common(1)[0][0]
    if len(folder["sizes"]) > 1:
        _say_once(f"{directory}: images come in {len(folder['sizes'])} sizes; each is scaled to fit "
                  f"{size[0]}x{size[1]} (aspect kept, zero-padded)")
    files, labels = folder["splits"][split]
    dataset = tf.data.Dataset.from_tensor_slices((files, labels)).map(
        _pixels(size, folder["channels"]), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, dict(classes=folder["classes"], image_shape=(*size, folder["channels"]),
                         num_examples=len(files), source=f"image folder {directory} ({len(folder['classes'])} classes)")


_SAID = set()


def _say_once(message):
    if message not in _SAID:
        _SAID.add(message)
        logging.warning("%s", message)


def _tfds_splits(splits):
    """TFDS split names for train/validation/test: the dataset's own, else carved from train."""
    carve = {"train": "train", "validation": "validation", "test": "test"}
    if "validation" not in splits and "test" not in splits:
        carve.update(train="train[:80%]", validation="train[80%:90%]", test="train[90%:]")
    elif "validation" not in splits:
        carve.update(train="train[:90%]", validation="train[90%:]")
    elif "test" not in splits:
        carve.update(test="validation")  # Its only held-out split.
        carve.update(validation="train[95%:]", train="train[:95%]")
    return carve


def tfds_split(name, split, data_dir=None, image_size=None):
    """`(dataset, details)` of a TFDS image-classification dataset with `image` and `label` features."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features or not hasattr(features["label"], "names"):
        raise ValueError(f"--dataset=tfds:{name} needs 'image' and 'label' (class label) features; "
                         f"it has {', '.join(features.keys())}.")
    height, width, channels = features["image"].shape
    size = parse_image_size(image_size) or (None if None in (height, width) else (height, width))
    if size is None:
        raise ValueError(f"--dataset=tfds:{name} has images of varying size; give --image_size (e.g. 128).")
    channels = channels or 3
    tfds_split_name = _tfds_splits(set(builder.info.splits.keys()))[split]
    dataset = tfds.load(name, split=tfds_split_name, data_dir=data_dir)

    def pixels(example):
        image = tf.image.convert_image_dtype(example["image"], tf.float32)
        return tf.ensure_shape(tf.image.resize_with_pad(image, *size), (*size, channels)), example["label"]

    dataset = dataset.map(pixels, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, dict(classes=tuple(features["label"].names), image_shape=(*size, channels),
                         num_examples=int(dataset.cardinality()), source=f"TFDS {name} ({tfds_split_name})")
