"""Multi-digit SVHN ("format 1": full house-number images) as a TFDS builder."""

import os

import h5py
import numpy as np
import tensorflow_datasets as tfds

from dcn_keras.backend import tf
from dcn_keras.datasets.number_labels import labels_from_digits
from dcn_keras.io_utils import unreachable_reason

URL = "http://ufldl.stanford.edu/housenumbers/"
ARCHIVES = {"train": "train.tar.gz", "test": "test.tar.gz"}

INSTRUCTIONS = (
    "Put SVHN format 1 (http://ufldl.stanford.edu/housenumbers/) in <data_dir>/downloads/manual/: "
    "the archives train.tar.gz and test.tar.gz, or extracted as train/ and test/, each holding "
    "digitStruct.mat and 1.png, 2.png, ..."
)
# Told only when SVHN is out of reach: the multi-digit path without SVHN pixels.
OFFLINE = ("Without SVHN, dataset=mnist_numbers (load_dataset(\"mnist_numbers\", ...)) trains the same "
           "length and digit heads offline on numbers of real handwritten MNIST digits.")


def _read_value(h5, dataset):
    """A bbox field: inline values for one digit, references for several."""
    if dataset.dtype == h5py.ref_dtype:
        return [float(h5[ref][()].item()) for ref in dataset[()].ravel()]
    return [float(v) for v in np.asarray(dataset[()]).ravel()]


def read_digit_struct(path):
    """Yields `(file name, labels, boxes)` from a `digitStruct.mat` (HDF5).

    Labels are 0-9 (the file's 10 means 0); boxes are `[top, left, height,
    width]` in pixels.
    """
    with h5py.File(path, "r") as h5:
        names = h5["digitStruct"]["name"]
        bboxes = h5["digitStruct"]["bbox"]
        for i in range(names.shape[0]):
            name = "".join(chr(int(c)) for c in h5[names[i][0]][()].ravel())
            group = h5[bboxes[i][0]]
            fields = {k: _read_value(h5, group[k]) for k in ("label", "top", "left", "height", "width")}
            labels = [int(v) % 10 for v in fields["label"]]
            boxes = np.stack([fields[k] for k in ("top", "left", "height", "width")], -1)
            yield name, labels, boxes.astype(np.float32)


class SvhnMultiDigit(tfds.core.GeneratorBasedBuilder):
    """SVHN house numbers with their digit boxes (Netzer et al. 2011, format 1).

    Downloads `train.tar.gz` and `test.tar.gz` when it can; reads a local copy
    from the manual directory when it is there (see `INSTRUCTIONS`). Each
    example: the full image, its digits (0-9) and their pixel boxes
    `[top, left, height, width]`.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "digits": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=10)),
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
            }),
            homepage=URL,
        )

    def _split_generators(self, dl_manager):
        local = _local_copy(dl_manager)
        if local is None:
            reason = unreachable_reason(URL)
            if reason:
                raise FileNotFoundError(
                    f"SVHN cannot be downloaded ({reason}) and there is no local copy in "
                    f"{dl_manager._manual_dir}. " + INSTRUCTIONS + " " + OFFLINE)
            local = dl_manager.download_and_extract(
                {split: URL + archive for split, archive in ARCHIVES.items()})
            local = {split: os.path.join(path, split) for split, path in local.items()}
        return {split: self._generate_examples(path) for split, path in local.items()}

    def _generate_examples(self, directory):
        directory = str(directory)
        for name, digits, boxes in read_digit_struct(os.path.join(directory, "digitStruct.mat")):
            yield name, {"image": os.path.join(directory, name), "digits": digits, "boxes": boxes}


def _local_copy(dl_manager):
    """`{split: extracted dir}` from the manual dir, or None if absent."""
    try:
        manual = str(dl_manager.manual_dir)
    except (AssertionError, ValueError):
        return None
    found = {}
    for split, archive in ARCHIVES.items():
        if os.path.exists(os.path.join(manual, split, "digitStruct.mat")):
            found[split] = os.path.join(manual, split)
        elif os.path.exists(os.path.join(manual, archive)):
            found[split] = os.path.join(dl_manager.extract(os.path.join(manual, archive)), split)
    if len(found) < len(ARCHIVES):
        missing = [f"{s}/digitStruct.mat or {a}" for s, a in ARCHIVES.items() if s not in found]
        raise FileNotFoundError(
            f"SVHN local copy in {manual} is missing {', '.join(missing)}. " + INSTRUCTIONS)
    return found


def preprocess(example, crop, training, seed):
    """Image in [0, 1] and labels, the whole image or Goodfellow's crop.

    `"whole"`: the whole image resized to 64x64 (as the paper). `"goodfellow"`:
    the digits' bounding box grown by 30%, cropped, resized to 64x64, then a
    random 54x54 crop when training (from the per-example `seed`, a pair
    of ints) and the central one otherwise.
    """
    image = tf.cast(example["image"], tf.float32) / 255.0
    if crop == "goodfellow":
        boxes = example["boxes"]
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        top = tf.reduce_min(boxes[:, 0])
        left = tf.reduce_min(boxes[:, 1])
        bottom = tf.reduce_max(boxes[:, 0] + boxes[:, 2])
        right = tf.reduce_max(boxes[:, 1] + boxes[:, 3])
        grow_y, grow_x = 0.15 * (bottom - top), 0.15 * (right - left)
        box = tf.stack([tf.maximum(top - grow_y, 0.0) / size[0],
                        tf.maximum(left - grow_x, 0.0) / size[1],
                        tf.minimum(bottom + grow_y, size[0]) / size[0],
                        tf.minimum(right + grow_x, size[1]) / size[1]])
        image = tf.image.crop_and_resize(image[None], box[None], [0], [64, 64])[0]
        if training:
            image = tf.image.stateless_random_crop(image, [54, 54, 3], seed=seed)
        else:
            image = image[5:59, 5:59]
    else:
        image = tf.image.resize(image, [64, 64])
    return image, labels_from_digits(example["digits"])


def image_shape(crop):
    return (54, 54, 3) if crop == "goodfellow" else (64, 64, 3)
