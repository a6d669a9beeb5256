"""A DCN's settings: the arguments besides its towers, their allowed values and checks."""

from dcn_keras.layers.patch_gather import METHODS

TOP_PASSES = ("incremental", "full")
SALIENCIES = ("entropy_gradient", "cam", "cam_top_class")
# The constructor's arguments besides the towers, each kept as an attribute of
# its name: `get_config` and `with_settings` copy them from this one list.
SETTINGS = ("image_shape", "num_patches", "hint_weight", "coarse_weight", "patch_size", "patch_offset", "gather",
            "top_pass", "fine_tile", "exit_threshold", "saliency", "class_names", "place_weight")


def image_shape_of(coarse, image_shape):
    """`image_shape` as a tuple, or the coarse tower's input shape when it is None."""
    if image_shape is None:
        image_shape = tuple(coarse.inputs[0].shape[1:])
        if None in image_shape:
            raise ValueError(
                "`image_shape` is required when the coarse tower's input has "
                f"unknown sizes; its input shape is {coarse.inputs[0].shape}."
            )
    return tuple(image_shape)


def check(coarse, fine, top, geometry, num_patches, hint_weight, coarse_weight, gather, top_pass, fine_tile,
          exit_threshold, saliency, place_weight=0.0):
    """Raises a `ValueError` naming the first bad argument and what is allowed."""
    coarse_dim = coarse.outputs[0].shape[-1]
    fine_dim = fine.outputs[0].shape[-1]
    if coarse_dim != fine_dim:
        raise ValueError(
            f"Coarse vectors have {coarse_dim} channels but fine vectors have "
            f"{fine_dim}; they must match to be interchangeable in `top`."
        )
    top_dim = top.inputs[0].shape[-1]
    if top_dim not in (None, coarse_dim):
        raise ValueError(f"`top` takes {top_dim} channels; the towers give {coarse_dim}.")
    cells = geometry.num_cells
    if not isinstance(num_patches, int) or not 1 <= num_patches <= cells:
        raise ValueError(
            f"num_patches={num_patches!r} must be an int in [1, {cells}] (the "
            f"{geometry.grid_shape[0]}x{geometry.grid_shape[1]} grid)."
        )
    for name, value in (("hint_weight", hint_weight), ("coarse_weight", coarse_weight),
                        ("place_weight", place_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"`{name}` must be a number >= 0; got {value!r}.")
    if gather not in METHODS:
        raise ValueError(f"`gather` must be one of {METHODS}; got {gather!r}.")
    if top_pass not in TOP_PASSES:
        raise ValueError(f"`top_pass` must be one of {TOP_PASSES}; got {top_pass!r}.")
    if saliency not in SALIENCIES:
        raise ValueError(f"saliency={saliency!r} is not valid; choose one of: {', '.join(SALIENCIES)}.")
    if exit_threshold is not None and (
            isinstance(exit_threshold, bool) or not isinstance(exit_threshold, (int, float))
            or not 0 < exit_threshold <= 1):
        raise ValueError(f"exit_threshold={exit_threshold!r} must be None (off) or a number in (0, 1].")
    if isinstance(fine_tile, bool) or not isinstance(fine_tile, int) or fine_tile < 1:
        raise ValueError(f"fine_tile={fine_tile!r} must be an int >= 1 (1: patch by patch).")


def checked_class_names(top, class_names):
    """`class_names` as a tuple of str, one per class of `top`'s single head, or None."""
    if class_names is None:
        return None
    class_names = tuple(str(c) for c in class_names)
    classes = top.outputs[0].shape[-1] if len(top.outputs) == 1 else None
    if len(class_names) != classes:
        raise ValueError(f"class_names has {len(class_names)} names; the top has "
                         f"{'several heads' if classes is None else f'{classes} classes'}.")
    return class_names
