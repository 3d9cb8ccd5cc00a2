"""The command line: tune / show / best / space, experiment files, errors, kill and resume."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from shoal.cli import main
from tests.conftest import subprocess_env


def run_cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["shoal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
        raise SystemExit(0)
    return exit_info.value.code


SMALL = ["--data", "digits", "--preset", "mlp", "--epochs", "2", "-p", "width=32,64", "-p", "depth=1", "-q"]


def test_tune_then_show_and_best(workdir, monkeypatch, capsys):
    assert run_cli(monkeypatch, "tune", *SMALL, "--strategy", "random", "--trials", "3") == 0
    out = capsys.readouterr().out
    assert "best val_loss" in out and "digits-mlp" in out
    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///shoal.db")
    assert len(study.trials) == 3
    assert {t.params["depth"] if "depth" in t.params else t.user_attrs["config"]["depth"] for t in study.trials} == {1}

    assert run_cli(monkeypatch, "show") == 0
    out = capsys.readouterr().out
    assert "3 trials" in out and "3 complete" in out

    assert run_cli(monkeypatch, "best", "--json") == 0
    best = json.loads(capsys.readouterr().out)
    assert best["trial"] == study.best_trial.number
    assert best["value"] == pytest.approx(study.best_value)
    assert best["config"]["width"] in (32, 64)


def test_experiment_file_with_space_overrides(workdir, monkeypatch, capsys):
    (workdir / "exp.toml").write_text(
        """
data = "digits"
preset = "mlp"
strategy = "qmc"
trials = 3
epochs = 2
storage = "exp.db"
study = "from-file"

[space]
optimizer = ["adam", "momentum"]
batch_size = 128
lr = { low = 1e-3, high = 1e-1 }
width = 32
depth = 1
"""
    )
    # A flag on the command line wins over the file.
    assert run_cli(monkeypatch, "tune", "exp.toml", "--trials", "4", "-q") == 0
    study = optuna.load_study(study_name="from-file", storage="sqlite:///exp.db")
    assert len(study.trials) == 4
    for t in study.trials:
        config = t.user_attrs["config"]
        assert config["optimizer"] in ("adam", "momentum")
        assert config["batch_size"] == 128 and "batch_size" not in t.params
        assert 1e-3 <= config["lr"] <= 1e-1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "transformer"], "Unknown preset 'transformer'"),
        (["--data", "missing.csv"], "not found"),
        (["--data", "cifar"], "cifar"),
        (["-p", "learning_rate=0.1"], "Unknown parameter 'learning_rate'"),
        (["-p", "lr=0.5:0.1"], "low < high"),
        (["-p", "lr"], "must look like name=value"),
        (["-p", "lrr=0.01"], "in TOML `[space.lrr]` with"),  # brackets printed, not taken for markup
        (["-p", "optimizer=0.1:1"], "'optimizer' is categorical: a range (low, high) does not apply to it"),
        (["-p", "depth=choices"], "'depth' parameter must be a positive integer"),
        (["--storage", "postgresql+psycopg://u:secret@nohost/db", "--check"],  # --check reaches the server
         "Cannot open the storage 'postgresql+psycopg://u:***@nohost/db'"),
        (["--strategy", "annealing"], "Unknown strategy 'annealing'"),
        (["missing.toml"], "Experiment file not found"),
    ],
)
def test_each_error_path_prints_one_paragraph_and_exits_2(workdir, monkeypatch, capsys, args, message):
    code = run_cli(monkeypatch, "tune", *args, "--trials", "1", "--epochs", "1", "-q")
    err = capsys.readouterr().err
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert not (workdir / "shoal.db").exists()


def test_error_in_a_real_process_has_no_traceback(workdir):
    out = subprocess.run([sys.executable, "-m", "shoal", "tune", "--preset", "nope"], capture_output=True,
                         text=True, env=subprocess_env(), cwd=workdir)
    assert out.returncode == 2
    assert "Unknown preset 'nope'" in out.stderr and "Traceback" not in out.stderr
    assert not (workdir / "shoal.db").exists()


def test_show_without_storage_is_a_clear_error(workdir, monkeypatch, capsys):
    assert run_cli(monkeypatch, "show") == 2
    assert "no shoal.db in this folder" in capsys.readouterr().err


def test_space_command_prints_the_preset(monkeypatch, capsys):
    assert run_cli(monkeypatch, "space", "--preset", "mlp", "-p", "lr=1e-3:1e-1") == 0
    out = capsys.readouterr().out
    assert "lr: float [0.001, 0.1] log" in out
    assert "momentum: float [0.5, 0.99]  if optimizer=momentum" in out


def _complete(db):
    try:
        study = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{db}")
    except KeyError:
        return []
    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


@pytest.mark.slow
def test_killed_run_continues_where_it_stopped(workdir):
    """SIGKILL mid-study, run the same command again: nothing lost, nothing repeated, budget kept."""
    cmd = [sys.executable, "-m", "shoal", "tune", "--data", "digits", "--preset", "mlp", "--strategy", "tpe",
           "--trials", "10", "--epochs", "4", "-p", "width=32:64:pow2", "-q", "--seed", "5",
           "--population", "3"]  # trials finish three at a time: the kill lands with some left
    proc = subprocess.Popen(cmd, cwd=workdir, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_complete(workdir / "shoal.db")) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.params for t in _complete(workdir / "shoal.db")}
    assert 3 <= len(before) < 10

    resumed = subprocess.run(cmd, cwd=workdir, env=subprocess_env(), check=True, capture_output=True, text=True)
    study = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{workdir / 'shoal.db'}")
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # the budget counts finished trials: complete ones and any that diverged (a sampled lr near 1
    # fails one now and then), not the interrupted ones, which ran again
    finished = [t for t in trials if t.state.is_finished() and t.user_attrs.get("fail_reason") != "interrupted"]
    assert len(finished) == 10, " ".join(f"{t.number}:{t.state.name}:{t.user_attrs.get('fail_reason')}:"
                                         f"{t.user_attrs.get('retry_of')}" for t in trials)
    assert all(t.state == TrialState.COMPLETE or "diverged" in t.user_attrs.get("fail_reason", "") for t in finished)
    for number, params in before.items():  # what was recorded before the kill is still there
        assert study.trials[number].params == params
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    for t in interrupted:  # each interrupted trial ran again with the same configuration (a trial
        # killed while it sampled its parameters has only some set: its retry draws the rest)
        assert any(r.user_attrs.get("retry_of") == t.number and {k: r.params.get(k) for k in t.params} == t.params
                   for r in complete)
    assert len(trials) == 10 + len(interrupted)
    if interrupted:  # said even with -q: the run did not start from nothing
        assert f"{len(interrupted)} trial(s) left running by a run that stopped" in " ".join(resumed.stderr.split())

    # The same command once more adds nothing.
    subprocess.run(cmd, cwd=workdir, env=subprocess_env(), check=True, capture_output=True)
    assert len(optuna.load_study(study_name="digits-mlp", storage="sqlite:///" + str(workdir / "shoal.db")).trials) == len(trials)


def test_continuing_a_study_with_settings_that_change_its_measure_is_refused(workdir, monkeypatch, capsys):
    assert run_cli(monkeypatch, "tune", *SMALL, "--strategy", "random", "--trials", "2") == 0
    capsys.readouterr()
    # the budget and the strategy may change: the study goes on
    assert run_cli(monkeypatch, "tune", *SMALL, "--strategy", "tpe", "--trials", "3") == 0
    for flag, value, was in (("--epochs", "3", "epochs=2"), ("--val-fraction", "0.3", "val_fraction=0.2"),
                             ("--seed", "1", "seed=0"), ("--metric", "train_loss", "metric=['val_loss']")):
        capsys.readouterr()
        args = [a if a != "2" or flag != "--epochs" else value for a in SMALL]
        args = args + ([] if flag == "--epochs" else [flag, value])
        assert run_cli(monkeypatch, "tune", *args, "--trials", "4") == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"The study 'digits-mlp' holds 3 trial(s) measured with {was}" in err, err
        assert "start another study with --study NAME" in err
        # --check says so too, before a run would
        assert run_cli(monkeypatch, "tune", *args, "--trials", "4", "--check") == 2
        assert f"measured with {was}" in " ".join(capsys.readouterr().err.split())
    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///shoal.db")
    assert len(study.trials) == 3 and study.user_attrs["shoal"]["strategy"] == "tpe"
    # another study name is a fresh start
    assert run_cli(monkeypatch, "tune", *SMALL, "--seed", "1", "--trials", "1", "--study", "other") == 0
    # with k-fold, every row is validated once: val_fraction does not change the measure
    assert run_cli(monkeypatch, "tune", *SMALL, "--folds", "2", "--trials", "1", "--study", "k") == 0
    assert run_cli(monkeypatch, "tune", *SMALL, "--folds", "2", "--val-fraction", "0.4", "--trials", "2",
                   "--study", "k") == 0


def test_a_study_continues_on_the_same_file_named_from_another_folder(workdir, monkeypatch, capsys):
    # The data setting is compared by where it points, not as written: "sub/x.csv" from the
    # project folder and "x.csv" from sub/ are one file; the same name in another folder is not.
    rng = np.random.default_rng(0)
    for folder in ("sub", "other"):
        (workdir / folder).mkdir()
        rows = [f"{a:.4f},{b:.4f},{int(a > b)}" for a, b in rng.normal(size=(80, 2))]
        (workdir / folder / "x.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    db = ["--storage", str(workdir / "shoal.db"), "--study", "s"]
    small = ["--epochs", "2", "-p", "width=32", "-p", "depth=1", "-q", "--strategy", "random", *db]
    assert run_cli(monkeypatch, "tune", "--data", "sub/x.csv", *small, "--trials", "2") == 0
    monkeypatch.chdir(workdir / "sub")
    assert run_cli(monkeypatch, "tune", "--data", "x.csv", *small, "--trials", "3") == 0
    capsys.readouterr()
    monkeypatch.chdir(workdir / "other")
    assert run_cli(monkeypatch, "tune", "--data", "x.csv", *small, "--trials", "4") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"measured with data={str(workdir / 'sub' / 'x.csv')!r}" in err, err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{workdir / 'shoal.db'}")
    assert len(study.trials) == 3


def test_tables_written_to_a_pipe_are_not_cut_to_80_columns(workdir, monkeypatch):
    """Piped (a log, CI), rich would draw 80 columns and cut cells to "..."; shoal uses 140."""
    assert run_cli(monkeypatch, "tune", *SMALL, "--strategy", "random", "--trials", "3") == 0
    env = {k: v for k, v in subprocess_env().items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "shoal", "show"], cwd=workdir, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith("┃")]
    assert table and "…" not in out.stdout, out.stdout
    assert max(len(line) for line in table) > 80  # wider than rich's default for a pipe


def test_show_says_when_no_trial_completed(workdir, monkeypatch, capsys):
    study = optuna.create_study(study_name="s", storage="sqlite:///none.db")
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "out of memory"}))
    assert run_cli(monkeypatch, "show", "-s", "none.db") == 0
    out = capsys.readouterr().out
    assert "no complete trial yet" in out and "best 0 of 0" not in out and "out of memory" in out


def test_show_names_a_user_objective_not_data_it_never_read(workdir, monkeypatch, capsys):
    import shoal

    def error_rate(config):
        return config["x"] ** 2

    shoal.tune(error_rate, space=shoal.Space([shoal.Float("x", -1.0, 1.0)]), metric="error", trials=2,
               storage="o.db", progress=False)
    capsys.readouterr()
    assert run_cli(monkeypatch, "show", "-s", "o.db") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "metric=error" in out and "error_rate" in out and "data=" not in out and "preset=" not in out, out


def test_task_overrides_the_inferred_one(workdir, monkeypatch, capsys):
    # 60 integer labels: more than the 50 that are read as classes, so regression unless told
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{i % 60}" for i, (a, b) in enumerate(rng.normal(size=(600, 2)))]
    (workdir / "c60.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    assert run_cli(monkeypatch, "tune", "--data", "c60.csv", "--check") == 0
    assert "regression" in " ".join(capsys.readouterr().out.split())
    assert run_cli(monkeypatch, "tune", "--data", "c60.csv", "--task", "classification", "--check") == 0
    assert "60 classes" in " ".join(capsys.readouterr().out.split())
    assert run_cli(monkeypatch, "tune", "--data", "c60.csv", "--task", "labels", "--check") == 2
    assert "The 'task' setting must be 'classification' or 'regression'" in " ".join(capsys.readouterr().err.split())


def test_best_test_scores_the_best_trial_once_on_the_held_out_rows(workdir, monkeypatch, capsys):
    import shoal
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData, train

    result = shoal.tune(data="digits", test_fraction=0.2, trials=3, epochs=3, storage="t.db", progress=False,
                        params={"width": 32, "depth": 1, "batch_size": 128})
    capsys.readouterr()
    assert run_cli(monkeypatch, "best", "-s", "t.db", "--test", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    best = result.best_trial
    scored = out["test"]
    assert scored["trial"] == best.number and scored["epochs"] == 3 and scored["rows"] == 359
    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///t.db")
    assert study.user_attrs["test"] == scored
    # trained again as in the study: the same training run gives the recorded validation curve,
    # and evaluated on the test rows it gives the score
    ds = load_dataset("digits")
    p = prepare(ds, train_val_split(ds, val_fraction=0.2, test_fraction=0.2, seed=0))
    again = train(best.user_attrs["config"], TensorData.from_prepared(p), epochs=3, seed=best.user_attrs["seed"])
    # (to float rounding, which training amplifies over epochs: the study ran in worker processes)
    assert [r.val_loss for r in again.epochs] == pytest.approx(best.user_attrs["curves"]["val_loss"], rel=1e-2)
    test_only = dataclasses.replace(p, X_val=p.X_test, y_val=p.y_test)
    last = train(best.user_attrs["config"], TensorData.from_prepared(test_only), epochs=3, seed=best.user_attrs["seed"]).last
    assert scored["test_loss"] == pytest.approx(last.val_loss) and scored["test_acc"] == pytest.approx(last.val_acc)
    assert run_cli(monkeypatch, "show", "-s", "t.db") == 0
    assert f"held-out test rows (359): trial {best.number}" in " ".join(capsys.readouterr().out.split())
    # without held-out rows there is nothing to score
    shoal.tune(data="digits", trials=1, epochs=1, storage="n.db", progress=False, params={"width": 32, "depth": 1})
    assert run_cli(monkeypatch, "best", "-s", "n.db", "--test") == 2
    assert "holds out no test rows (test_fraction = 0)" in " ".join(capsys.readouterr().err.split())


def _write_idx_split(folder, split, n, seed):
    import struct

    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3).astype(np.uint8)
    X = (rng.random((n, 6, 6)) * 40 + y[:, None, None] * 60).astype(np.uint8)
    for kind, a in (("images-idx3", X), ("labels-idx1", y)):
        (folder / f"{split}-{kind}-ubyte").write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
                                                       + a.tobytes())


def test_official_test_holds_out_the_t10k_file_for_best_test(workdir, monkeypatch, capsys):
    _write_idx_split(workdir, "train", 150, 0)
    _write_idx_split(workdir, "t10k", 40, 1)
    args = ("tune", "--data", ".", "--trials", "2", "--epochs", "2", "-s", "o.db", "-q", "-p", "width=32", "-p", "depth=1")
    assert run_cli(monkeypatch, *args, "--official-test") == 0
    capsys.readouterr()
    study = optuna.load_study(study_name=f"{workdir.name}-mlp", storage="sqlite:///o.db")  # "." named by its folder
    assert study.user_attrs["shoal"]["official_test"] is True
    assert run_cli(monkeypatch, "best", "-s", "o.db", "--test", "--json") == 0
    scored = json.loads(capsys.readouterr().out)["test"]
    assert scored["rows"] == 40  # the t10k file, no other row
    assert run_cli(monkeypatch, "show", "-s", "o.db") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "test=the data's own test part" in out and "held-out test rows (40)" in out
    # the split decides what a value measures: continuing without it is refused
    assert run_cli(monkeypatch, *args, "--trials", "3") == 2
    assert "official_test=True" in " ".join(capsys.readouterr().err.split())
    # --test-fraction from the command line too
    assert run_cli(monkeypatch, "tune", "--data", "digits", "--test-fraction", "0.25", "--check") == 0
    assert run_cli(monkeypatch, "tune", "--data", "digits", "--official-test", "--check") == 2
    assert "'digits' has no test part of its own" in " ".join(capsys.readouterr().err.split())


def test_show_counts_interrupted_trials_apart_and_best_says_when_every_trial_failed(workdir, monkeypatch, capsys):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(storage="sqlite:///i.db", study_name="i")
    dist = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.5}, distributions=dist,
                                 user_attrs={"fail_reason": "training diverged at epoch 1"}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.01}, distributions=dist,
                                 user_attrs={"fail_reason": "interrupted"}))
    assert run_cli(monkeypatch, "best", "-s", "i.db") == 2
    assert "has no complete trial: 2 of its 2 trials failed. `shoal show` lists their reasons" in \
        " ".join(capsys.readouterr().err.split())
    assert run_cli(monkeypatch, "show", "-s", "i.db") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "i: 2 trials 1 fail, 1 interrupted" in out and "The same `shoal tune` command continues" in out
    assert "training diverged" in out and "│ 1 │ interrupted" not in out  # the failure table lists real failures
