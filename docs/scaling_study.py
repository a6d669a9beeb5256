"""docs/scaling.md's table, JSON and plot: a DCN's speed-up at the fine model's level against image size.

    python docs/scaling_study.py

Each row joins two files the commands of docs/scaling.md wrote for one canvas
size: `docs/measurements/eval_scaling_NAME.json` (`bin/dcn_eval --compare_to=FINE --json`:
the DCN's and the fine model's errors on the same test images) and
`docs/measurements/bench_scaling_NAME.json` (`bin/dcn_bench --weights --json`: multiply-adds
and times, each model on its best runtime). Rows whose files are not there yet
are skipped and named. Coverage is measured on the test split here.
Writes docs/measurements/scaling.json and docs/scaling.png and prints the Markdown table and
the crossover.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dcn_keras.io_utils import write_json_atomically  # noqa: E402
from dcn_keras.studies import scaling  # noqa: E402

DOCS = os.path.dirname(os.path.abspath(__file__))
# (the plot's line, dataset, canvas, file name, preset whose coarse grid counts the cells). Coverage
# is measured on the embedded test digits for every row: it depends on the digits' ink, not on which
# MNIST they come from, and the script then runs without MNIST's IDX files.
EMBEDDED = ("cluttered_mnist, embedded digits", "cluttered_mnist")
FULL = ("cluttered_mnist, full MNIST", "cluttered_mnist")
NUMBERS = ("mnist_numbers, full MNIST", "mnist_numbers")
# Its fine model is the DCN's own fine tower and top over the whole canvas: a fine model
# cannot be trained at 1500 px on a 2-core CPU (docs/scaling.md).
MEGAPIXEL = ("megapixel_mnist, full MNIST", "megapixel_mnist")
ROWS = [
    (*EMBEDDED, 100, "c100", "cluttered_mnist"),
    (*EMBEDDED, 200, "c200", "cluttered_mnist"),
    (*EMBEDDED, 300, "c300", "cluttered_mnist"),
    (*FULL, 100, "f100", "cluttered_mnist"),
    (*FULL, 200, "f200", "cluttered_mnist"),
    (*FULL, 300, "f300", "cluttered_mnist"),
    (*NUMBERS, 128, "n128", "svhn_reader_one_pool"),
    (*NUMBERS, 256, "n256", "svhn_reader_one_pool"),
    (*NUMBERS, 384, "n384", "svhn_reader_one_pool"),
    (*MEGAPIXEL, 1500, "m1500", "megapixel_mnist"),
]


def main():
    entries = []
    for line, dataset, canvas, name, preset in ROWS:
        comparison = os.path.join(DOCS, "measurements", f"eval_scaling_{name}.json")
        bench = os.path.join(DOCS, "measurements", f"bench_scaling_{name}.json")
        missing = [os.path.basename(p) for p in (comparison, bench) if not os.path.exists(p)]
        if missing:
            print(f"skipped {line} at {canvas} px: no {' or '.join(missing)} yet")
            continue
        coverage = scaling.object_coverage(dataset, canvas, preset, digits="embedded")
        entries.append(dict(dataset=line, canvas=canvas, coverage=coverage, comparison=comparison, bench=bench))
    rows = scaling.scaling_rows(entries)
    found = {batch: scaling.crossover(rows, batch=batch) for batch in (64, 1)}
    write_json_atomically(os.path.join(DOCS, "measurements", "scaling.json"), {"rows": rows, "crossover": {
        f"b{batch}": value for batch, value in found.items()}})
    scaling.plot_scaling(rows, os.path.join(DOCS, "scaling.png"))
    print(scaling.format_table(rows))
    for batch, value in found.items():
        print(f"batch {batch}: " + (f"a DCN pays below {100 * value['coverage']:.1f}% coverage "
                                    f"(between {value['below']} and {value['above']})" if value else
                                    "no crossover among these rows"))
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
