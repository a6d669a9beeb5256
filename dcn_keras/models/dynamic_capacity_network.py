"""The Dynamic Capacity Network as a subclassed Keras model."""

from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.cell_scatter import CellScatter
from dcn_keras.layers.entropy_saliency import EntropySaliency
from dcn_keras.layers.patch_gather import PatchGather
from dcn_keras.layers.tile_gather import TileGather
from dcn_keras.models import settings
from dcn_keras.models.cell_scoring import cell_scoring
from dcn_keras.models.class_activation_map import ClassActivationMap
from dcn_keras.models.dynamic_capacity_trainer import METRICS
from dcn_keras.models.dynamic_capacity_trainer import DynamicCapacityTrainer
from dcn_keras.models.early_exit import early_exit_pass
from dcn_keras.models.fine_pass import fine_pass
from dcn_keras.models.head_places import HeadPlaces
from dcn_keras.models.incremental_top import IncrementalTop
from dcn_keras.models.objective import probabilities
from dcn_keras.models.stages import Stages
from dcn_keras.patch_geometry import PatchGeometry


@keras.saving.register_keras_serializable(package="dcn_keras")
class DynamicCapacityNetwork(DynamicCapacityTrainer, keras.Model):
    """A Dynamic Capacity Network: cheap everywhere, expensive where it matters.

    A low-capacity coarse tower `f_c` maps the whole image to a grid of
    feature vectors; the top network `g` gives a coarse prediction; the
    gradient norm of that prediction's entropy with respect to each cell
    (`EntropySaliency`) scores the cells; the fine tower `f_f` recomputes the
    `num_patches` most salient cells from their input patches (one batched
    call on all `batch * num_patches` patches); `g` on the refined grid gives
    the final prediction.

    The built-in objective (no `loss` to compile) is `CE(refined) +
    coarse_weight * CE(coarse) + hint_weight * hint`, `hint` the mean over
    the selected cells and channels of `(c_ij - stop_gradient(f_f(x_ij)))**2`
    (the paper sums: `num_patches * channels` times larger). The hint trains
    the coarse tower only.

    Args:
        coarse: `keras.Model`, image -> grid `[B, rows, cols, D]`.
        fine: `keras.Model`, patch -> `[B, 1, 1, D]`; fully convolutional,
            so `top(fine(padded images))` is the paper's fine-model baseline.
        top: `keras.Model`, grid -> logits (a tensor, or a dict of heads).
        image_shape: tuple `(height, width, channels)`. Defaults to the
            coarse tower's input shape when that is fully known.
        num_patches: int, cells refined per image, the paper's `k`.
            Defaults to `8`.
        hint_weight: float, weight of the hint term. Defaults to `1.0`.
        coarse_weight: float, weight of the coarse cross-entropy. Defaults
            to `1.0`.
        patch_size: int or pair, overrides the derived fine patch size.
        patch_offset: int or pair, overrides the input coordinate of cell
            `(0, 0)`'s patch corner.
        gather: str, `"index"` (default) or `"extract_patches"`; see
            `PatchGather`.
        top_pass: str, inference's top pass on the refined grid:
            `"incremental"` (default), a sparse update of the coarse pass's
            first-layer pre-activations (`IncrementalTop`: the same outputs,
            less work), or `"full"`. Training, and tops `IncrementalTop`
            cannot split, take the full pass.
        fine_tile: int >= 1, `1` (default) runs the fine tower patch by
            patch (the paper's way); `t > 1` once per `t` x `t` block of the
            grid holding a selected cell, on the block's window (`TileGather`):
            the same outputs, less work where the cells crowd together. Needs
            a fine tower whose window grid is exactly its per-patch vectors
            (`patch_exact_fine_tower`).
        exit_threshold: float in (0, 1] or None (default, off). At
            inference an image whose coarse confidence (`coarse_confidence`)
            is at least this keeps the coarse answer (`early_exit_pass`); the
            outputs then also hold `"refined"`, bool `[batch]`. Training
            ignores it.
        saliency: str, how cells are scored (`cell_scoring`):
            `"entropy_gradient"` (default, the paper's), `"cam"` (class
            activation maps weighted by the coarse probabilities: no backward
            pass; tops `dense(pool(relu(conv(grid))))` only) or
            `"cam_top_class"` (the top class's map). Training selects by it
            too (not differentiated).
        class_names: sequence of str or None, the name of each class of a
            single-head top, in label order; served as `class_name` outputs.
            Defaults to None.
        place_weight: float >= 0, weight of the place loss (`HeadPlaces`):
            each digit head's attention on its own digit's box, from the
            labels' `PLACE_KEY` entry. Defaults to `0.0` (off); above 0 it
            needs a top with an attention pool per digit head
            (`svhn_reader`). Training only.
        **kwargs: standard `keras.Model` arguments.

    Example:
    ```python
    model = dcn_keras.DynamicCapacityNetwork.from_preset("cluttered_mnist")
    model.compile(optimizer="adam")
    model.fit(images, labels, batch_size=32, epochs=5)
    out = model.predict(images)  # probabilities, saliency, locations, ...
    ```

    Reference: Almahairi et al., "Dynamic Capacity Networks", ICML 2016.
    """

    def __init__(self, coarse, fine, top, image_shape=None, num_patches=8, hint_weight=1.0, coarse_weight=1.0,
                 patch_size=None, patch_offset=None, gather="index", top_pass="incremental", fine_tile=1,
                 exit_threshold=None, saliency="entropy_gradient", class_names=None, place_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        image_shape = settings.image_shape_of(coarse, image_shape)
        self.geometry = PatchGeometry.from_towers(
            coarse, fine, image_shape, patch_size=patch_size, patch_offset=patch_offset
        )
        settings.check(coarse, fine, top, self.geometry, num_patches, hint_weight, coarse_weight, gather,
                        top_pass, fine_tile, exit_threshold, saliency, place_weight)
        self.coarse, self.fine, self.top = coarse, fine, top
        self.image_shape = image_shape
        self.num_patches = num_patches
        self.hint_weight = float(hint_weight)
        self.coarse_weight = float(coarse_weight)
        self.patch_size = patch_size
        self.patch_offset = patch_offset
        self.gather = gather
        self.top_pass = top_pass
        self.fine_tile = fine_tile
        self.exit_threshold = None if exit_threshold is None else float(exit_threshold)
        self.saliency = saliency
        self.class_names = settings.checked_class_names(top, class_names)
        self.place_weight = float(place_weight)

        # === Layers ===
        # The model's own policy, not the global one at construction: a DCN
        # loaded or re-made (with_num_patches) keeps the policy it was built with.
        policy = self.dtype_policy
        self.class_activation_map = (ClassActivationMap(top, top_class=saliency == "cam_top_class")
                                     if saliency.startswith("cam") else None)
        self.incremental_top = IncrementalTop.split(top) if top_pass == "incremental" else None
        self.saliency_layer = EntropySaliency(name="saliency", dtype=policy)
        cells = dict(strides=self.geometry.stride, offset=self.geometry.offset,
                     grid_shape=self.geometry.grid_shape, method=gather, dtype=policy)
        self.patch_gather = PatchGather(self.geometry.patch_size, name="patch_gather", **cells)
        self.tile_gather = None if fine_tile == 1 else TileGather(
            self.geometry.patch_size, tile=fine_tile, name="tile_gather", **cells)
        if self.tile_gather is not None:
            self.tile_gather.check_fine_tower(fine, image_shape[-1], name="fine_tile")
        self.cell_scatter = CellScatter(name="cell_scatter", dtype=policy)

        # === Passes, chosen once ===
        self.scoring = cell_scoring(saliency, top, self.saliency_layer, self.incremental_top,
                                    self.class_activation_map)
        self.fine_pass = fine_pass(fine, self.patch_gather, self.tile_gather)
        # Not a layer: its reading model shares the top's weights, which are saved once, as the top's.
        self.head_places = HeadPlaces(top, self.geometry) if self.place_weight else None
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in METRICS + (("place_loss",) if self.place_weight else ())}
        self.built = True

    @classmethod
    def from_preset(cls, name, weights=None, **overrides):
        """Builds a named configuration, e.g. `"cluttered_mnist"`.

        Args:
            name: str, a key of `presets.PRESETS`.
            weights: None (default: random initial weights), the name of
                weights shipped for this preset (`presets.PRETRAINED`:
                `"pretrained"`, the preset's best, or another such as
                `"pretrained_full_mnist"`), or a `.weights.h5` file's path.
            **overrides: `DynamicCapacityNetwork` arguments replacing the
                preset's (e.g. `num_patches=16`), and the preset's own
                (`"images"`: `image_shape` and `num_classes`, from which it
                sizes its towers and k).

        Raises:
            ValueError: an unknown preset, a preset without pretrained
                weights, or a `weights` that is none of the above.
        """
        if name not in presets.PRESETS:
            raise ValueError(f"Unknown preset {name!r}; available: {sorted(presets.PRESETS)}.")
        path = presets.weights_path(name, weights)
        own = {k: overrides.pop(k) for k in presets.preset_options(name) if k in overrides}
        model = cls(**{**presets.PRESETS[name](**own), **overrides})
        if path is not None:
            model.load_weights(path)
        return model

    def _check_images(self, images):
        images = tf.convert_to_tensor(images)
        if not images.dtype.is_floating:
            raise ValueError(f"Images must be floating point in [0, 1]; got dtype {images.dtype.name} "
                             "(for uint8 pixels, divide by 255).")
        expected = (None,) + self.image_shape
        if images.shape.rank != 4 or any(s is not None and s != e for s, e in zip(images.shape[1:], self.image_shape)):
            raise ValueError(f"Expected images of shape {expected}; got {tuple(images.shape)}.")
        if images.shape[0] == 0:
            # oneDNN's convolutions fail on it with an unrelated message.
            raise ValueError("Expected at least one image; got an empty batch.")
        return tf.ensure_shape(images, expected)

    def forward(self, images, training=False, grid=None):
        """The paper's pass, step by step: `Stages` (what the objective needs, and more).

        Args:
            images: float tensor `[batch, *image_shape]` in [0, 1].
            training: bool, whether the layers run in training mode.
            grid: the coarse tower's map of `images` when already computed
                (an early exit's); `images` are then taken as checked.
        """
        if grid is None:
            images = self._check_images(images)
            grid = self.coarse(images, training=training)  # f_c on the whole image.
        # g on the coarse grid, and how much each cell matters to its answer.
        coarse_logits, saliency, pre_activation = self.scoring(grid, training)
        rows, cols = self.geometry.grid_shape
        _, flat = tf.math.top_k(tf.reshape(saliency, [-1, rows * cols]), self.num_patches)
        locations = tf.stack([flat // cols, flat % cols], axis=-1)  # The k most salient cells.
        fine_vectors = self.fine_pass(images, locations, training)  # f_f on their input patches.
        coarse_vectors = tf.gather_nd(grid, locations, batch_dims=1)
        # Fine vectors in place of the coarse ones: unused by the incremental
        # top (a sparse update of `pre_activation`), so a traced graph prunes it.
        refined_grid = self.cell_scatter(grid, locations, fine_vectors)
        if pre_activation is None:
            logits = self.top(refined_grid, training=training)
        else:
            deltas = tf.cast(fine_vectors, grid.dtype) - coarse_vectors
            logits = self.incremental_top.refined_logits(pre_activation, locations, deltas)
        return Stages(grid, coarse_logits, saliency, locations, coarse_vectors, fine_vectors, refined_grid,
                      logits)

    def call(self, images, training=False):
        if self.exit_threshold is not None and not training:
            stages = early_exit_pass(self, self._check_images(images))
        else:
            stages = self.forward(images, training=training)
        outputs = {
            "probabilities": probabilities(stages.logits),
            "coarse_probabilities": probabilities(stages.coarse_logits),
            "saliency": stages.saliency,
            "locations": stages.locations,
            "patch_boxes": self.geometry.boxes(stages.locations),
        }
        if stages.refined is not None:
            outputs["refined"] = stages.refined
            # An exited image has no patch: its boxes are -1 like its locations.
            outputs["patch_boxes"] = tf.where(stages.refined[:, None, None], outputs["patch_boxes"], -1)
        return outputs

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras's `export`, by default for float32 images of `image_shape`.

        Keras takes a subclassed model's input signature from its first
        `build`, which a DCN (built in `__init__`) never has. For TF Serving,
        `dcn_keras.serving.export_model` (`bin/dcn_export`) adds input checks
        and an encoded-image signature.
        """
        if input_signature is None:
            input_signature = [tf.TensorSpec((None, *self.image_shape), tf.float32, name="images")]
        return super().export(filepath, format=format, verbose=verbose,
                              input_signature=input_signature, **kwargs)

    def with_num_patches(self, num_patches):
        """This DCN refining `num_patches` cells instead, sharing its weights.

        Trained with one `k`, a DCN can be run with another at test time:
        fewer patches cost less, more refine more of the image.
        """
        return self.with_settings(num_patches=num_patches)

    def with_settings(self, **changes):
        """This DCN with some constructor arguments changed, sharing its weights.

        E.g. `with_settings(top_pass="full")`; the towers and the top network
        are this DCN's own, not copies.

        Raises:
            ValueError: an argument that is not a setting of the DCN (the
                towers cannot be changed here), or a bad value.
        """
        current = {name: getattr(self, name) for name in settings.SETTINGS}
        current["dtype"] = self.dtype_policy
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise ValueError(f"with_settings() cannot change {unknown}; it changes: {sorted(current)}.")
        return DynamicCapacityNetwork(self.coarse, self.fine, self.top, **{**current, **changes})

    def fine_only_model(self, name="fine_model"):
        """The paper's fine-model baseline: `top(fine(zero-padded images))`."""
        images = keras.Input(self.image_shape, name="images")
        padded = keras.layers.ZeroPadding2D(self.geometry.padding)(images)
        return keras.Model(images, self.top(self.fine(padded)), name=name)

    def coarse_only_model(self, name="coarse_model"):
        """The paper's coarse-model baseline: `top(coarse(images))`."""
        images = keras.Input(self.image_shape, name="images")
        return keras.Model(images, self.top(self.coarse(images)), name=name)

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(coarse=serialize(self.coarse), fine=serialize(self.fine), top=serialize(self.top),
                      **{name: getattr(self, name) for name in settings.SETTINGS})
        if self.class_names is not None:
            config["class_names"] = list(self.class_names)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("coarse", "fine", "top"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)

