import numpy as np

from dcn_keras.backend import tf
from dcn_keras.datasets import load_dataset
from dcn_keras.models.fit_checks import step_images
from dcn_keras.training import TrainConfig
from dcn_keras.training import input_pipeline


def _config(**overrides):
    return TrainConfig(**{**dict(dataset="cluttered_mnist", digits="embedded", verbose=0), **overrides})


def test_the_evaluation_splits_are_read_at_eval_batch_size_and_training_at_batch_size():
    data = tf.data.Dataset.from_tensor_slices((np.zeros((20, 4, 4, 1), np.float32), np.arange(20)))

    def sizes(config, training):
        return [len(y) for _, y in input_pipeline.batched(data.repeat() if training else data, config, training).take(7)]
    config = _config(batch_size=3, eval_batch_size=8)
    assert sizes(config, training=False) == [8, 8, 4]
    assert sizes(config, training=True) == [3] * 7
    assert sizes(_config(batch_size=3, eval_batch_size=None), training=False) == [3] * 6 + [2]


def test_a_dcn_reads_megapixel_canvases_carried_as_uint8_as_the_same_floats():
    # dcn_train carries 8-bit datasets as uint8 through tf.data (a quarter of
    # the bytes in its batch and prefetch buffers); the step scales them back.
    config = _config(dataset="megapixel_mnist", canvas_size=128, num_noise=3, num_canvases=20, batch_size=5)
    data, info = load_dataset("megapixel_mnist", "train", **input_pipeline.dataset_options(config, True))
    assert info.eight_bit
    assert not load_dataset("mnist_numbers", "validation", digits="embedded")[1].eight_bit
    floats = [x for x, _ in input_pipeline.batched(data, config, training=False)]
    eight_bit = [x for x, _ in input_pipeline.batched(data, config, training=False, eight_bit=True)]
    assert len(floats) == len(eight_bit) == 4
    for x, u in zip(floats, eight_bit):
        assert u.dtype == tf.uint8 and float(tf.reduce_max(x)) > 0.5
        np.testing.assert_array_equal(step_images(u).numpy(), x.numpy())


def test_a_place_loss_reads_every_split_with_the_digits_boxes():
    placed = _config(dataset="mnist_numbers", place_weight=0.1)
    for training in (True, False):
        assert input_pipeline.dataset_options(placed, training)["place_boxes"] is True
        assert "place_boxes" not in input_pipeline.dataset_options(_config(dataset="mnist_numbers"), training)
