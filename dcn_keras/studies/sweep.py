"""Operating points of trained DCNs: test error against time over k, exit threshold and saliency.

One trained DCN runs at any `k`, with either saliency and with or without
an exit threshold (`DynamicCapacityNetwork.with_settings`; the weights are
shared), so its accuracy/time curve is measured without retraining. Every
point is scored on the same test images as the fine model (paired McNemar
counts) and timed through the served graph (`serving.flat_outputs`, what
the SavedModel's `serving_default` computes) on real test batches, since
the time of an exit threshold depends on how many images it refines.

An exited image's answer is the coarse one and a refined image's is the
DCN's without threshold (tested in `tests/models/test_exit_threshold.py`),
so each `(saliency, k)` runs over the test set once and every threshold's
error and share refined follow from its coarse confidence.
"""

import os

import numpy as np

from dcn_keras.studies import benchmark
from dcn_keras.backend import tf
from dcn_keras.evaluation import paired_counts
from dcn_keras.evaluation import right_answers
from dcn_keras.io_utils import atomic_path
from dcn_keras.studies.macs import model_macs
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models import load_model
from dcn_keras.models.settings import SALIENCIES
from dcn_keras.models.objective import coarse_confidence
from dcn_keras.models.objective import probabilities
from dcn_keras.serving.export import flat_outputs
from dcn_keras.studies.timing import interleaved_median_seconds

# From never exiting (None) to exiting often.
THRESHOLDS = (None, 0.99999, 0.9999, 0.999, 0.995, 0.99, 0.97, 0.9)


def test_set(data):
    """The `(images, labels)` of a batched `tf.data` test set, images as compact as they are exact.

    Images whose pixels all lie on the 1/255 grid (every dataset built from
    8-bit pixels) are kept as uint8, a quarter of float32's memory: 10,000
    384-pixel colour canvases take 4.4 GB instead of 17.7 GB. `sweep` takes
    either.
    """
    images, labels, exact = [], [], True
    for x, y in data.as_numpy_iterator():
        levels = np.round(x * 255)
        # The same float32 division `_pixels` undoes it with: exact means bit for bit.
        exact = exact and bool(np.array_equal(levels.astype(np.float32) / np.float32(255), x))
        images.append(levels.astype(np.uint8) if exact else x.astype(np.float32))
        labels.append(y)
        if not exact and images[0].dtype == np.uint8:  # Seen too late: back to float32 for all.
            images = [_pixels(batch) for batch in images]
    labels = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *labels)
    # Stacked one batch at a time, freeing each, so the peak is one copy and a batch.
    stacked = np.empty((sum(len(b) for b in images), *images[0].shape[1:]), images[0].dtype)
    start = 0
    while images:
        batch = images.pop(0)
        stacked[start:start + len(batch)] = batch
        start += len(batch)
    return stacked, labels


def _pixels(images):
    """float32 images in [0, 1] from float32 or uint8 (0-255) ones."""
    return images.astype(np.float32) / 255 if images.dtype == np.uint8 else images


def _check(ks, thresholds, saliencies):
    for t in thresholds:
        if t is not None and not (isinstance(t, (int, float)) and 0 < t <= 1):
            raise ValueError(f"exit threshold {t!r} must be None (never exit) or a number in (0, 1].")
    bad = [s for s in saliencies if s not in SALIENCIES]
    if bad:
        raise ValueError(f"saliency {bad[0]!r} is not one of {', '.join(SALIENCIES)}.")
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks={list(ks)} must be integers >= 1.")


def _time_ms(fn, batches, repeats):
    """Mean over `batches` of the median milliseconds of `fn` on each, per image."""
    medians = interleaved_median_seconds({i: (fn, (b,)) for i, b in enumerate(batches)}, 2, repeats)
    return 1000 * float(np.mean([medians[i] / len(b) for i, b in enumerate(batches)]))


def _requests(images, refine, count):
    """`count` single-image requests with the test set's share of refined images.

    The time of an image depends on whether it is refined, so the requests
    take the share of the whole test set rather than that of its first images.
    """
    refined, exited = np.flatnonzero(refine), np.flatnonzero(~refine)
    count = min(count, len(images))
    take = min(len(refined), max(int(round(refine.mean() * count)), 1 if len(refined) else 0))
    chosen = np.concatenate([refined[:take], exited[:count - take]])
    return [_pixels(images[i:i + 1]) for i in np.sort(chosen)]


def _timings(model, b64, b1, repeats, xla):
    """`(ms per image at batch 64, ms per batch-1 request)`, best of graph and (baselines) XLA."""
    if isinstance(model, DynamicCapacityNetwork):
        fns = [tf.function(lambda x: flat_outputs(model, x, numbers=False))]
    else:
        fns = [benchmark.inference_fn(model)] + ([benchmark.inference_fn(model, jit_compile=True)] if xla else [])
    return (min(_time_ms(fn, b64, repeats) for fn in fns),
            min(_time_ms(fn, b1, repeats) for fn in fns))


def _litert_ms(model, b1, repeats):
    """ms per batch-1 request of `model` as a LiteRT file (XNNPACK), best of 1 and 2 threads."""
    if isinstance(model, DynamicCapacityNetwork):
        model = model.with_settings(top_pass="full")  # The faster pass on LiteRT (docs/performance.md).
    fns = benchmark.litert_fns(model, 1)
    return min(_time_ms(fn, b1, repeats) for fn in fns.values())


def _right(model, images, labels, batch_size=100):
    """Whether each image is right, for the refined and the coarse answer, and the coarse confidence."""
    refined, coarse, confidence = [], [], []
    for start in range(0, len(images), batch_size):
        out = model(tf.constant(_pixels(images[start:start + batch_size])), training=False)
        y = tf.nest.map_structure(lambda a: a[start:start + batch_size], labels)
        if not isinstance(model, DynamicCapacityNetwork):  # A baseline's logits (a dict for several heads).
            refined.append(right_answers(probabilities(out), y))
            continue
        refined.append(right_answers(out["probabilities"], y))
        coarse.append(right_answers(out["coarse_probabilities"], y))
        confidence.append(coarse_confidence(out["coarse_probabilities"]).numpy())
    join = lambda parts: np.concatenate(parts) if parts else None  # noqa: E731
    return join(refined), join(coarse), join(confidence)


def sweep(dcn_paths, fine_path, images, labels, coarse_path=None, ks=(4, 8, 16), thresholds=THRESHOLDS,
          saliencies=("entropy_gradient", "cam"), timing_batches=8, timing_images=32, repeats=6, litert=False,
          log=print):
    """Measures every operating point of the DCNs in `dcn_paths` against the fine model.

    Args:
        dcn_paths: list of `.keras` DCN files.
        fine_path: str, the fine model's `.keras` file (the reference).
        images, labels: the test set, float32 `[N, H, W, C]` in [0, 1] (or
            uint8 in 0-255, as `test_set` keeps exact ones) and int `[N]`
            (for a multi-digit model, a dict of `[N]` per head, as
            `load_dataset("mnist_numbers", ...)` gives: an image is right
            when the whole number is).
        coarse_path: str or None, the coarse model's `.keras` file, shown as a point.
        ks, thresholds, saliencies: the grid (a threshold None: never exit).
        timing_batches: int, test batches of 64 timed per point.
        timing_images: int, single-image requests timed per point (with an
            exit threshold, refined and exited in the test set's proportion).
        repeats: int, timed calls of each batch or request.
        litert: bool, also time every model and point as a batch-1 LiteRT
            file (`latency_ms_b1_litert`; DCNs with the full top pass).

    Returns:
        `{"references": {"fine": row, "coarse": row}, "points": [row, ...]}`;
        a row has `error`, `macs_per_image`, `ms_per_image_b64`,
        `images_per_s_b64`, `latency_ms_b1` (with `litert`, also
        `latency_ms_b1_litert`) and, for points, `model`,
        `trained_saliency`, `saliency`, `k`, `exit_threshold`,
        `refined_share`, `only_fine_right`, `only_this_right`, `p_value`.
    """
    _check(ks, thresholds, saliencies)
    b64 = [_pixels(images[i * 64:(i + 1) * 64]) for i in range(min(timing_batches, len(images) // 64))]
    b1 = [_pixels(images[i:i + 1]) for i in range(min(timing_images, len(images)))]
    if not b64:
        raise ValueError(f"Timing needs at least 64 test images; got {len(images)}.")
    references, fine_right = {}, None
    for name, path in (("fine", fine_path), ("coarse", coarse_path)):
        if path is None:
            continue
        model = load_model(path, image_shape=images.shape[1:])  # Run at the test images' size.
        if isinstance(model, DynamicCapacityNetwork):
            raise ValueError(f"The {name} model {path} is a DCN; expected a baseline (dcn_train --model={name}).")
        right = _right(model, images, labels)[0]
        fine_right = right if name == "fine" else fine_right
        ms, b1_ms = _timings(model, b64, b1, repeats, xla=True)
        references[name] = dict(model=path, error=float(1 - right.mean()), macs_per_image=None,
                                ms_per_image_b64=ms, images_per_s_b64=1000 / ms, latency_ms_b1=b1_ms)
        if litert:
            references[name]["latency_ms_b1_litert"] = _litert_ms(model, b1, repeats)
        log(f"dcn_sweep: {name} {path}: error {100 * references[name]['error']:.2f}%, "
            f"{1000 / ms:.0f} images/s at batch 64, {b1_ms:.2f} ms at batch 1")
    points = []
    for path in dcn_paths:
        trained = load_model(path, image_shape=images.shape[1:])
        if not isinstance(trained, DynamicCapacityNetwork):
            raise ValueError(f"{path} holds a {type(trained).__name__}, not a DCN.")
        macs = model_macs(trained)
        references["fine"]["macs_per_image"] = macs["fine"]
        if "coarse" in references:
            references["coarse"]["macs_per_image"] = macs["coarse"]
        for saliency in saliencies:
            for k in ks:
                model = trained.with_settings(num_patches=k, saliency=saliency, exit_threshold=None)
                refined_right, coarse_right, confidence = _right(model, images, labels)
                parts = model_macs(model)["parts"]
                for t in thresholds:
                    refine = np.ones(len(images), bool) if t is None else confidence < t
                    right = np.where(refine, refined_right, coarse_right)
                    served = model if t is None else model.with_settings(exit_threshold=t)
                    requests = b1 if t is None else _requests(images, refine, len(b1))
                    ms, b1_ms = _timings(served, b64, requests, repeats, xla=False)
                    share = float(refine.mean())
                    counts = paired_counts(fine_right, right)
                    points.append(dict(
                        model=path, trained_saliency=trained.saliency, saliency=saliency, k=k,
                        exit_threshold=t, error=float(1 - right.mean()), refined_share=share,
                        # An exited image costs the coarse model alone (no saliency, no patch).
                        macs_per_image=parts["coarse_tower"] + parts["top"]
                        + share * (parts["saliency"] + parts["refined_top"] + k * parts["fine_patch"]),
                        ms_per_image_b64=ms, images_per_s_b64=1000 / ms, latency_ms_b1=b1_ms,
                        only_fine_right=counts["only_a_right"], only_this_right=counts["only_b_right"],
                        p_value=counts["p_value"]))
                    if litert:
                        points[-1]["latency_ms_b1_litert"] = _litert_ms(served, requests, repeats)
                    log(f"dcn_sweep: {saliency} k={k} exit={t}: error {100 * points[-1]['error']:.2f}%, "
                        f"refined {100 * share:.0f}%, {1000 / ms:.0f} images/s, {b1_ms:.2f} ms at batch 1")
    return {"references": references, "points": points}


def best_points(results, margin=0.001, alpha=0.05):
    """The points not worse than the fine model (McNemar p > `alpha`, error at most
    its + `margin`), fastest at batch 64 first."""
    fine = results["references"]["fine"]["error"]
    good = [p for p in results["points"] if p["error"] <= fine + margin and p["p_value"] > alpha]
    return sorted(good, key=lambda p: p["ms_per_image_b64"])


def _namer(results):
    """A function naming a point's DCN: "DCN", or with several DCNs in the sweep
    "DCN X" for runs/X/model.keras, so their rows and curves stay apart."""
    if len({p["model"] for p in results["points"]}) < 2:
        return lambda p: "DCN"
    return lambda p: f"DCN {os.path.basename(os.path.dirname(os.path.abspath(p['model'])))}"


def curves(results):
    """The plot's lines: label -> the points of one (DCN, saliency, k) over its
    exit thresholds, fastest first."""
    name, lines = _namer(results), {}
    for p in results["points"]:
        label = f"{name(p)} k={p['k']}, {p['saliency']} (trained: {p['trained_saliency']})"
        lines.setdefault(label, []).append(p)
    return {label: sorted(pts, key=lambda p: p["ms_per_image_b64"]) for label, pts in lines.items()}


def format_markdown(results):
    """The sweep as a Markdown table: references, then every point."""
    refs = results["references"]
    fine = refs["fine"]
    litert = "latency_ms_b1_litert" in fine
    lines = ["| model | saliency | k | exit threshold | test error % | refined % | MMAC/image | "
             "images/s (b64) | x fine (b64) | ms (b1) | x fine (b1) | "
             + ("ms (b1, LiteRT) | x fine's best (b1) | " if litert else "")
             + "vs fine: only fine / only this (p) |",
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if litert else "") + "---|"]

    def line(name, saliency, k, t, r, share, versus):
        macs = f"{r['macs_per_image'] / 1e6:.1f}" if r.get("macs_per_image") else "-"
        lite = ""
        if litert:  # Against the fine model's best batch-1 time on any runtime.
            best = min(fine["latency_ms_b1"], fine["latency_ms_b1_litert"])
            lite = f"{r['latency_ms_b1_litert']:.2f} | {best / r['latency_ms_b1_litert']:.2f} | "
        lines.append(f"| {name} | {saliency} | {k} | {t} | {100 * r['error']:.2f} | {share} | {macs} | "
                     f"{r['images_per_s_b64']:.0f} | {fine['ms_per_image_b64'] / r['ms_per_image_b64']:.2f} | "
                     f"{r['latency_ms_b1']:.2f} | {fine['latency_ms_b1'] / r['latency_ms_b1']:.2f} | {lite}{versus} |")

    for name, r in refs.items():
        line(name, "-", "-", "-", r, "-", "-")
    dcn_name = _namer(results)
    for p in results["points"]:
        t = "never" if p["exit_threshold"] is None else f"{p['exit_threshold']:g}"
        pv = "<0.001" if p["p_value"] < 0.001 else f"{p['p_value']:.3f}"
        line(f"{dcn_name(p)} ({p['trained_saliency']}-trained)", p["saliency"], p["k"], t, p,
             f"{100 * p['refined_share']:.0f}", f"{p['only_fine_right']} / {p['only_this_right']} ({pv})")
    return "\n".join(lines)


def save_plot(results, path):
    """Test error against ms per image at batch 64: a line per (DCN, saliency, k) over
    its exit thresholds, the fine and coarse models as points. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, pts in curves(results).items():
        ax.plot([p["ms_per_image_b64"] for p in pts], [100 * p["error"] for p in pts], "o-" if
                pts[0]["saliency"] == "entropy_gradient" else "s--", markersize=3, label=label)
    for name, r in results["references"].items():
        ax.plot(r["ms_per_image_b64"], 100 * r["error"], "k*" if name == "fine" else "kx", markersize=12,
                label=f"{name} model")
    ax.set_xlabel("ms per image at batch 64 (served graph)")
    ax.set_ylabel("test error %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
