"""The dataset registry: one name per dataset, as `--dataset` takes it."""

from dcn_keras.datasets import cluttered_mnist
from dcn_keras.datasets.dataset_info import DatasetInfo
from dcn_keras.datasets.loaders import DATASETS
from dcn_keras.datasets.loaders import TFDS_PREFIX
from dcn_keras.datasets.loaders import check_dataset_name
from dcn_keras.datasets.loaders import dataset_options
from dcn_keras.datasets.loaders import load_dataset
