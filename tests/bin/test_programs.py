"""The bin/ programs as a user runs them: subprocesses, flags, exit codes."""

import json
import os
import socket
import subprocess
import sys

import pytest

from dcn_keras import presets
from tests.helpers import number_reader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = ["--digits=embedded", "--examples_per_digit=1", "--epochs=1", "--steps_per_epoch=2",
         "--batch_size=8", "--eval_batch_size=64", "--verbose=0"]


def _run(program, *args, env=None, timeout=300, cwd=ROOT):
    # As a user's shell: without the test process's TF_CPP_MIN_LOG_LEVEL.
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", program), *args],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=cwd)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_dcn_train_then_dcn_eval_end_to_end(tmp_path):
    run = str(tmp_path / "run")
    done = _run("dcn_train", *QUICK, f"--model_dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dcn_train: test test_error=" in done.stdout
    assert "embedded MNIST digits" in done.stdout
    for name in ("config.json", "results.json", "model.keras", "export/1/saved_model.pb"):
        assert os.path.exists(os.path.join(run, name)), name
    results = json.load(open(os.path.join(run, "results.json")))

    evaluated = _run("dcn_eval", f"--model_path={run}/model.keras", "--digits=embedded")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    lines = evaluated.stdout.strip().splitlines()
    assert lines[0].startswith("cluttered_mnist test") and "on 1000 examples" in lines[0]
    error = float(lines[0].split("error ")[1].split()[0])
    assert abs(error - results["test_error"]) < 1e-3
    assert [line.split(":")[0].strip() for line in lines[1:]] == [f"class {d}" for d in range(10)]
    assert "dcn_eval: 1000 of 1000 (100%)" in evaluated.stderr  # Its progress, on stderr.
    served = _run("dcn_eval", f"--model_path={run}/export/1", "--digits=embedded")
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.splitlines()[0] == lines[0]

    more = _run("dcn_eval", f"--model_path={run}/model.keras", "--digits=embedded", "--num_patches=16")
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stdout.startswith("cluttered_mnist test") and "on 1000 examples" in more.stdout
    blank = _run("dcn_eval", f"--model_path={run}/model.keras", "--digits=embedded", "--unrefined=blank")
    assert blank.returncode == 0, blank.stderr[-3000:]
    assert blank.stdout.startswith("cluttered_mnist test") and "on 1000 examples" in blank.stdout
    # The same weights in bfloat16, paired against themselves in float32.
    bf16 = _run("dcn_eval", f"--model_path={run}/model.keras", f"--compare_to={run}/model.keras",
                "--digits=embedded", "--dtype_policy=mixed_bfloat16")
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    errors = [float(line.split("error ")[1]) for line in bf16.stdout.splitlines()[1:3]]
    assert errors[1] == pytest.approx(results["test_error"], abs=1e-3)
    assert abs(errors[0] - errors[1]) < 0.02
    fixed = _run("dcn_eval", f"--model_path={run}/export/1", "--digits=embedded", "--num_patches=16")
    assert fixed.returncode == 2 and "Traceback" not in fixed.stderr
    assert "num_patches=16 needs a .keras DCN; a SavedModel's k is fixed at export" in fixed.stderr


def test_dcn_eval_paired_comparison_and_its_bad_flags(tmp_path):
    shipped = "saved_models/cluttered_mnist_dcn/1"
    paired = _run("dcn_eval", f"--model_path={shipped}", f"--compare_to={shipped}",
                  "--digits=embedded", "--examples_per_digit=2", f"--json={tmp_path}/paired.json")
    assert paired.returncode == 0, paired.stderr[-3000:]
    lines = paired.stdout.strip().splitlines()
    assert lines[0] == "cluttered_mnist test, 2000 examples:"
    assert lines[1].split("error ")[1] == lines[2].split("error ")[1]
    assert lines[3].strip() == "only A right: 0, only B right: 0, exact McNemar p=1.0000"
    written = json.loads((tmp_path / "paired.json").read_text())
    assert written["examples"] == 2000 and written["only_a_right"] == written["only_b_right"] == 0
    assert written["compare_to"] == shipped and written["examples_per_digit"] == 2
    assert f"{written['error_a']:.4f}" == lines[1].split("error ")[1]
    # Number readers: where each one's errors come from, A's then B's.
    readers = number_reader(tmp_path / "ones.keras", 1, 1), number_reader(tmp_path / "sevens.keras", 2, 7)
    numbers = _run("dcn_eval", f"--model_path={readers[0]}", f"--compare_to={readers[1]}", "--dataset=mnist_numbers",
                   "--digits=embedded", "--examples_per_digit=1", "--max_digits=2", f"--json={tmp_path}/n.json")
    assert numbers.returncode == 0, numbers.stderr[-3000:]
    lines = numbers.stdout.strip().splitlines()
    written = json.loads((tmp_path / "n.json").read_text())
    assert [lines[4], lines[10]] == ["  A, where its errors come from:", "  B, where its errors come from:"]
    assert lines[5] == f"    length head error {written['breakdown_a']['length_head']:.4f}"
    assert lines[11] == f"    length head error {written['breakdown_b']['length_head']:.4f}" and len(lines) == 16

    for args, message in [
        (["--dataset=svhn", "--examples_per_digit=2"],
         "--examples_per_digit=2 applies to cluttered_mnist and mnist_numbers only, not --dataset='svhn'."),
        (["--dataset=megapixel_mnist", "--canvas_size=100", "--max_digits=3"],
         "--max_digits=3 applies to mnist_numbers only, not --dataset='megapixel_mnist'."),
        (["--dataset=svhn", "--digits=embedded"],
         "--digits='embedded' applies to cluttered_mnist, megapixel_mnist and mnist_numbers only, not --dataset='svhn'."),
        (["--examples_per_digit=0"], "--examples_per_digit=0 must be an integer >= 1"),
        (["--unrefined=blank"], "--unrefined='blank' needs a .keras DCN, not the SavedModel"),
        (["--unrefined=empty"], "--unrefined='empty' is not one of coarse, blank."),
        (["--json=out.txt"], "--json=out.txt must name a .json file."),
        (["--dtype_policy=bf16"],
         "--dtype_policy='bf16' is not valid; choose one of: float32, mixed_float16, mixed_bfloat16."),
        (["--dtype_policy=mixed_bfloat16"],
         "--dtype_policy='mixed_bfloat16' needs a .keras model; a SavedModel's precision is fixed at export"),
    ]:
        digits = [] if any(arg.startswith("--dataset=") for arg in args) else ["--digits=embedded"]
        done = _run("dcn_eval", f"--model_path={shipped}", *digits, *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert f"dcn_eval: error: {message}" in done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset=imagenet"], "--dataset='imagenet' is not valid; choose one of: cluttered_mnist, folder, megapixel_mnist, mnist_numbers, svhn, svhn_cropped, or tfds:NAME for a TFDS image-classification dataset."),
        (["--batch_size=0"], "--batch_size=0 is not valid; it must be an integer >= 1."),
        (["--num_patches=1000", *QUICK], "num_patches=1000 must be an int in [1, 529]"),
        (["--init_from=runs/none.keras", *QUICK], "--init_from=runs/none.keras: no such file."),
        (["--dataset=svhn", "--data_dir=/nonexistent/svhn"], "missing"),
    ],
)
def test_bad_flags_fail_at_once_with_one_clear_line(tmp_path, args, message, monkeypatch):
    env = {}
    if "--dataset=svhn" in args:
        # A partial local copy: the error must list what is missing (and
        # no download is attempted, since a local copy exists).
        from tests.svhn_fixture import write_svhn_copy

        write_svhn_copy(str(tmp_path / "data" / "downloads" / "manual"), splits=("train",))
        args = ["--dataset=svhn", f"--data_dir={tmp_path / 'data'}"]
        message = "is missing test/digitStruct.mat or test.tar.gz"
    done = _run("dcn_train", *args, f"--model_dir={tmp_path / 'run'}", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dcn_train: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]


@pytest.mark.slow
def test_multi_worker_strategy_with_two_workers_on_loopback(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = str(tmp_path / "run")
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bin", "dcn_train"), *QUICK,
             "--strategy=multi_worker", f"--model_dir={run}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    resolved = json.load(open(os.path.join(run, "config.json")))
    assert resolved["replicas"] == 2
    assert os.path.exists(os.path.join(run, "export", "1", "saved_model.pb"))
    # The second worker kept its files apart from the chief's.
    assert os.path.exists(os.path.join(run, "workers", "worker_1", "config.json"))
    assert "dcn_train: test test_error=" in outputs[0][0]


def test_dcn_export_writes_a_version_with_the_chosen_k_and_names_bad_sources(tmp_path):
    import tensorflow as tf

    from dcn_keras.backend import keras
    from tests.helpers import preset_model
    from tests.helpers import random_images

    preset_model().save(str(tmp_path / "dcn.keras"))
    done = _run("dcn_export", f"--source={tmp_path / 'dcn.keras'}", f"--export_base={tmp_path}",
                "--name=m", "--num_patches=4", "--noxla")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"dcn_export: wrote {tmp_path / 'm' / '1'}"
    # Nothing but the program's own lines: no TensorFlow start-up or SavedModel INFO chatter.
    assert done.stderr.strip() == "", done.stderr[-3000:]
    served = tf.saved_model.load(str(tmp_path / "m" / "1")).signatures["serving_default"]
    assert served(images=tf.constant(random_images(1)))["locations"].shape == (1, 4, 2)

    images = keras.Input((100, 100, 1))
    keras.Model(images, keras.layers.GlobalMaxPooling2D()(images)).save(str(tmp_path / "plain.keras"))
    bad = _run("dcn_export", f"--source={tmp_path / 'plain.keras'}", f"--export_base={tmp_path}",
               "--name=m", "--num_patches=4")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "dcn_export: error: --num_patches=4 needs a DCN;" in bad.stderr
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def test_dcn_predict_prints_lines_json_and_a_picture_and_one_line_errors(tmp_path):
    from tests.test_prediction import write_canvases

    paths, _ = write_canvases(tmp_path / "images", count=2)
    done = _run("dcn_predict", f"--picture={tmp_path / 'out.png'}", str(tmp_path / "images"))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == paths and all("coarse" in line for line in lines)
    assert open(tmp_path / "out.png", "rb").read(4) == b"\x89PNG"
    # Without --model, from any directory: the default model (k=16, with an exit threshold).
    done = _run("dcn_predict", "--json", paths[0], cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = json.loads(done.stdout)
    assert {"file", "class", "probability", "coarse_class", "patch_boxes", "refined"} <= set(record)
    assert record["file"] == paths[0] and len(record["patch_boxes"]) == 16
    (tmp_path / "fake.png").write_text("hello")
    mixed = _run("dcn_predict", paths[0], str(tmp_path / "fake.png"), str(tmp_path / "nope.png"), paths[1])
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr
    assert [line.split(":")[0] for line in mixed.stdout.strip().splitlines()] == paths
    errors = [line for line in mixed.stderr.splitlines() if line.startswith("dcn_predict: error: ")]
    assert len(errors) == 2 and "fake.png is not an image" in errors[0] and "nope.png: no such file" in errors[1]
    assert "dcn_predict: 2 of 4 images could not be read" in mixed.stderr
    as_json = _run("dcn_predict", "--json", paths[0], str(tmp_path / "fake.png"))
    assert as_json.returncode == 1
    good, bad = json.loads(as_json.stdout)
    assert "class" in good and bad["file"].endswith("fake.png") and "is not an image" in bad["error"]
    broken = _run("dcn_predict", f"--model={tmp_path}", paths[0])
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "dcn_predict: error: " in broken.stderr and "neither a .keras file nor a SavedModel" in broken.stderr


def _read_number(out, n):
    """The number the heads' classes spell, built here from the raw heads."""
    length = int(out["classes_length"][n])
    digits = [int(out[f"classes_digit_{i}"][n]) for i in range(1, 6)][:length]
    return "".join("?" if d == 10 else str(d) for d in digits)


@pytest.mark.slow
def test_mnist_numbers_are_read_as_numbers_by_serving_dcn_eval_and_dcn_predict(tmp_path):
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from dcn_keras.datasets import load_dataset
    from dcn_keras.evaluation import evaluate_saved_model
    from dcn_keras.training import TrainConfig
    from dcn_keras.workflows import train_and_export

    config = TrainConfig(dataset="mnist_numbers", digits="embedded", examples_per_digit=1, max_digits=2,
                         epochs=1, steps_per_epoch=2, batch_size=4, eval_batch_size=64, num_patches=2,
                         model_dir=str(tmp_path / "run"), verbose=0)
    export = train_and_export(config, print_fn=lambda *_: None)["export_dir"]
    data, _ = load_dataset("mnist_numbers", "test", digits="embedded", examples_per_digit=1, max_digits=2)
    images, labels = next(iter(data.batch(6)))
    assert set(labels["length"].numpy()) <= {1, 2}
    signatures = tf.saved_model.load(export).signatures
    out = {k: v.numpy() for k, v in signatures["serving_default"](images=images).items()}
    assert [n.decode() for n in out["number"]] == [_read_number(out, n) for n in range(6)]
    heads = [out[k] for k in out if k.startswith("probabilities_")]
    assert len(heads) == 6
    np.testing.assert_allclose(out["number_confidence"], np.prod([h.max(-1) for h in heads], 0), rtol=1e-5)
    xla = signatures["serving_xla"](images=images)
    assert xla["number"].numpy().tolist() == out["number"].tolist()

    evaluated = evaluate_saved_model(export, "mnist_numbers", digits="embedded", examples_per_digit=1,
                                     max_digits=2)
    done = _run("dcn_eval", f"--model_path={export}", "--dataset=mnist_numbers", "--digits=embedded",
                "--examples_per_digit=1", "--max_digits=2")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == (f"mnist_numbers test ({evaluated['source']}): whole-number error "
                        f"{evaluated['error']:.4f} on 1000 examples")
    assert [line.split(":")[0].strip() for line in lines[1:3]] == ["length 1", "length 2"]
    # Where the errors come from: the heads, the lengths, the digits' size and place, the patches.
    breakdown = evaluated["breakdown"]
    assert breakdown["whole_number"] == evaluated["error"] and breakdown["examples"] == 1000
    assert set(breakdown["per_position"]) == {1, 2} and breakdown["patches"]["wrong"] == round(1000 * evaluated["error"])
    assert lines[3] == f"  length head error {breakdown['length_head']:.4f}"
    assert lines[-1].startswith("  ink inside the patches: ")

    paths = []
    for n in range(2):
        paths.append(str(tmp_path / f"number_{n}.png"))
        Image.fromarray(np.round(images[n].numpy() * 255).astype(np.uint8)).save(paths[-1])
    done = _run("dcn_predict", f"--model={export}", "--json", *paths)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout)
    assert [r["number"] for r in records] == [_read_number(out, n) for n in range(2)]
    assert [r["heads"]["length"] for r in records] == out["classes_length"][:2].tolist()
    np.testing.assert_allclose([r["number_confidence"] for r in records], out["number_confidence"][:2],
                               atol=1e-6)  # dcn_predict rounds to 6 decimals


def test_dcn_sweep_bad_flags_fail_with_one_line(tmp_path):
    for args, message in (
            (["--thresholds=never,often"], "--thresholds=never,often must be 'never' or numbers in (0, 1]."),
            (["--ks=4,eight"], "--ks=4,eight must be integers."),
            (["--plot=curve.jpg"], "--plot=curve.jpg must name a .png file."),
            (["--dataset=svhn"], "--dataset=svhn must be one of cluttered_mnist, mnist_numbers"),
            ([f"--fine={tmp_path}/none.keras", "--digits=embedded", "--examples_per_digit=1"], "none.keras")):
        done = _run("dcn_sweep", "--models=m.keras", "--fine=f.keras", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert "dcn_sweep: error: " in done.stderr and message in done.stderr


@pytest.mark.slow
def test_a_folder_of_own_images_trains_evaluates_and_predicts_by_class_name(tmp_path):
    from tests.datasets.test_image_folder import CLASSES
    from tests.datasets.test_image_folder import make_folder

    root = make_folder(tmp_path / "shapes", per_class=10, sizes=((48, 48), (40, 56)))
    run = str(tmp_path / "run")
    done = _run("dcn_train", "--dataset=folder", f"--data_dir={root}", "--epochs=1", "--steps_per_epoch=2",
                "--batch_size=4", "--eval_batch_size=64", "--verbose=0", f"--model_dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"folder from image folder {root} (3 classes); 24 training images" in done.stdout
    assert "skipped 1 unreadable file(s) of 31" in done.stderr
    assert done.stderr.count("come in 2 sizes; each is scaled to fit 48x48") == 1, done.stderr
    resolved = json.load(open(os.path.join(run, "config.json")))
    assert resolved["class_names"] == list(CLASSES) and resolved["image_shape"] == [48, 48, 3]

    evaluated = _run("dcn_eval", f"--model_path={run}/export/1", "--dataset=folder", f"--data_dir={root}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert [line.split(":")[0].strip() for line in evaluated.stdout.strip().splitlines()[1:]] == [
        f"class {name}" for name in CLASSES]
    predicted = _run("dcn_predict", f"--model={run}/model.keras", "--json", os.path.join(root, "cross"))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    records = json.loads(predicted.stdout)
    assert len(records) == 10 and all(r["class"] in CLASSES and r["coarse_class"] in CLASSES for r in records)
    assert all(CLASSES[r["class_index"]] == r["class"] for r in records)


@pytest.mark.slow
def test_dcn_predict_reads_numbers_with_the_shipped_numbers_model(tmp_path):
    from PIL import Image

    from dcn_keras.datasets.mnist_numbers import split_numbers

    images, labels = split_numbers("test", "embedded", num_numbers=4, image_size=384, digit_scale=1.0)[:2]
    truth = []
    for n in range(4):
        Image.fromarray(images[n, ..., 0]).save(tmp_path / f"number_{n}.png")
        digits = [int(labels[f"digit_{i}"][n]) for i in range(1, int(labels["length"][n]) + 1)]
        truth.append("".join(map(str, digits)))
    done = _run("dcn_predict", "--model=saved_models/svhn_reader_numbers_dcn/1", "--json", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout)
    read = {os.path.basename(r["file"]): r for r in records}
    answers = [read[f"number_{n}.png"] for n in range(4)]
    for record in answers:  # The number, its confidence, and the patches it was read from.
        assert record["number"] == record["class"] and 0 < record["number_confidence"] <= 1
        assert len(record["patch_boxes"]) == presets.svhn_reader()["num_patches"]  # The export's k.
    assert sum(record["number"] == t for record, t in zip(answers, truth)) >= 3, (answers, truth)


@pytest.mark.slow
def test_installed_without_the_checkout_dcn_predict_uses_the_default_model_from_any_directory(tmp_path):
    from tests.test_prediction import write_canvases

    # `pip install .` (not editable) into a directory of its own: the package, its data and
    # the programs, without saved_models/ (dependencies: this environment's).
    target = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            f"--target={target}", ROOT], capture_output=True, text=True, timeout=600,
                           cwd=str(tmp_path))
    assert built.returncode == 0, built.stderr[-3000:]
    assert (target / "dcn_keras" / "weights").is_dir() and not (target / "saved_models").exists()
    paths, _ = write_canvases(tmp_path / "images", count=3)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(target)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, str(target / "bin" / "dcn_predict"), "--json", *paths],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(elsewhere))
    assert done.returncode == 0, done.stderr[-3000:]
    installed = json.loads(done.stdout)
    checkout = json.loads(_run("dcn_predict", "--json", *paths).stdout)
    assert [r["class"] for r in installed] == [r["class"] for r in checkout]
    assert [r["patch_boxes"] for r in installed] == [r["patch_boxes"] for r in checkout]
    for a, b in zip(installed, checkout):
        assert abs(a["probability"] - b["probability"]) < 1e-4
