"""Multiply-adds per image, counted from the layers' shapes.

`model_macs` gives the coarse model's, the fine model's and the DCN's; their
ratio bounds the DCN's possible speed-up (`bin/dcn_bench`'s `fine/model MAC`).
"""

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf


def _layer_macs(layer, in_shape, out_shape):
    kl = keras.layers
    if isinstance(layer, (kl.Conv1D, kl.Conv2D, kl.Conv3D)):  # Subclasses too.
        kernel = np.prod(layer.kernel_size)
        return int(np.prod(out_shape[1:]) * kernel * in_shape[-1] // layer.groups)
    if isinstance(layer, kl.DepthwiseConv2D):
        return int(np.prod(out_shape[1:]) * np.prod(layer.kernel_size))
    if isinstance(layer, kl.Conv2DTranspose):
        return int(np.prod(in_shape[1:]) * np.prod(layer.kernel_size) * layer.filters)
    if isinstance(layer, kl.Dense):
        return int(np.prod(in_shape[1:]) * layer.units)
    return 0  # Pooling, activations, reshapes: no multiply-adds.


def count_macs(model, input_shape):
    """Multiply-adds for one example, from each layer's input and output shape.

    Convolutions and dense layers count; pooling and activations do not.
    `input_shape` excludes the batch. Nested models are counted through.
    """
    shapes = {}
    total = 0
    for tensor in model.inputs:
        shapes[id(tensor)] = (1, *input_shape)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = tf.nest.flatten(layer.input)
        in_shapes = [shapes[id(t)] for t in inputs]
        in_shape = in_shapes[0] if len(in_shapes) == 1 else in_shapes
        if isinstance(layer, keras.Model):
            total += count_macs(layer, in_shape[1:])
        out_shape = layer.compute_output_shape(in_shape)
        outputs = tf.nest.flatten(layer.output)
        if len(outputs) == 1:
            out_shapes = [out_shape]
        elif isinstance(out_shape, dict):  # tf.nest orders dicts by key.
            out_shapes = [out_shape[key] for key in sorted(out_shape)]
        else:
            out_shapes = list(out_shape)
        for tensor, shape in zip(outputs, out_shapes):
            shapes[id(tensor)] = tuple(shape)
        if not isinstance(layer, keras.Model):
            total += _layer_macs(layer, in_shape, out_shape)
    return total


def model_macs(dcn, windows_per_image=None):
    """Multiply-adds per image of the coarse model, the fine model and the DCN.

    The DCN runs the top network two times' worth, the coarse pass and the
    saliency backward pass to the grid (input gradients cost what the
    forward pass costs; a class activation map costs only its weighted sums
    and the window sums, `_cam_macs`), plus the fine tower on `k` patches and the refined
    pass: the whole top network again, or with an incremental top pass
    (`IncrementalTop`) the first convolution's taps that reach each of the
    `k` refined cells and the rest of the top network. A DCN with
    `fine_tile` > 1 runs the fine tower on a varying number of windows
    (`TileGather`): pass their mean `windows_per_image` (on the images
    timed) to count those; without it the count is `k` patches, its bound.
    """
    g = dcn.geometry
    grid = (*g.grid_shape, dcn.coarse.outputs[0].shape[-1])
    coarse = count_macs(dcn.coarse, dcn.image_shape)
    top = count_macs(dcn.top, grid)
    refined = top
    if dcn.incremental_top is not None:
        refined = top - _incremental_saving(dcn.incremental_top.conv, grid, dcn.num_patches)
    saliency = top  # The entropy gradient's backward pass costs a forward pass.
    cam = getattr(dcn, "class_activation_map", None)
    if cam is not None:
        saliency = _cam_macs(cam, grid)
    patch = count_macs(dcn.fine, (*g.patch_size, dcn.image_shape[-1]))
    (pt, pb), (pl, pr) = g.padding
    h, w, c = dcn.image_shape
    fine_whole = count_macs(dcn.fine, (h + pt + pb, w + pl + pr, c))
    fine_grid = dcn.fine.compute_output_shape((1, h + pt + pb, w + pl + pr, c))[1:]
    fine_pass = dcn.num_patches * patch
    tiles = getattr(dcn, "tile_gather", None)
    if tiles is not None and windows_per_image is not None:
        fine_pass = round(windows_per_image * count_macs(dcn.fine, (*tiles.window_size, dcn.image_shape[-1])))
    return {
        "coarse": coarse + top,
        "fine": fine_whole + count_macs(dcn.top, tuple(fine_grid)),
        "dcn": coarse + top + saliency + refined + fine_pass,
        "parts": {"coarse_tower": coarse, "top": top, "saliency": saliency, "refined_top": refined,
                  "fine_patch": patch, "fine_pass": fine_pass, "fine_whole": fine_whole},
    }


def _incremental_saving(conv, grid, num_patches):
    # Each refined cell reaches ceil(kh / s) x ceil(kw / s) outputs of the
    # first convolution, one cin x filters tap each, instead of the whole
    # convolution; the rest of the top network runs as usual.
    kh, kw = conv.kernel_size
    stride = conv.strides[0]
    taps = -(-kh // stride) * -(-kw // stride)
    whole = _layer_macs(conv, (1, *grid), conv.compute_output_shape((1, *grid)))
    return whole - num_patches * taps * grid[-1] * conv.filters


def _cam_macs(cam, grid):
    # The class weights (classes x filters), the weighted sum at every
    # position of the convolution's output, and each cell's window sum.
    conv = cam.conv
    _, rows, cols, filters = conv.compute_output_shape((1, *grid))
    classes = cam.dense.units
    stride = conv.strides[0]
    taps = -(-conv.kernel_size[0] // stride) * -(-conv.kernel_size[1] // stride)
    return classes * filters + rows * cols * filters + grid[0] * grid[1] * taps


def preset_table(preset, sides, **options):
    """Rows of `model_macs` for a preset at square image sizes: the patch, k and the costs in M multiply-adds.

    `options` go to `from_preset` (e.g. `num_classes` for `images`); each
    row: `side`, `grid`, `patch`, `k`, `coarse_tower`, `fine_pass`, `dcn`,
    `fine`, `fine_pass_share` (of the fine model's) and `fine_over_dcn`.
    """
    from dcn_keras.models import DynamicCapacityNetwork

    channels = options.pop("channels", 3 if preset == "images" else 1)
    rows = []
    for side in sides:
        dcn = DynamicCapacityNetwork.from_preset(preset, image_shape=(side, side, channels), **options)
        macs = model_macs(dcn)
        parts = macs["parts"]
        rows.append({"side": side, "grid": dcn.geometry.grid_shape, "patch": dcn.geometry.patch_size,
                     "k": dcn.num_patches, "coarse_tower": parts["coarse_tower"] / 1e6,
                     "fine_pass": parts["fine_pass"] / 1e6, "dcn": macs["dcn"] / 1e6, "fine": macs["fine"] / 1e6,
                     "fine_pass_share": parts["fine_pass"] / macs["fine"], "fine_over_dcn": macs["fine"] / macs["dcn"]})
    return rows


def main(argv=None):
    """`python -m dcn_keras.studies.macs --preset=images --sides=128,256,512,1024`: a Markdown table."""
    import argparse

    parser = argparse.ArgumentParser(description="Multiply-adds of a preset's DCN and fine model by image size.")
    parser.add_argument("--preset", default="images")
    parser.add_argument("--sides", default="128,256,512,1024")
    args = parser.parse_args(argv)
    options = {"num_classes": 10} if args.preset == "images" else {}
    print("| side | grid | patch | k | coarse tower | fine pass | DCN | fine model | fine pass / fine model | fine model / DCN |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in preset_table(args.preset, [int(s) for s in args.sides.split(",")], **options):
        print(f"| {r['side']} px | {r['grid'][0]}x{r['grid'][1]} | {r['patch'][0]} px | {r['k']} | "
              f"{r['coarse_tower']:.1f} M | {r['fine_pass']:.1f} M | {r['dcn']:.1f} M | {r['fine']:.0f} M | "
              f"{100 * r['fine_pass_share']:.1f}% | {r['fine_over_dcn']:.1f}x |")


if __name__ == "__main__":
    main()
