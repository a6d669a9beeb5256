import io

import numpy as np
import pytest
from PIL import Image

from dcn_keras.backend import tf
from dcn_keras.datasets.image_headers import image_header


def _save(path, mode, size=(37, 53), fmt=None, **options):
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((size[0], size[1], 3)) * 255).astype(np.uint8)).convert(mode)
    image.save(path, format=fmt, **options)
    return str(path)


@pytest.mark.parametrize("name, mode, options", [
    ("gray.png", "L", {}),
    ("rgb.png", "RGB", {}),
    ("rgba.png", "RGBA", {}),
    ("gray_alpha.png", "LA", {}),
    ("palette.png", "P", {}),
    ("rgb.jpg", "RGB", {}),
    ("gray.jpg", "L", {}),
    ("progressive.jpg", "RGB", {"progressive": True}),
    ("exif.jpg", "RGB", {"exif": b"Exif\x00\x00" + b"\x00" * 3000}),
    ("rgb.gif", "RGB", {}),
    ("rgb.bmp", "RGB", {}),
    ("gray.bmp", "L", {}),
])
def test_the_header_gives_the_size_and_channels_decoding_gives(tmp_path, name, mode, options):
    path = _save(tmp_path / name, mode, **options)
    decoded = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).shape
    height, width, channels = image_header(path)
    assert (height, width) == tuple(decoded[:2]) == (37, 53)
    # The channel count's kind (gray or colour) is what the folder's default takes.
    assert (channels >= 3) == (decoded[2] >= 3), (channels, decoded)


def test_a_header_cut_short_or_no_image_is_none(tmp_path):
    whole = open(_save(tmp_path / "a.jpg", "RGB", size=(64, 64)), "rb").read()
    for name, data in [("cut.jpg", whole[:20]), ("cut.png", b"\x89PNG\r\n\x1a\n not really"),
                       ("text.png", b"hello"), ("empty.gif", b"GIF89a"), ("zero.png", b"")]:
        (tmp_path / name).write_bytes(data)
        assert image_header(str(tmp_path / name)) is None, name
    assert image_header(str(tmp_path / "missing.png")) is None


def test_a_sound_header_is_read_without_the_body(tmp_path):
    # The body is cut after the frame header: the size is still known (decoding would fail later).
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    start_of_scan = data.index(b"\xff\xda")
    (tmp_path / "body_cut.jpg").write_bytes(data[:start_of_scan + 10])
    assert image_header(str(tmp_path / "body_cut.jpg")) == (300, 200, 3)
