"""A user's own images: a folder of one sub-folder per class, and TFDS image datasets."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from dcn_keras.backend import tf
from dcn_keras.datasets import image_folder
from dcn_keras.datasets import load_dataset

CLASSES = ("circle", "cross", "square")


def make_folder(root, per_class=8, sizes=((40, 48),), corrupt=1, mode="RGB"):
    """Images whose class is a shape drawn at a random place; `corrupt` unreadable files in the first class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for n in range(per_class):
            h, w = sizes[n % len(sizes)]
            image = (rng.random((h, w, 3)) * 40).astype(np.uint8)
            r, q = rng.integers(0, h - 10), rng.integers(0, w - 10)
            if c == 0:
                image[r + 2:r + 8, q + 2:q + 8] = 255
            elif c == 1:
                image[r + 4:r + 6, q:q + 10] = 255
                image[r:r + 10, q + 4:q + 6] = 255
            else:
                image[r:r + 10, q:q + 10] = 255
                image[r + 2:r + 8, q + 2:q + 8] = 0
            Image.fromarray(image).convert(mode).save(os.path.join(root, name, f"{n:03d}.png"))
    for n in range(corrupt):
        with open(os.path.join(root, CLASSES[0], f"broken_{n}.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n not really")
    (open(os.path.join(root, CLASSES[1], "notes.txt"), "w")).write("not an image")
    return str(root)


@pytest.fixture(autouse=True)
def _fresh_scan():
    image_folder._folder.cache_clear()
    image_folder._SAID.clear()


def test_a_folder_splits_by_a_fixed_seed_with_class_names_size_and_channels(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda fmt, *args: warnings.append(fmt % args))
    root = make_folder(tmp_path / "shapes", per_class=10, sizes=((40, 48), (40, 48), (30, 30)))
    splits = {}
    for split in ("train", "validation", "test"):
        dataset, info = load_dataset("folder", split, data_dir=root, seed=split == "train")
        images, labels = zip(*[(x.numpy(), int(y)) for x, y in dataset])
        splits[split] = (np.stack(images), labels)
        assert info.class_names == CLASSES and info.image_shape == (40, 48, 3) and info.preset == "images"
        assert info.num_examples == len(images)
    assert [len(splits[s][1]) for s in ("train", "validation", "test")] == [24, 3, 3]  # 30 readable
    assert all(0.0 <= splits[s][0].min() and splits[s][0].max() <= 1.0 for s in splits)
    # Nothing shared between splits, and the same split on a second scan.
    flat = {s: {x.tobytes() for x in splits[s][0]} for s in splits}
    assert not (flat["train"] & flat["test"]) and not (flat["train"] & flat["validation"])
    image_folder._folder.cache_clear()
    again, _ = load_dataset("folder", "test", data_dir=root)
    np.testing.assert_array_equal(np.stack([x.numpy() for x, _ in again]), splits["test"][0])
    assert any("skipped 1 unreadable file(s) of 31" in w and "broken_0.png" in w for w in warnings), warnings
    assert sum("come in 2 sizes; each is scaled to fit 40x48" in w for w in warnings) == 1, warnings


def test_image_size_and_gray_files(tmp_path):
    root = make_folder(tmp_path / "gray", mode="L", corrupt=0)
    dataset, info = load_dataset("folder", "train", data_dir=root, image_size="32x64")
    assert info.image_shape == (32, 64, 1)
    assert next(iter(dataset))[0].shape == (32, 64, 1)


def test_a_train_and_test_folder_keeps_its_own_test_images(tmp_path):
    make_folder(tmp_path / "both" / "train", corrupt=0)
    make_folder(tmp_path / "both" / "test", per_class=2, corrupt=0)
    _, test = load_dataset("folder", "test", data_dir=str(tmp_path / "both"))
    _, train = load_dataset("folder", "train", data_dir=str(tmp_path / "both"))
    assert test.num_examples == 6 and train.num_examples == 24 - 2


def test_bad_folders_get_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        load_dataset("folder", "train", data_dir=str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "one" / "cats")
    with pytest.raises(ValueError, match=r"at least two; found 1 \(cats\)"):
        load_dataset("folder", "train", data_dir=str(tmp_path / "one"))
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("folder", "train")
    root = make_folder(tmp_path / "tiny", per_class=2, corrupt=0)
    with pytest.raises(ValueError, match="has 6 readable images; at least 10"):
        load_dataset("folder", "train", data_dir=root)
    for bad in ("0", "axb", "4x4", "1x2x3"):
        with pytest.raises(ValueError, match=f"image_size={bad!r} is not valid"):
            image_folder.parse_image_size(bad)
    with pytest.raises(ValueError, match="tfds:NAME for a TFDS image-classification dataset"):
        load_dataset("folders", "train")


def test_tfds_image_datasets_use_their_features_splits_and_names():
    with tfds.testing.mock_data(num_examples=12):
        dataset, info = load_dataset("tfds:cats_vs_dogs", "test", image_size="40")
        assert info.class_names == ("cat", "dog") and info.image_shape == (40, 40, 3)
        x, y = next(iter(dataset))
        assert x.shape == (40, 40, 3) and 0.0 <= float(x.numpy().min()) and int(y) in (0, 1)
        with pytest.raises(ValueError, match="varying size; give image_size"):
            load_dataset("tfds:cats_vs_dogs", "train")
        _, info = load_dataset("tfds:mnist", "validation")
        assert info.image_shape == (28, 28, 1) and info.source.startswith("TFDS mnist (train[")


def test_tfds_splits_are_the_datasets_own_or_carved_from_train():
    assert image_folder._tfds_splits({"train", "test"}) == {
        "train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
    assert image_folder._tfds_splits({"train"})["test"] == "train[90%:]"
    assert image_folder._tfds_splits({"train", "validation", "test"})["validation"] == "validation"


def test_the_scan_reads_headers_only_and_a_damaged_body_is_skipped_when_read(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "shapes", per_class=5, corrupt=0)
    good = os.path.join(root, CLASSES[2], "000.png")
    damaged = os.path.join(root, CLASSES[2], "damaged.png")
    data = open(good, "rb").read()
    with open(damaged, "wb") as f:  # A sound IHDR, then garbage where the pixels are.
        f.write(data[:33] + b"\x00" * 64)
    monkeypatch.setattr(image_folder, "_READ_FAILURES", set())
    decoded = []
    real_decode = tf.io.decode_image
    monkeypatch.setattr(tf.io, "decode_image", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    files = [f for split in ("train", "validation", "test")
             for f in image_folder._folder(os.path.abspath(root))["splits"][split][0]]
    assert damaged in files and not decoded  # 16 files scanned, none decoded.
    read = []
    for split in ("train", "validation", "test"):
        dataset, info = load_dataset("folder", split, data_dir=root)
        read += [int(y) for _, y in dataset]
    assert len(read) == 15 and image_folder.read_failures() == [damaged]


def test_a_training_stream_shuffles_file_names_and_repeats(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=10, corrupt=0)
    stream, info = load_dataset("folder", "train", shuffle_seed=1, data_dir=root)
    once, _ = load_dataset("folder", "train", data_dir=root)
    labels = [int(y) for _, y in once]
    first = [int(y) for _, y in stream.take(2 * info.num_examples)]
    assert sorted(first[:info.num_examples]) == sorted(labels) == sorted(first[info.num_examples:])
    assert first[:info.num_examples] != first[info.num_examples:]  # Reshuffled each pass.
    again = [int(y) for _, y in load_dataset("folder", "train", shuffle_seed=1, data_dir=root)[0].take(len(first))]
    assert again == first
