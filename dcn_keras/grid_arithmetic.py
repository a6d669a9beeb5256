"""The arithmetic a grid of patches shares between the layers and `PatchGeometry`."""


def int_pair(value, name, minimum=None):
    """`value` (an int or a pair of ints) as a pair, or a ValueError naming it."""
    pair = (value, value) if isinstance(value, int) else value
    valid = (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
        and (minimum is None or min(pair) >= minimum)
    )
    if not valid:
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must be an int or a pair of ints{bound}; got {value!r}.")
    return tuple(pair)


def patches_span(offset, cells, stride, patch):
    """On one axis, `(before, end)`: zero padding needed before pixel 0, and the pixel past the last patch.

    Cell `i`'s patch covers `[offset + i * stride, offset + i * stride + patch)`;
    padding the image by `before` and up to `end` holds every patch.
    """
    return max(0, -offset), offset + (cells - 1) * stride + patch
