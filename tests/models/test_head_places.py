import numpy as np
import pytest

from dcn_keras.backend import tf
from dcn_keras.models import DynamicCapacityNetwork
from dcn_keras.models.head_places import HeadPlaces

# svhn_reader on 384 pixels: a 94x94 grid of 4-pixel steps, read by 23x23 readings.
GRID = (94, 94, 48)


@pytest.fixture(scope="module")
def reader():
    return DynamicCapacityNetwork.from_preset("svhn_reader", place_weight=1.0)


def _boxes(*digits):
    # `[1, 5, 4]`, one `[top, left, height, width]` per digit given, zeros past them.
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, :len(digits)] = digits
    return boxes


def test_each_reading_is_placed_at_the_centre_of_its_window(reader):
    places = reader.head_places
    # By hand: a reading column q is top_rows column q + 1/2 (1x8 'same'),
    # top_conv column 2q + 3/2 (stride 2), grid cell 4q + 4 (3x3/2 valid),
    # whose 14-pixel patch starts at 4 * cell - 3: centre 16q + 20.
    q = np.arange(4, 18)  # Windows inside the image (the edge ones are cut by the padding).
    np.testing.assert_allclose(places.column_centres[q], 16 * q + 20, atol=1e-3)
    np.testing.assert_allclose(places.row_centres[q], 16 * q + 12, atol=1e-3)  # 4x2/2 'same' rows: q + 0.
    assert places.column_centres.shape == places.row_centres.shape == (23,)


def test_the_loss_is_minus_log_the_weight_on_the_digit_summed_over_the_digits_it_has(reader):
    places = reader.head_places
    grid = tf.random.uniform((1, *GRID), seed=1)
    # A 10x10 digit centred on reading (6, 4) (row 108, column 84): its own
    # column only (others are 16 px off), and the rows a step either side.
    boxes = _boxes((103, 79, 10, 10))
    weights = places.weights(grid)[0][0].numpy()
    expected = -np.log(weights[5:8, 4].sum() + 1e-6)
    np.testing.assert_allclose(places.loss(boxes, grid).numpy(), [expected], rtol=1e-5)
    # A second digit adds its own head's term.
    two = _boxes((103, 79, 10, 10), (103, 95, 10, 10))
    second = places.weights(grid)[1][0].numpy()
    first = expected
    expected += -np.log(second[5:8, 5].sum() + 1e-6)
    np.testing.assert_allclose(places.loss(two, grid).numpy(), [expected], rtol=1e-5)
    np.testing.assert_allclose(places.head_losses(two, grid).numpy(), [[first, expected - first, 0, 0, 0]],
                               rtol=1e-5)


def test_only_the_heads_of_the_digits_a_number_has_are_trained(reader):
    grid = tf.random.uniform((1, *GRID), seed=2)
    pools = reader.head_places.pools
    with tf.GradientTape() as tape:
        loss = reader.head_places.loss(_boxes((103, 79, 10, 10), (103, 95, 12, 12)), grid)
    grads = tape.gradient(loss, [p.score_kernel for p in pools])
    assert [float(tf.reduce_max(tf.abs(g))) > 0 for g in grads] == [True, True, False, False, False]


def test_steps_on_the_place_loss_move_a_head_onto_its_digit(reader):
    grid = tf.random.uniform((4, *GRID), seed=3)
    boxes = np.repeat(_boxes((103, 79, 10, 10), (103, 150, 20, 18)), 4, axis=0)
    pools = reader.head_places.pools[:2]
    before = reader.head_places.loss(boxes, grid).numpy().mean()
    try:
        for _ in range(30):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(reader.head_places.loss(boxes, grid))
            for pool, g in zip(pools, tape.gradient(loss, [p.score_kernel for p in pools])):
                pool.score_kernel.assign_sub(50.0 * g)
        after = reader.head_places.loss(boxes, grid).numpy().mean()
    finally:
        for pool in pools:
            pool.score_kernel.assign(tf.zeros_like(pool.score_kernel))
    assert after < 0.8 * before


def test_the_place_loss_joins_the_objective_with_its_weight(reader):
    images = np.random.default_rng(0).random((2, 384, 384, 3), dtype=np.float32)
    labels = {"length": np.array([2, 1]), **{f"digit_{i}": np.full(2, 10) for i in range(1, 6)}}
    labels["digit_1"], labels["digit_2"] = np.array([3, 7]), np.array([4, 10])
    boxes = np.concatenate([_boxes((103, 79, 10, 10), (103, 95, 12, 12)), _boxes((200, 40, 20, 16))])
    out = reader.forward(images)
    terms = reader.compute_losses(dict(labels, boxes=boxes), out)
    np.testing.assert_allclose(terms["place_loss"], np.mean(reader.head_places.loss(boxes, out.refined_grid)),
                               rtol=1e-5)
    plain = terms["refined_loss"] + terms["coarse_loss"] + terms["hint_loss"]
    np.testing.assert_allclose(terms["loss"], plain + terms["place_loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"place_weight=1.0 needs each digit's box in the labels: a dict "
                                         r"entry 'boxes'"):
        reader.compute_losses(labels, out)


def test_fit_logs_the_place_loss_and_a_saved_model_keeps_its_weight(tmp_path):
    model = DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(128, 128, 3), num_patches=8,
                                               place_weight=0.5)
    model.compile(optimizer="adam")
    labels = {"length": np.array([1, 1]), "digit_1": np.array([3, 7]),
              **{f"digit_{i}": np.full(2, 10) for i in range(2, 6)},
              "boxes": np.concatenate([_boxes((50, 50, 20, 16)), _boxes((60, 30, 18, 14))])}
    history = model.fit(np.zeros((2, 128, 128, 3), np.float32), labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["place_loss"][0]) and history.history["place_loss"][0] > 0
    path = str(tmp_path / "placed.keras")
    model.save(path)
    from dcn_keras.models import load_model
    assert load_model(path).place_weight == 0.5
    assert "place_loss" not in [m.name for m in DynamicCapacityNetwork.from_preset("svhn_reader").metrics]


@pytest.mark.parametrize("preset, message", [
    ("svhn_reader_one_pool", "has none for digit_1"),
    ("cluttered_mnist", "has no digit heads"),
])
def test_a_top_without_an_attention_pool_per_digit_head_is_named(preset, message):
    with pytest.raises(ValueError, match=f"place_weight needs a top whose digit heads each pool.*{message}"):
        DynamicCapacityNetwork.from_preset(preset, place_weight=0.1)


@pytest.mark.parametrize("weight", [-0.1, True, "1"])
def test_a_bad_place_weight_is_named(weight):
    with pytest.raises(ValueError, match=f"`place_weight` must be a number >= 0; got {weight!r}"):
        DynamicCapacityNetwork.from_preset("svhn_reader", place_weight=weight)


def test_boxes_of_the_wrong_shape_are_named(reader):
    with pytest.raises(ValueError, match=r"boxes must have shape \[batch, 5, 4\].*got \(1, 3, 4\)"):
        reader.head_places.loss(np.zeros((1, 3, 4), np.float32), tf.zeros((1, *GRID)))
    assert isinstance(reader.head_places, HeadPlaces)
