"""Reading a functional top network's structure: its first convolution, the layer after a tensor."""

from dcn_keras.backend import keras
from dcn_keras.backend import tf


def first_convolution(top):
    """The Conv2D that alone takes a functional top's input, or None.

    It qualifies when valid, undilated, ungrouped, channels-last and with
    equal strides: what `IncrementalTop` and `ClassActivationMap` can split.
    """
    inputs = getattr(top, "inputs", None)
    if not isinstance(top, keras.Model) or not inputs or len(inputs) != 1:
        return None
    conv = sole_user(top, inputs[0])
    if not (
        isinstance(conv, keras.layers.Conv2D)
        and conv.data_format == "channels_last"
        and conv.padding == "valid"
        and tuple(conv.dilation_rate) == (1, 1)
        and conv.groups == 1
        and conv.strides[0] == conv.strides[1]
    ):
        return None
    return conv


def sole_user(top, tensor):
    """The one layer of `top` taking `tensor`, or None (several, or a layer called more than once)."""
    users = []
    for layer in top.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            layer_inputs = tf.nest.flatten(layer.input)
        except (AttributeError, ValueError):
            return None
        if any(t is tensor for t in layer_inputs):
            users.append(layer)
    return users[0] if len(users) == 1 else None
