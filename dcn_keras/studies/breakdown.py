"""Where a DCN's time goes: its stages, and each layer of its networks.

`bin/dcn_bench --breakdown` prints `time_parts`; `--layer_times` prints
`layer_breakdown`; `--floor` times `convolution_floor`.
"""

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.phase_gradient_conv2d import phase_kernel
from dcn_keras.layers.phase_gradient_conv2d import phase_products
from dcn_keras.models.incremental_top import IncrementalTop
from dcn_keras.studies.timing import interleaved_median_seconds
from dcn_keras.studies.timing import median_seconds


def time_parts(dcn, images, warmup=5, repeats=30):
    """Milliseconds of each stage of a DCN's inference, each timed alone.

    Stages: `coarse` tower, `saliency` (top forward and backward),
    `top_k`, patch `gather`, `fine` tower on all patches (or, with
    `fine_tile` > 1, the windows of `TileGather`), `scatter` (the
    full top pass only: an incremental one builds no refined grid), and
    the refined `top` pass; `whole` is the full pass. Separate calls add a
    little per-call overhead, so the stages sum to somewhat more than `whole`.
    """
    out = dcn.forward(images)
    grid, saliency, locations = out.grid, out.saliency, out.locations
    patches = _fine_tower_input(dcn, images, locations)
    cells = tf.reshape(saliency, [tf.shape(saliency)[0], -1])
    split = dcn.incremental_top
    stages = {
        "coarse": (lambda x: dcn.coarse(x), (images,)),
        "saliency": (lambda g: dcn.scoring(g, training=False)[1], (grid,)),
        "top_k": (lambda s: tf.math.top_k(s, dcn.num_patches).indices, (cells,)),
        "gather": (_gather(dcn), (images, locations)),
        "fine": (lambda p: dcn.fine(p), (patches,)),
        "scatter": (lambda g, l, v: dcn.cell_scatter(g, l, v), (grid, locations, out.fine_vectors)),
        "top": (lambda g: dcn.top(g), (out.refined_grid,)),
    }
    if split is not None:
        deltas = out.fine_vectors - out.coarse_vectors
        pre_activation = split.coarse_pass(grid)["pre_activation"]
        del stages["scatter"]
        stages["top"] = (split.refined_logits, (pre_activation, locations, deltas))
    stages["whole"] = (lambda x: dcn(x, training=False)["probabilities"], (images,))
    return {name: 1e3 * median_seconds(tf.function(fn), args, warmup, repeats)
            for name, (fn, args) in stages.items()}


def convolution_floor(dcn, images):
    """A DCN's convolutions and pools alone: `(fn, args)`, `fn` not yet traced.

    `fn(*args)` runs, one after another as the DCN's inference does, the
    coarse tower on the images, the top network's first convolution on the
    grid, the saliency's backward convolution (phase form, on a map of the
    pre-activations' shape), the fine tower on the `batch * k` patches and,
    for `top_pass="full"`, the top convolution once more. Their inputs are
    computed beforehand, and control dependencies keep the order. All else
    the pass runs (entropy and its gradient, top-k, gather, the sparse
    update, the rest of the top network) is left out, so `fn`'s time is
    the DCN's if all of that were free: the fine model's time over it bounds
    the DCN's speed-up. `fn` returns one number; every argument is
    batch-major, so the batch can be sliced (`bin/dcn_bench --batch_splits`).

    Raises:
        ValueError: the top network does not start with a convolution that
            `IncrementalTop.split` takes (the message names the network).
    """
    # An incremental DCN has split its top already; a full-pass one has not.
    split = dcn.incremental_top or IncrementalTop.split(dcn.top)
    if split is None:
        raise ValueError(f"floor needs a top network that starts with a convolution "
                         f"IncrementalTop.split takes; {dcn.top.name!r} does not.")
    conv = split.conv
    kernel = tf.cast(conv.kernel, conv.compute_dtype)
    phased_kernel = phase_kernel(kernel, conv.strides[0])

    def top_convolution(grid):
        z = conv.convolution_op(tf.cast(grid, conv.compute_dtype), kernel)
        return z + tf.cast(conv.bias, z.dtype) if conv.use_bias else z

    out = dcn.forward(images)
    # Patches stay batch-major ([batch, k, ph, pw, C]) so `floor_fn` can slice
    # them; a tiled DCN's windows are not per image (`floor_fn` refuses to slice).
    patches = _gather(dcn)(images, out.locations)
    # The backward convolution's input is the entropy's gradient at the
    # pre-activations; a convolution's time does not depend on the values,
    # so the pre-activations themselves stand in for it.
    gradient_shaped = top_convolution(out.grid)

    def fn(x, dy, p):
        grid = dcn.coarse(x)
        done = [top_convolution(grid)]
        with tf.control_dependencies(done[-1:]):
            done.append(phase_products(dy, phased_kernel))
        with tf.control_dependencies(done[-1:]):
            done.append(dcn.fine(tf.reshape(p, [-1, *p.shape[-3:]])))
        if dcn.incremental_top is None:
            with tf.control_dependencies(done[-1:]):
                done.append(top_convolution(grid))
        return _one_number(done)

    return fn, (images, gradient_shaped, patches)


def _gather(dcn):
    # The DCN's cut of the fine tower's input: patches, or windows of blocks.
    if dcn.tile_gather is not None:
        return lambda x, locations: dcn.tile_gather(x, locations)[0]
    return dcn.patch_gather


def _fine_tower_input(dcn, images, locations):
    # The patches (or windows) of one fine-tower call, as the DCN's forward pass makes them.
    cut = _gather(dcn)(images, locations)
    return tf.reshape(cut, [-1, *cut.shape[-3:]])


def _one_number(outputs):
    # Depends on every output (a head left out would be pruned from the
    # graph, and not timed) but copies out one number, not the maps.
    return tf.add_n([tf.reduce_sum(tf.cast(t[:1], tf.float32)) for t in tf.nest.flatten(outputs)])


def chain_layers(model):
    """The layers of `model` in order if each feeds the next alone, else None.

    Such a single-path model (the presets' towers) can be cut after any
    layer; a branching one (a multi-head top) cannot.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    previous, layers = model.inputs[0], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.input is not previous:
            return None
        previous = layer.output
        layers.append(layer)
    return layers if previous is model.outputs[0] else None


def time_layers(model, x, warmup=5, repeats=30):
    """Milliseconds each layer adds to `model`'s forward pass on `x`.

    Layer i's time is the median time of the pass cut after layer i minus
    that of the pass cut before it (the pass cut before the first layer
    returns at once: the call's own cost). The cut passes, each fetching a
    single number so that copying out a large map does not count, are timed
    interleaved; the differences sum to the whole pass less the call's
    cost. Noise can make a cheap layer's difference negative at small
    batches or few `repeats`. A model that `chain_layers` cannot cut gives
    `{"whole": ms}`.
    """
    layers = chain_layers(model)
    if layers is None:
        fn = tf.function(lambda a: _one_number(model(a)))
        return {"whole": 1e3 * median_seconds(fn, (x,), warmup, repeats)}

    def cut(n):
        def fn(a):
            for layer in layers[:n]:
                a = layer(a)
            return _one_number(a)
        return tf.function(fn), (x,)

    timed = interleaved_median_seconds({n: cut(n) for n in range(len(layers) + 1)},
                                       warmup, repeats)
    return {layer.name: 1e3 * (timed[n + 1] - timed[n]) for n, layer in enumerate(layers)}


def layer_breakdown(base, dcns, images, warmup, repeats):
    """`time_layers` of a DCN preset's networks, as `bin/dcn_bench --layer_times` prints.

    Args:
        base: `DynamicCapacityNetwork` whose towers the `dcns` share.
        dcns: dict, `k` -> `DynamicCapacityNetwork`; each cuts its own patches.
        images: tensor `[batch, height, width, channels]`.
        warmup, repeats: int, as for `time_layers`.

    Returns:
        dict, network label -> `time_layers` result: the coarse tower on the
        images, the fine tower on each DCN's `batch * k` patches (or its
        blocks' windows, `fine_tile` > 1) and on the
        zero-padded whole images (the fine model's tower), and the top
        network on the coarse grids.
    """
    batch = images.shape[0]
    grid = base.coarse(images)
    padded = keras.layers.ZeroPadding2D(base.geometry.padding)(images)
    times = {f"coarse tower, {batch} images": time_layers(base.coarse, images, warmup, repeats)}
    for k, dcn in dcns.items():
        patches = _fine_tower_input(dcn, images, dcn.forward(images).locations)
        cut = (f"{patches.shape[0]} windows of {dcn.fine_tile}x{dcn.fine_tile} cells" if dcn.tile_gather is not None
               else f"{batch * k} patches")
        times[f"fine tower, {cut} (k={k})"] = time_layers(base.fine, patches, warmup, repeats)
    times[f"fine tower, {batch} whole images"] = time_layers(base.fine, padded, warmup, repeats)
    times[f"top, {batch} grids"] = time_layers(base.top, grid, warmup, repeats)
    return times
