"""Side-by-side speed, arithmetic and memory of coarse, fine and DCN models.

`bench_report` turns the results into ratios, a table and a plot; `timing`
times the calls, `macs` counts multiply-adds, `breakdown` splits a DCN's time.
"""

import numpy as np

from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.studies.breakdown import convolution_floor
from dcn_keras.studies.breakdown import layer_breakdown
from dcn_keras.studies.breakdown import time_parts
from dcn_keras.studies.macs import model_macs
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models.loading import check_dtype_policy
from dcn_keras.models.loading import global_dtype_policy
from dcn_keras.studies.timing import interleaved_median_seconds
from dcn_keras.studies.timing import call_memory_bytes


def inference_fn(model, jit_compile=False, batch_splits=1):
    """`tf.function` images -> refined probabilities (a DCN) or logits (a baseline).

    With `batch_splits` > 1, a batch of known size is cut into that many
    near-equal slices (at most one per image) whose forward passes share no
    ops, so TensorFlow's inter-op pool runs them side by side, as a server
    runs concurrent requests; the outputs (each head's, for a model with
    several) are concatenated in order.
    """
    if isinstance(model, DynamicCapacityNetwork):
        def one(x):
            return model(x, training=False)["probabilities"]
    else:
        def one(x):
            return model(x, training=False)

    def join(outs):
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outs)

    return tf.function(_sliced(one, batch_splits, join), jit_compile=jit_compile)


def floor_fn(dcn, images, batch_splits=1):
    """`(tf.function, args)` of `convolution_floor(dcn, images)`, sliced as `inference_fn`."""
    one, args = convolution_floor(dcn, images)
    return tf.function(_sliced(one, batch_splits, tf.add_n)), args


def _sliced(one, batch_splits, join):
    # `one` on each of `batch_splits` near-equal slices of its batch-major
    # arguments (at most one per image), the results joined by `join`.
    def call(*args):
        batch = args[0].shape[0]
        pieces = min(batch_splits, batch or 1)
        if pieces <= 1:
            return one(*args)
        sizes = [len(s) for s in np.array_split(np.arange(batch), pieces)]
        return join([one(*part) for part in zip(*(tf.split(a, sizes) for a in args))])

    return call


LITERT_THREADS = {1: (1, 2), None: (2,)}  # Batch 1: one and two threads; larger batches: two.


def litert_fns(model, batch):
    """`{"litert<threads>": fn}` for `model` as a LiteRT file at `batch`, fn images -> its outputs.

    Builtin ops only, XNNPACK (`serving.litert`); fns take NumPy images. A
    DCN with an exit threshold runs as its two-stage file (`LiteRTModel`).
    """
    from dcn_keras.serving.litert import litert_bytes
    from dcn_keras.serving.litert_model import LiteRTModel

    data = litert_bytes(model, batch)
    fns = {}
    for threads in LITERT_THREADS.get(batch, LITERT_THREADS[None]):
        run = LiteRTModel(data, num_threads=threads)
        # Every output: a multi-digit model's are per head (probabilities_length, ...).
        fns[f"litert{threads}"] = run
    return fns


def configure_threads(intra_op=0, inter_op=0):
    """Sets TensorFlow's thread pools (0 keeps TF's default: one per core).

    Must run before TensorFlow executes anything in this process. With
    `intra_op=1` each op runs on one core and independent ops run side by
    side, which suits many small ops (the DCN at batch 1) better than
    splitting each op across cores.
    """
    for name, value in (("intra_op_threads", intra_op), ("inter_op_threads", inter_op)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 0 (0: TF's default).")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as error:
        raise ValueError(f"thread pools must be set before TensorFlow runs anything: {error}") from None


def _mean_over_requests(timed):
    # `{key#i: seconds}` of the calls on different real batches -> `{key: mean seconds}`.
    groups = {}
    for key, seconds in timed.items():
        groups.setdefault(key.split("#")[0], []).append(seconds)
    return {key: float(np.mean(values)) for key, values in groups.items()}


def _train_step(model):
    step = tf.function(model.train_step)
    return lambda x, y: step((x, y))


def run_benchmark(preset="cluttered_mnist", ks=(4, 8, 16), batch_sizes=(1, 64),
                  train_batch=64, warmup=5, repeats=30, xla=True, seed=0, gather="index",
                  top_pass="incremental", breakdown=False, batch_splits=1, dtype_policy="float32",
                  layer_times=False, floor=False, litert=False, saliency="entropy_gradient", weights=None,
                  requests=None, canvas_size=None, mnist_dir=None, fine_tile=None, log=print):
    """Measures every model of `preset` in this process; returns a dict.

    With `canvas_size`, the preset's models take square images of that side
    (the towers are convolutional; k stays the preset's unless `ks` says).

    Inference is timed inside `tf.function` (and, with `xla`, also with
    `jit_compile=True`); one training step at `train_batch` for the fine
    model and each DCN. The models of one batch size, and the training
    steps, are timed interleaved (`interleaved_median_seconds`), so their
    ratios compare like with like. All models share one set of tower weights; the DCNs
    cut their patches with `gather` and run their refined top pass as
    `top_pass` and score cells by `saliency` (see `DynamicCapacityNetwork`). With `breakdown`, also `time_parts` of
    each DCN at the largest batch size; with `layer_times`, `time_layers` of
    the coarse tower, the fine tower on each DCN's patches and on whole
    images, and the top network, at that size. With `batch_splits` > 1 every
    model's inference batch is cut into slices run side by side (see
    `inference_fn`); training steps are not split. With `floor`, also each
    DCN's `convolution_floor` at every batch size (graph, sliced as the
    models are), timed in the models' interleaved rounds, under
    `results["floor"]`. With `litert`, every model also runs as a LiteRT
    file (`litert_fns`: batch 1 with one and two threads, larger batches
    with two), timed in the same rounds (variants `litert1`, `litert2`).
    At the largest batch size, each model's memory for one call:
    `results["call_memory_bytes"]`, the allocator's peak above what it
    already held, and `results["peak_memory_bytes"]`, that peak with the
    held bytes (`call_memory_bytes`; None unless TensorFlow's CPU allocator
    is BFC). Every model is built under
    `dtype_policy` (one of `loading.DTYPE_POLICIES`; None is float32); the
    global policy is restored after.

    With `weights` (a preset's shipped weights, e.g. `"pretrained"`, or a
    `.weights.h5` file) the models are the trained ones and run on real
    test canvases (the embedded cluttered-MNIST test digits) instead of
    noise, and the DCNs keep the preset's exit threshold: what an exit
    saves depends on the images. Every batch size is then timed on about
    `requests` different images (default 200: 200 single-image requests, 3
    batches of 64), each call interleaved with the others, and reported as
    their mean (`results["requests"]`; the DCNs' share of those images
    refined in `results["refined_share"]`, by batch size). With `mnist_dir`
    (MNIST's IDX files), those canvases are of MNIST's official test digits.
    The DCNs run their fine tower per `fine_tile` x `fine_tile` block (see
    `DynamicCapacityNetwork`; None: the preset's own); with blocks, their
    multiply-adds count the mean windows per image of the largest batch
    (`results["fine_windows_per_image"]`).
    """
    if not isinstance(batch_splits, int) or isinstance(batch_splits, bool) or batch_splits < 1:
        raise ValueError(f"batch_splits={batch_splits!r} is not valid; it must be an integer >= 1.")
    check_dtype_policy(dtype_policy, "--dtype_policy")
    if saliency != "entropy_gradient" and (breakdown or floor):
        raise ValueError(f"breakdown and floor time the entropy gradient's stages; not with saliency={saliency}.")
    dtype_policy = dtype_policy or "float32"
    with global_dtype_policy(dtype_policy):
        results = _run(preset, ks, batch_sizes, train_batch, warmup, repeats, xla, seed, gather,
                       top_pass, breakdown, batch_splits, layer_times, floor, litert, saliency, weights,
                       requests, canvas_size, mnist_dir, fine_tile, log)
    results["dtype_policy"] = dtype_policy
    return results


def _test_canvases(image_shape, count, mnist_dir=None, preset=None):
    # Real inputs for trained weights: canvases of the test digits (the
    # embedded ones, or MNIST's official ones from `mnist_dir`: a model
    # trained on full MNIST has seen the embedded digits), Megapixel MNIST
    # for its preset, else cluttered MNIST for one channel, mnist_numbers
    # for three.
    from dcn_keras.datasets import cluttered_mnist
    from dcn_keras.datasets import megapixel_mnist
    from dcn_keras.datasets import mnist_numbers

    height, width, channels = image_shape
    if height != width or channels not in (1, 3):
        raise ValueError(f"weights times trained models on square cluttered MNIST (1 channel) or mnist_numbers "
                         f"(3 channels) test canvases; this preset takes {tuple(image_shape)}.")
    source = dict(source="auto", mnist_dir=mnist_dir) if mnist_dir else dict(source="embedded")
    if preset == "megapixel_mnist":
        described, digits, _ = megapixel_mnist.split_descriptions("test", canvas_size=height, num_canvases=count,
                                                                  **source)
        return megapixel_mnist.draw_canvases(described, digits).astype(np.float32) / 255.0
    per_digit = -(-count // (10_000 if mnist_dir else 1000))
    if channels == 1:
        canvases = cluttered_mnist.split_canvases("test", examples_per_digit=per_digit, canvas_size=height,
                                                  **source)[0]
    else:
        canvases = np.repeat(mnist_numbers.split_numbers("test", num_numbers=count, image_size=height,
                                                         digit_scale=1.0, **source)[0], 3, axis=-1)
    return canvases[:count].astype(np.float32) / 255.0


def _windows_per_image(dcn, batches):
    # The mean fine-tower windows per image of a tiled DCN on `batches` (None: patch by patch).
    if dcn.tile_gather is None:
        return None
    counts = [dcn.tile_gather(x, dcn.forward(x).locations)[0].shape[0] / x.shape[0] for x in batches]
    return float(np.mean(counts))


def _run(preset, ks, batch_sizes, train_batch, warmup, repeats, xla, seed, gather, top_pass, breakdown,
         batch_splits, layer_times, floor, litert, saliency, weights, requests, canvas_size, mnist_dir, fine_tile,
         log):
    keras.utils.set_random_seed(seed)
    base = DynamicCapacityNetwork.from_preset(preset, weights=weights)
    if canvas_size is not None:
        shape = (canvas_size, canvas_size, base.image_shape[2])
        base = DynamicCapacityNetwork.from_preset(preset, weights=weights, image_shape=shape)
    exit_threshold = base.exit_threshold if weights is not None else None
    dcns = {k: DynamicCapacityNetwork(
        coarse=base.coarse, fine=base.fine, top=base.top, image_shape=base.image_shape,
        num_patches=k, gather=gather, top_pass=top_pass, saliency=saliency, exit_threshold=exit_threshold,
        fine_tile=base.fine_tile if fine_tile is None else fine_tile)
        for k in ks}
    tiled = sorted({m.fine_tile for m in dcns.values() if m.tile_gather is not None})
    if floor and batch_splits > 1 and tiled:
        raise ValueError(f"floor with batch_splits={batch_splits} slices the fine tower's patches by image; "
                         f"the DCNs' fine-tower windows (fine_tile={tiled[0]}) are not per image. Pass fine_tile=1.")
    fine_model, coarse_model = base.fine_only_model(), base.coarse_only_model()
    models = {"coarse": coarse_model, "fine": fine_model}
    models.update({f"dcn_k{k}": m for k, m in dcns.items()})
    rng = np.random.default_rng(seed)
    threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
               "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    requests = requests or (200 if weights is not None else 1)
    if weights is None:
        groups = {batch: [tf.constant(rng.random((batch, *base.image_shape), dtype=np.float32))]
                  for batch in batch_sizes}
    else:
        # About `requests` different real images at every batch size (200
        # single requests, 3 batches of 64): what an exit saves depends on them.
        counts = {batch: max(1, round(requests / batch)) for batch in batch_sizes}
        canvases = _test_canvases(base.image_shape, max(b * n for b, n in counts.items()), mnist_dir, preset)
        groups = {b: [tf.constant(canvases[i * b:(i + 1) * b]) for i in range(n)] for b, n in counts.items()}
    inputs = {batch: group[0] for batch, group in groups.items()}
    windows = {f"dcn_k{k}": _windows_per_image(m, groups[max(batch_sizes)]) for k, m in dcns.items()}
    base_macs = model_macs(base)
    macs = {"coarse": base_macs["coarse"], "fine": base_macs["fine"]}
    macs.update({f"dcn_k{k}": model_macs(m, windows[f"dcn_k{k}"])["dcn"] for k, m in dcns.items()})
    results = {"preset": preset, "image_shape": list(base.image_shape), "gather": gather, "top_pass": top_pass, "saliency": saliency,
               "weights": weights, "test_digits": ("MNIST test" if mnist_dir else "embedded") if weights else None,
               "exit_threshold": exit_threshold, "requests": requests if weights is not None else None,
               "macs_per_image": macs,
               "inference": {}, "train_step": {},
               "peak_memory_bytes": {}, "call_memory_bytes": {},
               "warmup": warmup, "repeats": repeats, "threads": threads,
               "batch_splits": batch_splits, "floor": {},
               "fine_tile": {f"dcn_k{k}": m.fine_tile for k, m in dcns.items()},
               "fine_windows_per_image": windows}
    calls = {batch: {} for batch in batch_sizes}

    def add(batch, key, fn, numpy=False):
        # Several real batches: one call each (`#i`), averaged below.
        if len(groups[batch]) == 1:
            calls[batch][key] = (fn, (inputs[batch].numpy() if numpy else inputs[batch],))
            return
        for i, x in enumerate(groups[batch]):
            calls[batch][f"{key}#{i}"] = (fn, (x.numpy() if numpy else x,))

    for name, model in models.items():
        variants = {"graph": inference_fn(model, batch_splits=batch_splits)}
        if xla:
            variants["xla"] = inference_fn(model, jit_compile=True, batch_splits=batch_splits)
        for batch in batch_sizes:
            for variant, fn in variants.items():
                add(batch, f"{name}/b{batch}/{variant}", fn)
    if litert:
        for name, model in models.items():
            for batch in batch_sizes:
                for variant, fn in litert_fns(model, batch).items():
                    add(batch, f"{name}/b{batch}/{variant}", fn, numpy=True)
    if floor:
        for k, dcn in dcns.items():
            for batch in batch_sizes:
                calls[batch][f"dcn_k{k}/b{batch}/floor"] = floor_fn(dcn, inputs[batch], batch_splits)
    # One batch size at a time: its models interleaved with each other.
    for batch in batch_sizes:
        timed = _mean_over_requests(interleaved_median_seconds(calls[batch], warmup, repeats))
        for key, seconds in timed.items():
            name, _, variant = key.split("/")
            kind = "floor" if variant == "floor" else "inference"
            results[kind][key] = {"latency_ms": seconds * 1e3, "images_per_s": batch / seconds}
            log(f"dcn_bench: {name:9s} batch {batch:3d} {variant:5s} {seconds * 1e3:8.2f} ms")
    if exit_threshold is not None and weights is not None:
        results["refined_share"] = {  # Of the images each batch size was timed on.
            f"dcn_k{k}/b{batch}": float(np.mean(np.concatenate(
                [m(x, training=False)["refined"].numpy() for x in groups[batch]])))
            for k, m in dcns.items() for batch in batch_sizes}
    largest = max(batch_sizes)
    for name in models:  # After the timing: traced and warm.
        key = f"{name}/b{largest}/graph"
        memory = call_memory_bytes(*calls[largest].get(key) or calls[largest][f"{key}#0"]) or {}
        results["peak_memory_bytes"][name] = memory.get("peak")
        results["call_memory_bytes"][name] = memory.get("own")

    if breakdown:
        results["breakdown"] = {f"dcn_k{k}/b{largest}": time_parts(m, inputs[largest], warmup, repeats)
                                for k, m in dcns.items()}
    if layer_times:
        results["layer_times"] = layer_breakdown(base, dcns, inputs[largest], warmup, repeats)

    x = tf.constant(rng.random((train_batch, *base.image_shape), dtype=np.float32))
    # A class per example for each head, in the structure the top returns.
    y = tf.nest.map_structure(lambda logits: tf.constant(rng.integers(0, logits.shape[-1], train_batch)),
                              base.top.output)
    fine_train = base.fine_only_model()
    fine_train.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainers = {"fine": fine_train}
    for k, m in dcns.items():
        m.compile(optimizer="adam")
        trainers[f"dcn_k{k}"] = m
    timed = interleaved_median_seconds(
        {name: (_train_step(model), (x, y)) for name, model in trainers.items()},
        warmup, max(5, repeats // 3))
    for name, seconds in timed.items():
        results["train_step"][f"{name}/b{train_batch}"] = {
            "step_ms": seconds * 1e3, "images_per_s": train_batch / seconds}
        log(f"dcn_bench: train {name:9s} batch {train_batch} {seconds * 1e3:8.2f} ms/step")
    return results
