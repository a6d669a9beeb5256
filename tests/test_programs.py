"""The programs' shared flags and start-up (`dcn_keras/programs.py`)."""

import glob
import os
import re

import pytest

from dcn_keras import programs
from dcn_keras.training import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_program_defines_a_shared_flag_of_its_own():
    # One default and one help text each: a program takes them from programs.define_flags.
    for path in sorted(glob.glob(os.path.join(ROOT, "bin", "dcn_*"))):
        name = os.path.basename(path)
        own = set(re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', open(path).read()))
        copied = own & set(programs.SHARED_FLAGS)
        assert not copied, f"{name} defines {sorted(copied)} itself"


def test_an_unknown_shared_flag_is_named():
    with pytest.raises(ValueError, match=r"No shared flags \['canvas'\]; shared: dataset, canvas_size"):
        programs.define_flags("canvas")


def test_a_flag_left_unset_takes_the_configs_default():
    values = programs.config_values(TrainConfig, {"max_digits": None, "examples_per_digit": None,
                                                  "preset": None, "seed": 3})
    assert values == {"preset": None, "seed": 3}
    config = TrainConfig(**values)
    assert config.max_digits == 5 and config.examples_per_digit == 4 and config.preset is None


def test_progress_prints_at_most_every_interval_and_always_the_end(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["bin/dcn_eval"])
    now = [100.0]
    progress = programs.progress_printer(every_seconds=30, clock=lambda: now[0])
    for done, seconds in ((64, 5), (128, 20), (192, 40), (256, 50), (320, 71)):
        now[0] = 100.0 + seconds
        progress(done, 320)
    assert capsys.readouterr().err.splitlines() == [
        "dcn_eval: 64 of 320 (20%), 5 s", "dcn_eval: 192 of 320 (60%), 40 s", "dcn_eval: 320 of 320 (100%), 71 s"]
    programs.progress_printer()(10, None)
    assert capsys.readouterr().err == "dcn_eval: 10 of ?, 0 s\n"


def test_errors_become_one_line_and_exit_status_2(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["bin/dcn_eval"])
    with pytest.raises(SystemExit) as exit_info, programs.errors_as_messages():
        raise ValueError("--canvas_size=3 is too small.")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "dcn_eval: error: --canvas_size=3 is too small.\n"


def test_the_librarys_argument_names_become_the_programs_flags():
    # Only names the program has as flags; `--name=` stays as it is.
    assert programs.as_flags("num_noise=3 and --num_noise=4, not k=16 or max_num_noise=2.", {"num_noise"}) == (
        "--num_noise=3 and --num_noise=4, not k=16 or max_num_noise=2.")


def test_dcn_train_has_a_flag_for_every_training_setting():
    # flag_values takes the fields the program has flags for: a field
    # without a flag would silently keep its default.
    import dataclasses

    source = open(os.path.join(ROOT, "bin", "dcn_train")).read()
    defined = set(re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', source))
    for call in re.findall(r"programs\.define_flags\(([^)]*)\)", source):
        defined |= set(re.findall(r'"(\w+)"', call))
    assert {f.name for f in dataclasses.fields(TrainConfig)} - defined == set()
