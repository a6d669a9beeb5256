"""Presets for house numbers and `mnist_numbers`: the `svhn` family and `svhn_cropped`."""

from dcn_keras.backend import keras
from dcn_keras.layers.attention_pooling2d import AttentionPooling2D
from dcn_keras.layers.band_max_pooling2d import BandMaxPooling2D
from dcn_keras.presets.blocks import conv
from dcn_keras.presets.blocks import fine_tower
from dcn_keras.presets.blocks import patch_exact_fine_tower
from dcn_keras.presets.blocks import top_conv

layers = keras.layers
READER_POOLS = ("attention", "max", "per_head")


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
    return _svhn_towers(features, max_digits, _whole(layers.GlobalMaxPooling2D(name="top_pool")))


def _svhn_towers(features, max_digits, pool, fine_tower=fine_tower):
    # The svhn coarse tower, `fine_tower`, and a top whose conv map goes through `pool`.
    x = keras.Input((None, None, 3), name="images")
    h = conv(24, 5, strides=2, name="coarse_conv1")(x)
    h = conv(features, 3, strides=2, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    grid = keras.Input((None, None, features), name="grid")
    classes = {"length": max_digits + 1, **{f"digit_{i}": 11 for i in range(1, max_digits + 1)}}
    h = pool(top_conv(96, 3)(grid), tuple(classes))
    if isinstance(h, dict):  # A reading per head, each through its own dense layer.
        heads = {name: layers.Dense(count, name=name)(
            layers.Dense(192, activation="relu", name=f"top_dense_{name}")(h[name]))
            for name, count in classes.items()}
    else:
        if len(h.shape) > 2:  # A pool that keeps positions: flatten them into the dense layer.
            h = layers.Flatten(name="top_flatten")(h)
        h = layers.Dense(192, activation="relu", name="top_dense")(h)
        heads = {name: layers.Dense(count, name=name)(h) for name, count in classes.items()}
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
    return _svhn_towers(features, max_digits, _whole(BandMaxPooling2D((rows, columns), name="top_pool")))


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
    return _svhn_towers(features, max_digits, _whole(BandMaxPooling2D((rows, columns), name="top_pool")),
                        fine_tower=patch_exact_fine_tower)


def svhn_patch_exact():
    return dict(svhn_patch_exact_towers(), image_shape=(64, 64, 3), num_patches=8)


def svhn_reader_towers(features=48, max_digits=5, window=(4, 8), pool="attention", rows_width=64,
                       fine_widths=None, near_width=None):
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
    `pool="per_head"` gives each head (the length and each digit place) its
    own attention pool and dense layer, so the reading of the third digit
    can come from the window around it rather than the one window all heads
    share (`top_pool_digit_3`, `top_dense_digit_3`, ...; `--init_from` a
    one-pool reader starts every head as that reader's pool and dense).
    `rows_width` sets the filters of `top_rows` (64) and `fine_widths` those
    of the fine tower's first three convolutions (`features` each): wider
    ones start from a narrower reader's weights as that reader (`--init_from`).
    `near_width` (None: off) adds a narrow reading, `top_near`: conv
    `near_width`@1x3 over `top_rows` (a window of about 46x62 pixels, a
    digit and its neighbours' edges), pooled by each head's attention
    weights beside the wide reading (`AttentionPooling2D([read, near])`), so
    the head that found its place also sees what is written there, centred.
    """
    if pool not in READER_POOLS:
        raise ValueError(f"pool={pool!r} is not valid; choose one of: {', '.join(READER_POOLS)}.")
    _check_width("rows_width", rows_width)
    if near_width is not None:
        _check_width("near_width", near_width, ", or None for no narrow reading")
    if near_width is not None and pool == "max":
        raise ValueError("near_width needs an attention pool to place the narrow reading; pool='max' has none.")
    rows, columns = window
    def read(h, heads):
        r = conv(rows_width, (rows, 2), strides=2, padding="same", name="top_rows")(h)
        h = conv(192, (1, columns), padding="same", name="top_read")(r)
        if near_width is not None:
            h = [h, conv(near_width, (1, 3), padding="same", name="top_near")(r)]
        if pool == "per_head":
            return {name: AttentionPooling2D(name=f"top_pool_{name}")(h) for name in heads}
        pooling = AttentionPooling2D if pool == "attention" else layers.GlobalMaxPooling2D
        return pooling(name="top_pool")(h)
    return _svhn_towers(features, max_digits, read,
                        fine_tower=lambda channels, out: patch_exact_fine_tower(channels, out, fine_widths))


def _check_width(name, value, alternative=""):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid: give a positive integer{alternative}.")


def _whole(pool):
    # A top pool that serves every head the same vector.
    return lambda h, heads: pool(h)


def svhn_reader():
    # Numbers small against the image: 384-pixel canvases, where the number
    # covers about 1% of the coarse cells. Each head (the length and each
    # digit place) pools the readings by its own attention score and reads
    # them with its own dense layer, so the third digit's reading comes from
    # the window around it (docs/scaling.md: 5.4% whole-number error against
    # 7.7% with one pool for all heads). k=192, the smallest k tried whose
    # DCN reads numbers as well as the fine model (160 did not). The shipped
    # weights' fine tower was trained on 128-pixel canvases, their top and
    # coarse tower on 384-pixel ones (docs/scaling.md, "Version 4").
    # The fine tower runs once per 4x4 block of cells holding a chosen one: a
    # number's cells crowd together, so that does the fine pass in 0.7 of the
    # multiply-adds, with the same outputs.
    return dict(svhn_reader_towers(pool="per_head"), image_shape=(384, 384, 3), num_patches=192, fine_tile=4)


def svhn_reader_wide():
    # `svhn_reader` with twice the filters where its reading is narrowest:
    # `top_rows` (128, the 16-pixel columns a number is read from) and the
    # fine tower's third convolution (96). Started from `svhn_reader`'s
    # weights (`--init_from`), it reads as they do before its first step.
    towers = svhn_reader_towers(pool="per_head", rows_width=128, fine_widths=(48, 48, 96))
    return dict(towers, image_shape=(384, 384, 3), num_patches=192, fine_tile=4)


def svhn_reader_placed():
    # `svhn_reader` whose heads also read a narrow window where their
    # attention puts them (`near_width`), so that a head that finds its
    # place reads the digit there centred. From `svhn_reader`'s weights
    # (`--init_from`) it reads as they do: the dense layers' inputs from
    # the narrow reading start at zero weight. Measured, it reads no better:
    # the heads' attention stays on the number's first digit
    # (docs/scaling.md, "A narrow reading per place").
    towers = svhn_reader_towers(pool="per_head", near_width=128)
    return dict(towers, image_shape=(384, 384, 3), num_patches=192, fine_tile=4)


def svhn_reader_one_pool():
    # The reader with one attention pool and dense layer for all heads: the
    # first numbers DCN (saved_models/svhn_reader_numbers_dcn/1), and where
    # `svhn_reader`'s training starts (`--init_from` copies its pool into
    # every head's).
    return dict(svhn_reader_towers(), image_shape=(384, 384, 3), num_patches=192, fine_tile=4)


def svhn_reader_max():
    # The reader with a global max pool: the first stage of `svhn_reader`'s
    # training (docs/scaling.md), and what the attention pool is measured against.
    return dict(svhn_reader_towers(pool="max"), image_shape=(384, 384, 3), num_patches=192, fine_tile=4)


def svhn_cropped_towers(features=48, num_classes=10):
    """Towers for TFDS svhn_cropped (32x32 single digits, an easier task).

    Coarse: conv 32@3x3/2, conv 48@3x3 (valid, ReLU): a 13x13 grid, 7x7
    windows, stride 2. Fine: four 3x3 convs and one 2x2 pool (stride 2), one
    vector per 12x12 patch. Top: conv 96@3x3/2, global max pool, dense.
    """
    x = keras.Input((None, None, 3), name="images")
    h = conv(32, 3, strides=2, name="coarse_conv1")(x)
    h = conv(features, 3, name="coarse_conv2")(h)
    coarse = keras.Model(x, h, name="coarse")
    p = keras.Input((None, None, 3), name="patches")
    f = conv(features, 3, name="fine_conv1")(p)
    f = conv(features, 3, padding="same", name="fine_conv2")(f)
    f = layers.MaxPooling2D(2, name="fine_pool1")(f)
    f = conv(features, 3, name="fine_conv3")(f)
    f = conv(features, 3, name="fine_conv4")(f)
    fine = keras.Model(p, f, name="fine")
    grid = keras.Input((None, None, features), name="grid")
    h = top_conv(96, 3)(grid)
    h = layers.GlobalMaxPooling2D(name="top_pool")(h)
    top = keras.Model(grid, layers.Dense(num_classes, name="logits")(h), name="top")
    return {"coarse": coarse, "fine": fine, "top": top}


def svhn_cropped():
    # k=4: on a 13x13 grid, 8 patches of 12x12 would cover much of a 32x32
    # image and leave little to save.
    return dict(svhn_cropped_towers(), image_shape=(32, 32, 3), num_patches=4)
