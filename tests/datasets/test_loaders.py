"""`load_dataset`'s options (`dcn_keras/datasets/loaders.py`)."""

import numpy as np
import pytest

from dcn_keras.datasets import dataset_options
from dcn_keras.datasets import mnist_numbers
from dcn_keras.datasets import load_dataset


def test_load_dataset_names_the_datasets_that_take_an_option():
    assert "max_digits" in dataset_options("mnist_numbers")
    assert "max_digits" not in dataset_options("cluttered_mnist")
    with pytest.raises(ValueError, match=r"max_digits=3 applies to mnist_numbers only, not dataset='svhn'"):
        load_dataset("svhn", "test", max_digits=3)
    with pytest.raises(ValueError, match=r"canvas_size=128 applies to cluttered_mnist, megapixel_mnist and "
                                         r"mnist_numbers only, not dataset='tfds:mnist'"):
        load_dataset("tfds:mnist", "test", canvas_size=128)
    with pytest.raises(ValueError, match=r"No dataset takes the option canvas=64; dataset='mnist_numbers' takes "
                                         r"data_dir, seed, training, digits"):
        load_dataset("mnist_numbers", "test", canvas=64)


def test_an_in_memory_split_is_held_once_not_copied_into_the_pipeline():
    # The drawn numbers stay one NumPy array read an element at a time; a
    # TensorFlow constant of them would sit in the dataset's graph, a
    # second copy of the split (7.4 GB for 384-px training numbers).
    data, info = load_dataset("mnist_numbers", "test", digits="embedded", examples_per_digit=1, canvas_size=96)
    images, labels, _, _ = mnist_numbers.split_numbers("test", "embedded", examples_per_digit=1, image_size=96,
                                                       digit_scale=1.0)
    assert len(data._as_serialized_graph().numpy()) < images.nbytes / 10
    first = list(data.take(3))
    for n, (image, label) in enumerate(first):
        assert image.shape == (96, 96, 3) and image.dtype == "float32"
        np.testing.assert_array_equal(image.numpy()[..., 0], images[n, ..., 0] / np.float32(255))
        assert {k: int(v) for k, v in label.items()} == {k: int(v[n]) for k, v in labels.items()}
    assert data.element_spec[0].shape == (96, 96, 3)
