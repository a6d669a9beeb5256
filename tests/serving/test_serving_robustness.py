"""Bad requests to the SavedModel's signatures, alone and among good ones from many threads."""

import concurrent.futures
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcn_keras.serving import export_model
from tests.helpers import preset_model
from tests.helpers import random_images


def _encoded(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def _rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.fixture(scope="module")
def signatures(tmp_path_factory):
    path = export_model(preset_model(num_patches=4), str(tmp_path_factory.mktemp("robust") / "dcn" / "1"), xla=False)
    return tf.saved_model.load(path).signatures


GOOD_PNG = _encoded((random_images(1, seed=3)[0, ..., 0] * 255).astype(np.uint8))
# Each bad request, and the words its error must hold.
BAD_BYTES = [
    ([b"\x00\x01garbage"], "Unknown image file format"),
    ([GOOD_PNG[: len(GOOD_PNG) // 2]], "Invalid PNG data"),  # truncated
    ([b""], "Input is empty"),
    ([], "at least one image; got an empty batch"),
]
BAD_ARRAYS = [
    (np.zeros((1, 64, 64, 1), np.float32), "Expected float32 images of shape [batch, 100, 100, 1]"),
    (np.zeros((1, 100, 100, 3), np.float32), "[100 100 3]"),
    (np.zeros((100, 100), np.float32), "of shape [batch, 100, 100, 1] in [0, 1]; got [batch, height, width, channels] with these sizes"),
    (np.zeros((0, 100, 100, 1), np.float32), "at least one image; got an empty batch"),
    (np.full((1, 100, 100, 1), 255.0, np.float32), "pixel values (min, max, any NaN)"),
    (np.full((1, 100, 100, 1), np.nan, np.float32), "pixel values (min, max, any NaN)"),
]


def _error(call):
    try:
        call()
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
        return str(error)
    return None


@pytest.mark.parametrize("inputs, words", BAD_BYTES)
def test_bad_bytes_get_an_error_naming_the_problem(signatures, inputs, words):
    message = _error(lambda: signatures["serving_bytes"](image_bytes=tf.constant(inputs, tf.string)))
    assert message is not None and words in message, message


@pytest.mark.parametrize("images, words", BAD_ARRAYS)
def test_bad_arrays_get_an_error_naming_the_problem(signatures, images, words):
    message = _error(lambda: signatures["serving_default"](images=tf.constant(images)))
    assert message is not None and words in message, message


def test_wrongly_typed_inputs_are_refused_by_the_signature(signatures):
    assert "string" in _error(lambda: signatures["serving_bytes"](image_bytes=tf.zeros((1,))))
    assert "expected to be a float tensor but is a int32 tensor" in _error(lambda: signatures["serving_default"](images=tf.zeros((1, 100, 100, 1), tf.int32)))


@pytest.mark.slow
def test_a_huge_image_is_resized_and_answered_like_its_small_self(signatures):
    small = (random_images(1, seed=5)[0, ..., 0] * 255).astype(np.uint8)
    huge = np.kron(small, np.ones((40, 40), np.uint8))  # 4000x4000, the same picture
    out = signatures["serving_bytes"](image_bytes=tf.constant([_encoded(huge)]))
    assert out["probabilities"].shape == (1, 10) and np.isfinite(out["probabilities"].numpy()).all()


@pytest.mark.slow
def test_concurrent_good_and_bad_requests_keep_the_good_answers_and_memory_bounded(signatures):
    good = [random_images(2, seed=s) for s in range(4)]
    alone = [signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy() for x in good]
    png_alone = signatures["serving_bytes"](image_bytes=tf.constant([GOOD_PNG]))["probabilities"].numpy()

    def request(n):
        kind = n % 4
        if kind == 0:
            return "good", n, signatures["serving_default"](images=tf.constant(good[n % 16 // 4]))["probabilities"].numpy()
        if kind == 1:
            return "png", n, signatures["serving_bytes"](image_bytes=tf.constant([GOOD_PNG]))["probabilities"].numpy()
        if kind == 2:
            inputs, words = BAD_BYTES[n % len(BAD_BYTES)]
            return "bad", words, _error(lambda: signatures["serving_bytes"](image_bytes=tf.constant(inputs, tf.string)))
        images, words = BAD_ARRAYS[n % len(BAD_ARRAYS)]
        return "bad", words, _error(lambda: signatures["serving_default"](images=tf.constant(images)))

    def wave():
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(request, range(160)))

    wave()  # Warm: memory the runtime keeps after its first requests is not a leak.
    before = _rss_mb()
    for _ in range(2):
        results = wave()
    grown = _rss_mb() - before
    for kind, key, value in results:
        if kind == "good":
            np.testing.assert_allclose(value, alone[key % 16 // 4], atol=1e-6)
        elif kind == "png":
            np.testing.assert_allclose(value, png_alone, atol=1e-6)
        else:
            assert value is not None and key in value, (key, value)
    assert grown < 200, f"resident memory grew {grown:.0f} MB over 320 requests"
