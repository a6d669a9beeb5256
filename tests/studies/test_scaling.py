import json

import pytest

from dcn_keras.studies import scaling


def _files(tmp_path, name, fine_ms, dcn_ms, error_a=0.030, error_b=0.031, only_a=40, only_b=45, p=0.66):
    comparison = tmp_path / f"{name}_eval.json"
    comparison.write_text(json.dumps({"error_a": error_a, "error_b": error_b, "examples": 5000,
                                      "only_a_right": only_a, "only_b_right": only_b, "p_value": p}))
    inference = {}
    for batch, (fine, dcn) in {64: (fine_ms, dcn_ms), 1: (fine_ms / 50, dcn_ms / 40)}.items():
        inference[f"fine/b{batch}/graph"] = {"latency_ms": fine}
        inference[f"fine/b{batch}/xla"] = {"latency_ms": fine * 1.5}
        inference[f"dcn_k16/b{batch}/graph"] = {"latency_ms": dcn * 1.2}
        inference[f"dcn_k16/b{batch}/litert2"] = {"latency_ms": dcn}
    bench = tmp_path / f"{name}_bench.json"
    bench.write_text(json.dumps({"inference": inference, "macs_per_image": {"fine": 9e7, "dcn_k16": 3e7},
                                 "refined_share": {"dcn_k16/b64": 0.25}}))
    return str(comparison), str(bench)


def test_rows_take_each_models_best_runtime_and_pair_the_errors(tmp_path):
    comparison, bench = _files(tmp_path, "c100", fine_ms=40.0, dcn_ms=8.0)
    row = scaling.scaling_row("cluttered_mnist", 100, 0.05, comparison, bench)
    assert row["dcn"] == "dcn_k16" and row["at_fine_level"]
    assert row["b64"] == {"fine_ms": 40.0, "fine_runtime": "graph", "dcn_ms": 8.0, "dcn_runtime": "litert2",
                          "speedup": 5.0}
    assert row["b1"]["speedup"] == pytest.approx((40.0 / 50) / (8.0 / 40))
    assert (row["fine_error"], row["dcn_error"], row["only_fine_right"], row["only_dcn_right"]) == (
        0.031, 0.030, 45, 40)
    assert "| cluttered_mnist | 100 px | 5.0% | 3.10% | 3.00% (45 / 40, p = 0.66) | 90 M / 30.0 M |" in (
        scaling.format_table([row]))


def test_a_significantly_worse_dcn_is_not_at_the_fine_models_level(tmp_path):
    comparison, bench = _files(tmp_path, "worse", 40.0, 8.0, error_a=0.05, error_b=0.03, only_a=10, only_b=110,
                               p=0.0001)
    assert not scaling.scaling_row("numbers", 64, 0.29, comparison, bench)["at_fine_level"]
    better, _ = _files(tmp_path, "better", 40.0, 8.0, error_a=0.02, error_b=0.03, only_a=110, only_b=10, p=0.0001)
    assert scaling.scaling_row("numbers", 64, 0.29, better, bench)["at_fine_level"]


def test_crossover_lies_between_the_rows_that_pay_and_those_that_do_not(tmp_path):
    rows = scaling.scaling_rows([
        dict(dataset="a", canvas=200, coverage=0.01, comparison=_files(tmp_path, "a200", 80.0, 10.0)[0],
             bench=_files(tmp_path, "a200", 80.0, 10.0)[1]),
        dict(dataset="a", canvas=100, coverage=0.04, comparison=_files(tmp_path, "a100", 40.0, 10.0)[0],
             bench=_files(tmp_path, "a100", 40.0, 10.0)[1]),
        dict(dataset="b", canvas=64, coverage=0.16, comparison=_files(tmp_path, "b64", 10.0, 20.0)[0],
             bench=_files(tmp_path, "b64", 10.0, 20.0)[1]),
    ])
    assert [(row["dataset"], row["canvas"]) for row in rows] == [("a", 100), ("a", 200), ("b", 64)]
    found = scaling.crossover(rows)
    # Speed-up 4x at 4% and 0.5x at 16%: log-linear, 1x at 4% * 4 ** (2 / 3).
    assert found["coverage"] == pytest.approx(0.04 * 4 ** (2 / 3))
    assert found["below"] == ("a", 100) and found["above"] == ("b", 64)
    assert scaling.crossover(rows[:2]) is None  # All pay.


def test_plot_is_written_whole(tmp_path):
    comparison, bench = _files(tmp_path, "c", 40.0, 8.0)
    rows = [scaling.scaling_row("cluttered_mnist", side, cover, comparison, bench)
            for side, cover in ((100, 0.05), (200, 0.012))]
    scaling.plot_scaling(rows, str(tmp_path / "scaling.png"))
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == ["scaling.png"]


def test_bad_rows_are_named(tmp_path):
    comparison, bench = _files(tmp_path, "c", 40.0, 8.0)
    with pytest.raises(ValueError, match=r"coverage=1.5 must be a share in \(0, 1\]"):
        scaling.scaling_row("c", 100, 1.5, comparison, bench)
    with pytest.raises(ValueError, match=r"has no 'dcn_k8'; it has \['dcn_k16'\]"):
        scaling.scaling_row("c", 100, 0.05, comparison, bench, dcn="dcn_k8")


def test_object_coverage_shrinks_with_the_canvas():
    small = scaling.object_coverage("cluttered_mnist", 60, "cluttered_mnist", sample=200, digits="embedded")
    large = scaling.object_coverage("cluttered_mnist", 120, "cluttered_mnist", sample=200, digits="embedded")
    # The same digits, four times the area: a quarter of the share, to a grid's rounding.
    assert 0 < large < small < 1 and large / small == pytest.approx(0.25, rel=0.35)


def test_a_row_timed_at_batch_1_only_is_tabled_plotted_and_left_out_of_the_batch_64_crossover(tmp_path):
    comparison, bench = _files(tmp_path, "m", 40.0, 8.0)
    timing = json.loads(open(bench).read())
    timing["inference"] = {k: v for k, v in timing["inference"].items() if "/b1/" in k}
    with open(bench, "w") as f:
        json.dump(timing, f)
    row = scaling.scaling_row("megapixel_mnist", 1500, 0.002, comparison, bench)
    assert row["b64"] is None and row["b1"]["speedup"] == pytest.approx((40.0 / 50) / (8.0 / 40))
    assert "| not measured | 0.80 / 0.20, **4.00x** |" in scaling.format_table([row])
    other = scaling.scaling_row("numbers", 64, 0.3, *_files(tmp_path, "n", 10.0, 20.0))
    assert scaling.crossover([row, other], batch=64) is None  # One row at batch 64: no pair to cross.
    assert scaling.crossover([row, other], batch=1)["below"] == ("megapixel_mnist", 1500)
    scaling.plot_scaling([row, other], str(tmp_path / "scaling.png"))
    del timing["inference"]["fine/b1/graph"], timing["inference"]["fine/b1/xla"]
    timing["inference"] = {k.replace("/b1/", "/b8/"): v for k, v in timing["inference"].items()}
    with open(bench, "w") as f:
        json.dump(timing, f)
    with pytest.raises(ValueError, match=r"has no time at batch 1; it has batches \[8\]"):
        scaling.scaling_row("megapixel_mnist", 1500, 0.002, comparison, bench)
