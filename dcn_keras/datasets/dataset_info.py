"""What a loaded dataset is: shapes, classes, size and where it came from."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Describes one split of a registered dataset.

    Args:
        name: str, the registry name (`--dataset`).
        split: str, `"train"`, `"validation"` or `"test"`.
        image_shape: tuple `(height, width, channels)` of the images.
        num_examples: int, examples in the split.
        preset: str, the `DynamicCapacityNetwork` preset sized for it.
        source: str, where the data came from (shown to the user).
        class_names: tuple of str, the classes of a single-head task (empty
            for multi-head tasks).
        object_boxes: float array `[num_examples, objects, 4]` or None, each
            object's `[top, left, height, width]` in pixels (zero height:
            none), where the dataset knows them (`mnist_numbers`' digits).
        eight_bit: bool, whether every pixel is a whole multiple of 1/255
            (drawn from 8-bit values), so training can carry the images as
            uint8 and lose nothing. Defaults to False.
    """

    name: str
    split: str
    image_shape: tuple
    num_examples: int
    preset: str
    source: str
    class_names: tuple = ()
    object_boxes: object = dataclasses.field(default=None, repr=False, compare=False)
    eight_bit: bool = False
