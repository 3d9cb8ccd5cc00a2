"""Population-based training: exploring, copying, lineage, replay of the best schedule, and resume
from the population checkpoint after a SIGKILL."""

from __future__ import annotations

import collections
import json
import re
import math
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

import shoal
from shoal._errors import ConfigError
from shoal.space import preset
from shoal.study._pbt import checkpoint_path, expected_trials, explore, mutable_params, replay, schedule_of

from tests.conftest import subprocess_env

SMALL = {"width": 32, "batch_size": 64, "depth": 1}


def test_only_shape_preserving_numbers_are_explored():
    names = mutable_params(preset("mlp"))
    assert {"lr", "weight_decay", "l1", "dropout", "momentum", "beta1", "step_size"} <= set(names)
    assert not {"width", "depth", "batch_size", "optimizer", "activation", "batch_norm"} & set(names)


def test_perturb_multiplies_by_0_8_or_1_2_within_range_and_keeps_off_values_off():
    space = preset("mlp")
    cfg = {"optimizer": "momentum", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "weight_decay": 0.0,
           "l1": 1e-5, "lr_decay": "step", "step_size": 4, "step_gamma": 0.5, "depth": 2, "width": 64,
           "shape": "constant", "init": "he", "activation": "relu", "batch_norm": "off", "dropout": 0.45}
    rng = np.random.default_rng(0)
    for _ in range(50):
        new = explore(cfg, space, rng, "perturb")
        assert new["lr"] / cfg["lr"] == pytest.approx(0.8) or new["lr"] / cfg["lr"] == pytest.approx(1.2)
        assert new["weight_decay"] == 0.0
        assert new["dropout"] <= 0.5 and new["momentum"] <= 0.99
        assert new["step_size"] in (3, 5)
        assert {k: new[k] for k in ("width", "depth", "batch_size", "optimizer")} == \
               {k: cfg[k] for k in ("width", "depth", "batch_size", "optimizer")}
        assert space.contains(new)
    drawn = [explore(cfg, space, rng, "resample")["lr"] for _ in range(200)]
    assert 1e-4 <= min(drawn) and max(drawn) <= 1.0
    assert np.median(np.log10(drawn)) == pytest.approx(-2, abs=0.4)  # log-uniform over [1e-4, 1]


@pytest.mark.parametrize("workers", [1, 2])  # 2: copies travel between worker processes
def test_pbt_study_copies_the_best_and_records_lineage(workdir, workers):
    result = shoal.tune(data="digits", preset="mlp", strategy="pbt", trials=8, epochs=6, pbt_interval=2,
                        storage="pbt.db", study="pbt", seed=0, progress=False, params=SMALL, workers=workers)
    study = result.study
    trials = {t.number: t for t in study.get_trials()}
    states = collections.Counter(t.state.name for t in trials.values())
    # every exploit step (epochs 2 and 4) replaces the bottom quarter (2 of 8) by copies of the top quarter
    assert states == {"COMPLETE": 8, "PRUNED": 4}
    assert len(trials) == expected_trials(8, 6, 2, 0.25)  # what the progress bar counts to
    assert study.user_attrs["pbt"]["population"] == 8
    for t in trials.values():
        info = t.user_attrs["pbt"]
        if t.state.name == "PRUNED":
            child = trials[info["replaced_by"]]
            parent = trials[child.user_attrs["pbt"]["parent"]]
            e = info["at_epoch"]
            assert child.user_attrs["pbt"]["start_epoch"] == e and child.user_attrs["pbt"]["slot"] == info["slot"]
            # the copy came from a better member at that epoch
            assert parent.intermediate_values[e] < t.intermediate_values[e]
            # the copy inherits the parent's schedule and adds its own perturbed segment
            sched = child.user_attrs["schedule"]
            assert sched[:-1] == [s for s in parent.user_attrs["schedule"] if s["from_epoch"] < e][: len(sched) - 1]
            assert sched[-1]["from_epoch"] == e
            ratio = sched[-1]["config"]["lr"] / parent.user_attrs["config"]["lr"]
            assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2)
            # the copy's curve starts with the parent's epochs
            n = e
            assert child.user_attrs["curves"]["val_loss"][:n] == pytest.approx(parent.user_attrs["curves"]["val_loss"][:n])
        else:
            assert t.user_attrs["epochs_run"] == 6
    assert not checkpoint_path("pbt.db", "pbt").exists(), "a finished study leaves no checkpoint"

    # the best member's schedule, replayed from epoch 0, ends with the same numbers
    best = result.best_trial
    from shoal.study._builtin import prepare_data

    records = replay(schedule_of(best), prepare_data(result.experiment).folds[0], epochs=6)
    assert [r.val_loss for r in records] == pytest.approx(best.user_attrs["curves"]["val_loss"], abs=1e-5)

    # the same from the command line: the schedule exported as JSON and replayed on the study's data
    from typer.testing import CliRunner

    from shoal.cli._main import app

    out = CliRunner().invoke(app, ["schedule", "-s", "pbt.db", "--study", "pbt", "-o", "best.json", "--replay"])
    assert out.exit_code == 0, out.output
    assert json.loads((workdir / "best.json").read_text())["schedule"] == schedule_of(best)
    assert "replayed 6 epochs" in out.output
    diff = re.search(r"largest\s+difference\s+over\s+the\s+curve\s+([-+0-9.e]+)\)", out.output)
    assert diff and float(diff.group(1)) < 1e-5
    # a replaced member replays its own epochs, not the study's, and is compared epoch for epoch
    replaced = next(t for t in trials.values() if t.state.name == "PRUNED")
    n = len(replaced.user_attrs["curves"]["val_loss"])
    out = CliRunner().invoke(app, ["schedule", "-s", "pbt.db", "--study", "pbt", "--trial", str(replaced.number),
                                   "--replay"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"replayed {n} epochs (the trial pruned there)" in text, text
    assert f"(recorded {replaced.user_attrs['curves']['val_loss'][-1]:.6g};" in text
    # a path that cannot be written is a ConfigError (one paragraph from `shoal`), not a traceback
    out = CliRunner().invoke(app, ["schedule", "-s", "pbt.db", "--study", "pbt", "-o", "no/such/dir/x.json"])
    assert isinstance(out.exception, ConfigError), out.exception
    assert "Cannot write the schedule to 'no/such/dir/x.json': No such file or directory" in str(out.exception)


def test_pbt_refuses_what_it_cannot_do(workdir):
    with pytest.raises(ConfigError, match="engine population"):
        shoal.tune(data="digits", strategy="pbt", engine="single", trials=4, epochs=2, progress=False)
    with pytest.raises(ConfigError, match="k-fold"):
        shoal.tune(data="digits", strategy="pbt", folds=3, trials=4, epochs=2, progress=False, params=SMALL)
    with pytest.raises(ConfigError, match="drop the pruner 'sha'"):
        shoal.tune(data="digits", strategy="pbt", pruner="sha", trials=4, epochs=2, progress=False)
    with pytest.raises(ConfigError, match="pbt_quantile"):
        shoal.tune(data="digits", strategy="pbt", pbt_quantile=0.7, trials=4, epochs=2, progress=False)
    trial = optuna.trial.create_trial(value=1.0)
    with pytest.raises(ConfigError, match="no PBT schedule"):
        schedule_of(trial)


def test_a_failed_member_is_recorded_and_its_slot_refilled_with_a_copy(workdir):
    from shoal.space import Float, Space

    def fn(config, epochs, state=None):
        step = (state or 0) + epochs
        if config["x"] < 0.3 and step == 2:
            raise RuntimeError("exploded")
        return (config["x"] - 0.7) ** 2 + 1.0 / step, step

    result = shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="pbt", trials=8, epochs=6,
                        pbt_interval=3, storage="f.log", seed=4, progress=False)
    trials = result.study.get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all("exploded" in t.user_attrs["fail_reason"] for t in failed)
    # at epoch 3 the failed members' slots got copies of top members: every slot ends alive
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["pbt"]["slot"] for t in done) == list(range(8))
    for t in failed:
        slot = t.user_attrs["pbt"]["slot"]
        copy = next(c for c in trials if c.user_attrs["pbt"]["slot"] == slot and c.user_attrs["pbt"]["start_epoch"] == 3)
        assert copy.user_attrs["pbt"]["parent"] is not None
    assert all(len(t.user_attrs["curves"]["value"]) == 6 for t in done)


def _cli(workdir):
    return [sys.executable, "-m", "shoal", "tune", "--data", "digits", "--strategy", "pbt", "--trials", "4",
            "--epochs", "6", "--pbt-interval", "2", "-p", "width=32", "-p", "batch_size=32", "-p", "depth=1",
            "-q", "--seed", "3", "-s", str(workdir / "pbt.db"), "--study", "p"]


@pytest.mark.slow
def test_a_killed_pbt_study_resumes_from_its_checkpoint(workdir):
    """SIGKILL after a checkpoint: the rerun goes on from it and ends as an uninterrupted run does."""
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    # The uninterrupted reference runs beside the run that is killed (one thread each).
    ref = subprocess.Popen(_cli(workdir / "a"), env=subprocess_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    ckpt = checkpoint_path(str(workdir / "b" / "pbt.db"), "p")
    proc = subprocess.Popen(_cli(workdir / "b"), env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    reference = optuna.load_study(study_name="p", storage=f"sqlite:///{workdir / 'a' / 'pbt.db'}")
    subprocess.run(_cli(workdir / "b"), env=subprocess_env(), check=True, capture_output=True)
    resumed = optuna.load_study(study_name="p", storage=f"sqlite:///{workdir / 'b' / 'pbt.db'}")

    def finals(study):
        done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
        return sorted((t.user_attrs["pbt"]["slot"], t.value) for t in done)

    got, want = finals(resumed), finals(reference)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(4))
    assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-4)
    retried = [t for t in resumed.get_trials() if t.user_attrs.get("retry_of") is not None]
    assert retried, "the members went on in retries of their interrupted trials"
    assert not ckpt.exists()


def test_two_storage_files_in_one_folder_keep_their_own_pbt_checkpoints():
    # both studies are named "digits-mlp": one shared file was deleted by whichever run finished first
    assert checkpoint_path("a.db", "digits-mlp") != checkpoint_path("b.db", "digits-mlp")
    assert checkpoint_path("sub/a.db", "s").parent == checkpoint_path("sqlite:///sub/b.db", "s").parent


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_killed_pbt_study_whose_checkpoint_is_gone_starts_its_population_again(workdir, damage):
    """SIGKILL after a checkpoint, then the checkpoint lost or cut short: the rerun trains the
    population again from epoch 0 in the interrupted trials' retries (it crashed, and each rerun
    failed more trials), and keeps an unreadable file aside rather than deleting it."""
    cli = _cli(workdir)
    cli[cli.index("--epochs") + 1] = "30"  # long enough to be killed mid-way
    ckpt = checkpoint_path(str(workdir / "pbt.db"), "p")
    proc = subprocess.Popen(cli, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if damage == "deleted":
        ckpt.unlink()
    else:
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    done = subprocess.run(cli, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{workdir / 'pbt.db'}")
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["pbt"]["slot"] for t in complete) == list(range(4))
    assert all(t.user_attrs["epochs_run"] == 30 for t in complete)
    assert not [t for t in study.get_trials() if t.state.name in ("RUNNING", "WAITING")]
    aside = ckpt.with_name(ckpt.name + ".unreadable")
    assert aside.exists() == (damage == "truncated") and not ckpt.exists()


def test_the_report_draws_pbt_lineage(workdir):
    from shoal.report import load_report
    from shoal.space import Float, Space

    def fn(config, epochs, state=None):
        step = (state or 0) + epochs
        return (config["x"] - 0.7) ** 2 + 1.0 / step, step

    result = shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="pbt", trials=4, epochs=4,
                        pbt_interval=2, storage="lineage.db", study="l", seed=0, progress=False)
    copies = [(t.user_attrs["pbt"]["parent"], t.number) for t in result.study.get_trials()
              if t.user_attrs["pbt"]["parent"] is not None]
    assert copies
    data = load_report("lineage.db", "l")
    assert sorted(data.lineage.edges) == sorted(copies)
    # drawn by epoch: each copy's dotted line goes from its parent's value at the exploit epoch (2)
    # to its own first epoch after it; its own line starts there
    from shoal.report._html import _lineage_fig

    fig = _lineage_fig(data)
    assert fig["layout"]["xaxis"]["title"]["text"] == "epoch"
    traces = {t["name"]: t for t in fig["data"]}
    by_number = {t.number: t for t in result.study.get_trials()}
    joins = [traces["copy (from its parent)"]["x"][i:i + 2] for i in range(0, len(traces["copy (from its parent)"]["x"]), 3)]
    assert joins and all(j == [2, 3] for j in joins)
    parent, child = copies[0]
    curve = by_number[parent].user_attrs["curves"]["value"]
    assert curve[1] in traces["copy (from its parent)"]["y"]
    assert any(name.startswith("best member's path (trial ") for name in traces)
