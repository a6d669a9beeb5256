import os

import pytest

from dcn_keras.datasets.image_headers import image_header
from dcn_keras.studies.photo_folder import make_photo_folder


def test_a_photo_folder_holds_two_balanced_classes_of_jpegs_at_the_size_asked(tmp_path):
    root = make_photo_folder(str(tmp_path / "photos"), count=7, size=64)
    names = {c: sorted(os.listdir(os.path.join(root, c))) for c in ("bar", "disc")}
    assert [len(names["bar"]), len(names["disc"])] == [4, 3]
    assert all(image_header(os.path.join(root, c, f)) == (64, 64, 3) for c in names for f in names[c])
    with pytest.raises(ValueError, match="count=1 and size=64"):
        make_photo_folder(str(tmp_path / "none"), count=1, size=64)
