"""Loads a registered dataset split as a `tf.data.Dataset` of (image, label)."""

import inspect

import numpy as np
from tensorflow_datasets import decode as tfds_decode

from dcn_keras.backend import tf
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import image_folder
from dcn_keras.datasets import megapixel_mnist
from dcn_keras.datasets import mnist_numbers
from dcn_keras.datasets import number_labels
from dcn_keras.datasets import svhn_multi_digit
from dcn_keras.datasets.dataset_info import DatasetInfo
from dcn_keras.heads import PLACE_KEY

# Validation is carved from the end of TFDS's train split.
_TFDS_SPLITS = {"train": "train[:95%]", "validation": "train[95%:]", "test": "test"}


def _indexed(arrays, decode):
    """`(records, decode)` over in-memory arrays: the records are indices, `decode` gathers and converts.

    Shuffling indices rather than images keeps a shuffle buffer small, and
    orders a split exactly as shuffling its elements would (a `tf.data`
    shuffle's order depends on the element count and seed alone). The
    arrays stay NumPy arrays, read an element at a time: a TensorFlow
    constant of them would be a second copy of every split (a 384-pixel
    `mnist_numbers` training split is 7.4 GB).
    """
    flat = [np.asarray(a) for a in tf.nest.flatten(arrays)]
    dtypes = [tf.as_dtype(a.dtype) for a in flat]

    def gather(i):
        return [a[i] for a in flat]

    def gather_and_decode(i):
        parts = tf.numpy_function(gather, [i], dtypes, stateful=False)
        for part, a in zip(parts, flat):
            part.set_shape(a.shape[1:])
        return decode(*tf.nest.pack_sequence_as(arrays, parts))

    return tf.data.Dataset.range(len(flat[0])), gather_and_decode


def _scaled(image, label):
    return tf.cast(image, tf.float32) / 255.0, label


def _scaled_rgb(image, label):
    # Three equal channels: the svhn towers' input.
    return tf.image.grayscale_to_rgb(tf.cast(image, tf.float32) / 255.0), label


def _cluttered_mnist(split, data_dir=None, seed=0, training=False, digits="auto",
                     examples_per_digit=1, canvas_size=None, num_distractors=None, mnist_dir=None):
    canvases, labels, corners, index, images, source = cluttered_mnist.split_canvases(
        split, digits, data_dir, seed, examples_per_digit, canvas_size, num_distractors, mnist_dir)
    records, decode = _indexed((canvases, labels), _scaled)
    info = DatasetInfo(
        name="cluttered_mnist", split=split, image_shape=canvases.shape[1:],
        num_examples=len(canvases), preset="cluttered_mnist",
        source=f"{source} MNIST digits ({len(images)} in {split})",
        class_names=tuple(str(d) for d in range(10)),
        object_boxes=cluttered_mnist.ink_boxes(images, corners, index))
    return records, decode, info


def _megapixel_mnist(split, data_dir=None, seed=0, training=False, digits="auto", canvas_size=None,
                     num_noise=None, mnist_dir=None, num_canvases=None):
    described, images, source = megapixel_mnist.split_descriptions(
        split, digits, data_dir, seed, canvas_size, num_noise, mnist_dir, num_canvases)
    draw = megapixel_mnist.canvas_drawer(images, described.canvas_size)
    # Descriptions, a few dozen numbers a canvas, are what is held and
    # shuffled; a canvas is drawn when the pipeline reads it.
    records = tf.data.Dataset.from_tensor_slices(
        (described.digit_index, described.digit_corners, described.noise_index, described.noise_corners,
         described.labels))
    size = described.canvas_size

    def decode(digit_index, digit_corners, noise_index, noise_corners, label):
        return draw(digit_index, digit_corners, noise_index, noise_corners), label

    info = DatasetInfo(
        name="megapixel_mnist", split=split, image_shape=(size, size, 1), num_examples=len(described),
        preset="megapixel_mnist",
        source=f"{source} MNIST digits ({len(images)} in {split}), {size}x{size} canvases with "
               f"{described.noise_index.shape[1]} noise blocks",
        class_names=tuple(str(d) for d in range(10)),
        object_boxes=megapixel_mnist.digit_boxes(described, images), eight_bit=True)
    return records, decode, info


def _mnist_numbers(split, data_dir=None, seed=0, training=False, digits="auto", examples_per_digit=None,
                   max_digits=number_labels.MAX_DIGITS, mnist_dir=None, canvas_size=None, place_boxes=False):
    images, labels, boxes, source = mnist_numbers.split_numbers(
        split, digits, data_dir, seed, examples_per_digit, image_size=canvas_size or 64, max_digits=max_digits,
        mnist_dir=mnist_dir, digit_scale=1.0)
    if place_boxes:  # Each digit's box beside the heads' labels, for the place loss.
        labels = dict(labels, **{PLACE_KEY: boxes})
    records, decode = _indexed((images, labels), _scaled_rgb)
    size = images.shape[1]
    info = DatasetInfo(
        name="mnist_numbers", split=split, image_shape=(size, size, 3), num_examples=len(images),
        # svhn_positional: the svhn towers with a top that keeps the digits'
        # order (fine model 34.3% whole-number error against 51.9% with the
        # svhn top's global pool: docs/results.md).
        preset="svhn_positional", source=f"numbers of 1-{max_digits} {source} MNIST digits ({split} digits)",
        object_boxes=boxes)
    return records, decode, info


def _svhn(split, data_dir=None, seed=0, training=False, crop="whole"):
    if crop not in ("whole", "goodfellow"):
        raise ValueError(f"Unknown SVHN crop {crop!r}; expected 'whole' or 'goodfellow'.")
    builder = svhn_multi_digit.SvhnMultiDigit(data_dir=data_dir)
    builder.download_and_prepare()
    # Encoded images are what is shuffled; they are decoded after.
    records = builder.as_dataset(split=_TFDS_SPLITS[split], decoders={"image": tfds_decode.SkipDecoding()})
    # As Goodfellow et al.: numbers longer than five digits are left out.
    records = records.filter(lambda ex: tf.shape(ex["digits"])[0] <= number_labels.MAX_DIGITS).enumerate()

    def decode(i, example):
        example = dict(example, image=tf.io.decode_image(example["image"], channels=3, expand_animations=False))
        return svhn_multi_digit.preprocess(example, crop, training, tf.stack([tf.cast(seed, tf.int64), i]))

    info = DatasetInfo(
        name="svhn", split=split, image_shape=svhn_multi_digit.image_shape(crop),
        num_examples=builder.info.splits[_TFDS_SPLITS[split]].num_examples, preset="svhn",
        source=f"SVHN format 1 ({crop} images) in {builder.data_dir}")
    return records, decode, info


def _svhn_cropped(split, data_dir=None, seed=0, training=False):
    records, decode, details = image_folder.tfds_split("svhn_cropped", split, data_dir=data_dir,
                                                       splits=_TFDS_SPLITS)
    info = DatasetInfo(
        name="svhn_cropped", split=split, image_shape=(32, 32, 3), num_examples=details["num_examples"],
        preset="svhn_cropped", source="TFDS svhn_cropped (32x32 single digits)",
        class_names=tuple(str(d) for d in range(10)))
    return records, decode, info


def _info(name, split, details):
    return DatasetInfo(name=name, split=split, image_shape=details["image_shape"],
                       num_examples=details["num_examples"], preset="images", source=details["source"],
                       class_names=details["classes"])


def _folder(split, data_dir=None, seed=0, training=False, image_size=None):
    records, decode, details = image_folder.folder_split(split, data_dir, seed, training, image_size)
    return records, decode, _info("folder", split, details)


DATASETS = {
    "cluttered_mnist": _cluttered_mnist,
    "megapixel_mnist": _megapixel_mnist,
    "mnist_numbers": _mnist_numbers,
    "svhn": _svhn,
    "svhn_cropped": _svhn_cropped,
    "folder": _folder,
}
TFDS_PREFIX = "tfds:"  # `tfds:NAME`: any TFDS image-classification dataset.
# A TFDS split is fixed: `seed` and `training` are taken and change nothing.
_TFDS_OPTIONS = ("data_dir", "seed", "training", "image_size")
# Records (indices, file names, canvas descriptions, encoded images) held by
# a training shuffle. 10,000 as when decoded images were shuffled, so a
# split's training order is the one it always had.
SHUFFLE_BUFFER = 10_000


def check_dataset_name(name):
    """Raises a `ValueError` naming the registered datasets when `name` is none of them."""
    if name in DATASETS or (name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)):
        return
    raise ValueError(f"dataset={name!r} is not valid; choose one of: {', '.join(sorted(DATASETS))}, "
                     f"or {TFDS_PREFIX}NAME for a TFDS image-classification dataset.")


def listed(names):
    """`"a, b and c"`: names for a message."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def dataset_options(name):
    """The options `load_dataset(name, split, ...)` takes besides `shuffle_seed`."""
    check_dataset_name(name)
    if name.startswith(TFDS_PREFIX):
        return _TFDS_OPTIONS
    return tuple(inspect.signature(DATASETS[name]).parameters)[1:]


def check_options(name, options):
    """A ValueError for any of `options` (a dict) that dataset `name` does not take, naming who does."""
    allowed = dataset_options(name)
    for option, value in options.items():
        if option in allowed:
            continue
        takers = [d for d in (*sorted(DATASETS), TFDS_PREFIX + "NAME") if option in dataset_options(d)]
        if not takers:
            raise ValueError(f"No dataset takes the option {option}={value!r}; dataset={name!r} takes "
                             f"{', '.join(allowed)}.")
        raise ValueError(f"{option}={value!r} applies to {listed(takers)} only, not dataset={name!r}.")


def load_dataset(name, split, shuffle_seed=None, **options):
    """Returns `(dataset, info)`: unbatched float32 images in [0, 1] and labels.

    Images are decoded (or drawn) after any shuffle, from cheap records
    (indices into a split's arrays, file names, canvas descriptions, encoded
    images), so memory does not grow with the images.

    Args:
        name: str, a key of `DATASETS`, or `tfds:NAME`.
        split: str, `"train"`, `"validation"` or `"test"`.
        shuffle_seed: int or None. None (default): the split once, in its
            order. An int: an endless stream, reshuffled each pass from this
            seed (`SHUFFLE_BUFFER` records), as training reads it.
        **options: the dataset's own options (`data_dir`, `seed`,
            `training`, and e.g. `digits` for cluttered MNIST:
            `dataset_options(name)`).

    Raises:
        ValueError: an unknown dataset or split, or an option the dataset
            does not take (naming the datasets that do).
    """
    check_options(name, options)
    if split not in cluttered_mnist.SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {cluttered_mnist.SPLITS}.")
    if name.startswith(TFDS_PREFIX):
        options = {k: v for k, v in options.items() if k in ("data_dir", "image_size")}  # Not seed, training.
        records, decode, details = image_folder.tfds_split(name[len(TFDS_PREFIX):], split, **options)
        info = _info(name, split, details)
    else:
        records, decode, info = DATASETS[name](split, **options)
    if shuffle_seed is not None:
        records = records.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=True).repeat()
    dataset = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if len(dataset.element_spec) == 3:
        # `(image, label, readable)`: a reader that skips what fails to decode.
        dataset = dataset.filter(_readable).map(_image_and_label)
    return dataset, info


def _readable(image, label, readable):
    return readable


def _image_and_label(image, label, readable):
    return image, label


__all__ = ["DATASETS", "SHUFFLE_BUFFER", "TFDS_PREFIX", "check_dataset_name", "dataset_options", "load_dataset"]
