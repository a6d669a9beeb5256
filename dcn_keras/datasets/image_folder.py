"""A user's own images: one sub-folder per class, or any TFDS image-classification dataset.

Folder layout (`keras.utils.image_dataset_from_directory`'s): `DIR/<class>/*.png|jpg|...`,
class names sorted. Or `DIR/train/<class>/...` and `DIR/test/<class>/...` for a
test set of the user's own. A scan reads each file's header only
(`image_headers`), so a folder of 20,000 photos scans in seconds: files
without a sound header are skipped and counted (Keras's reader would stop the
whole run at the first one), and the most common size and channel count
become the defaults. Pixels are decoded when the pipeline reads an image; a
file whose body fails to decode then is skipped there too, named once and
counted (`read_failures`). Splits are carved by a fixed seed, independent of
the training seed, so runs with other seeds share their test images.
"""

import collections
import functools
import os

import numpy as np
from absl import logging

from dcn_keras.backend import tf
from dcn_keras.datasets.image_headers import image_header

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
        raise ValueError(f"image_size={value!r} is not valid; give N or HxW with sides of at least 8 pixels.")
    return size


def _class_folders(directory):
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"data_dir={directory}: no such directory.")
    classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if len(classes) < 2:
        raise ValueError(f"data_dir={directory} must hold one sub-folder of images per class, at least two; "
                         f"found {len(classes)} ({', '.join(classes) or 'none'}).")
    return classes


def scan(directory, classes):
    """Reads the header of every image under `directory/<class>/`; returns `(files, labels, shapes, skipped)`."""
    files, labels, shapes, skipped = [], [], [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        for entry in sorted(os.listdir(folder)):
            if not entry.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(folder, entry)
            shape = image_header(path)
            if shape is None:
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
        raise ValueError(f"data_dir={directory} has {len(files)} readable images; at least 10 are needed "
                         "to carve training, validation and test images.")
    if skipped:
        logging.warning("%s: skipped %d unreadable file(s) of %d, e.g. %s", directory, len(skipped),
                        len(skipped) + len(shapes), skipped[0])
    sizes = collections.Counter(s[:2] for s in shapes)
    channels = collections.Counter({1: 1, 2: 1, 3: 3, 4: 3}[s[2]] for s in shapes).most_common(1)[0][0]
    return {"splits": splits, "classes": tuple(classes), "sizes": sizes, "channels": channels}


_READ_FAILURES = set()


def read_failures():
    """The files that passed the scan but failed to decode when read (skipped there), sorted."""
    return sorted(_READ_FAILURES)


def _fit(image, height, width, channels):
    # Another size: scaled to fit, aspect kept, zero-padded.
    image = tf.image.resize_with_pad(tf.image.convert_image_dtype(image, tf.float32), height, width)
    return tf.ensure_shape(image, (height, width, channels))


def _decoder(image_size, channels):
    """`decode(path, label) -> (image, label, readable)`; an unreadable file gives zeros and False."""
    height, width = image_size

    def read(path):
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            return _fit(image, height, width, channels), True
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            name = path.numpy().decode()
            if name not in _READ_FAILURES:
                _READ_FAILURES.add(name)
                logging.warning("%s could not be decoded; skipped (%d such file(s) so far)", name,
                                len(_READ_FAILURES))
            return tf.zeros((height, width, channels)), False

    def decode(path, label):
        # Eager, so that a damaged file is caught here rather than ending the run.
        image, readable = tf.py_function(read, [path], [tf.float32, tf.bool])
        return tf.ensure_shape(image, (height, width, channels)), label, tf.ensure_shape(readable, ())

    return decode


def folder_split(split, data_dir=None, seed=0, training=False, image_size=None):
    """`(records, decode, details)` of one split of an image folder; details: classes, image shape, source.

    The records are file names and labels; `decode` reads one, as
    `(image, label, readable)` (`load_dataset` drops the unreadable).
    """
    del seed, training  # The carve is fixed; shuffling is load_dataset's.
    if not data_dir:
        raise ValueError("dataset=folder needs data_dir, the folder of one sub-folder per class.")
    directory = os.path.abspath(os.path.expanduser(data_dir))
    folder = _folder(directory)
    size = parse_image_size(image_size) or folder["sizes"].most_common(1)[0][0]
    if len(folder["sizes"]) > 1:
        _say_once(f"{directory}: images come in {len(folder['sizes'])} sizes; each is scaled to fit "
                  f"{size[0]}x{size[1]} (aspect kept, zero-padded)")
    files, labels = folder["splits"][split]
    records = tf.data.Dataset.from_tensor_slices((files, labels))
    return records, _decoder(size, folder["channels"]), dict(classes=folder["classes"], image_shape=(*size, folder["channels"]),
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


def tfds_split(name, split, data_dir=None, image_size=None, splits=None):
    """`(records, decode, details)` of a TFDS image-classification dataset with `image` and `label` features.

    The records are TFDS examples with their images still encoded; `decode`
    decodes and scales one. `splits` maps train/validation/test to TFDS
    split names (default: the dataset's own, else carved from train).
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features or not hasattr(features["label"], "names"):
        raise ValueError(f"dataset=tfds:{name} needs 'image' and 'label' (class label) features; "
                         f"it has {', '.join(features.keys())}.")
    height, width, channels = features["image"].shape
    size = parse_image_size(image_size) or (None if None in (height, width) else (height, width))
    if size is None:
        raise ValueError(f"dataset=tfds:{name} has images of varying size; give image_size (e.g. 128).")
    channels = channels or 3
    tfds_split_name = (splits or _tfds_splits(set(builder.info.splits.keys())))[split]
    records = tfds.load(name, split=tfds_split_name, data_dir=data_dir,
                        decoders={"image": tfds.decode.SkipDecoding()})

    def decode(example):
        image = tf.io.decode_image(example["image"], channels=channels, expand_animations=False)
        return _fit(image, *size, channels), example["label"]

    return records, decode, dict(classes=tuple(features["label"].names), image_shape=(*size, channels),
                                 num_examples=int(records.cardinality()),
                                 source=f"TFDS {name} ({tfds_split_name})")
