"""Shared test helpers: small fixtures the tests make themselves."""

import os

import numpy as np
from tensorflow.core.protobuf import saved_model_pb2

import dcn_keras
from dcn_keras.backend import tf


def preset_model(**overrides):
    return dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist", **overrides)


def random_images(batch, shape=(100, 100, 1), seed=0):
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)


def traced_ops(fn, *args):
    """The operations of `fn` traced by `tf.function` on `args`."""
    return tf.function(fn).get_concrete_function(*args).graph.get_operations()


def saved_model_nodes(path):
    """Every node of a SavedModel's graphs and their functions."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    for graph in saved.meta_graphs:
        yield from graph.graph_def.node
        for function in graph.graph_def.library.function:
            yield from function.node_def


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
