import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dcn_keras.datasets import load_dataset
from dcn_keras.datasets import svhn_multi_digit
from tests.svhn_fixture import write_svhn_copy


@pytest.fixture
def svhn_dir(tmp_path):
    numbers = write_svhn_copy(str(tmp_path / "downloads" / "manual"))
    return str(tmp_path), numbers


def test_digit_struct_reader_handles_one_and_several_digits(svhn_dir):
    data_dir, numbers = svhn_dir
    path = os.path.join(data_dir, "downloads", "manual", "train", "digitStruct.mat")
    rows = list(svhn_multi_digit.read_digit_struct(path))
    assert [r[0] for r in rows] == [n[0] for n in numbers["train"]]
    for (_, labels, boxes), (_, raw, raw_boxes) in zip(rows, numbers["train"]):
        assert labels == [d % 10 for d in raw]  # the file's 10 is a 0
        np.testing.assert_array_equal(boxes, np.array(raw_boxes, np.float32))


def test_builder_reads_the_local_copy_and_makes_multi_head_labels(svhn_dir):
    data_dir, numbers = svhn_dir
    builder = svhn_multi_digit.SvhnMultiDigit(data_dir=data_dir)
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == len(numbers["train"]) == 25
    assert builder.info.splits["test"].num_examples == 2

    dataset, info = load_dataset("svhn", "test", data_dir=data_dir)
    assert info.image_shape == (64, 64, 3) and info.preset == "svhn"
    got = {}
    for image, labels in dataset.as_numpy_iterator():
        assert image.shape == (64, 64, 3) and 0.0 <= image.min() <= image.max() <= 1.0
        got[int(labels["length"])] = [int(labels[f"digit_{i}"]) for i in range(1, 6)]
    assert got == {1: [4, 10, 10, 10, 10], 2: [8, 0, 10, 10, 10]}


def test_numbers_longer_than_five_digits_are_left_out(svhn_dir):
    data_dir, _ = svhn_dir
    dataset, _ = load_dataset("svhn", "train", data_dir=data_dir)
    lengths = [int(labels["length"]) for _, labels in dataset.as_numpy_iterator()]
    assert max(lengths) <= 5 and 6 not in lengths


def test_goodfellow_crop_is_54_pixels_and_random_only_when_training(svhn_dir):
    data_dir, _ = svhn_dir
    train, info = load_dataset("svhn", "train", data_dir=data_dir, crop="goodfellow", training=True)
    assert info.image_shape == (54, 54, 3)
    a = [x for x, _ in train.as_numpy_iterator()]
    b = [x for x, _ in load_dataset("svhn", "train", data_dir=data_dir, crop="goodfellow",
                                     training=True, seed=5)[0].as_numpy_iterator()]
    assert all(x.shape == (54, 54, 3) for x in a)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))
    test = load_dataset("svhn", "test", data_dir=data_dir, crop="goodfellow")[0]
    c = [x for x, _ in test.as_numpy_iterator()]
    d = [x for x, _ in test.as_numpy_iterator()]
    for x, y in zip(c, d):
        np.testing.assert_array_equal(x, y)


def test_missing_local_files_are_listed(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    write_svhn_copy(str(manual), splits=("train",))
    with pytest.raises(FileNotFoundError, match="test/digitStruct.mat or test.tar.gz"):
        load_dataset("svhn", "train", data_dir=str(tmp_path))


def test_svhn_cropped_loads_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        dataset, info = load_dataset("svhn_cropped", "train")
        image, label = next(iter(dataset.batch(3)))
    assert info.image_shape == (32, 32, 3) and info.preset == "svhn_cropped"
    assert image.shape == (3, 32, 32, 3) and float(image.numpy().max()) <= 1.0
    assert label.shape == (3,)


def test_no_local_copy_and_no_network_fails_at_once_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(svhn_multi_digit, "unreachable_reason", lambda url: "offline (test)")
    with pytest.raises(FileNotFoundError, match=r"offline \(test\).*train.tar.gz and test.tar.gz.*"
                       r"dataset=mnist_numbers"):
        load_dataset("svhn", "train", data_dir=str(tmp_path))
