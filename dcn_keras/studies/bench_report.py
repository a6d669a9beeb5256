"""Reports of `benchmark.run_benchmark` results: speed-up ratios, table, plot."""

from dcn_keras.io_utils import atomic_path


def summarize(results):
    """Adds speed-up ratios against the fine model; returns `results`."""
    inference, macs = results["inference"], results["macs_per_image"]

    def best_fine(batch):
        # The fine model's best time on any runtime measured: the bar a user sets.
        return min(value["latency_ms"] for key, value in inference.items()
                   if key.startswith(f"fine/{batch}/"))

    ratios = {}
    for key, value in inference.items():
        name, batch, variant = key.split("/")
        if name.startswith("dcn"):
            ratios[key] = best_fine(batch) / value["latency_ms"]
    train = results["train_step"]
    for key, value in train.items():
        if key.startswith("dcn"):
            ratios[f"train/{key}"] = train[f"fine/{key.split('/')[1]}"]["step_ms"] / value["step_ms"]
    results["speedup_vs_best_fine"] = ratios
    best = {}
    for key, value in inference.items():
        name, batch, _ = key.split("/")
        if name.startswith("dcn"):
            best[f"{name}/{batch}"] = min(best.get(f"{name}/{batch}", float("inf")), value["latency_ms"])
    results["best_speedup_vs_best_fine"] = {k: best_fine(k.split("/")[1]) / v for k, v in best.items()}
    results["floor_speedup_vs_best_fine"] = {
        key: best_fine(key.split("/")[1]) / value["latency_ms"]
        for key, value in results.get("floor", {}).items()}
    results["macs_ratio_fine_over"] = {n: macs["fine"] / v for n, v in macs.items()}
    return results


def format_table(results):
    """A plain-text table of `summarize`d results."""
    inference, train = results["inference"], results["train_step"]
    batches = sorted({int(k.split("/")[1][1:]) for k in inference})
    variants = sorted({k.split("/")[2] for k in inference})
    names = list(results["macs_per_image"])
    header = ["model", "MMAC/img", "fine/model MAC"]
    for b in batches:
        header += [f"b{b} {v} ms" for v in variants] + [f"b{b} img/s"]
    train_batches = sorted({k.split("/")[1] for k in train})
    header += [f"train {'/'.join(train_batches) or 'b64'} ms", "call MB"]
    rows = [header]
    for name in names:
        macs = results["macs_per_image"][name]
        row = [name, f"{macs / 1e6:.2f}", f"{results['macs_ratio_fine_over'][name]:.2f}x"]
        for b in batches:
            cells = [inference.get(f"{name}/b{b}/{v}") for v in variants]
            row += [f"{c['latency_ms']:.2f}" if c else "-" for c in cells]
            row += [f"{max(c['images_per_s'] for c in cells if c):.0f}"]
        step = next((v for k, v in train.items() if k.startswith(name + "/")), None)
        row.append(f"{step['step_ms']:.1f}" if step else "-")
        own = results.get("call_memory_bytes", {}).get(name)  # (Not in runs before it was measured.)
        row.append(f"{own / 2**20:.0f}" if own else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"call MB: the memory one inference at batch {batches[-1]} took above what was already held "
                 "(weights, inputs); '-' where TensorFlow's CPU allocator does not report it.")
    lines.append("")
    lines.append("speed-up of each DCN over the fine model's best time on any runtime measured:")
    for key, ratio in sorted(results["speedup_vs_best_fine"].items()):
        lines.append(f"  {key:22s} {ratio:5.2f}x")
    if results.get("refined_share"):
        lines += ["", f"trained weights ({results['weights']}) on real test canvases "
                      f"({results.get('test_digits') or 'embedded'} digits), exit threshold "
                      f"{results['exit_threshold']}; each batch size timed as the mean over about "
                      f"{results['requests']} images, of which refined:"]
        lines += [f"  {name:22s} {100 * share:5.1f}%" for name, share in results["refined_share"].items()]
    lines += ["", "each DCN's best time on any runtime over the fine model's best:"]
    for key, ratio in sorted(results["best_speedup_vs_best_fine"].items()):
        lines.append(f"  {key:22s} {ratio:5.2f}x")
    if results.get("floor"):
        lines += ["", "each DCN's convolutions and pools alone (all else free), and the speed-up over the",
                  "fine model's best that this bounds; then the DCN's own (graph):"]
        for key, value in sorted(results["floor"].items()):
            name, batch, _ = key.split("/")
            whole = f"{name}/{batch}/graph"
            lines.append(f"  {name}/{batch:5s} {value['latency_ms']:7.2f} ms  "
                         f"{results['floor_speedup_vs_best_fine'][key]:5.2f}x   DCN "
                         f"{inference[whole]['latency_ms']:7.2f} ms  "
                         f"{results['speedup_vs_best_fine'][whole]:5.2f}x")
    if results.get("dtype_policy", "float32") != "float32":
        lines += ["", f"every model built under the dtype policy {results['dtype_policy']}"]
    if results.get("breakdown"):
        lines += ["", "time per stage, each timed alone (ms):"]
        for key, parts in results["breakdown"].items():
            lines.append(f"  {key:12s} " + "  ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    if results.get("layer_times"):
        lines += ["", "time per layer: what each adds to its network's timed pass (ms):"]
        width = max(len(key) for key in results["layer_times"])
        for key, layers in results["layer_times"].items():
            lines.append(f"  {key:{width}s}  " + "  ".join(f"{k} {v:.2f}" for k, v in layers.items()))
    return "\n".join(lines)


def plot(results, path):
    """Writes a PNG: images/s (batch 64) and multiply-adds against k."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ValueError(f"--plot needs matplotlib ({error}); pip install matplotlib") from None
    inference, macs = results["inference"], results["macs_per_image"]
    batch = max(int(k.split("/")[1][1:]) for k in inference)
    ks = sorted(int(n[len("dcn_k"):]) for n in macs if n.startswith("dcn_k"))

    def speed(name):
        return max(v["images_per_s"] for k, v in inference.items() if k.startswith(f"{name}/b{batch}/"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(ks, [speed(f"dcn_k{k}") for k in ks], "o-", label="DCN")
    for name, style in (("fine", "r--"), ("coarse", "g:")):
        left.axhline(speed(name), color=style[0], linestyle=style[1:], label=f"{name} model")
        right.axhline(macs[name] / 1e6, color=style[0], linestyle=style[1:], label=f"{name} model")
    right.plot(ks, [macs[f"dcn_k{k}"] / 1e6 for k in ks], "o-", label="DCN")
    left.set(xlabel="k (patches)", ylabel=f"images/s at batch {batch}", title="Inference speed")
    right.set(xlabel="k (patches)", ylabel="million multiply-adds / image", title="Arithmetic")
    for axis in (left, right):
        axis.set_xticks(ks)
        axis.legend()
    fig.suptitle(f"{results['preset']}: DCN vs fine and coarse models")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
