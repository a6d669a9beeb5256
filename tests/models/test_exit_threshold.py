import numpy as np
import pytest
import tensorflow as tf

from dcn_keras.backend import keras
from dcn_keras.models.objective import coarse_confidence
from tests.helpers import preset_model
from tests.helpers import random_images
from tests.helpers import traced_op_types
from tests.helpers import traced_ops


def _confidences(model, images):
    return model.predict(images, verbose=0)["coarse_probabilities"].max(-1)


@pytest.mark.parametrize("settings", [{"top_pass": "incremental"}, {"top_pass": "full"},
                                      {"saliency": "cam"}], ids=["incremental", "full", "cam"])
def test_confident_images_keep_the_coarse_answer_and_the_others_are_refined_as_without(settings):
    model = preset_model(**settings)
    images = random_images(8, seed=4)
    confidence = _confidences(model, images)
    threshold = float(np.median(confidence))
    gated = model.with_settings(exit_threshold=threshold)
    out, plain = gated.predict(images, verbose=0), model.predict(images, verbose=0)
    refined = confidence < threshold
    assert 0 < refined.sum() < len(images)  # The threshold splits the batch.
    np.testing.assert_array_equal(out["refined"], refined)
    np.testing.assert_array_equal(out["probabilities"][~refined], out["coarse_probabilities"][~refined])
    np.testing.assert_allclose(out["probabilities"][refined], plain["probabilities"][refined], atol=1e-6)
    np.testing.assert_allclose(out["coarse_probabilities"], plain["coarse_probabilities"], atol=1e-6)
    # Refined images are scored and placed as without a threshold; exited ones get no cells.
    np.testing.assert_array_equal(out["locations"][refined], plain["locations"][refined])
    np.testing.assert_array_equal(out["patch_boxes"][refined], plain["patch_boxes"][refined])
    np.testing.assert_allclose(out["saliency"][refined], plain["saliency"][refined], rtol=1e-5, atol=1e-7)
    assert (out["locations"][~refined] == -1).all() and (out["patch_boxes"][~refined] == -1).all()
    assert (out["saliency"][~refined] == 0).all()


def test_a_batch_where_all_or_none_exit():
    model = preset_model()
    images = random_images(4, seed=5)
    plain = model.predict(images, verbose=0)
    everyone = model.with_settings(exit_threshold=1e-6).predict(images, verbose=0)
    assert not everyone["refined"].any()
    np.testing.assert_array_equal(everyone["probabilities"], everyone["coarse_probabilities"])
    assert (everyone["locations"] == -1).all() and (everyone["saliency"] == 0).all()
    nobody = model.with_settings(exit_threshold=1.0).predict(images, verbose=0)
    assert nobody["refined"].all()
    np.testing.assert_allclose(nobody["probabilities"], plain["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(nobody["locations"], plain["locations"])


def test_a_fixed_single_image_takes_the_same_branch_without_gathering():
    plain = preset_model()
    images = random_images(6, seed=10)
    gated = plain.with_settings(exit_threshold=float(np.median(_confidences(plain, images))))
    batched = gated.predict(images, verbose=0)
    one = tf.function(gated, input_signature=[tf.TensorSpec([1, 100, 100, 1], tf.float32)])
    single = traced_op_types(gated, tf.TensorSpec([1, 100, 100, 1]))
    assert "Where" not in single and "Where" in traced_op_types(gated, tf.TensorSpec([None, 100, 100, 1]))
    for n in range(len(images)):
        out = one(images[n:n + 1])
        assert bool(out["refined"][0]) == batched["refined"][n]
        np.testing.assert_allclose(out["probabilities"][0], batched["probabilities"][n], atol=1e-6)
        np.testing.assert_array_equal(out["locations"][0], batched["locations"][n])
        np.testing.assert_array_equal(out["patch_boxes"][0], batched["patch_boxes"][n])


def test_the_fine_tower_runs_only_in_the_branch_for_unsure_images():
    plain = preset_model()
    gated = plain.with_settings(exit_threshold=0.5)
    image = tf.zeros([1, 100, 100, 1])
    gated_ops = [op.type for op in traced_ops(lambda x: gated(x)["probabilities"], image)]
    plain_ops = [op.type for op in traced_ops(lambda x: plain(x)["probabilities"], image)]
    assert {"If", "StatelessIf"} & set(gated_ops)
    # Outside the branch are the coarse model's convolutions alone: the fine
    # tower's run inside it, and so do the saliency and the top-k.
    coarse_ops = [op.type for op in traced_ops(lambda x: gated.top(gated.coarse(x)), image)]
    assert gated_ops.count("Conv2D") == coarse_ops.count("Conv2D") < plain_ops.count("Conv2D") - 5
    assert "TopKV2" in plain_ops and "TopKV2" not in gated_ops
    assert not [op for op in gated_ops if op.endswith("Grad") or "Backprop" in op]


def test_exit_threshold_round_trips_exports_and_is_checked(tmp_path):
    from dcn_keras.serving import export_model

    model = preset_model(exit_threshold=0.9)
    assert model.get_config()["exit_threshold"] == 0.9
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    assert loaded.exit_threshold == 0.9
    images = random_images(3, seed=6)
    served = tf.saved_model.load(export_model(model, str(tmp_path / "sm" / "1"), xla=False))
    out = served.signatures["serving_default"](images=tf.constant(images))
    expected = model.predict(images, verbose=0)
    np.testing.assert_array_equal(out["refined"].numpy(), expected["refined"])
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-6)
    assert "refined" not in preset_model()(images)
    for bad in (0, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=f"exit_threshold={bad!r} must be None \\(off\\) or a number in"):
            preset_model(exit_threshold=bad)


def test_training_ignores_the_threshold():
    model = preset_model(exit_threshold=0.5)
    model.compile(optimizer="adam")
    images, labels = random_images(4, seed=7), np.arange(4) % 10
    logs = model.fit(images, labels, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["hint_loss"][0] > 0


def test_coarse_confidence_is_the_product_of_the_heads_top_probabilities():
    one = tf.constant([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(coarse_confidence(one), [0.8, 0.6])
    heads = {"length": tf.constant([[0.1, 0.9]]), "digit_1": tf.constant([[0.5, 0.25, 0.25]])}
    np.testing.assert_allclose(coarse_confidence(heads), [0.45])
