"""Starting a run from another model's sub-networks (`--init_from`), some kept frozen (`--freeze`)."""

from dcn_keras.backend import keras
from dcn_keras.models.loading import check_keras_file
from dcn_keras.training.train_config import FREEZABLE

_PARTS = FREEZABLE


def initialize_from(model, path):
    """Copies into `model` the sub-networks a saved model shares with it.

    Each of the coarse tower, fine tower and top network (found by name, as
    the presets build them) that both models have is copied, so a DCN can
    start from a trained fine model (its fine tower and top) or another DCN.

    Returns:
        The names of the sub-networks copied, in `("coarse", "fine", "top")` order.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive, the two share none
            of them, or a shared one's weights have other shapes.
    """
    check_keras_file(path, f"--init_from={path}")
    source = keras.models.load_model(path, compile=False)
    copied = []
    for part in _PARTS:
        try:
            src, dst = source.get_layer(part), model.get_layer(part)
        except ValueError:
            continue
        src_shapes = [tuple(w.shape) for w in src.weights]
        dst_shapes = [tuple(w.shape) for w in dst.weights]
        if src_shapes != dst_shapes:
            raise ValueError(f"--init_from={path}: its {part!r} has weights of shapes {src_shapes}, "
                             f"this model's {dst_shapes}.")
        dst.set_weights(src.get_weights())
        copied.append(part)
    if not copied:
        raise ValueError(f"--init_from={path} has no {', '.join(_PARTS)} network in common with this model.")
    return copied


def freeze(model, parts, copied):
    """Makes `parts` of `model` (sub-networks `initialize_from` copied) non-trainable.

    Before the first step, so the optimizer never holds their variables.
    The saved model keeps them frozen, as they were trained.

    Raises:
        ValueError: a part that was not copied from `--init_from`.
    """
    missing = [part for part in parts if part not in copied]
    if missing:
        raise ValueError(f"--freeze={','.join(parts)}: {', '.join(missing)} did not come from --init_from "
                         f"(it gave {', '.join(copied)}), so frozen it would keep random weights.")
    for part in parts:
        model.get_layer(part).trainable = False
