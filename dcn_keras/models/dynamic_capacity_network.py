"""The Dynamic Capacity Network as a subclassed Keras model."""

from dcn_keras import presets
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from dcn_keras.layers.cell_scatter import CellScatter
from dcn_keras.layers.entropy_saliency import EntropySaliency
from dcn_keras.layers.patch_gather import METHODS
from dcn_keras.layers.patch_gather import PatchGather
from dcn_keras.layers.tile_gather import TileGather
from dcn_keras.models.class_activation_map import ClassActivationMap
from dcn_keras.models.dynamic_capacity_trainer import METRICS
from dcn_keras.models.dynamic_capacity_trainer import DynamicCapacityTrainer
from dcn_keras.models.incremental_top import IncrementalTop
from dcn_keras.models.objective import coarse_confidence
from dcn_keras.models.objective import probabilities
from dcn_keras.patch_geometry import PatchGeometry

TOP_PASSES = ("incremental", "full")
SALIENCIES = ("entropy_gradient", "cam", "cam_top_class")
# The constructor's arguments besides the towers, each kept as an attribute of
# its name: `get_config` and `with_settings` copy them from this one list.
SETTINGS = ("image_shape", "num_patches", "hint_weight", "coarse_weight", "patch_size", "patch_offset", "gather",
            "top_pass", "fine_tile", "exit_threshold", "saliency", "class_names")


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

    The built-in objective (no `loss` to compile) is
    `CE(refined) + coarse_weight * CE(coarse) + hint_weight * hint`, where
    `hint` is the mean over the selected cells and the feature channels of
    `(c_ij - stop_gradient(f_f(x_ij)))**2`. Being a mean rather than the
    paper's sum, its scale does not grow with `num_patches` or the feature
    size (the paper's sum is `num_patches * channels` times larger). It
    trains the coarse tower only.

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
        top_pass: str, how inference runs the top network on the refined
            grid: `"incremental"` (default), as a sparse update of the coarse
            pass's first-layer pre-activations (`IncrementalTop`; same
            outputs to float rounding, less work), or `"full"`, the whole
            top network on the rebuilt grid. Tops that `IncrementalTop`
            cannot split, and training, always take the full pass.
        fine_tile: int >= 1, `1` (default) runs the fine tower patch by
            patch, the paper's way; `t > 1` runs it once per `t` x `t` block
            of the grid holding a selected cell, on the window covering the
            block's patches (`TileGather`), and keeps the selected cells'
            vectors: the same outputs (to float rounding) with less work when
            the selected cells crowd together, as on a number. Needs a fine
            tower that maps that window to a `t` x `t` grid, exactly its
            per-patch vectors (valid convolutions whose steps multiply to the
            grid's stride, as `patch_exact_fine_tower`).
        exit_threshold: float in (0, 1] or None (default, off). At
            inference, an image whose coarse prediction's top probability
            (for several heads, the product of the heads' top probabilities:
            the whole number's confidence) is at least this keeps the coarse
            answer and sends no patch to the fine tower; only the others are
            refined, in one fine-tower call (none: skipped). The outputs
            then also hold `"refined"`, bool `[batch]`. Training ignores it.
        saliency: str, how cells are scored: `"entropy_gradient"` (default,
            the paper's: the norm of the coarse prediction's entropy gradient
            with respect to each cell) or `"cam"`, the class activation map
            (`ClassActivationMap`: the forward pass alone, no backward pass;
            tops of the form `dense(pool(relu(conv(grid))))` only), weighted
            by the coarse probabilities, or `"cam_top_class"`, the map of
            the coarse prediction's top class alone. Training selects by it
            too (not differentiated).
        class_names: sequence of str or None, the name of each class of a
            single-head top, in label order; served as `class_name` outputs.
            Defaults to None.
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

    def __init__(
        self,
        coarse,
        fine,
        top,
        image_shape=None,
        num_patches=8,
        hint_weight=1.0,
        coarse_weight=1.0,
        patch_size=None,
        patch_offset=None,
        gather="index",
        top_pass="incremental",
        fine_tile=1,
        exit_threshold=None,
        saliency="entropy_gradient",
        class_names=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if image_shape is None:
            image_shape = tuple(coarse.inputs[0].shape[1:])
            if None in image_shape:
                raise ValueError(
                    "`image_shape` is required when the coarse tower's input has "
                    f"unknown sizes; its input shape is {coarse.inputs[0].shape}."
                )
        image_shape = tuple(image_shape)
        self.coarse, self.fine, self.top = coarse, fine, top
        self.geometry = PatchGeometry.from_towers(
            coarse, fine, image_shape, patch_size=patch_size, patch_offset=patch_offset
        )
        coarse_dim = coarse.outputs[0].shape[-1]
        fine_dim = fine.outputs[0].shape[-1]
        if coarse_dim != fine_dim:
            raise ValueError(
                f"Coarse vectors have {coarse_dim} channels but fine vectors have "
                f"{fine_dim}; they must match to be interchangeable in `top`."
            )
        top_dim = top.inputs[0].shape[-1]
        if top_dim not in (None, coarse_dim):
            raise ValueError(f"`top` takes {top_dim} channels; the towers give {coarse_dim}.")
        cells = self.geometry.num_cells
        if not isinstance(num_patches, int) or not 1 <= num_patches <= cells:
            raise ValueError(
                f"num_patches={num_patches!r} must be an int in [1, {cells}] (the "
                f"{self.geometry.grid_shape[0]}x{self.geometry.grid_shape[1]} grid)."
            )
        for name, value in (("hint_weight", hint_weight), ("coarse_weight", coarse_weight)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0; got {value!r}.")
        if gather not in METHODS:
            raise ValueError(f"`gather` must be one of {METHODS}; got {gather!r}.")
        if top_pass not in TOP_PASSES:
            raise ValueError(f"`top_pass` must be one of {TOP_PASSES}; got {top_pass!r}.")
        if saliency not in SALIENCIES:
            raise ValueError(f"saliency={saliency!r} is not valid; choose one of: {', '.join(SALIENCIES)}.")
        self.class_activation_map = (ClassActivationMap(top, top_class=saliency == "cam_top_class")
                                     if saliency.startswith("cam") else None)
        if exit_threshold is not None and (
                isinstance(exit_threshold, bool) or not isinstance(exit_threshold, (int, float))
                or not 0 < exit_threshold <= 1):
            raise ValueError(f"exit_threshold={exit_threshold!r} must be None (off) or a number in (0, 1].")
        if class_names is not None:
            class_names = tuple(str(c) for c in class_names)
            classes = top.outputs[0].shape[-1] if len(top.outputs) == 1 else None
            if len(class_names) != classes:
                raise ValueError(f"class_names has {len(class_names)} names; the top has "
                                 f"{'several heads' if classes is None else f'{classes} classes'}.")
        self.class_names = class_names
        self.image_shape = image_shape
        self.num_patches = num_patches
        self.hint_weight = float(hint_weight)
        self.coarse_weight = float(coarse_weight)
        self.patch_size = patch_size
        self.patch_offset = patch_offset
        self.gather = gather
        self.top_pass = top_pass
        self.exit_threshold = None if exit_threshold is None else float(exit_threshold)
        self.saliency = saliency
        self.incremental_top = IncrementalTop.split(top) if top_pass == "incremental" else None
        if isinstance(fine_tile, bool) or not isinstance(fine_tile, int) or fine_tile < 1:
            raise ValueError(f"fine_tile={fine_tile!r} must be an int >= 1 (1: patch by patch).")
        self.fine_tile = fine_tile

        # The model's own policy, not the global one at construction: a DCN
        # loaded or re-made (with_num_patches) keeps the policy it was built with.
        policy = self.dtype_policy
        self.saliency_layer = EntropySaliency(name="saliency", dtype=policy)
        self.patch_gather = PatchGather(
            self.geometry.patch_size,
            strides=self.geometry.stride,
            offset=self.geometry.offset,
            grid_shape=self.geometry.grid_shape,
            method=gather,
            name="patch_gather",
            dtype=policy,
        )
        self.tile_gather = None if fine_tile == 1 else TileGather(
            self.geometry.patch_size, strides=self.geometry.stride, offset=self.geometry.offset,
            grid_shape=self.geometry.grid_shape, tile=fine_tile, method=gather, name="tile_gather",
            dtype=policy)
        if self.tile_gather is not None:
            self.tile_gather.check_fine_tower(fine, image_shape[-1], name="fine_tile")
        self.cell_scatter = CellScatter(name="cell_scatter", dtype=policy)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in METRICS}
        self.built = True

    @classmethod
    def from_preset(cls, name, weights=None, **overrides):
        """Builds a named configuration, e.g. `"cluttered_mnist"`.

        Args:
            name: str, a key of `presets.PRESETS`.
            weights: None (default: random initial weights), the name of
                weights shipped with the package for this preset
                (`presets.PRETRAINED`: `"pretrained"`, the preset's best
                (`cluttered_mnist_fast`: the default model, trained on
                MNIST's 50,000 training digits; `cluttered_mnist`: the
                paper's k=8 DCN on the embedded digits), or another shipped
                name such as `"pretrained_full_mnist"`), or the path of a
                `.weights.h5` file.
            **overrides: `DynamicCapacityNetwork` arguments replacing the
                preset's (e.g. `num_patches=16`), and the preset's own
                (`"images"`: `image_shape` and `num_classes`, from which it
                sizes its towers and k).

        Raises:
            ValueError: an unknown preset, a preset without pretrained
                weights, or a `weights` that is none of the above.
        """
        if name not in presets.PRESETS:
            raise ValueError(
                f"Unknown preset {name!r}; available: {sorted(presets.PRESETS)}."
            )
        path = presets.weights_path(name, weights)
        own = {k: overrides.pop(k) for k in presets.preset_options(name) if k in overrides}
        model = cls(**{**presets.PRESETS[name](**own), **overrides})
        if path is not None:
            model.load_weights(path)
        return model

    def _check_images(self, images):
        images = tf.convert_to_tensor(images)
        if not images.dtype.is_floating:
            raise ValueError(
                f"Images must be floating point in [0, 1]; got dtype {images.dtype.name} "
                "(for uint8 pixels, divide by 255)."
            )
        expected = (None,) + self.image_shape
        if images.shape.rank != 4 or any(
            s is not None and s != e for s, e in zip(images.shape[1:], self.image_shape)
        ):
            raise ValueError(
                f"Expected images of shape {expected}; got {tuple(images.shape)}."
            )
        if images.shape[0] == 0:
            # oneDNN's convolutions fail on it with an unrelated message.
            raise ValueError("Expected at least one image; got an empty batch.")
        return tf.ensure_shape(images, expected)

    def forward(self, images, training=False):
        """The full forward pass, with the tensors the objective needs."""
        images = self._check_images(images)
        grid, scored, locations = self._select(images, training)
        refined = self._refine(images, grid, scored.get("pre_activation"), locations, training)
        return dict(refined, coarse_logits=scored["logits"], saliency=scored["saliency"],
                    locations=locations, grid=grid)

    def _select(self, images, training):
        # The coarse pass: grid, coarse logits and saliency, and the k cells chosen.
        grid = self.coarse(images, training=training)
        return (grid, *self._score(grid, training))

    def _score(self, grid, training):
        # The top network's pass on the coarse grid: logits, saliency, the k cells.
        # Training takes the full pass: its gradients are those of the paper's model as written.
        incremental = None if training else self.incremental_top
        if self.class_activation_map is not None:
            scored = self.class_activation_map(grid)
            if incremental is None:  # The full refined pass does not use them.
                scored.pop("pre_activation")
            if training:  # Selection is not differentiated; the coarse loss is.
                scored = {"logits": self.top(grid, training=True),
                          "saliency": tf.stop_gradient(scored["saliency"])}
        elif incremental is None:
            scored = self.saliency_layer(grid, top=self.top, training=training)
        else:
            scored = incremental.coarse_pass(grid)
        rows, cols = self.geometry.grid_shape
        _, flat = tf.math.top_k(tf.reshape(scored["saliency"], [-1, rows * cols]), self.num_patches)
        return scored, tf.stack([flat // cols, flat % cols], axis=-1)

    def _refine(self, images, grid, pre_activation, locations, training):
        # The fine pass on the chosen cells and the top network on the refined
        # grid (as a sparse update of `pre_activation`, the incremental pass's).
        fine_vectors = self.fine_vectors(images, locations, training=training)
        coarse_vectors = tf.gather_nd(grid, locations, batch_dims=1)
        # Unused in the incremental pass, so a traced graph prunes it.
        refined = self.cell_scatter(grid, locations, fine_vectors)
        if pre_activation is None:
            logits = self.top(refined, training=training)
        else:
            deltas = tf.cast(fine_vectors, grid.dtype) - coarse_vectors
            logits = self.incremental_top.refined_logits(pre_activation, locations, deltas)
        return {"logits": logits, "coarse_vectors": coarse_vectors, "fine_vectors": fine_vectors,
                "refined_grid": refined}

    def fine_vectors(self, images, locations, training=False):
        """The fine tower's vectors `[batch, k, D]` at `locations` `[batch, k, 2]`."""
        if self.tile_gather is not None:
            windows, pick = self.tile_gather(images, locations)
            out = self.fine(windows, training=training)
            return tf.gather(tf.reshape(out, [-1, out.shape[-1]]), pick)
        patches = self.patch_gather(images, locations)  # [B, k, ph, pw, C]
        batch = tf.shape(patches)[0]
        patches = tf.reshape(patches, [-1, *patches.shape[2:]])
        # One fine-tower call for all batch * k patches.
        k = locations.shape[1] if locations.shape[1] is not None else tf.shape(locations)[1]
        return tf.reshape(self.fine(patches, training=training), [batch, k, -1])

    def _refine_unsure(self, images):
        # Inference with `exit_threshold`: the coarse answer decides who exits
        # first, so an exited image costs the coarse model alone (no saliency,
        # no top-k); the others are scored, gathered and refined together
        # (one fine-tower call; none left: skipped). Exited images get a zero
        # saliency map and locations of -1: no cell was chosen for them.
        images = self._check_images(images)
        grid = self.coarse(images, training=False)
        coarse = self.top(grid, training=False)
        refine = coarse_confidence(probabilities(coarse)) < self.exit_threshold
        batch = tf.shape(images)[0]
        rows, cols = self.geometry.grid_shape
        saliency = tf.zeros([batch, rows, cols], tf.float32)
        locations = tf.fill([batch, self.num_patches, 2], -1)
        if images.shape[0] == 1:
            # A fixed single image (a LiteRT file, a batch-1 trace) is refined
            # whole: no gather or scatter, and static shapes, so the saliency's
            # gradient has no shape ops (LiteRT has no BroadcastGradientArgs).
            pick = lambda t: t  # noqa: E731
            put = lambda whole, part: tf.cast(part, whole.dtype)  # noqa: E731
            any_refined = refine[0]
        else:
            index = tf.where(refine)
            pick = lambda t: tf.gather_nd(t, index)  # noqa: E731
            put = lambda whole, part: tf.tensor_scatter_nd_update(  # noqa: E731
                whole, index, tf.cast(part, whole.dtype))
            any_refined = tf.size(index) > 0

        def refined():
            subset = pick(grid)
            scored, chosen = self._score(subset, training=False)
            logits = self._refine(pick(images), subset, scored.get("pre_activation"), chosen,
                                  training=False)["logits"]
            return (tf.nest.map_structure(put, coarse, logits), put(saliency, scored["saliency"]),
                    put(locations, chosen))

        logits, saliency, locations = tf.cond(any_refined, refined, lambda: (coarse, saliency, locations))
        return {"logits": logits, "coarse_logits": coarse, "saliency": saliency,
                "locations": locations, "refined": refine}

    def call(self, images, training=False):
        if self.exit_threshold is not None and not training:
            out = self._refine_unsure(images)
        else:
            out = self.forward(images, training=training)
        outputs = {
            "probabilities": probabilities(out["logits"]),
            "coarse_probabilities": probabilities(out["coarse_logits"]),
            "saliency": out["saliency"],
            "locations": out["locations"],
            "patch_boxes": self.geometry.boxes(out["locations"]),
        }
        if "refined" in out:
            outputs["refined"] = out["refined"]
            # An exited image has no patch: its boxes are -1 like its locations.
            outputs["patch_boxes"] = tf.where(out["refined"][:, None, None], outputs["patch_boxes"], -1)
        return outputs

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
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
        settings = {name: getattr(self, name) for name in SETTINGS}
        settings["dtype"] = self.dtype_policy
        unknown = sorted(set(changes) - set(settings))
        if unknown:
            raise ValueError(f"with_settings() cannot change {unknown}; it changes: {sorted(settings)}.")
        return DynamicCapacityNetwork(self.coarse, self.fine, self.top, **{**settings, **changes})

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
                      **{name: getattr(self, name) for name in SETTINGS})
        if self.class_names is not None:
            config["class_names"] = list(self.class_names)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("coarse", "fine", "top"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)
