import os

import pytest

from dcn_keras.io_utils import atomic_path


def test_atomic_path_renames_on_success_and_keeps_the_extension(tmp_path):
    target = tmp_path / "picture.png"
    with atomic_path(str(target)) as tmp:
        assert tmp.endswith(".png") and tmp != str(target)
        open(tmp, "w").write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["picture.png"]
    with atomic_path(str(tmp_path / "model.weights.h5")) as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").write("weights")
    assert sorted(os.listdir(tmp_path)) == ["model.weights.h5", "picture.png"]


def test_atomic_path_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]
