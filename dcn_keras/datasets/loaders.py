"""Loads a registered dataset split as a `tf.data.Dataset` of (image, label)."""


from dcn_keras.backend import tf
from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import image_folder
from dcn_keras.datasets import mnist_numbers
from dcn_keras.datasets import number_labels
from dcn_keras.datasets import svhn_multi_digit
from dcn_keras.datasets.dataset_info import DatasetInfo

# Validation is carved from the end of TFDS's train split.
_TFDS_SPLITS = {"train": "train[:95%]", "validation": "train[95%:]", "test": "test"}


def _cluttered_mnist(split, data_dir=None, seed=0, training=False, digits="auto",
                     examples_per_digit=1, canvas_size=None, num_distractors=None, mnist_dir=None):
    canvases, labels, corners, index, images, source = cluttered_mnist.split_canvases(
        split, digits, data_dir, seed, examples_per_digit, canvas_size, num_distractors, mnist_dir)
    dataset = tf.data.Dataset.from_tensor_slices((canvases, labels)).map(
        lambda x, y: (tf.cast(x, tf.float32) / 255.0, y),
        num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="cluttered_mnist", split=split, image_shape=canvases.shape[1:],
        num_examples=len(canvases), preset="cluttered_mnist",
        source=f"{source} MNIST digits ({len(images)} in {split})",
        class_names=tuple(str(d) for d in range(10)),
        object_boxes=cluttered_mnist.ink_boxes(images, corners, index))
    return dataset, info


def _mnist_numbers(split, data_dir=None, seed=0, training=False, digits="auto", examples_per_digit=None,
                   max_digits=number_labels.MAX_DIGITS, mnist_dir=None, canvas_size=None):
    images, labels, boxes, source = mnist_numbers.split_numbers(
        split, digits, data_dir, seed, examples_per_digit, image_size=canvas_size or 64, max_digits=max_digits,
        mnist_dir=mnist_dir, digit_scale=1.0)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).map(
        # Three equal channels: the svhn towers' input.
        lambda x, y: (tf.image.grayscale_to_rgb(tf.cast(x, tf.float32) / 255.0), y),
        num_parallel_calls=tf.data.AUTOTUNE)
    size = images.shape[1]
    info = DatasetInfo(
        name="mnist_numbers", split=split, image_shape=(size, size, 3), num_examples=len(images),
        # svhn_positional: the svhn towers with a top that keeps the digits'
        # order (fine model 34.3% whole-number error against 51.9% with the
        # svhn top's global pool: docs/results.md).
        preset="svhn_positional", source=f"numbers of 1-{max_digits} {source} MNIST digits ({split} digits)",
        object_boxes=boxes)
    return dataset, info


def _svhn(split, data_dir=None, seed=0, training=False, crop="whole"):
    if crop not in ("whole", "goodfellow"):
        raise ValueError(f"Unknown SVHN crop {crop!r}; expected 'whole' or 'goodfellow'.")
    builder = svhn_multi_digit.SvhnMultiDigit(data_dir=data_dir)
    builder.download_and_prepare()
    dataset = builder.as_dataset(split=_TFDS_SPLITS[split])
    # As Goodfellow et al.: numbers longer than five digits are left out.
    dataset = dataset.filter(lambda ex: tf.shape(ex["digits"])[0] <= number_labels.MAX_DIGITS)
    dataset = dataset.enumerate().map(
        lambda i, ex: svhn_multi_digit.preprocess(ex, crop, training, tf.stack([tf.cast(seed, tf.int64), i])),
        num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="svhn", split=split, image_shape=svhn_multi_digit.image_shape(crop),
        num_examples=builder.info.splits[_TFDS_SPLITS[split]].num_examples, preset="svhn",
        source=f"SVHN format 1 ({crop} images) in {builder.data_dir}")
    return dataset, info


def _svhn_cropped(split, data_dir=None, seed=0, training=False):
    import tensorflow_datasets as tfds

    dataset = tfds.load("svhn_cropped", split=_TFDS_SPLITS[split], data_dir=data_dir)
    dataset = dataset.map(
        lambda ex: (tf.cast(ex["image"], tf.float32) / 255.0, ex["label"]),
        num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="svhn_cropped", split=split, image_shape=(32, 32, 3),
        num_examples=int(dataset.cardinality()),
        preset="svhn_cropped", source="TFDS svhn_cropped (32x32 single digits)",
        class_names=tuple(str(d) for d in range(10)))
    return dataset, info


def _info(name, split, details):
    return DatasetInfo(name=name, split=split, image_shape=details["image_shape"],
                       num_examples=details["num_examples"], preset="images", source=details["source"],
                       class_names=details["classes"])


def _folder(split, data_dir=None, seed=0, training=False, image_size=None):
    dataset, details = image_folder.folder_split(split, data_dir, seed, training, image_size)
    return dataset, _info("folder", split, details)


DATASETS = {
    "cluttered_mnist": _cluttered_mnist,
    "mnist_numbers": _mnist_numbers,
    "svhn": _svhn,
    "svhn_cropped": _svhn_cropped,
    "folder": _folder,
}
TFDS_PREFIX = "tfds:"  # `tfds:NAME`: any TFDS image-classification dataset.


def check_dataset_name(name):
    """Raises a `ValueError` naming the registered datasets when `name` is none of them."""
    if name in DATASETS or (name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)):
        return
    raise ValueError(f"--dataset={name!r} is not valid; choose one of: {', '.join(sorted(DATASETS))}, "
                     f"or {TFDS_PREFIX}NAME for a TFDS image-classification dataset.")


def load_dataset(name, split, **options):
    """Returns `(dataset, info)`: unbatched float32 images in [0, 1] and labels.

    Args:
        name: str, a key of `DATASETS`.
        split: str, `"train"`, `"validation"` or `"test"`.
        **options: the dataset's own options (`data_dir`, `seed`,
            `training`, and e.g. `digits` for cluttered MNIST).
    """
    check_dataset_name(name)
    if split not in cluttered_mnist.SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {cluttered_mnist.SPLITS}.")
    if name.startswith(TFDS_PREFIX):
        options = {k: v for k, v in options.items() if k in ("data_dir", "image_size")}
        dataset, details = image_folder.tfds_split(name[len(TFDS_PREFIX):], split, **options)
        return dataset, _info(name, split, details)
    return DATASETS[name](split, **options)


__all__ = ["DATASETS", "TFDS_PREFIX", "check_dataset_name", "load_dataset"]
