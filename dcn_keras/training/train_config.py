"""The resolved settings of one training run."""

import dataclasses
from typing import Optional

from dcn_keras import presets
from dcn_keras.datasets import check_dataset_name
from dcn_keras.datasets.loaders import check_options
from dcn_keras.datasets.image_folder import parse_image_size
from dcn_keras.datasets.cluttered_mnist import DIGIT_SOURCES
from dcn_keras.datasets.cluttered_mnist import check_mnist_dir
from dcn_keras.datasets.megapixel_mnist import MIN_CANVAS as MEGAPIXEL_MIN_CANVAS
from dcn_keras.datasets.number_labels import check_max_digits
from dcn_keras.layers.patch_gather import METHODS
from dcn_keras.models.settings import SALIENCIES
from dcn_keras.models.loading import DTYPE_POLICIES

MODELS = ("dcn", "fine", "coarse")
# Made a given number of times per digit (--examples_per_digit): test sets of any size.
PER_DIGIT_DATASETS = ("cluttered_mnist", "mnist_numbers")
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
# The smallest canvas each generated dataset can take: a 28-pixel digit; five
# of them side by side; the 64-pixel recipe of the numbers.
MIN_CANVAS = {"cluttered_mnist": 28, "megapixel_mnist": MEGAPIXEL_MIN_CANVAS, "mnist_numbers": 64}
FREEZABLE = ("coarse", "fine", "top")  # The sub-networks `init_from` copies.


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


def check_canvas_size(dataset, canvas_size):
    """Raises a `ValueError` unless `canvas_size` is None or a side `dataset`'s canvases can take."""
    if canvas_size is None:
        return
    check_options(dataset, {"canvas_size": canvas_size})  # Names the datasets that take one.
    _check_number("canvas_size", canvas_size, MIN_CANVAS[dataset], integer=True)


def _check_number(name, value, minimum, optional=False, integer=False, strict=False):
    if value is None and optional:
        return
    kind = int if integer else (int, float)
    bad = not isinstance(value, kind) or isinstance(value, bool)
    if not bad:
        bad = value <= minimum if strict else value < minimum
    if bad:
        rule = f"> {minimum}" if strict else f">= {minimum}"
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} is not valid; it must be {what} {rule}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; written as JSON to `model_dir`.

    Args:
        dataset: str, a registered dataset. Defaults to `"cluttered_mnist"`.
        model: str, `"dcn"` (default), or the paper's baselines `"fine"`
            (fine tower over the whole image) and `"coarse"`.
        preset: str or None, the model preset; None takes the dataset's.
        epochs: int, training epochs. Defaults to 10.
        steps_per_epoch: int or None, steps per epoch (None: one pass).
        batch_size: int, global batch size. Defaults to 32.
        eval_batch_size: int or None, the batch size of the validation and
            test passes (None: `batch_size`). A larger one reads the
            evaluation splits in fewer steps where memory allows; the errors
            are the same.
        learning_rate: float, Adam's (peak) learning rate. Defaults to 1e-3.
        lr_schedule: str, `"constant"` or `"cosine"` (decays to 0 over the
            run's steps, so the last epochs settle). Defaults to
            `"cosine"`: every shipped model was trained with it.
        num_patches: int or None, the DCN's k (None: the preset's).
        hint_weight: float or None, the hint term's weight (None: preset's).
        place_weight: float or None, `dataset="mnist_numbers"` and a DCN with
            an attention pool per digit head (`svhn_reader`) only: the
            weight of the place loss, which puts each digit head's attention
            on its digit's box (`HeadPlaces`; None: 0, off).
        coarse_weight: float or None, the coarse loss weight (None: preset's).
        gather: str, `"index"` or `"extract_patches"`.
        saliency: str or None, how the DCN scores cells: `"entropy_gradient"`
            (the paper's), `"cam"` (class activation map) or `"cam_top_class"`
            (the top class's map); None: the
            preset's (the entropy gradient).
        model_dir: str, where config, logs, checkpoints and model go.
        export_dir: str or None, where the SavedModel goes (None:
            `<model_dir>/export/1`, TF Serving's versioned layout).
        data_dir: str or None, TFDS data directory (and SVHN local copy).
        seed: int, seeds weights, data generation and shuffling.
        strategy: str, `"default"`, `"mirrored"` or `"multi_worker"`.
        digits: str, cluttered MNIST digit source: `"auto"`, `"tfds"` or
            `"embedded"`.
        mnist_dir: str or None, a directory of the standard MNIST IDX files
            (`train-images-idx3-ubyte[.gz]`, ...): cluttered MNIST's digits
            come from there (50,000 / 10,000 / 10,000). Defaults to None.
        examples_per_digit: int, cluttered canvases (or, for
            `mnist_numbers`, numbers) made per training digit, fresh clutter
            and placement for each. Defaults to 4.
        max_digits: int, `mnist_numbers`' longest number, 1 to 5 (lengths
            are uniform over 1..max_digits). Defaults to 5.
        svhn_crop: str, SVHN preprocessing: `"whole"` image or Goodfellow's
            `"goodfellow"` crop.
        verbose: str or int, Keras progress output: `"auto"` (default: a
            progress bar on a terminal, one line per epoch in a log or pipe),
            0, 1 or 2.
        init_from: str or None, a `.keras` model (a DCN or a baseline) whose
            coarse tower, fine tower and top network start this run wherever
            it has them (`trainer.initialize_from`). Defaults to None.
        freeze: tuple of str, sub-networks that keep their `init_from`
            weights: any of `"coarse"`, `"fine"`, `"top"` but not all
            (e.g. `("fine", "top")`: only the coarse tower learns, from the
            cross-entropies and the hint). Defaults to `()`.
        dtype_policy: str, the Keras dtype policy the model is built under:
            `"float32"` (default), `"mixed_float16"` (with loss scaling) or
            `"mixed_bfloat16"`; variables, entropy, saliency and losses stay
            float32.
        canvas_size: int or None, the generated datasets only
            (`MIN_CANVAS`): the canvas side in pixels, the digits keeping
            their size and the clutter its density (None: 100, 1500 and 64
            for `cluttered_mnist`, `megapixel_mnist` and `mnist_numbers`).
            At least `MIN_CANVAS[dataset]`.
        num_noise: int or None, `megapixel_mnist` only: noise blocks per
            canvas (None: 50 per 1500 x 1500 pixels).
        num_canvases: int or None, `megapixel_mnist` only: training canvases
            (None: the benchmark's 5,000); more recombine the same training
            digits into new canvases. Validation and test keep 1,000 each.
        image_size: str or None, `--dataset=folder` and `tfds:NAME` only:
            `"N"` or `"HxW"`, the size images are scaled to fit (aspect kept,
            zero-padded); None: a folder's most common size, a TFDS
            dataset's own (required when its sizes vary).
    """

    dataset: str = "cluttered_mnist"
    model: str = "dcn"
    preset: Optional[str] = None
    epochs: int = 10
    steps_per_epoch: Optional[int] = None
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    num_patches: Optional[int] = None
    hint_weight: Optional[float] = None
    place_weight: Optional[float] = None
    coarse_weight: Optional[float] = None
    gather: str = "index"
    saliency: Optional[str] = None
    model_dir: str = "runs/dcn"
    export_dir: Optional[str] = None
    data_dir: Optional[str] = None
    seed: int = 0
    strategy: str = "default"
    digits: str = "auto"
    mnist_dir: Optional[str] = None
    examples_per_digit: int = 4
    max_digits: int = 5
    svhn_crop: str = "whole"
    verbose: object = "auto"
    init_from: Optional[str] = None
    freeze: tuple = ()
    dtype_policy: str = "float32"
    image_size: Optional[str] = None
    canvas_size: Optional[int] = None
    num_noise: Optional[int] = None
    num_canvases: Optional[int] = None

    @property
    def own_images(self):
        """Whether the data is a user's own: an image folder or a TFDS dataset."""
        return self.dataset == "folder" or self.dataset.startswith("tfds:")

    def __post_init__(self):
        check_dataset_name(self.dataset)
        parse_image_size(self.image_size)
        _check_choice("model", self.model, MODELS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.preset is not None:
            _check_choice("preset", self.preset, sorted(presets.PRESETS))
        _check_choice("gather", self.gather, METHODS)
        if self.saliency is not None:
            _check_choice("saliency", self.saliency, SALIENCIES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("digits", self.digits, DIGIT_SOURCES)
        check_mnist_dir(self.digits, self.mnist_dir)
        check_canvas_size(self.dataset, self.canvas_size)
        _check_number("num_noise", self.num_noise, 0, optional=True, integer=True)
        _check_number("num_canvases", self.num_canvases, 1, optional=True, integer=True)
        check_max_digits(self.max_digits)
        # The datasets' own options the user set: the loaders say which datasets take each.
        chosen = {"image_size": self.image_size, "mnist_dir": self.mnist_dir or None, "num_noise": self.num_noise,
                  "num_canvases": self.num_canvases, "max_digits": None if self.max_digits == 5 else self.max_digits}
        check_options(self.dataset, {k: v for k, v in chosen.items() if v is not None})
        _check_choice("svhn_crop", self.svhn_crop, ("whole", "goodfellow"))
        _check_choice("dtype_policy", self.dtype_policy, DTYPE_POLICIES)
        if self.verbose not in ("auto", 0, 1, 2) or isinstance(self.verbose, bool):
            raise ValueError(f"verbose={self.verbose!r} is not valid; choose one of: auto, 0, 1, 2.")
        _check_number("epochs", self.epochs, 1, integer=True)
        _check_number("steps_per_epoch", self.steps_per_epoch, 1, optional=True, integer=True)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("eval_batch_size", self.eval_batch_size, 1, optional=True, integer=True)
        _check_number("learning_rate", self.learning_rate, 0, strict=True)
        _check_number("num_patches", self.num_patches, 1, optional=True, integer=True)
        _check_number("hint_weight", self.hint_weight, 0, optional=True)
        _check_number("coarse_weight", self.coarse_weight, 0, optional=True)
        _check_number("place_weight", self.place_weight, 0, optional=True)
        if self.place_weight and (self.dataset != "mnist_numbers" or self.model != "dcn"):
            raise ValueError(f"place_weight={self.place_weight} needs each digit's box: dataset=mnist_numbers "
                             f"and model=dcn (got dataset={self.dataset}, model={self.model}).")
        _check_number("examples_per_digit", self.examples_per_digit, 1, integer=True)
        if self.strategy == "multi_worker" and self.model != "dcn":
            raise ValueError(
                f"strategy=multi_worker trains model=dcn only (got model={self.model}): "
                "Keras 3 fit of a plain Keras model fails under MultiWorkerMirroredStrategy "
                "(keras-team/keras#20585).")
        if self.init_from is not None and not str(self.init_from).endswith(".keras"):
            raise ValueError(f"init_from={self.init_from!r} is not valid; it must name a .keras file.")
        object.__setattr__(self, "freeze", tuple(self.freeze or ()))
        for part in self.freeze:
            _check_choice("freeze", part, FREEZABLE)
        if len(set(self.freeze)) != len(self.freeze) or set(self.freeze) == set(FREEZABLE):
            raise ValueError(f"freeze={','.join(self.freeze)} is not valid; name each of "
                             f"{', '.join(FREEZABLE)} at most once, and not all of them (nothing would learn).")
        if self.freeze and self.init_from is None:
            raise ValueError(f"freeze={','.join(self.freeze)} keeps weights from init_from; give init_from "
                             "(frozen random weights would never learn).")
        if not self.model_dir:
            raise ValueError("model_dir must name a directory.")

    def to_dict(self):
        return dataclasses.asdict(self)
