"""Pictures people look at: each image with its k patches, beside its saliency map.

One renderer for TensorBoard (`PatchImageLogger`), `bin/dcn_predict
--picture` and the comparison's `docs/dcn_saliency.png`: a row per image,
titled (true label when known, coarse and refined prediction with their
probabilities); left the image with the patches boxed, right the saliency map
stretched over the same pixels (so a cell sits over the input it scores),
with its colour bar and the same boxes. Red boxes show on the grey image and
on the viridis map alike.
"""

import numpy as np

from dcn_keras.io_utils import atomic_path

_BOX_COLOUR = "red"
# Images larger than this many pixels a side are averaged down for display
# (the patches are still drawn at their place in the image's own pixels).
DISPLAY_SIDE = 512


def display_image(image):
    """`(shown, (height, width))`: `image` `[H, W, C]` averaged over f x f blocks, its longer side at most
    `DISPLAY_SIDE`, and the pixels of `image` it spans (the image zero-padded to whole blocks)."""
    image = np.asarray(image, np.float32)
    factor = -(-max(image.shape[:2]) // DISPLAY_SIDE)
    if factor <= 1:
        return image, image.shape[:2]
    height, width = (-(-image.shape[0] // factor) * factor, -(-image.shape[1] // factor) * factor)
    padded = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)))
    blocks = padded.reshape(height // factor, factor, width // factor, factor, -1)
    return blocks.mean((1, 3)), (height, width)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def describe(probabilities):
    """`(answer, confidence)` for one image's probabilities.

    `probabilities` is a vector (one head: the answer is the class index as
    a string) or a dict of heads (`length`, `digit_1`, ...: the answer is the
    number those heads read, e.g. `"4071"`, and the confidence the product of
    the heads' top probabilities, the whole number's).
    """
    if not isinstance(probabilities, dict):
        p = np.asarray(probabilities)
        return str(int(p.argmax())), float(p.max())
    length = int(np.argmax(probabilities["length"]))
    confidence = float(np.max(probabilities["length"]))
    digits = []
    for i in range(1, len(probabilities)):
        p = np.asarray(probabilities[f"digit_{i}"])
        confidence *= float(p.max())
        if i <= length:
            digits.append(str(int(p.argmax())) if p.argmax() < 10 else "?")
    return "".join(digits) or "-", confidence


def label_text(label):
    """A true label as text: the class index, or for a dict of heads the number it spells."""
    if not isinstance(label, dict):
        return str(int(np.asarray(label).reshape(-1)[0]))
    length = int(np.asarray(label["length"]).reshape(-1)[0])
    return "".join(str(int(np.asarray(label[f"digit_{i}"]).reshape(-1)[0])) for i in range(1, length + 1))


def title(name, coarse, refined, label=None):
    """`"name | label 7 | coarse 1 (0.62) | DCN 7 (0.99)"` for one row."""
    parts = [name] if name else []
    if label is not None:
        parts.append(f"label {label}")
    parts.append("coarse {} ({:.2f})".format(*describe(coarse)))
    parts.append("DCN {} ({:.2f})".format(*describe(refined)))
    return " | ".join(parts)


def _rows(outputs, count):
    """Per-image views of a batch's probabilities (arrays, or dicts of heads)."""
    def pick(value, n):
        return {k: np.asarray(v)[n] for k, v in value.items()} if isinstance(value, dict) else np.asarray(value)[n]
    return [(pick(outputs["coarse_probabilities"], n), pick(outputs["probabilities"], n)) for n in range(count)]


def _cell_extent(saliency, boxes, locations, height, width):
    """Where the saliency map's cells lie on the image: `(left, right, bottom, top)`.

    Each cell is drawn centred on its patch's centre (patch corner =
    offset + stride * index), read off the boxes and locations themselves;
    with no two distinct rows (or columns) to read the stride from, the map
    is stretched over the image.
    """
    extent = [0.0, float(width), float(height), 0.0]
    boxes, locations = boxes.reshape(-1, 4), locations.reshape(-1, 2)
    chosen = locations[:, 0] >= 0  # -1: an image that exited early has no cells.
    boxes, locations = boxes[chosen], locations[chosen]
    if not len(locations):
        return tuple(extent)
    for axis, (low, high) in enumerate(((0, 2), (1, 3))):
        index = locations[:, axis]
        other = np.flatnonzero(index != index[0])
        if not len(other):
            continue
        j = other[0]
        stride = (boxes[j, low] - boxes[0, low]) / (index[j] - index[0])
        centre = boxes[0, low] + (boxes[0, high] - boxes[0, low]) / 2 - stride * index[0]
        first, last = centre - stride / 2, centre + stride * (saliency.shape[1 + axis] - 0.5)
        if axis == 0:
            extent[3], extent[2] = first, last
        else:
            extent[0], extent[1] = first, last
    return tuple(extent)


def figure(images, outputs, names=None, labels=None):
    """A Matplotlib figure of `images` with their patches and saliency maps.

    Args:
        images: float array `[n, H, W, C]` in [0, 1].
        outputs: the DCN's outputs for them (`probabilities`,
            `coarse_probabilities`, `saliency`, `locations`, `patch_boxes`;
            NumPy or tensors).
        names: optional list of n strings (e.g. file names) starting each title.
        labels: optional list of n true labels (strings or numbers).
    """
    plt = _pyplot()
    images = np.asarray(images, np.float32)
    count, height, width = images.shape[:3]
    saliency, boxes = np.asarray(outputs["saliency"]), np.asarray(outputs["patch_boxes"])
    locations = np.asarray(outputs["locations"])
    extent = _cell_extent(saliency, boxes, locations, height, width)
    fig, axes = plt.subplots(count, 2, figsize=(7.2, 3.3 * count), squeeze=False)
    for n, (coarse, refined) in enumerate(_rows(outputs, count)):
        picture, heat = axes[n]
        shown, (spans_y, spans_x) = display_image(images[n])
        shown = shown[..., 0] if shown.shape[-1] == 1 else shown
        picture.imshow(shown, cmap="gray", vmin=0, vmax=1, extent=(0, spans_x, spans_y, 0))
        heat.set_facecolor(plt.get_cmap("viridis")(0.0))
        mapped = heat.imshow(saliency[n], cmap="viridis", extent=extent, interpolation="nearest")
        fig.colorbar(mapped, ax=heat, fraction=0.046, pad=0.04, label="saliency")
        for axis in (picture, heat):
            # Locations, not boxes, tell an exited image (-1): a patch at the
            # image's edge has a box that starts below 0.
            for top, left, bottom, right in boxes[n][locations[n][:, 0] >= 0]:
                axis.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False,
                                             edgecolor=_BOX_COLOUR, linewidth=1.2))
            axis.set_xlim(0, width)
            axis.set_ylim(height, 0)
            axis.set_xticks([])
            axis.set_yticks([])
        picture.set_title(title(names[n] if names else None, coarse, refined,
                                labels[n] if labels is not None else None), fontsize=9, loc="left")
        chosen = int((locations[n][:, 0] >= 0).sum())
        heat.set_title(f"saliency, {chosen} patches" if chosen else "exited: coarse answer, no patch",
                       fontsize=9)
    fig.tight_layout()
    return fig


def render(images, outputs, names=None, labels=None):
    """`figure(...)` as a uint8 RGB array `[height, width, 3]`."""
    plt = _pyplot()
    fig = figure(images, outputs, names, labels)
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return array


def save(images, outputs, path, names=None, labels=None):
    """Writes `figure(...)` as a PNG at `path`, atomically; returns `path`."""
    plt = _pyplot()
    fig = figure(images, outputs, names, labels)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
