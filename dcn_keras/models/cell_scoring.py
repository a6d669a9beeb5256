"""How a DCN scores the cells of its coarse grid: one object per saliency, chosen at construction."""

from dcn_keras.backend import tf


def cell_scoring(saliency, top, saliency_layer, incremental_top=None, class_activation_map=None):
    """The scorer `DynamicCapacityNetwork` calls on its coarse grid.

    A scorer maps `(grid, training)` to `(coarse_logits, saliency,
    pre_activation)`; `pre_activation` (the top's first layer on the grid)
    is None unless the refined pass is to update it incrementally.

    Args:
        saliency: str, `"entropy_gradient"`, `"cam"` or `"cam_top_class"`.
        top: `keras.Model`, the top network.
        saliency_layer: an `EntropySaliency` layer.
        incremental_top: an `IncrementalTop` of `top`, or None (the refined
            pass runs the whole top).
        class_activation_map: a `ClassActivationMap` of `top` for `"cam*"`.
    """
    if saliency.startswith("cam"):
        return _ClassActivation(class_activation_map, top, incremental_top is not None)
    if incremental_top is not None:
        return _IncrementalEntropyGradient(top, saliency_layer, incremental_top)
    return _EntropyGradient(top, saliency_layer)


class _EntropyGradient:
    # The paper's saliency: the norm of the coarse prediction's entropy
    # gradient with respect to each cell, through the whole top network.
    def __init__(self, top, saliency_layer):
        self.top, self.saliency_layer = top, saliency_layer

    def __call__(self, grid, training):
        scored = self.saliency_layer(grid, top=self.top, training=training)
        return scored["logits"], scored["saliency"], None


class _IncrementalEntropyGradient(_EntropyGradient):
    # The same scores at inference from the top split after its first layer,
    # whose pre-activations the refined pass then updates cell by cell.
    # Training takes the whole top: its gradients are those of the paper's
    # model as written.
    def __init__(self, top, saliency_layer, incremental_top):
        super().__init__(top, saliency_layer)
        self.incremental_top = incremental_top

    def __call__(self, grid, training):
        if training:
            return super().__call__(grid, training)
        scored = self.incremental_top.coarse_pass(grid)
        return scored["logits"], scored["saliency"], scored["pre_activation"]


class _ClassActivation:
    # Class activation maps: the forward pass alone scores the cells.
    def __init__(self, class_activation_map, top, incremental):
        self.class_activation_map, self.top, self.incremental = class_activation_map, top, incremental

    def __call__(self, grid, training):
        scored = self.class_activation_map(grid)
        if training:  # Selection is not differentiated; the coarse loss is.
            return self.top(grid, training=True), tf.stop_gradient(scored["saliency"]), None
        return scored["logits"], scored["saliency"], scored["pre_activation"] if self.incremental else None
