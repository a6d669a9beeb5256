"""Named DCN configurations: the paper's architectures as Keras models.

Each preset is a function returning the keyword arguments of
`DynamicCapacityNetwork` (towers included); `DynamicCapacityNetwork.from_preset`
looks them up by name. Every sub-network gets an explicit `keras.Input` with
`None` spatial sizes so that it never locks to the first batch's shape.
"""

import inspect
import os

from dcn_keras.backend import keras
from dcn_keras.layers.attention_pooling2d import AttentionPooling2D
from dcn_keras.layers.band_max_pooling2d import BandMaxPooling2D
from dcn_keras.layers.phase_gradient_conv2d import PhaseGradientConv2D

layers = keras.layers


def _conv(filters, kernel, strides=1, padding="valid", name=None):
    return layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, activation="relu", name=name
    )


def _top_conv(filters, kernel):
    # The saliency map is this conv's input gradient, taken at every
    # inference: PhaseGradientConv2D computes it faster (same forward pass).
    return PhaseGradientConv2D(filters, kernel, strides=2, activation="relu", name="top_conv")


def _fine_tower(channels, features):
    x = keras.Input((None, None, channels), name="patches")
    h = _conv(features, 3, name="fine_conv1")(x)
    h = _conv(features, 3, padding="same", name="fine_conv2")(h)
    h = layers.MaxPooling2D(2, name="fine_pool1")(h)
    h = _conv(features, 3, padding="same", name="fine_conv3")(h)
    h = _conv(features, 3, padding="same", name="fine_conv4")(h)
    h = layers.MaxPooling2D(2, name="fine_pool2")(h)
    h = _conv(features, 3, name="fine_conv5")(h)
    return keras.Model(x, h, name="fine")


def _patch_exact_fine_tower(channels, features):
    # Valid convolutions only, and strides that keep every window on the
    # 4-pixel cell grid: a 14x14 patch gives one vector, the padded image a
    # grid of them, and each grid vector is exactly its patch's vector.
    x = keras.Input((None, None, channels), name="patches")
    h = _conv(features, 3, name="fine_conv1")(x)
    h = _conv(features, 3, name="fine_conv2")(h)
    h = layers.MaxPooling2D(2, name="fine_pool1")(h)
    h = _conv(features, 3, name="fine_conv3")(h)
    h = _conv(features, 3, strides=2, name="fine_conv4")(h)
    return keras.Model(x, h, name="fine")


def cluttered_mnist_towers(channels=1, features=24, num_classes=10):
    """The paper's cluttered MNIST towers (Almahairi et al. 2016, Sec. 4.1).

    Coarse: conv 12@7x7/2, conv 24@3x3/2 (valid, ReLU): 100x100 -> 23x23x24,
    each cell seeing an 11x11 window. Fine: five 3x3 convs of 24 filters,
    2x2 max pools after the 2nd and 4th, 1-pixel zero padding on all but the
    first and last: one 24-vector per 14x14 patch. Top: conv 96@4x4/2,
    global max pool, dense logits.
    """
    x = keras.Input((None, None, channels), name="images")
    h = _conv(12, 7, strides=2, name="coarse_conv1")(x)
    h = _conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")

    fine = _fine_tower(channels, features)

    x = keras.Input((None, None, features), name="grid")
    h = _top_conv(96, 4)(x)
    h = layers.GlobalMaxPooling2D(name="top_pool")(h)
    logits = layers.Dense(num_classes, name="logits")(h)
    top = keras.Model(x, logits, name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def cluttered_mnist():
    # coarse_weight=0.3, not the paper's 1.0: a full weight on the coarse loss
    # pulls the shared top network toward all-coarse grids. Measured on the
    # embedded digits (README "Results"): 2.80% -> 2.10% test error at k=8.
    return dict(
        cluttered_mnist_towers(),
        image_shape=(100, 100, 1),
        num_patches=8,
        coarse_weight=0.3,
    )


def cluttered_mnist_fast():
    # The operating point of docs/results.md's sweeps: k=16 and an exit
    # threshold of 0.99; its weights come from a k=16 DCN started from the
    # fine model. On full MNIST a fifth of the test canvases go to the fine
    # tower at 0.99 (two fifths at 0.999) with the same errors; on the
    # embedded digits 1.92% against 1.88%, both the fine model's level.
    return dict(cluttered_mnist(), num_patches=16, exit_threshold=0.99)


def svhn_towers(features=48, max_digits=5):
    """Towers for multi-digit SVHN (64x64 whole images or 54x54 crops).

    Coarse: conv 24@5x5/2, conv 48@3x3/2 (valid, ReLU): a 14x14 grid on
    64x64 inputs, each cell seeing a 9x9 window. Fine: the cluttered MNIST
    fine tower with 48 filters (one vector per 14x14 patch). Top (kept light,
    as it runs three times' worth per image): conv 96@3x3/2, global max
    pool, dense 192, then a `length`
    head (classes 0-5) and `digit_1`..`digit_5` heads (classes 0-9, and 10
    for "no digit").
    """
    return _svhn_towers(features, max_digits, layers.GlobalMaxPooling2D(name="top_pool"))


def _svhn_towers(features, max_digits, pool, fine_tower=_fine_tower):
    # The svhn coarse tower, `fine_tower`, and a top whose conv map goes through `pool`.
    x = keras.Input((None, None, 3), name="images")
    h = _conv(24, 5, strides=2, name="coarse_conv1")(x)
    h = _conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    grid = keras.Input((None, None, features), name="grid")
    h = pool(_top_conv(96, 3)(grid))
    if len(h.shape) > 2:  # A pool that keeps positions: flatten them into the dense layer.
        h = layers.Flatten(name="top_flatten")(h)
    h = layers.Dense(192, activation="relu", name="top_dense")(h)
    heads = {"length": layers.Dense(max_digits + 1, name="length")(h)}
    for i in range(1, max_digits + 1):
        heads[f"digit_{i}"] = layers.Dense(11, name=f"digit_{i}")(h)
    top = keras.Model(grid, heads, name="top")
    return {"coarse": coarse, "fine": fine_tower(3, features), "top": top}


def svhn():
    return dict(svhn_towers(), image_shape=(64, 64, 3), num_patches=8)


def svhn_positional_towers(features=48, max_digits=5, columns=6, rows=2):
    """The `svhn` towers with a top that keeps where things are.

    The `svhn` top pools its map globally, so it knows which digits are in a
    number but not in which order (on `mnist_numbers` even the fine model
    misreads most numbers of three digits or more: docs/results.md). Here
    the top conv's map is max-pooled to a fixed `rows` x `columns` grid
    (`BandMaxPooling2D`: any input size, the columns keep their order left
    to right, each row band absorbs vertical jitter) and flattened
    into the dense layer. Coarse and fine towers and heads as in `svhn`.
    CAM saliency needs a global pool, so this top takes the entropy
    gradient only.
    """
    return _svhn_towers(features, max_digits, BandMaxPooling2D((rows, columns), name="top_pool"))


def svhn_positional():
    return dict(svhn_positional_towers(), image_shape=(64, 64, 3), num_patches=8)


def svhn_patch_exact_towers(features=48, max_digits=5, columns=6, rows=2):
    """The `svhn_positional` towers with a fine tower that reads patches exactly.

    The `svhn` fine tower pads its middle convolutions with zeros, so on a
    14x14 patch it sees zeros where, over the whole image, it sees the
    neighbouring pixels: its patch vectors are not its whole-image vectors,
    and a DCN with every cell refined is not the fine model (on
    `mnist_numbers`: 82.5% error against 33.6%, docs/results.md). This fine
    tower has valid convolutions only: conv 48@3x3, conv 48@3x3, 2x2 max
    pool, conv 48@3x3, conv 48@3x3/2 (ReLU). Its window is 14x14 with a
    4-pixel step, the coarse grid's, so each vector of the fine model's grid
    (`top(fine(padded image))`) is exactly the vector of that cell's patch,
    and the DCN with every cell refined is the fine model. Per patch it costs
    2.5 M multiply-adds (the `svhn` fine tower: 4.7 M).
    """
    return _svhn_towers(features, max_digits, BandMaxPooling2D((rows, columns), name="top_pool"),
                        fine_tower=_patch_exact_fine_tower)


def svhn_patch_exact():
    return dict(svhn_patch_exact_towers(), image_shape=(64, 64, 3), num_patches=8)


def svhn_reader_towers(features=48, max_digits=5, window=(4, 8), pool="attention"):
    """The `svhn_patch_exact` towers with a top that reads a number wherever it is.

    For numbers small against the image (`mnist_numbers --canvas_size`,
    house numbers in street photos) a top that pools the whole image into
    fixed bands (`svhn_positional`) cannot know which band holds the first
    digit. This top reads at every position a window as large as a number
    and pools the readings by a learned score, so all features come from the
    best-scored windows (`AttentionPooling2D`; a global max pool would take
    each feature from its own window, mixing readings one digit off): top
    conv 96@3x3/2 (8-pixel steps), conv 64@`window[0]`x2/2 across rows
    (16-pixel steps), conv 192@1x`window[1]` along them (a window of about
    41x137 pixels), attention pool, dense 192, then the `svhn` heads. It has no band or size
    of its own, so it can be trained on one canvas size and run on another.
    Coarse and fine towers as in `svhn_patch_exact`. `pool="max"` takes a
    global max pool instead: the reader's first stage in docs/scaling.md,
    whose readings the attention pool then learns to score.
    """
    if pool not in ("attention", "max"):
        raise ValueError(f"pool={pool!r} is not valid; choose one of: attention, max.")
    rows, columns = window
    def read(h):
        h = _conv(64, (rows, 2), strides=2, padding="same", name="top_rows")(h)
        h = _conv(192, (1, columns), padding="same", name="top_read")(h)
        pooling = AttentionPooling2D if pool == "attention" else layers.GlobalMaxPooling2D
        return pooling(name="top_pool")(h)
    return _svhn_towers(features, max_digits, read, fine_tower=_patch_exact_fine_tower)


def svhn_reader():
    # Numbers small against the image: 384-pixel canvases, where the number
    # covers about 1% of the coarse cells. k=256, the smallest k tried whose
    # DCN reads numbers as well as the fine model (docs/scaling.md: 160 and
    # 224 did not). The shipped weights were trained on 128-pixel (fine) and
    # 256-pixel (DCN) canvases.
    return dict(svhn_reader_towers(), image_shape=(384, 384, 3), num_patches=256)


def svhn_reader_max():
    # The reader with a global max pool: the first stage of `svhn_reader`'s
    # training (docs/scaling.md), and what the attention pool is measured against.
    return dict(svhn_reader_towers(pool="max"), image_shape=(384, 384, 3), num_patches=256)


def svhn_cropped_towers(features=48, num_classes=10):
    """Towers for TFDS svhn_cropped (32x32 single digits, an easier task).

    Coarse: conv 32@3x3/2, conv 48@3x3 (valid, ReLU): a 13x13 grid, 7x7
    windows, stride 2. Fine: four 3x3 convs and one 2x2 pool (stride 2), one
    vector per 12x12 patch. Top: conv 96@3x3/2, global max pool, dense.
    """
    x = keras.Input((None, None, 3), name="images")
    h = _conv(32, 3, strides=2, name="coarse_conv1")(x)
    h = _conv(features, 3, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    p = keras.Input((None, None, 3), name="patches")
    f = _conv(features, 3, name="fine_conv1")(p)
    f = _conv(features, 3, padding="same", name="fine_conv2")(f)
    f = layers.MaxPooling2D(2, name="fine_pool1")(f)
    f = _conv(features, 3, name="fine_conv3")(f)
    f = _conv(features, 3, name="fine_conv4")(f)
    fine = keras.Model(p, f, name="fine")
    grid = keras.Input((None, None, features), name="grid")
    h = _top_conv(96, 3)(grid)
    h = layers.GlobalMaxPooling2D(name="top_pool")(h)
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def svhn_cropped():
    # k=4: on a 13x13 grid, 8 patches of 12x12 would cover much of a 32x32
    # image and leave little to save.
    return dict(svhn_cropped_towers(), image_shape=(32, 32, 3), num_patches=4)


def images_towers(channels=3, num_classes=10, scale=1, features=48):
    """Towers for a user's own images of any size (`--dataset=folder`, `tfds:NAME`).

    The `svhn` towers with a single softmax head: coarse conv 24@5x5/2, conv
    48@3x3/2 (valid, ReLU); fine the cluttered MNIST fine tower with 48
    filters; top conv 96@3x3/2, global max pool, dense `num_classes`. With
    `scale` > 1 both towers first average-pool the image by `scale`, so a
    cell and its patch cover `scale` times as many pixels (patches of
    14*`scale` pixels) and the grid stays near 16x16 cells per 64 pixels of
    the scaled image.
    """
    def scaled(x, tower):
        return layers.AveragePooling2D(scale, name=f"{tower}_scale")(x) if scale > 1 else x

    x = keras.Input((None, None, channels), name="images")
    h = _conv(24, 5, strides=2, name="coarse_conv1")(scaled(x, "coarse"))
    h = _conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    p = keras.Input((None, None, channels), name="patches")
    fine = keras.Model(p, _fine_tower(channels, features)(scaled(p, "fine")), name="fine")
    grid = keras.Input((None, None, features), name="grid")
    h = layers.GlobalMaxPooling2D(name="top_pool")(_top_conv(96, 3)(grid))
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def image_scale(image_shape):
    """The `images` preset's `scale` for an image size: 1 up to 128 pixels a side, 2 up to 256, then 4."""
    side = max(image_shape[:2])
    return 1 if side <= 128 else 2 if side <= 256 else 4


def images(image_shape=(128, 128, 3), num_classes=10):
    # k: a twentieth of the cells (at least 4), so the fine tower reads about
    # a twentieth of the image, whatever its size.
    scale = image_scale(image_shape)
    cells = 1
    for side in image_shape[:2]:
        cells *= ((side // scale - 5) // 2 + 1 - 3) // 2 + 1
    return dict(images_towers(image_shape[2], num_classes, scale), image_shape=tuple(image_shape),
                num_patches=max(4, round(cells / 20)))


PRESETS = {
    "cluttered_mnist": cluttered_mnist,
    "cluttered_mnist_fast": cluttered_mnist_fast,
    "svhn": svhn,
    "svhn_positional": svhn_positional,
    "svhn_patch_exact": svhn_patch_exact,
    "svhn_reader": svhn_reader,
    "svhn_reader_max": svhn_reader_max,
    "svhn_cropped": svhn_cropped,
    "images": images,
}


def preset_options(name):
    """The arguments preset `name`'s builder takes (`images`: `image_shape`, `num_classes`)."""
    return tuple(inspect.signature(PRESETS[name]).parameters)


_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# Preset -> its shipped weights by name (docs/results.md, "The shipped models").
# cluttered_mnist "pretrained": the paper's k=8 DCN trained on the 3,500
# embedded training digits, which anyone can re-make offline
# (saved_models/cluttered_mnist_dcn/1); "pretrained_full_mnist": the same
# recipe on MNIST's 50,000 training digits. cluttered_mnist_fast "pretrained":
# the default model, the k=16 DCN started from the fine model on full MNIST
# (saved_models/cluttered_mnist_fast_full_dcn/1, cluttered_mnist_fast.tflite);
# "pretrained_embedded": the same recipe on the embedded digits. svhn_reader
# "pretrained": a k=256 DCN reading mnist_numbers on 384-pixel canvases
# (saved_models/svhn_reader_numbers_dcn/1), trained on full MNIST.
PRETRAINED = {"cluttered_mnist": {"pretrained": "cluttered_mnist_dcn.weights.h5",
                                  "pretrained_full_mnist": "cluttered_mnist_full_dcn.weights.h5"},
              "cluttered_mnist_fast": {"pretrained": "cluttered_mnist_fast_full_dcn.weights.h5",
                                       "pretrained_embedded": "cluttered_mnist_fast_dcn.weights.h5"},
              "svhn_reader": {"pretrained": "svhn_reader_numbers_dcn.weights.h5"}}


def weights_path(preset, weights):
    """The file `DynamicCapacityNetwork.from_preset(preset, weights=...)` loads, or None.

    Raises:
        ValueError: `preset` has no such pretrained weights, or `weights` is
            not None, one of their names or an existing `.weights.h5` file.
    """
    if weights is None:
        return None
    shipped = PRETRAINED.get(preset, {})
    if isinstance(weights, str) and weights.startswith("pretrained"):
        if weights not in shipped:
            with_weights = sorted(p for p in PRETRAINED if weights in PRETRAINED[p])
            raise ValueError(f"Preset {preset!r} has no {weights!r} weights; its shipped weights: "
                             f"{sorted(shipped) or 'none'}; presets with {weights!r}: {with_weights or 'none'}. "
                             "Use weights=None for random weights.")
        return os.path.join(_WEIGHTS_DIR, shipped[weights])
    if isinstance(weights, str) and weights.endswith(".weights.h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"weights={weights!r}: no such file.")
        return weights
    raise ValueError(f"weights={weights!r} is not valid; use None (random), a shipped name "
                     f"({', '.join(sorted({n for names in PRETRAINED.values() for n in names}))}) "
                     "or the path of a .weights.h5 file.")
