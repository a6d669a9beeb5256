"""What the programs in `bin/` share: their common flags, each defined once, and their start-up.

In the manner of tensorflow/models' `official/common/flags.py`: a program
calls `define_flags("dataset", "mnist_dir", ...)` for the shared flags it
takes, so each has one default and one help text wherever it appears, and
hands its `main()` to `run`, which refuses stray arguments and quiets
absl's INFO lines; `errors_as_messages` turns the library's `ValueError`s
into one error line and exit status 2. The library names its arguments
(`num_noise=3`); a program's flags have their names, so its messages name
the flags (`--num_noise=3`).
"""

import contextlib
import dataclasses
import os
import re
import sys
import time

from absl import app
from absl import flags
from absl import logging

# name -> (absl definer, default, help). A flag left at None takes the
# library's default, which its help states.
_SHARED = {
    "dataset": (flags.DEFINE_string, "cluttered_mnist",
                "Dataset: cluttered_mnist (the paper's), megapixel_mnist (five digits on a 1500-pixel canvas, the "
                "label their majority), mnist_numbers (multi-digit numbers of real digits), svhn, svhn_cropped, "
                "folder (your images in --data_dir, one sub-folder per class) or tfds:NAME (a TFDS "
                "image-classification dataset). dcn_compare and dcn_sweep make their own test sets: "
                "cluttered_mnist and mnist_numbers."),
    "canvas_size": (flags.DEFINE_integer, None,
                    "cluttered_mnist, megapixel_mnist and mnist_numbers: the canvas side in pixels, digits keeping "
                    "their size and clutter its density (default: the model's own image size where a model is "
                    "given, else 100, 1500 and 64). dcn_bench: the side of the square images it times the "
                    "preset's models on (default: the preset's own)."),
    "digits": (flags.DEFINE_string, "auto",
               "Where cluttered_mnist, megapixel_mnist and mnist_numbers take their digits when --mnist_dir is "
               "not given: auto (TFDS, else the embedded sample), tfds or embedded."),
    "mnist_dir": (flags.DEFINE_string, None,
                  "A directory of the standard MNIST IDX files (train-images-idx3-ubyte[.gz], ...): the digits of "
                  "cluttered_mnist, megapixel_mnist and mnist_numbers come from there (50,000 train / 10,000 "
                  "validation / 10,000 test, the t10k files). dcn_bench --weights: its real test canvases are "
                  "made of those test digits (default: the embedded test digits)."),
    "num_noise": (flags.DEFINE_integer, None,
                  "megapixel_mnist: noise blocks per canvas (default: 50 per 1500x1500 pixels)."),
    "max_digits": (flags.DEFINE_integer, None,
                   "mnist_numbers' longest number, 1 to 5, lengths uniform over 1..max_digits (default: 5)."),
    "examples_per_digit": (flags.DEFINE_integer, None,
                           "cluttered_mnist canvases or mnist_numbers numbers made per digit of the split "
                           "(default: 4 per training digit; a test split 1 canvas, or at least 5,000 numbers in "
                           "all; dcn_sweep's test set 5 canvases)."),
    "seed": (flags.DEFINE_integer, 0,
             "Seed of the generated data (in training, also of the weights and the shuffle)."),
    "data_dir": (flags.DEFINE_string, None,
                 "TFDS data directory (svhn reads a local copy from <data_dir>/downloads/manual); for "
                 "--dataset=folder, the image folder."),
}
SHARED_FLAGS = tuple(_SHARED)


def define_flags(*names):
    """Defines the shared flags `names` (see `SHARED_FLAGS`) with their one default and help."""
    unknown = [name for name in names if name not in _SHARED]
    if unknown:
        raise ValueError(f"No shared flags {unknown}; shared: {', '.join(SHARED_FLAGS)}.")
    for name in names:
        define, default, help_text = _SHARED[name]
        define(name, default, help_text)


def config_values(config_class, values):
    """`values` for a dataclass config, a flag left at None taking the config's own default."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    return {name: value for name, value in values.items()
            if value is not None or defaults.get(name, None) is None}


def flag_values(config_class, **fixed):
    """`config_values` of the program's flags named as `config_class`'s fields, and `fixed` values."""
    names = [f.name for f in dataclasses.fields(config_class) if f.name in flags.FLAGS]
    return config_values(config_class, {**{name: flags.FLAGS[name].value for name in names}, **fixed})


def program_name():
    return os.path.basename(sys.argv[0])


def fail(message):
    """Ends the program with `<program>: error: message` on stderr and exit status 2."""
    print(f"{program_name()}: error: {message}", file=sys.stderr)
    sys.exit(2)


def progress_printer(every_seconds=30.0, clock=time.monotonic):
    """A `progress(done, total)` that prints `<program>: done of total (p%), s s` to stderr every `every_seconds`.

    The last call (done == total) always prints: a long evaluation shows it
    is alive and how far it has come, without a line per batch.
    """
    start, last = clock(), [None]

    def progress(done, total):
        now = clock()
        if done != total and last[0] is not None and now - last[0] < every_seconds:
            return
        last[0] = now
        share = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{program_name()}: {done} of {total or '?'}{share}, {now - start:.0f} s", file=sys.stderr, flush=True)
    return progress


@contextlib.contextmanager
def errors_as_messages(*kinds):
    """Turns the library's errors (`ValueError`, `FileNotFoundError` and `kinds`) into `fail`."""
    try:
        yield
    except (ValueError, FileNotFoundError, *kinds) as error:
        fail(as_flags(str(error)))


def as_flags(message, names=None):
    """`message` with each `name=` that names a flag (of `names`, default the program's) written `--name=`."""
    names = flags.FLAGS if names is None else names
    return re.sub(r"(?<![-\w])(\w+)=", lambda m: f"--{m.group(1)}=" if m.group(1) in names else m.group(0),
                  message)


def quiet_info_logs():
    """absl's INFO lines off (TensorFlow's and TFDS's chatter), warnings kept; a given `--verbosity` wins."""
    if not (flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present):
        logging.set_verbosity(logging.WARNING)


def run(main, arguments=False):
    """Runs `main()` as an absl app with quiet INFO logs.

    With `arguments`, `main` takes the command line's positional arguments
    (e.g. files); without, any is a usage error.
    """
    def start(argv):
        if len(argv) > 1 and not arguments:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        quiet_info_logs()
        main(argv[1:]) if arguments else main()

    app.run(start)
