"""What a training run reads: the dataset options a `TrainConfig` implies, and its batches."""

from dcn_keras.backend import tf


def dataset_options(config, training):
    """The `load_dataset` options `config` implies, for a training or eval split."""
    options = dict(data_dir=config.data_dir, seed=config.seed, training=training)
    if config.canvas_size is not None:
        options.update(canvas_size=config.canvas_size)
    if config.dataset == "cluttered_mnist":
        options.update(digits=config.digits, mnist_dir=config.mnist_dir,
                       examples_per_digit=config.examples_per_digit if training else 1)
    elif config.dataset == "megapixel_mnist":
        # Evaluation splits: the benchmark's 1,000 canvases each.
        options.update(digits=config.digits, mnist_dir=config.mnist_dir, num_noise=config.num_noise,
                       num_canvases=config.num_canvases if training else None)
    elif config.dataset == "mnist_numbers":
        # Evaluation splits: the loader's default, at least 5,000 numbers.
        options.update(digits=config.digits, mnist_dir=config.mnist_dir, max_digits=config.max_digits,
                       examples_per_digit=config.examples_per_digit if training else None)
        if config.place_weight:
            options.update(place_boxes=True)
    elif config.dataset == "svhn":
        options.update(crop=config.svhn_crop)
    elif config.own_images:
        options.update(image_size=config.image_size)
    return options


def batched(dataset, config, training, skip_steps=0, eight_bit=False):
    """Batches of `dataset`; for training (an endless seeded stream), from its `skip_steps`-th batch.

    `eight_bit` (a DCN on a dataset whose pixels are 8-bit values) carries
    the images as uint8, which the DCN's steps scale back to the same
    floats: tf.data's batching and prefetch hold several batches, and at
    1500 px a batch of 32 float32 canvases is 288 MB.

    The training stream (`load_dataset(..., shuffle_seed=config.seed)`) is
    a function of the seed alone and epochs are spans of it, so a resumed
    run skips the batches it had trained on and sees exactly what an
    uninterrupted run would.
    """
    if eight_bit:
        dataset = dataset.map(_as_uint8)
    # Equal per-replica batches: the loss scaling assumes them.
    batch_size = config.batch_size if training else config.eval_batch_size or config.batch_size
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if skip_steps:
        dataset = dataset.skip(skip_steps)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _as_uint8(image, label):
    # Exact: the pixels are k / 255, and round(k / 255 * 255) is k.
    return tf.cast(tf.round(image * 255.0), tf.uint8), label


def steps_per_epoch(config, num_examples):
    """Optimizer steps in one epoch (`drop_remainder` batches of the train split)."""
    return config.steps_per_epoch or max(1, num_examples // config.batch_size)
