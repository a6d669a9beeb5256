from dcn_keras.training.input_pipeline import dataset_options
from dcn_keras.training.train_config import TrainConfig
from dcn_keras.training.trainer import build_model
from dcn_keras.training.trainer import dcn_for
from dcn_keras.training.trainer import make_strategy
from dcn_keras.training.trainer import train
