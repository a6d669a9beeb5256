"""Starting a run from another model's sub-networks (`--init_from`), some kept frozen (`--freeze`)."""

from dcn_keras.backend import keras
from dcn_keras.models.loading import check_keras_file
from dcn_keras.training.train_config import FREEZABLE

_PARTS = FREEZABLE


def initialize_from(model, path, print_fn=None):
    """Copies into `model` the sub-networks a saved model shares with it.

    Each of the coarse tower, fine tower and top network (found by name, as
    the presets build them) that both models have is copied, so a DCN can
    start from a trained fine model (its fine tower and top) or another DCN.
    A sub-network whose layers differ is copied layer by layer: a layer the
    source lacks (or holds without weights, e.g. a max pool where this model
    has an attention pool) keeps its initialization, and `print_fn` is told;
    a layer of one head (`top_pool_digit_3`, `svhn_reader`) where the
    source has one layer for all heads (`top_pool`) starts as that layer.
    A convolution or dense layer with more filters or inputs than the
    source's (`svhn_reader_wide` from `svhn_reader`) takes the source's
    weights in its first ones; its extra filters keep their initialization
    and its extra inputs start at zero weight, so before its first step the
    model computes what the source does (Net2Net-style widening, Chen et al.,
    ICLR 2016), and `print_fn` is told.

    Returns:
        The names of the sub-networks copied, in `("coarse", "fine", "top")` order.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive, the two share none
            of them, or a shared layer's weights have other shapes.
    """
    check_keras_file(path, f"init_from={path}")
    source = keras.models.load_model(path, compile=False)
    copied = []
    for part in _PARTS:
        try:
            src, dst = source.get_layer(part), model.get_layer(part)
        except ValueError:
            continue
        if _shapes(src) == _shapes(dst):
            dst.set_weights(src.get_weights())
        else:
            left, widened = _copy_layers(src, dst, f"init_from={path}: its {part!r}")
            if left and print_fn is not None:
                print_fn(f"dcn_train: {part}: {', '.join(left)} not in --init_from, left as initialized")
            if widened and print_fn is not None:
                print_fn(f"dcn_train: {part}: {', '.join(widened)} wider than in --init_from, widened from it")
        copied.append(part)
    if not copied:
        raise ValueError(f"init_from={path} has no {', '.join(_PARTS)} network in common with this model.")
    return copied


def _shapes(network):
    return [tuple(w.shape) for w in network.weights]


def _copy_layers(src, dst, name):
    # Layer by layer, by name; returns the layers with weights the source
    # lacks, and those widened from the source's.
    if not hasattr(src, "layers") or not hasattr(dst, "layers"):
        raise ValueError(f"{name} has weights of shapes {_shapes(src)}, this model's {_shapes(dst)}.")
    by_name = {layer.name: layer for layer in src.layers if layer.weights}
    left, widened = [], []
    for layer in dst.layers:
        if not layer.weights:
            continue
        source = by_name.get(layer.name) or _shared_by_heads(layer, by_name)
        if source is None:
            left.append(layer.name)
        elif _shapes(source) == _shapes(layer):
            layer.set_weights(source.get_weights())
        elif _widens(source, layer):
            layer.set_weights(_widened(source.get_weights(), layer.get_weights()))
            widened.append(layer.name)
        else:
            raise ValueError(f"{name} has weights of shapes {_shapes(src)}, this model's {_shapes(dst)} "
                             f"(layer {layer.name!r}: {_shapes(source)} against {_shapes(layer)}).")
    if len(left) == len([layer for layer in dst.layers if layer.weights]):
        raise ValueError(f"{name} shares no layer with this model's (weights {_shapes(src)} against {_shapes(dst)}).")
    return left, widened


def _widens(source, layer):
    # A convolution or dense layer of the same kind, kernel size and weights,
    # none of whose inputs or filters are fewer than the source's.
    if type(source) is not type(layer) or not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return False
    old, new = _shapes(source), _shapes(layer)
    return len(old) == len(new) and all(
        len(a) == len(b) and a[:-2] == b[:-2] and all(x <= y for x, y in zip(a, b)) for a, b in zip(old, new))


def _widened(old, new):
    # Inputs the source lacks (the kernel's next-to-last axis) get zero
    # weight, so the first filters compute what the source's did; the
    # source's weights go into the first inputs and filters.
    out = []
    for a, b in zip(old, new):
        b = b.copy()
        if b.ndim >= 2:
            b[..., a.shape[-2]:, :] = 0
        b[tuple(slice(0, n) for n in a.shape)] = a
        out.append(b)
    return out


def _shared_by_heads(layer, by_name):
    # A layer of one head (`top_pool_digit_3`) starts as the layer all heads
    # share in the source (`top_pool`), when their weights have one shape.
    shared = [name for name in by_name if layer.name.startswith(name + "_")
              and _shapes(by_name[name]) == _shapes(layer)]
    return by_name[max(shared, key=len)] if shared else None


def freeze(model, parts, copied):
    """Makes `parts` of `model` (sub-networks `initialize_from` copied) non-trainable.

    Before the first step, so the optimizer never holds their variables.
    The saved model keeps them frozen, as they were trained.

    Raises:
        ValueError: a part that was not copied from `--init_from`.
    """
    missing = [part for part in parts if part not in copied]
    if missing:
        raise ValueError(f"freeze={','.join(parts)}: {', '.join(missing)} did not come from init_from "
                         f"(it gave {', '.join(copied)}), so frozen it would keep random weights.")
    for part in parts:
        model.get_layer(part).trainable = False
