import os

import numpy as np
import pytest

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets import load_dataset
from dcn_keras.datasets.mnist_idx import idx_digits
from dcn_keras.training import TrainConfig
from tests.helpers import mnist_idx_dir
from tests.helpers import write_idx


def _rows(images):
    return sorted(image.tobytes() for image in images)


@pytest.mark.parametrize("gz", [True, False])
def test_splits_are_five_sixths_one_sixth_and_the_t10k_files(tmp_path, gz):
    directory, train, train_labels, test, test_labels = mnist_idx_dir(tmp_path, gz=gz)
    splits = {s: idx_digits(directory, s) for s in ("train", "validation", "test")}
    assert [len(splits[s][0]) for s in ("train", "validation", "test")] == [50, 10, 12]
    assert splits["train"][0].dtype == np.uint8 and splits["train"][1].dtype == np.int64
    # Train and validation partition the training files' digits, labels kept with them.
    both = np.concatenate([splits["train"][0], splits["validation"][0]])
    assert _rows(both) == _rows(train)
    label_of = {image.tobytes(): label for image, label in zip(train, train_labels)}
    for images, labels in (splits["train"], splits["validation"]):
        assert [label_of[i.tobytes()] for i in images] == labels.tolist()
    assert _rows(splits["test"][0]) == _rows(test)


def test_split_and_canvases_do_not_depend_on_the_files_order(tmp_path):
    a = mnist_idx_dir(tmp_path / "a")[0]
    b = mnist_idx_dir(tmp_path / "b", order=np.random.default_rng(5).permutation(60))[0]
    assert not np.array_equal(idx_digits(a, "train")[0], mnist_idx_dir(tmp_path / "c", gz=False)[1][:50])
    for split in ("train", "validation", "test"):
        for x, y in zip(idx_digits(a, split), idx_digits(b, split)):
            np.testing.assert_array_equal(x, y)
        canvases_a = cluttered_mnist.split_canvases(split, seed=3, mnist_dir=a)
        canvases_b = cluttered_mnist.split_canvases(split, seed=3, mnist_dir=b)
        np.testing.assert_array_equal(canvases_a[0], canvases_b[0])
        np.testing.assert_array_equal(canvases_a[1], canvases_b[1])


def test_load_dataset_serves_canvases_of_the_idx_digits(tmp_path):
    directory = mnist_idx_dir(tmp_path)[0]
    dataset, info = load_dataset("cluttered_mnist", "train", mnist_dir=directory, examples_per_digit=2)
    assert info.num_examples == 100 and info.source == "IDX MNIST digits (50 in train)"
    x, y = next(iter(dataset.batch(100)))
    assert x.shape == (100, 100, 100, 1) and set(y.numpy().tolist()) <= set(range(10))


def test_a_missing_file_is_named(tmp_path):
    directory = mnist_idx_dir(tmp_path)[0]
    os.remove(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))
    idx_digits(directory, "train")  # The training files are all there.
    with pytest.raises(FileNotFoundError, match="no t10k-labels-idx1-ubyte \\(nor t10k-labels-idx1-ubyte.gz\\)"):
        idx_digits(directory, "test")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        idx_digits(str(tmp_path / "nowhere"), "test")


def _corrupt(directory, name, data):
    path = os.path.join(directory, name)
    os.remove(path + ".gz")
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_bad_files_are_named_with_what_is_wrong(tmp_path):
    directory = mnist_idx_dir(tmp_path)[0]
    images = os.path.join(directory, "t10k-images-idx3-ubyte")
    labels = os.path.join(directory, "t10k-labels-idx1-ubyte")
    _corrupt(directory, "t10k-images-idx3-ubyte", (0x801).to_bytes(4, "big") + bytes(20))
    with pytest.raises(ValueError, match=f"{images} has magic number 0x00000801; MNIST images files have 0x00000803"):
        idx_digits(directory, "test")
    write_idx(images, np.zeros((12, 28, 28)))
    with open(images, "ab") as f:
        f.write(b"extra")
    with pytest.raises(ValueError, match=f"{images} holds 9429 bytes; its header \\(12, 28, 28\\) needs 9424"):
        idx_digits(directory, "test")
    write_idx(images, np.zeros((11, 28, 28)))
    with pytest.raises(ValueError, match=f"{images} holds 11 images but {labels}.gz 12 labels"):
        idx_digits(directory, "test")
    write_idx(images, np.zeros((12, 28, 28)))
    _corrupt(directory, "t10k-labels-idx1-ubyte", (0x801).to_bytes(4, "big") + (12).to_bytes(4, "big")
             + bytes([3] * 11 + [10]))
    with pytest.raises(ValueError, match=f"{labels} has label 10 at index 11 \\(1 such\\); MNIST labels are 0..9"):
        idx_digits(directory, "test")
    with open(os.path.join(directory, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(b"\x1f\x8b not gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz cannot be read"):
        idx_digits(directory, "train")


def test_mnist_dir_goes_with_auto_digits_and_cluttered_mnist_only(tmp_path):
    with pytest.raises(ValueError, match="mnist_dir=d .*not go with digits=embedded"):
        TrainConfig(digits="embedded", mnist_dir="d")
    with pytest.raises(ValueError, match="mnist_dir='d' applies to cluttered_mnist, megapixel_mnist and mnist_numbers only"):
        TrainConfig(dataset="svhn", mnist_dir="d")
    with pytest.raises(ValueError, match="not go with digits=tfds"):
        cluttered_mnist.load_digits("test", "tfds", mnist_dir="d")
