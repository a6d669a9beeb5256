import json
import os
import subprocess
import sys

import numpy as np
import pytest

import dcn_keras
from dcn_keras.studies import bench_report
from dcn_keras.studies import benchmark
from dcn_keras.studies import macs
from dcn_keras.backend import keras
from dcn_keras.backend import tf
from tests.helpers import preset_model
from tests.helpers import random_images
from tests.helpers import traced_ops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_run_benchmark_reports_every_model_and_ratio(tmp_path):
    results = bench_report.summarize(benchmark.run_benchmark(
        ks=(2,), batch_sizes=(1, 2), train_batch=2, warmup=1, repeats=1, xla=False,
        breakdown=True, layer_times=True, floor=True, log=lambda *_: None))
    assert set(results["macs_per_image"]) == {"coarse", "fine", "dcn_k2"}
    assert set(results["floor"]) == {"dcn_k2/b1/floor", "dcn_k2/b2/floor"}
    for key, value in results["floor"].items():
        fine = results["inference"][f"fine/{key.split('/')[1]}/graph"]["latency_ms"]
        assert results["floor_speedup_vs_best_fine"][key] == pytest.approx(fine / value["latency_ms"])
    for batch in (1, 2):
        # One runtime here (the graph), so the fine model's best time is its graph time.
        fine = results["inference"][f"fine/b{batch}/graph"]["latency_ms"]
        dcn = results["inference"][f"dcn_k2/b{batch}/graph"]["latency_ms"]
        assert results["speedup_vs_best_fine"][f"dcn_k2/b{batch}/graph"] == pytest.approx(fine / dcn)
    # k=2 patches of a 23x23 grid: the DCN costs more than its coarse model, far less than its fine one.
    counted = results["macs_per_image"]
    assert counted["coarse"] < counted["dcn_k2"] < counted["fine"] / 2
    assert set(results["train_step"]) == {"fine/b2", "dcn_k2/b2"}
    assert "train/dcn_k2/b2" in results["speedup_vs_best_fine"]
    parts = results["breakdown"]["dcn_k2/b2"]
    # The default incremental top pass builds no refined grid: no scatter stage.
    assert list(parts) == ["coarse", "saliency", "top_k", "gather", "fine", "top", "whole"]
    assert all(ms > 0 for ms in parts.values())
    layers = results["layer_times"]
    assert list(layers) == ["coarse tower, 2 images", "fine tower, 4 patches (k=2)",
                            "fine tower, 2 whole images", "top, 2 grids"]
    assert list(layers["coarse tower, 2 images"]) == ["coarse_conv1", "coarse_conv2"]
    assert list(layers["top, 2 grids"]) == ["top_conv", "top_pool", "logits"]
    fine_layers = [layer.name for layer in preset_model().fine.layers[1:]]
    assert list(layers["fine tower, 4 patches (k=2)"]) == fine_layers
    assert all(np.isfinite(ms) for parts in layers.values() for ms in parts.values())
    table = bench_report.format_table(results)
    assert "fine tower, 4 patches (k=2)  fine_conv1 " in table.split("time per layer")[1]
    assert table.splitlines()[0].split()[0] == "model"
    assert "dcn_k2/b2" in table.split("time per stage")[1]
    floor_lines = table.split("each DCN's convolutions and pools alone")[1].splitlines()[2:4]
    assert [line.split()[0] for line in floor_lines] == ["dcn_k2/b1", "dcn_k2/b2"]
    assert any(line.strip().startswith("dcn_k2") for line in table.splitlines())
    path = bench_report.plot(results, str(tmp_path / "bench.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_litert_columns_and_the_bar_is_the_fine_models_best_runtime():
    results = bench_report.summarize(benchmark.run_benchmark(
        ks=(2,), batch_sizes=(1, 2), train_batch=2, warmup=1, repeats=1, xla=False, litert=True,
        log=lambda *_: None))
    inference = results["inference"]
    for name in ("coarse", "fine", "dcn_k2"):
        assert {k.split("/", 1)[1] for k in inference if k.startswith(name + "/")} == {
            "b1/graph", "b1/litert1", "b1/litert2", "b2/graph", "b2/litert2"}
    for batch in ("b1", "b2"):
        fine = min(v["latency_ms"] for k, v in inference.items() if k.startswith(f"fine/{batch}/"))
        for variant in ("graph", "litert2"):
            key = f"dcn_k2/{batch}/{variant}"
            assert results["speedup_vs_best_fine"][key] == pytest.approx(fine / inference[key]["latency_ms"])
        best = min(v["latency_ms"] for k, v in inference.items() if k.startswith(f"dcn_k2/{batch}/"))
        assert results["best_speedup_vs_best_fine"][f"dcn_k2/{batch}"] == pytest.approx(fine / best)
    table = bench_report.format_table(results)
    assert "b1 litert1 ms" in table.splitlines()[0] and "b2 litert2 ms" in table.splitlines()[0]
    assert "dcn_k2/b1" in table.split("best time on any runtime")[1]


def test_litert_timing_runs_a_multi_digit_dcn_and_its_baselines():
    from dcn_keras import DynamicCapacityNetwork

    dcn = DynamicCapacityNetwork.from_preset("svhn_patch_exact", num_patches=2)
    images = random_images(1, shape=(64, 64, 3))
    for model in (dcn, dcn.fine_only_model()):
        for name, fn in benchmark.litert_fns(model, 1).items():
            out = fn(images)
            assert out["probabilities_length"].shape == (1, 6) and out["probabilities_digit_5"].shape == (1, 11), name


def test_trained_weights_time_real_canvases_at_every_batch_size_with_the_presets_exit():
    results = bench_report.summarize(benchmark.run_benchmark(
        preset="cluttered_mnist_fast", ks=(16,), batch_sizes=(1, 3), train_batch=2, warmup=1, repeats=1,
        xla=False, weights="pretrained_embedded", requests=12, log=lambda *_: None))
    assert results["exit_threshold"] == 0.99 and results["requests"] == 12
    # The trained coarse model is sure of most real canvases: some images exit, not all.
    assert 0 < results["refined_share"]["dcn_k16/b1"] < 1
    # 12 single requests, 4 batches of 3: the same 12 canvases.
    assert results["refined_share"]["dcn_k16/b1"] == results["refined_share"]["dcn_k16/b3"]
    assert not [k for k in results["inference"] if "#" in k]  # Calls averaged into one entry.
    assert results["inference"]["dcn_k16/b1/graph"]["latency_ms"] > 0
    assert results["inference"]["dcn_k16/b3/graph"]["latency_ms"] > 0
    assert "mean over about 12 images, of which refined:" in bench_report.format_table(results)
    with pytest.raises(ValueError, match="square cluttered MNIST \\(1 channel\\) or mnist_numbers \\(3 channels\\) "
                                         "test canvases; this preset takes \\(64, 48, 3\\)"):
        benchmark._test_canvases((64, 48, 3), 4)


def test_cam_dcns_are_benchmarked_with_their_own_arithmetic():
    results = benchmark.run_benchmark(ks=(2,), batch_sizes=(1,), train_batch=2, warmup=1, repeats=1, xla=False,
                                      saliency="cam", log=lambda *_: None)
    assert results["saliency"] == "cam" and results["inference"]["dcn_k2/b1/graph"]["latency_ms"] > 0
    entropy = benchmark.run_benchmark(ks=(2,), batch_sizes=(1,), train_batch=2, warmup=1, repeats=1,
                                      xla=False, log=lambda *_: None)
    assert results["macs_per_image"]["dcn_k2"] < entropy["macs_per_image"]["dcn_k2"]
    with pytest.raises(ValueError, match="not with saliency=cam"):
        benchmark.run_benchmark(ks=(2,), batch_sizes=(1,), saliency="cam", floor=True, log=lambda *_: None)


def test_run_benchmark_trains_a_multi_head_preset():
    # svhn's top has six softmax heads: the timed training steps need a label for each.
    results = benchmark.run_benchmark(preset="svhn", ks=(2,), batch_sizes=(1,), train_batch=2,
                                      warmup=1, repeats=1, xla=False, log=lambda *_: None)
    assert set(results["train_step"]) == {"fine/b2", "dcn_k2/b2"}
    assert all(step["step_ms"] > 0 for step in results["train_step"].values())


def test_batch_splits_run_slices_side_by_side_with_unsplit_outputs():
    keras.utils.set_random_seed(0)
    dcn = preset_model(num_patches=3)
    images = tf.constant(random_images(5, seed=3))
    def convolutions(fn, *args):
        return [op for op in traced_ops(fn, *(args or (images,))) if op.type == "Conv2D"]

    for model in (dcn, dcn.fine_only_model()):
        unsplit = benchmark.inference_fn(model)
        whole, unsplit_convolutions = unsplit(images), convolutions(unsplit)
        for splits in (2, 3, 8):  # Uneven slices; more splits than images.
            fn = benchmark.inference_fn(model, batch_splits=splits)
            np.testing.assert_allclose(fn(images), whole, rtol=1e-5, atol=1e-6)
            assert len(convolutions(fn)) == min(splits, 5) * len(unsplit_convolutions)
    # The convolution floor is sliced alike: its batch-major inputs cut together.
    fn, args = benchmark.floor_fn(dcn, images)
    unsplit_floor = convolutions(fn, *args)
    assert len(unsplit_floor) == len(convolutions(benchmark.inference_fn(dcn)))
    for splits in (2, 8):
        fn, args = benchmark.floor_fn(dcn, images, batch_splits=splits)
        assert len(convolutions(fn, *args)) == min(splits, 5) * len(unsplit_floor)
        assert np.isfinite(float(fn(*args)))
    with pytest.raises(ValueError, match=r"batch_splits=0 is not valid; it must be an integer >= 1"):
        benchmark.run_benchmark(batch_splits=0)


def test_batch_splits_join_every_head_of_a_number_reader():
    # A number reader answers with one output per head; each is joined in order.
    keras.utils.set_random_seed(0)
    dcn = dcn_keras.DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=4)
    images = tf.constant(random_images(3, shape=(64, 64, 3), seed=1))
    for model in (dcn, dcn.fine_only_model()):
        whole = benchmark.inference_fn(model)(images)
        split = benchmark.inference_fn(model, batch_splits=2)(images)
        assert set(split) == set(whole) and "digit_5" in split
        for head in whole:
            np.testing.assert_allclose(split[head], whole[head], rtol=1e-5, atol=1e-6)


def test_a_dcn_with_a_fine_pass_per_block_counts_and_times_its_windows():
    results = bench_report.summarize(benchmark.run_benchmark(
        "svhn_reader", ks=(6,), batch_sizes=(2,), train_batch=2, warmup=1, repeats=1, xla=False, canvas_size=64,
        fine_tile=2, breakdown=True, layer_times=True, floor=True, log=lambda *_: None))
    assert results["fine_tile"] == {"dcn_k6": 2}
    windows = results["fine_windows_per_image"]["dcn_k6"]
    assert 6 / 4 <= windows <= 6  # At least k / 4 blocks of 2x2 cells, at most one per cell.
    dcn = dcn_keras.DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(64, 64, 3), num_patches=6)
    assert results["macs_per_image"]["dcn_k6"] == macs.model_macs(dcn.with_settings(fine_tile=2), windows)["dcn"]
    assert results["breakdown"]["dcn_k6/b2"]["fine"] > 0
    assert any(label.startswith("fine tower, ") and "windows of 2x2 cells (k=6)" in label
               for label in results["layer_times"])
    untiled = benchmark.run_benchmark("svhn_reader", ks=(6,), batch_sizes=(2,), train_batch=2, warmup=1, repeats=1,
                                      xla=False, canvas_size=64, fine_tile=1, log=lambda *_: None)
    assert untiled["fine_windows_per_image"] == {"dcn_k6": None}
    with pytest.raises(ValueError, match=r"floor with batch_splits=2 .* \(fine_tile=4\) .* Pass fine_tile=1"):
        benchmark.run_benchmark("svhn_reader", ks=(6,), batch_sizes=(2,), canvas_size=64, floor=True, batch_splits=2)


def test_run_benchmark_builds_every_model_under_the_dtype_policy_and_restores_it():
    policy = "mixed_bfloat16"  # mixed_float16 takes the same path, and is far slower on CPU.
    policies_seen = set()
    results = bench_report.summarize(benchmark.run_benchmark(
        ks=(2,), batch_sizes=(2,), train_batch=2, warmup=1, repeats=1, xla=False, dtype_policy=policy,
        log=lambda *_: policies_seen.add(keras.mixed_precision.global_policy().name)))
    assert policies_seen == {policy}
    assert keras.mixed_precision.global_policy().name == "float32"
    assert results["dtype_policy"] == policy
    assert results["train_step"]["dcn_k2/b2"]["step_ms"] > 0
    table = bench_report.format_table(results)
    assert table.splitlines()[0].split()[-5:] == ["train", "b2", "ms", "call", "MB"]  # The train batch's.
    assert f"every model built under the dtype policy {policy}" in table
    with pytest.raises(ValueError, match=r"dtype_policy='float16' is not valid; choose one of: float32, "
                                         r"mixed_float16, mixed_bfloat16\."):
        benchmark.run_benchmark(dtype_policy="float16")


@pytest.mark.slow
def test_dcn_bench_program_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "dcn_bench"), "--k=2", "--batch_sizes=1",
         "--train_batch=2", "--warmup=1", "--repeats=1", "--noxla", "--intra_op_threads=1",
         "--inter_op_threads=2", "--batch_splits=2", "--floor", f"--json={out}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "speed-up of each DCN" in done.stdout
    written = json.loads(out.read_text())
    assert written["macs_per_image"]["dcn_k2"] > 0
    assert written["threads"] == {"intra_op": 1, "inter_op": 2}
    assert written["batch_splits"] == 2
    assert written["floor"]["dcn_k2/b1/floor"]["latency_ms"] > 0
    # The program turns on the allocator that reports memory: each model's own and peak.
    for name in ("fine", "coarse", "dcn_k2"):
        assert 0 < written["call_memory_bytes"][name] < written["peak_memory_bytes"][name]
    assert "each DCN's convolutions and pools alone" in done.stdout


def test_thread_pools_cannot_change_once_tensorflow_runs():
    tf.constant(1.0) + 1.0  # Initializes the runtime, if no earlier test did.
    with pytest.raises(ValueError, match="before TensorFlow runs anything"):
        benchmark.configure_threads(intra_op=3)
    with pytest.raises(ValueError, match=r"inter_op_threads=-1 .*>= 0"):
        benchmark.configure_threads(inter_op=-1)


@pytest.mark.parametrize("flag,message", [
    ("--preset=resnet", "--preset='resnet' is not valid; choose one of: cluttered_mnist, cluttered_mnist_fast, images, megapixel_mnist, svhn, svhn_cropped, svhn_patch_exact, svhn_positional, svhn_reader, svhn_reader_max, svhn_reader_one_pool, svhn_reader_placed, svhn_reader_wide."),
    ("--gather=glimpse", "--gather='glimpse' is not valid; choose one of: index, extract_patches."),
    ("--top_pass=sparse", "--top_pass='sparse' is not valid; choose one of: incremental, full."),
    ("--intra_op_threads=-2", "--intra_op_threads=-2 is not valid; it must be an integer >= 0"),
    ("--batch_splits=0", "--batch_splits=0 is not valid; it must be an integer >= 1."),
    ("--dtype_policy=bf16", "--dtype_policy='bf16' is not valid; choose one of: float32, mixed_float16, mixed_bfloat16."),
    ("--requests=10", "--requests=10 applies with --weights only"),
    ("--weights=best", "weights='best' is not valid"),
])
def test_dcn_bench_rejects_bad_flags(flag, message):
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "dcn_bench"), flag],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_a_canvas_size_times_the_preset_at_that_size_on_real_canvases_with_weights():
    results = benchmark.run_benchmark("svhn_positional", ks=(2,), batch_sizes=(2,), train_batch=2, warmup=1,
                                      repeats=1, xla=False, canvas_size=96, log=lambda *_: None)
    assert results["image_shape"] == [96, 96, 3]
    canvases = benchmark._test_canvases((96, 96, 3), 3)
    assert canvases.shape == (3, 96, 96, 3) and 0 < canvases.max() <= 1
    assert benchmark._test_canvases((150, 150, 1), 2).shape == (2, 150, 150, 1)


def test_weights_canvases_come_from_mnist_idx_files_when_given(tmp_path):
    from tests.helpers import mnist_idx_dir

    canvases = benchmark._test_canvases((100, 100, 1), 3, mnist_dir=mnist_idx_dir(tmp_path)[0])
    embedded = benchmark._test_canvases((100, 100, 1), 3)
    assert canvases.shape == embedded.shape == (3, 100, 100, 1) and not np.array_equal(canvases, embedded)


def test_megapixel_weights_are_timed_on_megapixel_test_canvases():
    from dcn_keras.datasets import megapixel_mnist

    canvases = benchmark._test_canvases((160, 160, 1), 3, preset="megapixel_mnist")
    described, digits, _ = megapixel_mnist.split_descriptions("test", "embedded", canvas_size=160, num_canvases=3)
    np.testing.assert_allclose(canvases, megapixel_mnist.draw_canvases(described, digits) / 255.0)
    results = benchmark.run_benchmark("megapixel_mnist", ks=(4,), batch_sizes=(1,), train_batch=1, warmup=1,
                                      repeats=1, xla=False, canvas_size=160, log=lambda *_: None)
    assert results["image_shape"] == [160, 160, 1]
    assert results["macs_per_image"]["fine"] > 2 * results["macs_per_image"]["dcn_k4"]
