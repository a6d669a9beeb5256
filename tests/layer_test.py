"""A shared check for every layer: shapes, config round trip, saving (after keras-hub's `run_layer_test`)."""

import os

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape, call_kwargs=None, tmp_path=None):
    """Checks one layer the way Keras users rely on it, and returns its outputs.

    - the layer built with `init_kwargs` keeps each of them as an attribute
      of the same name and in `get_config()`;
    - called on `inputs` (a list of arrays: the positional arguments) it
      gives `expected_output_shape` (a shape, or a list of them for several
      outputs);
    - a copy from its config, or from `keras.saving` serialization, holding
      its weights, gives the same outputs;
    - with `tmp_path`, a functional model around it saved as `.keras` and
      loaded back gives the same outputs (layers taking only tensors).
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for name, value in init_kwargs.items():
        if name in ("name", "dtype"):
            continue
        assert name in config, f"{layer_cls.__name__}.get_config() lacks {name!r}"
        assert _same(getattr(layer, name), value), f"{layer_cls.__name__}.{name} is not the argument given"
    outputs = layer(*inputs, **call_kwargs)
    flat = tf.nest.flatten(outputs)
    shapes = expected_output_shape if isinstance(expected_output_shape, list) else [expected_output_shape]
    assert [tuple(o.shape) for o in flat] == [tuple(s) for s in shapes]

    copies = [layer_cls.from_config(config),
              keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))]
    for copy in copies:
        assert type(copy) is layer_cls and copy.get_config() == config
        if layer.weights:
            if not copy.built:  # Deserialized, it was built from the layer's build config.
                copy.build(tuple(np.shape(inputs[0])))
            copy.set_weights(layer.get_weights())
        for got, want in zip(tf.nest.flatten(copy(*inputs, **call_kwargs)), flat):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    if tmp_path is not None:
        symbolic = [keras.Input(np.shape(x)[1:], batch_size=None, dtype=_dtype(x)) for x in inputs]
        model = keras.Model(symbolic, layer(*symbolic, **call_kwargs))
        path = os.path.join(str(tmp_path), f"{layer_cls.__name__}.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        for got, want in zip(tf.nest.flatten(loaded(inputs)), flat):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return outputs


def _same(a, b):
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _dtype(x):
    return np.asarray(x).dtype.name
