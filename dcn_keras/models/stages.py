"""The tensors of one DCN pass, stage by stage."""

from typing import Any
from typing import NamedTuple


class Stages(NamedTuple):
    """What `DynamicCapacityNetwork.forward` computes, in the paper's order.

    A named tuple (a `tf.nest` structure), so it passes through
    `tf.function` and `tf.cond`. A field the pass did not compute is None.

    Args:
        grid: `[batch, rows, cols, D]`, the coarse tower's map `f_c(x)`.
        coarse_logits: the top network's logits on `grid` (a tensor, or a
            dict of heads): the coarse prediction.
        saliency: float32 `[batch, rows, cols]`, each cell's score.
        locations: int32 `[batch, k, 2]`, the `(row, col)` of the k cells
            refined (-1 for an image that exited early).
        coarse_vectors: `[batch, k, D]`, the grid's vectors at `locations`.
        fine_vectors: `[batch, k, D]`, the fine tower's vectors there.
        refined_grid: `grid` with `fine_vectors` at `locations`.
        logits: the top network's logits on the refined grid: the answer.
        refined: bool `[batch]`, with an early exit only: whether the image
            was refined (else its answer is the coarse one).

    Example:
    ```python
    stages = model.forward(images)
    stages.locations  # the cells the fine tower saw
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016, Sec. 2.
    """

    grid: Any = None
    coarse_logits: Any = None
    saliency: Any = None
    locations: Any = None
    coarse_vectors: Any = None
    fine_vectors: Any = None
    refined_grid: Any = None
    logits: Any = None
    refined: Any = None
