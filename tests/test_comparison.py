import json

import pytest

from dcn_keras import comparison
from dcn_keras.training import TrainConfig


def test_comparison_trains_each_run_on_the_same_data_and_writes_the_table(tmp_path):
    base = TrainConfig(digits="embedded", examples_per_digit=1, epochs=1, steps_per_epoch=2,
                       batch_size=8, verbose=0)
    picture = str(tmp_path / "saliency.png")
    rows = comparison.run_comparison(base, str(tmp_path), runs=("coarse", "dcn"), picture=picture,
                                     log=lambda *_: None)
    assert set(rows) == {"coarse", "dcn"}
    assert rows["dcn"]["macs_per_image"] == 22_980_396 and rows["dcn"]["num_patches"] == 8
    assert rows["coarse"]["macs_per_image"] < rows["dcn"]["macs_per_image"]
    assert "coarse_test_error" in rows["dcn"] and "coarse_test_error" not in rows["coarse"]
    for row in rows.values():
        assert row["images_per_s_b64"] > 0 and row["fit_seconds"] >= 0
    saved = json.load(open(tmp_path / "comparison.json"))
    assert saved["config"]["epochs"] == 1 and set(saved["rows"]) == {"coarse", "dcn"}
    table = comparison.format_markdown(rows).splitlines()
    assert table[0].startswith("| model |") and len(table) == 4
    assert open(picture, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_unknown_run_is_named():
    with pytest.raises(ValueError, match="Unknown runs \\['resnet'\\]"):
        comparison.run_comparison(TrainConfig(), "/tmp/unused", runs=("resnet",))
