import numpy as np
import tensorflow as tf

from dcn_keras.layers import CellScatter
from tests.layer_test import run_layer_test


def test_writes_vectors_at_cells_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    grid = rng.random((2, 5, 6, 3), dtype=np.float32)
    locations = np.array([[[0, 0], [4, 5], [2, 3]], [[1, 1], [0, 5], [4, 0]]], np.int32)
    vectors = rng.random((2, 3, 3), dtype=np.float32)
    got = np.asarray(CellScatter()(grid, locations, vectors))
    expected = grid.copy()
    for b in range(2):
        for (r, c), v in zip(locations[b], vectors[b]):
            expected[b, r, c] = v
    np.testing.assert_array_equal(got, expected)


def test_gradients_go_to_the_tower_that_produced_each_cell():
    grid = tf.Variable(tf.ones((1, 3, 3, 2)))
    vectors = tf.Variable(tf.ones((1, 2, 2)))
    locations = tf.constant([[[0, 1], [2, 2]]])
    with tf.GradientTape() as tape:
        out = CellScatter()(grid, locations, vectors)
        total = tf.reduce_sum(out)
    d_grid, d_vectors = tape.gradient(total, [grid, vectors])
    mask = np.ones((1, 3, 3, 2), np.float32)
    mask[0, 0, 1] = 0
    mask[0, 2, 2] = 0
    np.testing.assert_array_equal(d_grid.numpy(), mask)
    np.testing.assert_array_equal(d_vectors.numpy(), np.ones((1, 2, 2)))


def test_the_layer_contract_holds(tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.random((2, 4, 5, 3), dtype=np.float32)
    locations = np.array([[[0, 0], [3, 4]], [[1, 2], [2, 1]]], np.int32)
    vectors = rng.random((2, 2, 3), dtype=np.float32)
    out = run_layer_test(CellScatter, {}, [grid, locations, vectors], (2, 4, 5, 3), tmp_path=tmp_path)
    np.testing.assert_allclose(np.asarray(out)[1, 2, 1], vectors[1, 1])
