import json

import numpy as np
import pytest

from dcn_keras.studies import comparison
from dcn_keras import presets
from dcn_keras.datasets import cluttered_mnist
from dcn_keras import evaluation
from dcn_keras.training import TrainConfig


def test_comparison_trains_each_run_on_the_same_data_and_writes_the_table(tmp_path, monkeypatch):
    base = TrainConfig(digits="embedded", examples_per_digit=1, epochs=1, steps_per_epoch=2,
                       batch_size=8, eval_batch_size=64, verbose=0)
    picture = str(tmp_path / "saliency.png")
    rows = comparison.run_comparison(base, str(tmp_path), runs=("coarse", "dcn"), picture=picture,
                                     log=lambda *_: None)
    assert set(rows) == {"coarse", "dcn"}
    # The incremental top pass (the default): see tests/test_macs.py.
    assert rows["dcn"]["macs_per_image"] == 19_367_724 and rows["dcn"]["num_patches"] == 8
    assert rows["coarse"]["macs_per_image"] < rows["dcn"]["macs_per_image"]
    assert "coarse_test_error" in rows["dcn"] and "coarse_test_error" not in rows["coarse"]
    for row in rows.values():
        assert row["images_per_s_b64"] > 0 and row["fit_seconds"] >= 0
    saved = json.load(open(tmp_path / "comparison.json"))
    assert saved["config"]["epochs"] == 1 and set(saved["rows"]) == {"coarse", "dcn"}
    assert 0.0 <= rows["dcn"]["patches_on_digit"] <= 1.0 and "ink_covered" not in rows["coarse"]
    table = comparison.format_markdown(rows).splitlines()
    assert table[0].startswith("| model |") and len(table) == 4
    assert table[0].count("|") == table[3].count("|") == 11
    assert open(picture, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # Run again: the finished coarse run is read back, not retrained ...
    logged = []
    again = comparison.run_comparison(base, str(tmp_path), runs=("coarse",), log=logged.append)
    assert any("reusing" in line for line in logged) and not any("training" in line for line in logged)
    assert again["coarse"]["test_error"] == rows["coarse"]["test_error"]
    assert again["coarse"]["fit_seconds"] == rows["coarse"]["fit_seconds"]
    # ... also when written before a config field existed (it takes its default) ...
    path = tmp_path / "coarse" / "config.json"
    settings = json.loads(path.read_text())
    del settings["config"]["dtype_policy"]
    path.write_text(json.dumps(settings))
    logged.clear()
    comparison.run_comparison(base, str(tmp_path), runs=("coarse",), log=logged.append)
    assert any("reusing" in line for line in logged) and not any("training" in line for line in logged)
    # ... unless its config changed.
    logged.clear()
    comparison.run_comparison(TrainConfig(**{**base.to_dict(), "steps_per_epoch": 1}),
                              str(tmp_path), runs=("coarse",), log=logged.append)
    assert any("training coarse" in line for line in logged)
    # ... or the preset's defaults that the config left open.
    preset = presets.PRESETS["cluttered_mnist"]
    monkeypatch.setitem(presets.PRESETS, "cluttered_mnist", lambda: dict(preset(), hint_weight=5.0))
    logged.clear()
    comparison.run_comparison(base, str(tmp_path), runs=("dcn",), log=logged.append)
    assert any("training dcn" in line for line in logged)


class _FixedPatches:
    """Stands in for a DCN: fixed boxes and probabilities per test canvas."""

    def __init__(self, boxes, probabilities):
        self.out = {"patch_boxes": boxes, "probabilities": probabilities}

    def predict(self, images, batch_size=None, verbose=None):
        assert len(images) == len(self.out["patch_boxes"])
        return self.out


def test_selection_quality_measures_patches_against_the_digits_ink():
    config = TrainConfig(digits="embedded", seed=0)
    _, labels, corners, index, digits, _ = cluttered_mnist.split_canvases("test", "embedded")
    y, x = corners[:, 0], corners[:, 1]
    # Patch 1: the digit's top half (28x14 box); patch 2: an empty box.
    boxes = np.stack([np.stack([y, x, y + 14, x + 28], -1), np.zeros((len(y), 4), int)], 1)
    right = np.arange(len(y)) % 2 == 0
    probabilities = np.eye(10)[np.where(right, labels, (labels + 1) % 10)]
    quality = comparison.selection_quality(_FixedPatches(boxes, probabilities), config)
    ink = digits[index] > 0
    top_half = ink[:, :14].sum((1, 2)) / ink.sum((1, 2))
    assert quality["patches_on_digit"] == pytest.approx(0.5 * np.mean(ink[:, :14].any((1, 2))))
    assert quality["ink_covered"] == pytest.approx(top_half.mean())
    assert quality["ink_covered_right"] == pytest.approx(top_half[right].mean())
    assert quality["ink_covered_wrong"] == pytest.approx(top_half[~right].mean())
    assert 0.3 < quality["ink_covered"] < 0.7


def test_unknown_run_is_named():
    with pytest.raises(ValueError, match="Unknown runs \\['resnet'\\]"):
        comparison.run_comparison(TrainConfig(), "/tmp/unused", runs=("resnet",))


def test_paired_test_scores_every_run_on_the_same_larger_test_set(tmp_path, monkeypatch):
    base = TrainConfig(digits="embedded", examples_per_digit=1, epochs=1, steps_per_epoch=2,
                       batch_size=8, eval_batch_size=64, verbose=0)
    scored = []  # (dataset, right) of each run, as `evaluation.outcomes` gave them.

    def outcomes(model, data):
        right, keys = evaluation.outcomes(model, data)
        scored.append((data, right))
        return right, keys
    monkeypatch.setattr(comparison, "outcomes", outcomes)
    rows = comparison.run_comparison(base, str(tmp_path), runs=("fine", "dcn"),
                                     test_examples_per_digit=2, log=lambda *_: None)
    # One test set, made once (2 canvases per embedded test digit), scored by both runs.
    (data, right_fine), (same, right_dcn) = scored
    assert same is data and data.cardinality() == 2000
    expected = dict(evaluation.paired_counts(right_fine, right_dcn),
                    error_a=1 - right_fine.mean(), error_b=1 - right_dcn.mean())
    fine, dcn = rows["fine"]["paired_test"], rows["dcn"]["paired_test"]
    assert fine == dict(canvases_per_digit=2, examples=2000, error=pytest.approx(expected["error_a"]))
    assert dcn["examples"] == 2000 and dcn["error"] == pytest.approx(expected["error_b"])
    assert (dcn["only_fine_right"], dcn["only_this_right"]) == (
        expected["only_a_right"], expected["only_b_right"])
    assert dcn["p_value"] == pytest.approx(expected["p_value"])
    saved = json.load(open(tmp_path / "comparison.json"))
    assert saved["rows"]["dcn"]["paired_test"]["only_fine_right"] == dcn["only_fine_right"]
    table = comparison.format_markdown(rows).splitlines()
    assert "test error % (2 per digit, 2,000 images)" in table[0]
    assert table[0].count("|") == table[2].count("|") == table[3].count("|") == 13
    assert table[2].endswith(f"| {100 * fine['error']:.2f} | - |")
    p = "<0.001" if dcn["p_value"] < 0.001 else f"{dcn['p_value']:.3f}"
    assert table[3].endswith(f"| {dcn['only_fine_right']} / {dcn['only_this_right']} ({p}) |")
    rows["dcn"]["paired_test"]["p_value"] = 0.0004
    assert comparison.format_markdown(rows).splitlines()[3].endswith("(<0.001) |")


@pytest.mark.parametrize("bad,dataset,message", [
    (0, "cluttered_mnist", "test_examples_per_digit=0 must be an integer >= 1"),
    (2, "svhn", "test_examples_per_digit=2 applies to cluttered_mnist and mnist_numbers only, not 'svhn'"),
])
def test_bad_test_examples_per_digit_fails_before_any_training(tmp_path, bad, dataset, message):
    with pytest.raises(ValueError, match=message):
        comparison.run_comparison(TrainConfig(dataset=dataset), str(tmp_path),
                                  test_examples_per_digit=bad)
    assert not any(tmp_path.iterdir())


def test_number_rows_get_a_column_of_whole_number_error_by_length():
    rows = {name: dict(test_error=error, macs_per_image=1e6, images_per_s_b64=100.0, fit_seconds=1.0,
                       num_patches=None, hint_weight=None,
                       paired_test=dict(canvases_per_digit=None, examples=5000, error=error),
                       error_by_length={1: 0.01, 2: 0.02, 3: error})
            for name, error in (("fine", 0.25), ("dcn", 0.5))}
    rows["dcn"]["paired_test"].update(only_fine_right=30, only_this_right=20, p_value=0.2)
    table = comparison.format_markdown(rows).splitlines()
    assert "test error % (5,000 images)" in table[0]
    assert table[0].endswith("| whole-number error % by length 1 / 2 / 3 / 4 / 5 |")
    assert table[2].endswith("| 25.00 | - | 1.0 / 2.0 / 25.0 |")
    assert table[3].endswith("| 50.00 | 30 / 20 (0.200) | 1.0 / 2.0 / 50.0 |")
