"""`load_dataset`'s options (`dcn_keras/datasets/loaders.py`)."""

import pytest

from dcn_keras.datasets import dataset_options
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
