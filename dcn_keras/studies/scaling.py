"""Where a DCN pays: its speed-up at the fine model's accuracy against image size and object coverage.

A row joins what two programs measured for one dataset at one canvas size:
`bin/dcn_eval --compare_to=FINE --json=...` (the DCN's and the fine model's
errors on the same test images, and the paired counts) and `bin/dcn_bench
--weights=... --json=...` (multiply-adds and times, each model on its best
runtime). `scaling_rows` makes the rows, `crossover` finds the coverage
below which a DCN pays, and `plot_scaling` draws docs/scaling.png.
"""

import json
import math

from dcn_keras.io_utils import atomic_path

SIGNIFICANCE = 0.05  # Below this McNemar p-value two errors differ.


def object_coverage(dataset, canvas_size, preset, sample=2000, **options):
    """The mean share of the preset's coarse cells that the test split's objects cover.

    A cell is covered when the stride-sized square at the centre of its
    patch touches an object's box (`PatchGeometry.covered_cells`), as
    `bin/dcn_train` reports it. `options` go to `load_dataset`.
    """
    from dcn_keras.datasets.loaders import load_dataset
    from dcn_keras.models.dynamic_capacity_network import DynamicCapacityNetwork

    _, info = load_dataset(dataset, "test", canvas_size=canvas_size, **options)
    if info.object_boxes is None:
        raise ValueError(f"dataset={dataset} has no object boxes to measure coverage with.")
    geometry = DynamicCapacityNetwork.from_preset(preset, image_shape=info.image_shape).geometry
    return geometry.covered_share(info.object_boxes[:sample])


def _load(path):
    with open(path) as f:
        return json.load(f)


def _best_ms(inference, model, batch):
    # The best time of `model` at `batch` over the runtimes measured, and that runtime.
    times = {key.split("/")[2]: value["latency_ms"] for key, value in inference.items()
             if key.startswith(f"{model}/b{batch}/")}
    if not times:
        raise ValueError(f"The benchmark has no {model} time at batch {batch}; it has {sorted(inference)}.")
    runtime = min(times, key=times.get)
    return times[runtime], runtime


def scaling_row(dataset, canvas, coverage, comparison, bench, dcn=None):
    """One row: a DCN against its fine model at one canvas size.

    Args:
        dataset: str, the dataset's name (the plot's line).
        canvas: int, the canvas side in pixels.
        coverage: float in (0, 1], the mean share of coarse cells the objects cover.
        comparison: str, a `bin/dcn_eval --compare_to=FINE --json` file (A the DCN, B the fine model).
        bench: str, a `bin/dcn_bench --json` file of the same models.
        dcn: str or None, the DCN's name in the benchmark (`dcn_k16`); None: its only DCN.

    Returns:
        A dict: errors, paired counts and p-value, whether the DCN is at the
        fine model's level (p > 0.05 or better), multiply-adds, and per batch
        size (1 and 64) the best times, their runtimes and the speed-up.
    """
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage={coverage!r} must be a share in (0, 1].")
    paired, timing = _load(comparison), _load(bench)
    macs = timing["macs_per_image"]
    names = sorted(n for n in macs if n.startswith("dcn"))
    if dcn is None and len(names) != 1:
        raise ValueError(f"{bench} has DCNs {names}; name the one compared with dcn=.")
    dcn = dcn or names[0]
    if dcn not in macs:
        raise ValueError(f"{bench} has no {dcn!r}; it has {names}.")
    at_fine_level = paired["p_value"] > SIGNIFICANCE or paired["error_a"] <= paired["error_b"]
    row = {"dataset": dataset, "canvas": canvas, "coverage": coverage, "dcn": dcn,
           "fine_error": paired["error_b"], "dcn_error": paired["error_a"], "examples": paired["examples"],
           "only_fine_right": paired["only_b_right"], "only_dcn_right": paired["only_a_right"],
           "p_value": paired["p_value"], "at_fine_level": at_fine_level,
           "refined_share": timing.get("refined_share", {}).get(f"{dcn}/b64"),
           "fine_macs": macs["fine"], "dcn_macs": macs[dcn]}
    timed = {int(key.split("/")[1][1:]) for key in timing["inference"]}
    if 1 not in timed:
        raise ValueError(f"{bench} has no time at batch 1; it has batches {sorted(timed)}.")
    for batch in (64, 1):
        if batch not in timed:  # A megapixel fine model at batch 64 does not fit: batch 1 only.
            row[f"b{batch}"] = None
            continue
        fine_ms, fine_runtime = _best_ms(timing["inference"], "fine", batch)
        dcn_ms, dcn_runtime = _best_ms(timing["inference"], dcn, batch)
        row[f"b{batch}"] = {"fine_ms": fine_ms, "fine_runtime": fine_runtime, "dcn_ms": dcn_ms,
                            "dcn_runtime": dcn_runtime, "speedup": fine_ms / dcn_ms}
    return row


def scaling_rows(entries):
    """`scaling_row(**entry)` for each entry, sorted by dataset and canvas."""
    rows = [scaling_row(**entry) for entry in entries]
    return sorted(rows, key=lambda row: (row["dataset"], row["canvas"]))


def crossover(rows, batch=64, pays=1.0):
    """The object coverage below which a DCN at the fine model's level is `pays` times faster.

    The speed-up is taken as linear in log(coverage) between the two
    measured rows (of any dataset) on either side of `pays`, the rows
    sorted by coverage; rows not at the fine model's level count as not
    paying. Returns `{"coverage", "below", "above"}` (the coverage, and the
    rows it lies between), or None when all rows, or none, pay.
    """
    points = sorted(((row["coverage"], row["b%d" % batch]["speedup"] if row["at_fine_level"] else 0.0, row)
                     for row in rows if row["b%d" % batch] is not None), key=lambda point: point[0])
    for (c0, s0, r0), (c1, s1, r1) in zip(points, points[1:]):
        if s0 >= pays > s1:
            if s1 <= 0:
                share = 1.0  # The side that does not pay has no speed-up to interpolate: take its coverage.
            else:
                share = (math.log(s0) - math.log(pays)) / (math.log(s0) - math.log(s1))
            coverage = math.exp(math.log(c0) + share * (math.log(c1) - math.log(c0)))
            return {"coverage": coverage, "below": (r0["dataset"], r0["canvas"]),
                    "above": (r1["dataset"], r1["canvas"])}
    return None


def plot_scaling(rows, path):
    """Speed-up at batch 64 and 1 against image side and against coverage, one line per dataset."""
    from dcn_keras.pictures import _pyplot

    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for dataset in sorted({row["dataset"] for row in rows}):
        for batch, style in ((64, "-o"), (1, "--s")):
            mine = [row for row in rows if row["dataset"] == dataset and row[f"b{batch}"] is not None]
            if not mine:
                continue
            speedups = [row[f"b{batch}"]["speedup"] for row in mine]
            label = f"{dataset}, batch {batch}"
            axes[0].plot([row["canvas"] for row in mine], speedups, style, label=label)
            axes[1].plot([100 * row["coverage"] for row in mine], speedups, style, label=label)
            for row, speedup in zip(mine, speedups):
                if not row["at_fine_level"]:  # A hollow ring: faster, but less accurate than the fine model.
                    axes[1].plot(100 * row["coverage"], speedup, "o", ms=12, mfc="none", color="red")
    axes[0].set_xlabel("image side (pixels)")
    axes[1].set_xlabel("objects' share of the coarse cells (%)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylabel("DCN speed-up over the fine model")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def format_table(rows):
    """A Markdown table of the rows."""
    lines = ["| data | canvas | objects cover | fine error | DCN error (only fine / only DCN right, p) | "
             "multiply-adds fine / DCN | batch 64: fine / DCN ms, speed-up | batch 1: fine / DCN ms, speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row["dataset"], f"{row['canvas']} px", f"{100 * row['coverage']:.1f}%",
                 f"{100 * row['fine_error']:.2f}%",
                 f"{100 * row['dcn_error']:.2f}% ({row['only_fine_right']} / {row['only_dcn_right']}, "
                 f"p = {row['p_value']:.2f})",
                 f"{row['fine_macs'] / 1e6:.0f} M / {row['dcn_macs'] / 1e6:.1f} M"]
        for batch in (64, 1):
            b = row[f"b{batch}"]
            cells.append("not measured" if b is None else
                         f"{b['fine_ms']:.2f} / {b['dcn_ms']:.2f}, **{b['speedup']:.2f}x**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
