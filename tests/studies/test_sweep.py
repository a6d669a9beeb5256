import json

import numpy as np
import pytest

from dcn_keras.studies import sweep
from dcn_keras.studies.macs import model_macs
from dcn_keras.models.objective import coarse_confidence
from tests.helpers import preset_model
from tests.helpers import random_images


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    dcn = preset_model(num_patches=4)
    paths = {"dcn": str(directory / "dcn.keras"), "fine": str(directory / "fine.keras"),
             "coarse": str(directory / "coarse.keras")}
    dcn.save(paths["dcn"])
    dcn.fine_only_model().save(paths["fine"])
    dcn.coarse_only_model().save(paths["coarse"])
    images = random_images(72, seed=3)
    labels = np.random.default_rng(3).integers(0, 10, 72)
    return dcn, paths, images, labels


def test_every_point_is_the_served_model_at_that_setting_scored_against_the_fine_model(saved):
    dcn, paths, images, labels = saved
    confidence = coarse_confidence(dcn(images)["coarse_probabilities"]).numpy()
    split = float(np.median(confidence))  # Refines about half the images.
    results = sweep.sweep([paths["dcn"]], paths["fine"], images, labels, paths["coarse"], ks=(2, 4),
                          thresholds=(None, split), timing_batches=1, timing_images=2, repeats=1,
                          log=lambda *_: None)
    assert len(results["points"]) == 2 * 2 * 2 and set(results["references"]) == {"fine", "coarse"}
    fine_right = np.argmax(dcn.fine_only_model()(images), -1) == labels
    assert results["references"]["fine"]["error"] == pytest.approx(1 - fine_right.mean())
    for p in results["points"]:
        model = dcn.with_settings(num_patches=p["k"], saliency=p["saliency"], exit_threshold=p["exit_threshold"])
        out = model(images)
        right = np.argmax(out["probabilities"], -1) == labels
        assert p["error"] == pytest.approx(1 - right.mean())
        share = out["refined"].numpy().mean() if p["exit_threshold"] else 1.0
        assert p["refined_share"] == pytest.approx(share) and (p["exit_threshold"] is None or 0 < share < 1)
        assert (p["only_fine_right"], p["only_this_right"]) == (
            int(np.sum(fine_right & ~right)), int(np.sum(~fine_right & right)))
        assert p["ms_per_image_b64"] > 0 and p["latency_ms_b1"] > 0
        macs = model_macs(model.with_settings(exit_threshold=None))
        if p["exit_threshold"] is None:
            assert p["macs_per_image"] == pytest.approx(macs["dcn"])
        else:  # An exited image costs the coarse model alone, a refined one the whole DCN.
            assert p["macs_per_image"] == pytest.approx(macs["coarse"] + share * (macs["dcn"] - macs["coarse"]))

    table = sweep.format_markdown(results).splitlines()
    assert len(table) == 2 + 2 + 8 and table[2].startswith("| fine |")
    assert all(line.count("|") == table[0].count("|") for line in table)
    path = sweep.save_plot(results, str(saved[1]["dcn"]).replace("dcn.keras", "sweep.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"
    json.dumps(results)  # What --json writes.
    best = sweep.best_points(results)
    fine = results["references"]["fine"]["error"]
    assert all(p["error"] <= fine + 0.001 and p["p_value"] > 0.05 for p in best)
    assert [p["ms_per_image_b64"] for p in best] == sorted(p["ms_per_image_b64"] for p in best)


def test_litert_times_every_model_and_point_at_batch_1(saved):
    dcn, paths, images, labels = saved
    split = float(np.median(coarse_confidence(dcn(images)["coarse_probabilities"]).numpy()))
    results = sweep.sweep([paths["dcn"]], paths["fine"], images, labels, ks=(2,), thresholds=(None, split),
                          saliencies=("entropy_gradient",), timing_batches=1, timing_images=2, repeats=1,
                          litert=True, log=lambda *_: None)
    rows = [results["references"]["fine"], *results["points"]]
    assert len(rows) == 3 and all(r["latency_ms_b1_litert"] > 0 for r in rows)
    table = sweep.format_markdown(results).splitlines()
    assert "ms (b1, LiteRT) | x fine's best (b1)" in table[0]
    assert all(line.count("|") == table[0].count("|") == 15 for line in table)


@pytest.mark.parametrize("kwargs, message", [
    (dict(thresholds=(1.5,)), "exit threshold 1.5 must be None"),
    (dict(saliencies=("attention",)), "saliency 'attention' is not one of"),
    (dict(ks=(0,)), r"ks=\[0\] must be integers >= 1"),
])
def test_bad_grids_are_named(saved, kwargs, message):
    _, paths, images, labels = saved
    with pytest.raises(ValueError, match=message):
        sweep.sweep([paths["dcn"]], paths["fine"], images, labels, **kwargs)


def test_a_dcn_given_as_the_fine_model_is_named(saved):
    _, paths, images, labels = saved
    with pytest.raises(ValueError, match="is a DCN; expected a baseline"):
        sweep.sweep([paths["dcn"]], paths["dcn"], images, labels, repeats=1, log=lambda *_: None)


def test_the_table_and_plot_name_each_dcn_by_its_run_when_there_are_several():
    row = dict(error=0.1, macs_per_image=1e6, ms_per_image_b64=1.0, images_per_s_b64=1000.0, latency_ms_b1=2.0)
    point = dict(row, trained_saliency="cam", saliency="cam", k=4, exit_threshold=None, refined_share=1.0,
                 only_fine_right=1, only_this_right=2, p_value=1.0)
    one = {"references": {"fine": row}, "points": [dict(point, model="runs/a/model.keras")] * 2}
    two = {"references": {"fine": row}, "points": [dict(point, model=f"runs/{r}/model.keras") for r in "ab"]}
    assert "| DCN (cam-trained) | cam | 4 | never | 10.00 |" in sweep.format_markdown(one)
    lines = sweep.format_markdown(two).splitlines()
    assert lines[3].startswith("| DCN a (cam-trained) |") and lines[4].startswith("| DCN b (cam-trained) |")
    # The plot draws one line per DCN, not one through both DCNs' points.
    assert list(sweep.curves(one)) == ["DCN k=4, cam (trained: cam)"]
    assert {label: len(pts) for label, pts in sweep.curves(two).items()} == {
        "DCN a k=4, cam (trained: cam)": 1, "DCN b k=4, cam (trained: cam)": 1}


def test_single_image_requests_keep_the_test_sets_share_of_refined_images():
    images = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
    refine = np.zeros(40, bool)
    refine[30:] = True  # A quarter, all at the end: the first images alone would have none.
    requests = sweep._requests(images, refine, 8)
    picked = [int(r[0, 0, 0, 0]) for r in requests]
    assert len(picked) == 8 and sum(refine[picked]) == 2
    assert sum(refine[[int(r[0, 0, 0, 0]) for r in sweep._requests(images, np.zeros(40, bool), 8)]]) == 0
    assert len(sweep._requests(images[:3], refine[:3], 8)) == 3


def test_a_multi_digit_dcn_is_scored_on_whole_numbers(tmp_path):
    # Labels are the fine model's own numbers, with a wrong third digit on every
    # other image: the fine model gets exactly half right, and any head wrong
    # makes an image wrong.
    from dcn_keras import DynamicCapacityNetwork

    dcn = DynamicCapacityNetwork.from_preset("svhn_patch_exact", num_patches=2)
    images = random_images(64, shape=(64, 64, 3), seed=5)
    fine = dcn.fine_only_model()
    labels = {name: np.argmax(p, -1) for name, p in fine(images).items()}
    labels["digit_3"] = np.where(np.arange(64) % 2 == 0, labels["digit_3"], (labels["digit_3"] + 1) % 11)
    paths = {"dcn": str(tmp_path / "dcn.keras"), "fine": str(tmp_path / "fine.keras")}
    dcn.save(paths["dcn"])
    fine.save(paths["fine"])
    confidence = coarse_confidence(dcn(images)["coarse_probabilities"]).numpy()
    results = sweep.sweep([paths["dcn"]], paths["fine"], images, labels, ks=(2,),
                          thresholds=(None, float(np.median(confidence))), saliencies=("entropy_gradient",),
                          timing_batches=1, timing_images=2, repeats=1, log=lambda *_: None)
    assert results["references"]["fine"]["error"] == pytest.approx(0.5)
    fine_right = np.arange(64) % 2 == 0
    assert len(results["points"]) == 2
    for p in results["points"]:
        out = dcn.with_settings(exit_threshold=p["exit_threshold"])(images)
        right = np.all([np.argmax(out["probabilities"][name], -1) == y for name, y in labels.items()], axis=0)
        assert p["error"] == pytest.approx(1 - right.mean())
        assert (p["only_fine_right"], p["only_this_right"]) == (
            int(np.sum(fine_right & ~right)), int(np.sum(~fine_right & right)))
    with pytest.raises(ValueError, match=r"heads \(\['digit_1'.*do not fit the labels \(one array"):
        sweep.sweep([paths["dcn"]], paths["fine"], images, labels["length"], ks=(2,), log=lambda *_: None)


def test_the_test_set_keeps_8_bit_images_as_uint8_and_other_images_as_float32():
    import tensorflow as tf

    levels = np.random.default_rng(5).integers(0, 256, (10, 6, 6, 3)).astype(np.uint8)
    exact = (levels.astype(np.float32) / 255, np.arange(10))
    images, labels = sweep.test_set(tf.data.Dataset.from_tensor_slices(exact).batch(4))
    assert images.dtype == np.uint8 and images.shape == (10, 6, 6, 3)
    np.testing.assert_array_equal(images, levels)
    np.testing.assert_array_equal(labels, np.arange(10))
    off_grid = exact[0].copy()
    off_grid[9, 0, 0, 0] = 0.5  # In the last batch: the uint8 batches before it go back to float32.
    images, _ = sweep.test_set(tf.data.Dataset.from_tensor_slices((off_grid, exact[1])).batch(4))
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, off_grid)


def test_uint8_test_images_give_the_points_float_ones_give(saved):
    _, paths, images, labels = saved
    levels = np.round(images * 255).astype(np.uint8)
    run = lambda x: sweep.sweep([paths["dcn"]], paths["fine"], x, labels, ks=(2,), thresholds=(None, 0.5),  # noqa: E731
                                saliencies=("entropy_gradient",), timing_batches=1, timing_images=2, repeats=1,
                                log=lambda *_: None)
    compact, full = run(levels), run(levels.astype(np.float32) / 255)
    assert compact["references"]["fine"]["error"] == full["references"]["fine"]["error"]
    for a, b in zip(compact["points"], full["points"]):
        assert (a["error"], a["refined_share"], a["only_fine_right"], a["only_this_right"]) == (
            b["error"], b["refined_share"], b["only_fine_right"], b["only_this_right"])
