"""Which cells a DCN must refine on mnist_numbers to read numbers as well as its fine model.

    python docs/refined_cells_study.py runs/numbers_exact_full /path/to/mnist   # full-MNIST test digits
    python docs/refined_cells_study.py runs/numbers_exact                       # embedded test digits

Takes the `svhn_patch_exact` runs of docs/results.md (`RUN/fine`, `RUN/dcn_frozen_fine_top`).
That fine tower reads patches exactly: its grid over the padded image holds, at
each cell, the cell's patch vector, so mixing that grid with the coarse one is
the DCN with those cells refined, any number of cells per image. Cell sets:
the cells whose central 4x4 pixels touch a digit's box (an oracle: boxes are
not known at test time), those grown by one cell, and the DCN's own most
salient cells, as many per image as either oracle set holds (a per-image k).

Beside each error: the multiply-adds of an ideal DCN that computed just those
cells in one dense fine-tower pass (overlapping patches sharing their work, no
halo), against the fine model's: a bound on what any refinement of those cells
can save.
"""

import sys

import numpy as np

from dcn_keras.datasets import load_dataset
from dcn_keras.datasets.mnist_numbers import split_numbers
from dcn_keras.evaluation import paired_counts
from dcn_keras.evaluation import right_answers
from dcn_keras.studies.macs import model_macs
from dcn_keras.models import load_model
from dcn_keras.models.objective import probabilities

run, mnist_dir = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
opts = dict(mnist_dir=mnist_dir, examples_per_digit=1) if mnist_dir else dict(digits="embedded")
data, _ = load_dataset("mnist_numbers", "test", **opts)
_, _, boxes, _ = split_numbers("test", opts.get("digits", "auto"), mnist_dir=mnist_dir,
                               examples_per_digit=opts.get("examples_per_digit"))
dcn, fine = load_model(f"{run}/dcn_frozen_fine_top/model.keras"), load_model(f"{run}/fine/model.keras")
rows, cols = dcn.geometry.grid_shape
centre = 4 * np.arange(rows) + 2  # each cell's central 4x4 pixels: [centre, centre + 4)
y, x, h, w = (boxes[..., i, None] for i in range(4))
on_digit = ((centre < y + h) & (centre + 4 > y) & (h > 0))[..., :, None] & ((centre < x + w) & (centre + 4 > x))[..., None, :]
digits = on_digit.any(1)  # [N, rows, cols]
edged = np.pad(digits, ((0, 0), (1, 1), (1, 1)))
grown = digits | edged[:, :-2, 1:-1] | edged[:, 2:, 1:-1] | edged[:, 1:-1, :-2] | edged[:, 1:-1, 2:]
pad = ((0, 0), *dcn.geometry.padding, (0, 0))
sets = ("digit cells", "digit cells + 1", "most salient, k = digit cells", "most salient, k = digit cells + 1")
right, counts, fine_right, start = {s: [] for s in sets}, {s: [] for s in sets}, [], 0
for images, labels in data.batch(250):
    n = len(images)
    coarse = dcn.coarse(images)
    fine_grid = dcn.fine(np.pad(images.numpy(), pad))
    ranks = np.argsort(np.argsort(-dcn(images)["saliency"].numpy().reshape(n, -1), 1), 1).reshape(n, rows, cols)
    fine_right.append(right_answers(probabilities(fine(images)), labels))
    for name, oracle in zip(sets, (digits, grown)):
        cells = oracle[start:start + n]
        salient = ranks < cells.sum((1, 2))[:, None, None]
        for key, mask in ((name, cells), (sets[sets.index(name) + 2], salient)):
            logits = dcn.top(np.where(mask[..., None], fine_grid, coarse))
            right[key].append(right_answers(probabilities(logits), labels))
            counts[key].append(mask.sum((1, 2)))
    start += n
fine_right = np.concatenate(fine_right)
macs = model_macs(dcn)
parts, per_cell = macs["parts"], macs["parts"]["fine_whole"] / (rows * cols)
fixed = parts["coarse_tower"] + parts["top"] + parts["saliency"] + parts["refined_top"]
print(f"fine model: {100 * (1 - fine_right.mean()):.2f}% whole-number error on {len(fine_right)} numbers, "
      f"{macs['fine'] / 1e6:.1f} M multiply-adds; dense fine tower {per_cell / 1e6:.3f} M per cell")
for name in sets:
    r, c = np.concatenate(right[name]), paired_counts(fine_right, np.concatenate(right[name]))
    cells = np.concatenate(counts[name]).mean()
    ideal = fixed + cells * per_cell
    print(f"{name}: {cells:.1f} cells per image, error {100 * (1 - r.mean()):.2f}% (only the fine model right "
          f"{c['only_a_right']}, only the DCN {c['only_b_right']}, p = {c['p_value']:.3g}); ideal dense refinement "
          f"{ideal / 1e6:.1f} M multiply-adds, {macs['fine'] / ideal:.2f}x fewer than the fine model")
