"""Nonsense in, one clear paragraph out: property-based tests over experiment files and CLI arguments.

Every generated case runs the real entry point (``shoal.cli.main``) in this process; a few run as real
subprocesses. Invalid input must end with exit code 2 and one paragraph on stderr (no traceback),
and leave the storage as it was (not created, not changed); valid input passes ``--check`` (exit 0)
and, for a few, trains. 1,166 generated cases in all (400 + 300 + 60 + 400 + 6).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.cli import main
from shoal.study._experiment import Experiment
from shoal.study._strategies import PRUNERS, STRATEGIES
from tests.conftest import subprocess_env

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                derandomize=True)
# Training in this process can leave the CPU flushing subnormals to zero, where hypothesis cannot make them.
floats = functools.partial(st.floats, allow_subnormal=False)
KNOWN = sorted(f.name for f in Experiment.__dataclass_fields__.values())


# ----------------------------------------------------------------------------- running and checking

@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder holding a finished study in keep.db: bad input must leave it byte for byte."""
    path = tmp_path_factory.mktemp("bad-input")
    code, _, err = cli(path, "tune", "--data", "digits", "--strategy", "random", "--trials", "1", "--epochs", "1",
                       "-p", "width=32", "-p", "depth=1", "-s", "keep.db", "-q")
    assert code == 0, err
    return path


def cli(cwd: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``shoal *argv`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    old_argv = sys.argv
    os.chdir(cwd)
    sys.argv = ["shoal", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(before)
    return code, out.getvalue(), err.getvalue()


def state(folder: Path) -> dict[str, str]:
    """Every file in the folder and a hash of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_clear_error(code: int, err: str) -> str:
    """Exit code 2 and one paragraph on stderr, starting 'error:', without a traceback."""
    assert code == 2, err
    text = err.strip()
    assert text.startswith("error:"), err
    assert "Traceback" not in err and "\n\n" not in text, err
    message = " ".join(text.split())
    assert len(message) < 1200, err
    return message


def assert_answered(code: int, out: str, err: str) -> None:
    """Either accepted (``--check`` says ok) or a clear error: never a traceback or another code."""
    if code == 0:
        assert "ok:" in out and "Nothing was written" in " ".join(out.split()), (out, err)
    else:
        assert_clear_error(code, err)


# ----------------------------------------------------------------------------- TOML generation

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
junk = st.recursive(
    st.one_of(st.integers(-2**63, 2**63 - 1), floats(allow_nan=True, allow_infinity=True), text, st.booleans(),
              st.dates()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):  # TOML escapes like JSON, and DEL too
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_doc(settings: dict, space: dict | None = None) -> str:
    lines = [f"{toml_value(str(k))} = {toml_value(v)}" for k, v in settings.items()]
    if space is not None:
        lines.append("[space]")
        lines += [f"{toml_value(str(k))} = {toml_value(v)}" for k, v in space.items()]
    return "\n".join(lines) + "\n"


# Valid settings that train in about a second (the base every mutation starts from).
valid_settings = st.fixed_dictionaries(
    {"data": st.just("digits"), "preset": st.just("mlp"), "trials": st.integers(1, 2), "epochs": st.just(1)},
    optional={
        "strategy": st.sampled_from(["random", "tpe", "qmc", "cmaes"]),  # (a grid needs most params fixed)
        "metric": st.sampled_from(["val_loss", "val_acc"]),
        "seed": st.integers(0, 2**31),
        "pruner": st.sampled_from(["none", "median"]),
        "val_fraction": floats(0.1, 0.5),
        "folds": st.sampled_from([2, 3]),
        "patience": st.integers(1, 3),
        "engine": st.sampled_from(["auto", "single", "population"]),
        "population": st.integers(1, 4),
        "memory_mb": floats(1.0, 1e4),
        "grid_points": st.integers(2, 3),
        "timeout": floats(1.0, 1e4),
        "device": st.sampled_from(["auto", "cpu"]),
    },
)
valid_space = st.fixed_dictionaries(
    {"width": st.sampled_from([32, [32, 64]]), "depth": st.just(1)},
    optional={
        "lr": st.one_of(floats(1e-4, 1e-1), floats(1e-4, 1e-2).map(lambda lo: {"low": lo, "high": lo * 10})),
        "optimizer": st.lists(st.sampled_from(["sgd", "momentum", "rmsprop", "adam"]), min_size=1, max_size=4,
                              unique=True),
        "batch_size": st.sampled_from([32, 64, 128]),
        "dropout": floats(0.0, 0.5),
    },
)

not_in = lambda names: text.filter(lambda s: s not in names)  # noqa: E731


def _valid_metric(value: str) -> bool:
    """Whether ``value`` names measures (aliases such as 'acc' or 'f1' too)."""
    from shoal._errors import ConfigError
    from shoal.study._objectives import parse_objectives

    try:
        parse_objectives(value)
    except ConfigError:
        return False
    return True


small_bad_int = st.one_of(st.integers(-5, 0), floats(0.5, 3.5), st.booleans(), text)
# One setting made invalid, with the word its message must name.
MUTATIONS = {
    "preset": not_in({"mlp", "cnn"}),
    "strategy": not_in(set(STRATEGIES)),
    "pruner": not_in(set(PRUNERS)),
    "metric": text.filter(lambda s: not _valid_metric(s)),
    "engine": not_in({"auto", "single", "population"}),
    "executor": not_in({"auto", "local", "processes", "ray"}),
    "trials": small_bad_int,
    "epochs": small_bad_int,
    "seed": st.one_of(st.integers(max_value=-1), floats(), text, st.booleans()),
    "val_fraction": st.one_of(floats(max_value=0.0), floats(min_value=1.0), st.just(float("nan")), text,
                              st.booleans()),
    "test_fraction": st.one_of(floats(min_value=0.8), floats(max_value=-1e-9), text),
    "folds": st.one_of(st.integers(-5, 1), text, floats(2.5, 3.5)),
    "patience": st.one_of(st.integers(-5, 0), text),
    "population": st.one_of(st.integers(-5, 0), text),
    "workers": st.one_of(st.integers(-5, 0), text),
    "memory_mb": st.one_of(floats(max_value=0.0), st.just(float("inf")), st.just(float("nan")), text),
    "timeout": st.one_of(floats(max_value=0.0), st.just(float("nan")), text),
    "grid_points": st.one_of(st.integers(-5, 1), st.integers(10**4, 10**18), text),
    "device": st.sampled_from(["gpu", "tpu", "cuda", "cuda:7", "metal", "", "auto:1"]),
    "data": st.one_of(st.sampled_from(["cifar", "imagenet", "missing.csv", "nope.npz", "mnist:nowhere"]),
                      not_in({"digits", "mnist", "fashion-mnist"})),
    "download": st.one_of(st.integers(), text),
    "unknown": st.just(None),  # an unknown key (generated below)
    "space": st.sampled_from([
        {"lrr": 0.1}, {"lr": {"low": 0.5, "high": 0.1}}, {"optimizer": "adamw"}, {"lr": -1.0}, {"width": "wide"},
        {"dropout": 1.5}, {"lr": {"low": 1e-3}}, {"lr": {"low": "a", "high": "b"}}, {"depth": 0}, {"optimizer": []},
        {"lr": {"low": float("nan"), "high": 1.0}}, {"width": {"low": 64, "high": 32}}, {"activation": 3},
    ]),
}


# ----------------------------------------------------------------------------- the properties

@settings(FUZZ, max_examples=400)
@given(settings_=st.dictionaries(st.one_of(st.sampled_from(KNOWN + ["experiment", "space", "params"]), text),
                                 junk, max_size=6),
       raw=st.one_of(st.none(), st.text(max_size=60)))
def test_any_experiment_file_is_accepted_or_refused_clearly(folder, settings_, raw):
    """Random keys and values (dates, tables, NaN, huge numbers...) or random text as the file."""
    path = folder / "fuzz.toml"
    path.write_text(raw if raw is not None else toml_doc(settings_), encoding="utf-8")
    before = state(folder)
    code, out, err = cli(folder, "tune", "fuzz.toml", "--check", "-q", "--storage", "keep.db")
    assert_answered(code, out, err)
    assert state(folder) == before


@settings(FUZZ, max_examples=300)
@given(base=valid_settings, space=valid_space, key=st.sampled_from(sorted(MUTATIONS)), data=st.data())
def test_one_invalid_setting_is_refused_before_the_storage_is_touched(folder, base, space, key, data):
    """A valid file with one setting made invalid, run for real (no --check): exit 2, a message naming
    the setting, and neither keep.db nor any other file created or changed."""
    settings_ = dict(base, storage="keep.db")
    if key == "space":
        space = {**space, **data.draw(MUTATIONS["space"])}
        word = None
    elif key == "unknown":
        name = data.draw(text.filter(lambda s: s.replace("-", "_") not in KNOWN + ["experiment", "space", "params"]))
        settings_[name] = 1
        word = "Unknown setting"
    else:
        settings_[key] = data.draw(MUTATIONS[key])
        word = None if key in ("data", "device") else key
    path = folder / "fuzz.toml"
    path.write_text(toml_doc(settings_, space), encoding="utf-8")
    before = state(folder)
    code, _, err = cli(folder, "tune", "fuzz.toml", "-q")
    message = assert_clear_error(code, err)
    if word is not None:
        assert word.replace("_", "-") in message.replace("_", "-"), message
    assert state(folder) == before


@settings(FUZZ, max_examples=60)
@given(base=valid_settings, space=valid_space)
def test_valid_experiment_files_pass_the_check(folder, base, space):
    # a storage that does not exist yet (and must not be created by the check): keep.db holds a study
    # whose measure (epochs, val_fraction) these settings may change, which the check refuses
    path = folder / "fuzz.toml"
    path.write_text(toml_doc(dict(base, storage="fresh.db"), space), encoding="utf-8")
    before = state(folder)
    code, out, err = cli(folder, "tune", "fuzz.toml", "--check")
    assert code == 0, err
    assert "ok:" in out and "digits-mlp" in out
    assert state(folder) == before


FLAGS = {
    "--data": st.sampled_from(["digits", "cifar", "x.csv", "", "mnist:nowhere", "digits:3"]),
    "--preset": st.sampled_from(["mlp", "cnn", "MLP", "resnet", ""]),
    "--strategy": st.sampled_from(sorted(STRATEGIES) + ["bayes", "", "TPE"]),
    "--trials": st.integers(-3, 10**20).map(str) | text,
    "--epochs": st.integers(-3, 5).map(str) | text,
    "--metric": st.sampled_from(["val_loss", "val_acc", "loss", "", "f1", "val_acc,params", "acc,nope", "r2",
                                 "val_acc_std", "acc,acc"]),
    "--constraint": st.sampled_from(["params<=1e5", "nope<=1", "params=3", "epoch_seconds<2", "val_acc>=x"]),
    "--seed": st.integers(-3, 2**70).map(str) | text,
    "--pruner": st.sampled_from(sorted(PRUNERS) + ["asha", ""]),
    "--val-fraction": floats(allow_nan=True, allow_infinity=True).map(repr) | text,
    "--folds": st.integers(-2, 12).map(str) | st.sampled_from(["1797", "1798", "10000000"]) | text,
    "--patience": st.integers(-2, 3).map(str) | text,
    "--device": st.sampled_from(["auto", "cpu", "gpu", "cuda", "cuda:1", "cpu:0", "meta", ""]),
    "--engine": st.sampled_from(["auto", "single", "population", "multi", ""]),
    "--population": st.integers(-2, 10**6).map(str) | text,
    "--workers": st.integers(-2, 64).map(str) | text,
    "--executor": st.sampled_from(["auto", "local", "processes", "ray", "dask"]),
    "--memory-mb": floats(allow_nan=True, allow_infinity=True).map(repr) | text,
    "--grid-points": st.integers(-2, 10**18).map(str) | text,
    "--timeout": floats(allow_nan=True, allow_infinity=True).map(repr) | text,
    "--stages": st.sampled_from(["qmc:0.4,tpe", "tpe", "x:y", "", "qmc:2,qmc:0.5,tpe", "random:-1"]) | text,
    "--top-fraction": floats(allow_nan=True, allow_infinity=True).map(repr) | text,
    "--study": text,
    "--bogus": text,
}
override_names = st.sampled_from(["lr", "width", "depth", "optimizer", "batch_size", "dropout", "momentum",
                                  "lrr", "", "lr_decay", "shape"]) | text
override_values = st.one_of(
    text,
    floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(floats(allow_nan=True, allow_infinity=True), floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["", ":log", ":linear", ":pow2", ":pow3", ":log:pow2"])).map(
        lambda t: f"{t[0]!r}:{t[1]!r}{t[2]}"),
    st.lists(st.sampled_from(["adam", "sgd", "32", "64", "1e-3", "", "none", "x"]), max_size=4).map(",".join),
    st.sampled_from(["1:2:3", ":", "::", "a:b", ",", "1e400", "-0", "true"]),
)


@settings(FUZZ, max_examples=400)
@given(flags=st.lists(st.sampled_from(sorted(FLAGS)), max_size=5, unique=True), data=st.data(),
       overrides=st.lists(st.tuples(override_names, override_values), max_size=3))
def test_any_command_line_is_accepted_or_refused_clearly(folder, flags, data, overrides):
    argv = ["tune"]
    for flag in flags:
        argv += [flag, data.draw(FLAGS[flag], label=flag)]
    for name, value in overrides:
        argv += ["-p", f"{name}={value}"]
    before = state(folder)
    code, out, err = cli(folder, *argv, "--check", "-q", "--storage", "keep.db")
    assert_answered(code, out, err)
    if "--bogus" in flags:
        assert code == 2 and "No such option" in err
    assert state(folder) == before


# ----------------------------------------------------------------------------- real processes

@pytest.mark.parametrize("args, words", [
    (["--trials", "many"], "Invalid value for '--trials'"),
    (["--preset", "transformer"], "Unknown preset 'transformer'"),
    (["-p", "lr=0.5:0.1"], "low < high"),
    (["--memory-mb", "inf"], "'memory_mb' setting must be a finite number"),
    (["--val-fraction", "nan"], "val_fraction"),
])
def test_bad_input_in_a_real_process(workdir, args, words):
    out = subprocess.run([sys.executable, "-m", "shoal", "tune", *args, "-s", "p.db"], capture_output=True,
                         text=True, env=subprocess_env(), cwd=workdir)
    message = assert_clear_error(out.returncode, out.stderr)
    assert words in message
    assert not list(workdir.iterdir())


def test_valid_input_in_a_real_process_checks_then_trains(workdir):
    cmd = [sys.executable, "-m", "shoal", "tune", "--strategy", "random", "--trials", "2", "--epochs", "1",
           "-p", "width=32", "-p", "depth=1", "-s", "v.db", "-q"]
    checked = subprocess.run([*cmd, "--check"], capture_output=True, text=True, env=subprocess_env(), cwd=workdir)
    assert checked.returncode == 0 and "ok:" in checked.stdout, checked.stderr
    assert not (workdir / "v.db").exists()
    ran = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), cwd=workdir)
    assert ran.returncode == 0, ran.stderr
    import optuna

    assert len(optuna.load_study(study_name="digits-mlp", storage="sqlite:///v.db").trials) == 2


@settings(FUZZ, max_examples=6)
@given(base=valid_settings, space=valid_space)
def test_a_few_valid_files_train(folder, base, space):
    """Valid generated files do run: one-epoch studies of one or two trials, in a fresh storage."""
    db = folder / "run.db"
    if db.exists():
        db.unlink()
    path = folder / "fuzz.toml"
    path.write_text(toml_doc(dict(base, storage="run.db", study="valid"), space), encoding="utf-8")
    code, out, err = cli(folder, "tune", "fuzz.toml", "-q")
    # 1: every trial failed or was pruned (a legal outcome, e.g. a diverging lr), which `shoal show` explains.
    assert code in (0, 1), err
    import optuna

    trials = optuna.load_study(study_name="valid", storage=f"sqlite:///{db}").trials
    assert 1 <= len(trials) <= base["trials"]  # a grid may hold fewer points than trials asked
    assert all(t.state.is_finished() for t in trials)
