"""Which input window belongs to each coarse cell, derived from the towers."""

import dataclasses
import math

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.grid_arithmetic import int_pair
from dcn_keras.grid_arithmetic import patches_span

# Layers that change nothing spatially; anything else without kernel/pool
# attributes is rejected so that an unknown resampling layer cannot silently
# shift every patch.
_POINTWISE = (
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "BatchNormalization",
    "LayerNormalization",
    "Dropout",
    "SpatialDropout2D",
    "Rescaling",
    "Normalization",
    "Identity",
)


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _walk_axis(layers, size, axis):
    """Receptive field along one axis: (start of cell 0, jump, window size)."""
    start, jump, window = 0, 1, 1
    for layer in layers:
        name = type(layer).__name__
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if kernel is not None:
            k = kernel[axis]
            dilation = getattr(layer, "dilation_rate", (1, 1))[axis]
            k = dilation * (k - 1) + 1
            s = layer.strides[axis]
            if layer.padding == "valid":
                out, pad_before = (size - k) // s + 1, 0
            elif layer.padding == "same":
                out = math.ceil(size / s)
                pad_before = max((out - 1) * s + k - size, 0) // 2
            else:
                raise ValueError(
                    f"Layer {layer.name!r} has padding={layer.padding!r}; patch "
                    "geometry supports 'valid' and 'same'. Pass `patch_size` and "
                    "`patch_offset` explicitly."
                )
            start -= pad_before * jump
            window += (k - 1) * jump
            jump *= s
            size = out
        elif name == "ZeroPadding2D":
            before, after = layer.padding[axis]
            start -= before * jump
            size += before + after
        elif name in _POINTWISE:
            continue
        elif name in ("GlobalMaxPooling2D", "GlobalAveragePooling2D", "Flatten"):
            raise ValueError(
                f"The coarse tower ends in {name} ({layer.name!r}); it must output "
                "a spatial grid of feature vectors."
            )
        else:
            raise ValueError(
                f"Cannot derive the receptive field through layer {layer.name!r} "
                f"({name}). Pass `patch_size` and `patch_offset` explicitly."
            )
    return start, jump, window


def _fine_output_hw(fine, patch, channels):
    try:
        shape = fine.compute_output_shape((1, patch[0], patch[1], channels))
    except Exception:  # Too small for the fine tower's valid convolutions.
        return None
    return tuple(shape[1:3])


@dataclasses.dataclass(frozen=True)
class PatchGeometry:
    """Maps each coarse grid cell to the input patch the fine tower reads.

    Cell `(i, j)` of the coarse grid covers the input window whose top-left
    pixel is `(offset[0] + i * stride[0], offset[1] + j * stride[1])` and
    whose size is `patch_size`. Windows that reach past the image are zero
    padded on whichever side they overflow.

    Args:
        image_shape: tuple `(height, width, channels)` of the input.
        grid_shape: tuple `(rows, cols)` of the coarse grid.
        stride: tuple, input pixels between neighbouring cells.
        receptive_field: tuple, the coarse tower's window size per cell.
        patch_size: tuple, the fine tower's input patch size.
        offset: tuple, input coordinate of cell `(0, 0)`'s patch corner
            (negative when the patch starts in the padding).

    Example:
    ```python
    geometry = PatchGeometry.from_towers(coarse, fine, (100, 100, 1))
    geometry.patch_size  # (14, 14) for the cluttered MNIST preset
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    image_shape: tuple
    grid_shape: tuple
    stride: tuple
    receptive_field: tuple
    patch_size: tuple
    offset: tuple

    @property
    def num_cells(self):
        return self.grid_shape[0] * self.grid_shape[1]

    @property
    def padding(self):
        """`((top, bottom), (left, right))` zero padding that holds every patch."""
        pads = []
        for axis in (0, 1):
            before, end = patches_span(self.offset[axis], self.grid_shape[axis], self.stride[axis],
                                       self.patch_size[axis])
            pads.append((before, max(0, end - self.image_shape[axis])))
        return tuple(pads)

    def boxes(self, locations):
        """Input-pixel `[ymin, xmin, ymax, xmax]` (exclusive max) of cells."""
        locations = tf.cast(locations, tf.int32)
        top_left = locations * self.stride + self.offset
        return tf.concat([top_left, top_left + self.patch_size], axis=-1)

    def covered_cells(self, boxes):
        """Which cells objects cover: bool `[N, rows, cols]` from boxes `[N, objects, 4]`.

        `boxes` are `[top, left, height, width]` in input pixels (height 0:
        no object). A cell is covered when the `stride`-sized square at the
        centre of its patch touches a box: the cells a DCN must refine to
        see every object.
        """
        boxes = np.asarray(boxes, np.float64)
        covered = []
        for axis in (0, 1):
            centre = (np.arange(self.grid_shape[axis]) * self.stride[axis] + self.offset[axis]
                      + self.patch_size[axis] / 2)
            low, high = centre - self.stride[axis] / 2, centre + self.stride[axis] / 2
            start, size = boxes[..., axis, None], boxes[..., axis + 2, None]
            covered.append((low < start + size) & (high > start) & (boxes[..., 2, None] > 0))
        return (covered[0][..., :, None] & covered[1][..., None, :]).any(axis=1)

    def covered_share(self, boxes):
        """The mean share of the cells the objects cover (`covered_cells`), a float in [0, 1]."""
        return float(self.covered_cells(boxes).sum((1, 2)).mean()) / self.num_cells

    @classmethod
    def from_towers(cls, coarse, fine, image_shape, patch_size=None, patch_offset=None):
        """Derives the geometry from the coarse tower's receptive field.

        The patch is the smallest window at least as large as a coarse cell's
        receptive field for which the fine tower outputs exactly one vector,
        centred on that field (the extra pixel, if odd, goes before). Both
        can be overridden.
        """
        if len(image_shape) != 3 or not all(
            isinstance(d, int) and d > 0 for d in image_shape
        ):
            raise ValueError(
                "`image_shape` must be (height, width, channels) with positive "
                f"ints; got {image_shape!r}."
            )
        height, width, channels = image_shape
        for tower, tower_name in ((coarse, "coarse"), (fine, "fine")):
            tower_channels = tower.inputs[0].shape[-1]
            if tower_channels is not None and tower_channels != channels:
                raise ValueError(
                    f"Images have {channels} channels but the {tower_name} tower "
                    f"takes {tower_channels}."
                )
        try:
            grid = tuple(coarse.compute_output_shape((1, height, width, channels))[1:3])
        except ValueError as error:
            raise ValueError(
                f"Images of shape {tuple(image_shape)} are too small for the coarse "
                f"tower to give a grid ({error})"
            ) from None
        layers = list(_flat_layers(coarse))
        axes = [_walk_axis(layers, image_shape[a], a) for a in (0, 1)]
        starts = tuple(a[0] for a in axes)
        stride = tuple(a[1] for a in axes)
        field = tuple(a[2] for a in axes)

        if patch_size is None:
            smallest = max(field)
            largest = 2 * smallest + 8 * max(stride) + 8
            for p in range(smallest, largest + 1):
                if _fine_output_hw(fine, (p, p), channels) == (1, 1):
                    patch = (p, p)
                    break
            else:
                raise ValueError(
                    f"No square patch from {smallest} to {largest} pixels makes "
                    "the fine tower output exactly one vector. Pass `patch_size`."
                )
        else:
            patch = int_pair(patch_size, "patch_size", 1)
        out = _fine_output_hw(fine, patch, channels)
        if out != (1, 1):
            raise ValueError(
                f"patch_size={patch} must map to exactly one fine vector (a 1x1 "
                f"fine-tower output), but the fine tower gives {out}."
            )
        if patch_offset is None:
            offset = tuple(
                starts[a] - (patch[a] - field[a] + 1) // 2 for a in (0, 1)
            )
        else:
            offset = int_pair(patch_offset, "patch_offset")
        if height < patch[0] or width < patch[1]:
            raise ValueError(
                f"Images of {height}x{width} are smaller than the {patch[0]}x"
                f"{patch[1]} fine patch."
            )
        return cls(
            image_shape=tuple(image_shape),
            grid_shape=grid,
            stride=stride,
            receptive_field=field,
            patch_size=patch,
            offset=offset,
        )
