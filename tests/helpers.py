"""Shared test helpers: small fixtures the tests make themselves."""

import os

import numpy as np
from tensorflow.core.protobuf import saved_model_pb2

import dcn_keras
from dcn_keras.backend import keras
from dcn_keras.backend import tf


def preset_model(**overrides):
    return dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist", **overrides)


def random_images(batch, shape=(100, 100, 1), seed=0):
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)


def traced_ops(fn, *args):
    """The operations of `fn` traced by `tf.function` on `args`."""
    return tf.function(fn).get_concrete_function(*args).graph.get_operations()


def traced_op_types(fn, *specs):
    """The op types of `fn` traced on `specs`, those inside its branches and loops too."""
    graph = tf.function(fn).get_concrete_function(*specs).graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def saved_model_nodes(path):
    """Every node of a SavedModel's graphs and their functions."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    for graph in saved.meta_graphs:
        yield from graph.graph_def.node
        for function in graph.graph_def.library.function:
            yield from function.node_def


def saved_model_stored_values(path):
    """How many numbers a SavedModel's checkpoint stores (its variables' sizes summed)."""
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    return sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


def glyph_task(num_images, num_classes=4, size=100, glyph=10, clutter=8, seed=0):
    """A glyph of one of `num_classes` shapes at a random place, plus clutter.

    Clutter pieces are 5x5 crops of random glyphs, so no single pixel value
    or local texture gives the class away: the model has to find and read
    the glyph. Returns images, labels and each glyph's top-left corner.
    """
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).random((num_classes, glyph, glyph)) > 0.5
    images = np.zeros((num_images, size, size, 1), np.float32)
    labels = rng.integers(0, num_classes, num_images)
    corners = rng.integers(0, size - glyph + 1, (num_images, 2))
    for n in range(num_images):
        for _ in range(clutter):
            t = templates[rng.integers(num_classes)]
            r, c = rng.integers(0, glyph - 5, 2)
            y, x = rng.integers(0, size - 5 + 1, 2)
            images[n, y : y + 5, x : x + 5, 0] = np.maximum(
                images[n, y : y + 5, x : x + 5, 0], t[r : r + 5, c : c + 5]
            )
        y, x = corners[n]
        images[n, y : y + glyph, x : x + glyph, 0] = templates[labels[n]]
    return images, labels, corners


def variable_groups(model):
    """Maps "coarse"/"fine"/"top" to that sub-network's trainable variables."""
    return {name: getattr(model, name).trainable_variables for name in ("coarse", "fine", "top")}


def write_idx(path, array):
    """Writes a uint8 array as a standard IDX file (gzipped if `path` ends in `.gz`)."""
    import gzip

    array = np.asarray(array, np.uint8)
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(header + array.tobytes())


def mnist_idx_dir(directory, train=60, test=12, order=None, gz=True, seed=0):
    """Writes a small MNIST in IDX files: distinct random digits, labels 0..9.

    `order` permutes the training files' digits (the same digits, another
    order). Returns the directory, the training digits and labels (before
    `order`), and the test digits and labels.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (train + test, 28, 28), dtype=np.uint8)
    labels = np.arange(train + test, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    train_images, train_labels = images[:train], labels[:train]
    if order is not None:
        train_images, train_labels = train_images[order], train_labels[order]
    os.makedirs(directory, exist_ok=True)
    for name, array in (("train-images-idx3-ubyte", train_images), ("train-labels-idx1-ubyte", train_labels),
                        ("t10k-images-idx3-ubyte", images[train:]), ("t10k-labels-idx1-ubyte", labels[train:])):
        write_idx(os.path.join(str(directory), name + suffix), array)
    return str(directory), images[:train], labels[:train], images[train:], labels[train:]


def number_reader(path, length, digit):
    """Saves a multi-digit baseline for 64-px numbers that reads every one as `digit` repeated `length` times."""
    images = keras.Input((64, 64, 3))
    pooled = keras.layers.GlobalMaxPooling2D()(images)
    answers = {"length": np.eye(6)[length]}
    answers.update({f"digit_{i}": np.eye(11)[digit if i <= length else 10] for i in range(1, 6)})
    heads = {head: keras.layers.Dense(len(bias), kernel_initializer="zeros", name=head,
                                      bias_initializer=keras.initializers.Constant(10 * bias))(pooled)
             for head, bias in answers.items()}
    keras.Model(images, heads).save(path)
    return str(path)
