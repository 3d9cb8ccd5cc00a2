"""babysit / fork / control through a real SQLite storage; resume after SIGKILL in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

import shoal
from shoal import panda
from shoal._errors import ConfigError
from shoal.panda._checkpoint import list_checkpoints, load_checkpoint
from shoal.panda._trainer import Trainer
from shoal.study._builtin import prepare_data
from shoal.study._experiment import make_experiment
from tests.conftest import subprocess_env

FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
SMALL = {"width": 32, "lr": 0.01}


def curves_of(records):
    return [tuple(getattr(r, f) for f in FIELDS) for r in records]


def reference(config, epochs, seed=0, at=None, stop_after=None):
    """An uninterrupted run with the Trainer, applying events ``at`` = [(what, value, epoch, step)]."""
    data = prepare_data(make_experiment({"data": "digits", "seed": seed, "engine": "single", "device": "cpu"})).folds[0]
    t = Trainer(config, data, epochs=epochs, seed=seed)
    pending = list(at or [])

    def control(tr):
        while pending and (pending[0][2], pending[0][3]) == (tr.epoch + 1, tr.step):
            what, value, _, _ = pending.pop(0)
            tr.apply(what, value)

    return t.run(control=control, on_epoch=(lambda r: r.epoch >= stop_after) if stop_after else None)


def load(storage, name="digits-mlp-panda"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")


def test_babysit_records_a_trial_like_tune_and_equals_train(workdir):
    r = shoal.babysit(data="digits", params=SMALL, epochs=3, storage="p.db", progress=False, device="cpu")
    assert r.state == "complete" and r.trial == 0 and r.events == [] and r.lineage is None
    t = load("p.db").trials[0]
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(r.history.last.val_loss)
    for key in ("config", "curves", "seed", "seconds", "epochs_run", "gap", "device", "engine", "events", "lineage"):
        assert key in t.user_attrs, key
    assert t.user_attrs["engine"] == "single" and t.user_attrs["epochs_run"] == 3
    assert t.intermediate_values == {e: pytest.approx(v) for e, v in enumerate(t.user_attrs["curves"]["val_loss"], 1)}
    assert curves_of(r.history.epochs) == curves_of(reference(SMALL, 3).epochs)
    assert [e for e, s, _ in list_checkpoints(r.checkpoints)] == [1, 2, 3]
    assert r.checkpoints == workdir / "p.checkpoints" / "digits-mlp-panda" / "trial-0"


def test_commands_from_another_connection_apply_at_the_next_step_and_are_recorded(workdir):
    sent = {}

    def on_epoch(record):
        # Through a fresh storage connection, as another terminal would; a bad command changes nothing.
        if record.epoch == 1:
            sent["set"] = panda.set_lr("p.db", None, None, 0.05)
            with pytest.raises(ConfigError, match="must be a positive number. Got -0.1"):
                panda.set_lr("p.db", None, 0, -0.1)
        if record.epoch == 2:
            sent["mul"] = panda.multiply_lr("p.db", None, 0, 0.5)
            sent["ckpt"] = panda.checkpoint("p.db", None, 0)

    r = shoal.babysit(data="digits", params=SMALL, epochs=4, storage="p.db", progress=False, poll=0,
                      on_epoch=on_epoch, device="cpu")
    assert sent["set"]["alive"] is True
    whats = [(e["what"], e["value"], e["epoch"], e["step"]) for e in r.events]
    assert whats == [("set_lr", 0.05, 2, 0), ("multiply_lr", 0.5, 3, 0), ("checkpoint", None, 3, 0)]
    assert [rec.lr for rec in r.history.epochs] == pytest.approx([0.01, 0.05, 0.025, 0.025])
    assert [e["id"] for e in r.events] == [sent["set"]["id"], sent["mul"]["id"], sent["ckpt"]["id"]]
    stored = load("p.db").trials[0]
    assert stored.user_attrs["events"] == json.loads(json.dumps(r.events))
    assert stored.user_attrs["curves"]["lr"] == pytest.approx([0.01, 0.05, 0.025, 0.025])
    expected = reference(SMALL, 4, at=[("set_lr", 0.05, 2, 0), ("multiply_lr", 0.5, 3, 0)])
    assert curves_of(r.history.epochs) == curves_of(expected.epochs)


def test_bad_control_input_is_a_config_error_and_writes_nothing(workdir):
    shoal.babysit(data="digits", params=SMALL, epochs=1, storage="p.db", progress=False, device="cpu")
    shoal.tune(data="digits", trials=1, epochs=1, storage="p.db", study="tuned", progress=False, engine="single")
    before = load("p.db").trials[0].user_attrs
    with pytest.raises(ConfigError, match="Trial 0 .* is complete, not running"):
        panda.set_lr("p.db", "digits-mlp-panda", 0, 0.1)
    with pytest.raises(ConfigError, match="No trial 7 in study 'digits-mlp-panda'. Babysat trials there: 0"):
        panda.pause("p.db", "digits-mlp-panda", 7)
    with pytest.raises(ConfigError, match="was not started by `shoal babysit`"):
        panda.stop("p.db", "tuned", 0)
    with pytest.raises(ConfigError, match="The learning rate of 'set_lr' must be a positive number. Got -1"):
        panda.set_lr("p.db", "digits-mlp-panda", 0, -1)
    with pytest.raises(ConfigError, match="factor of 'multiply_lr' must be a positive number. Got nan"):
        panda.multiply_lr("p.db", "digits-mlp-panda", 0, float("nan"))
    with pytest.raises(ConfigError, match="Unknown command 'faster'"):
        panda.send("p.db", "digits-mlp-panda", 0, "faster")
    with pytest.raises(ConfigError, match="No study named 'nope'"):
        panda.resume("p.db", "nope", 0)
    with pytest.raises(ConfigError, match=r"No babysat trial of study .digits-mlp-panda. is running now \(babysat before: 0; `shoal fork --trial N --epoch E`"):
        panda.pause("p.db", "digits-mlp-panda", None)
    assert load("p.db").trials[0].user_attrs == before


def test_fork_starts_from_the_checkpoint_with_new_settings_and_stores_lineage(workdir):
    parent = shoal.babysit(data="digits", params=SMALL, epochs=3, storage="p.db", progress=False, device="cpu")
    child = panda.fork(trial=0, epoch=2, params={"lr": 0.001}, epochs=4, storage="p.db", progress=False)
    assert child.trial == 1 and child.state == "complete"
    assert child.lineage == {"parent_trial": 0, "parent_epoch": 2, "changes": {"lr": 0.001}}
    t = load("p.db").trials[1]
    assert t.user_attrs["lineage"] == child.lineage and t.user_attrs["config"]["lr"] == 0.001
    assert t.user_attrs["seed"] == load("p.db").trials[0].user_attrs["seed"]
    # Its start state is the parent's epoch-2 checkpoint, and its curves begin with the parent's.
    start = load_checkpoint(child.checkpoints / "epoch-002.pt")
    theirs = load_checkpoint(parent.checkpoints / "epoch-002.pt")
    assert all((start["model"][k] == theirs["model"][k]).all() for k in theirs["model"])
    assert curves_of(child.history.epochs[:2]) == curves_of(parent.history.epochs[:2])
    assert [r.lr for r in child.history.epochs] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    # From epoch 3 on it is the parent's run with the lr set to 0.001 there.
    expected = reference(SMALL, 4, at=[("set_lr", 0.001, 3, 0)])
    assert curves_of(child.history.epochs) == curves_of(expected.epochs)
    assert child.events[-1]["what"] == "fork" and child.events[-1]["epoch"] == 3
    with pytest.raises(ConfigError, match=r"no checkpoint after epoch 9. Its checkpoints: epochs 1, 2, 3"):
        panda.fork(trial=0, epoch=9, storage="p.db", progress=False)
    with pytest.raises(ConfigError, match="'width' cannot change"):
        panda.fork(trial=0, epoch=2, params={"width": 64}, storage="p.db", progress=False)
    with pytest.raises(ConfigError, match="'epochs' must be larger than 2"):
        panda.fork(trial=0, epoch=2, epochs=2, storage="p.db", progress=False)
    assert len(load("p.db").trials) == 2


def test_a_fork_gives_its_new_settings_the_whole_plateau_patience(workdir):
    from shoal.panda._checkpoint import save_checkpoint

    parent = shoal.babysit(data="digits", params=SMALL, epochs=3, storage="p.db", progress=False, device="cpu",
                           plateau="2,0.5")
    # the parent's epoch-2 state one epoch into a plateau that nothing can end (best -inf)
    state = load_checkpoint(parent.checkpoints / "epoch-002.pt")
    state["plateau"] = {"best": float("-inf"), "wait": 1}
    save_checkpoint(state, parent.checkpoints, "epoch-002.pt")
    child = panda.fork(trial=0, epoch=2, params={"lr": 0.003}, epochs=4, storage="p.db", progress=False)
    # carried over, the count would have reached the patience after epoch 3 and halved 0.003 for
    # epoch 4; started again, it reaches it only after epoch 4, the last
    assert [r.lr for r in child.history.epochs][2:] == pytest.approx([0.003, 0.003])
    assert not [e for e in child.events if e["what"] == "plateau"]


def _wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_resume_after_sigkill_ends_with_the_numbers_of_an_uninterrupted_run(workdir):
    cmd = [sys.executable, "-m", "shoal", "babysit", "--quiet", "-s", "p.db", "--epochs", "300", "--device", "cpu",
           "-p", "width=32", "-p", "batch_size=32", "-p", "lr=0.01", "--poll", "0.01"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        folder = workdir / "p.checkpoints" / "digits-mlp-panda" / "trial-0"
        _wait_for(lambda: (folder / "epoch-001.pt").exists() or proc.poll() is not None, what="epoch 1 checkpoint")
        assert proc.poll() is None, proc.stdout.read().decode()
        # A pause, then an lr change while paused: both land after the last checkpoint, at the same step,
        # so resuming must replay the lr change there (and not the pause).
        assert panda.pause("p.db", None, 0, wait=30)["event"] is not None
        lr = panda.set_lr("p.db", None, 0, 0.003, wait=30)
        assert lr["event"] is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    t = load("p.db").trials[0]
    assert t.state == TrialState.RUNNING
    applied = {e["id"]: e for e in t.user_attrs["events"]}
    at = applied[lr["id"]]
    last = list_checkpoints(folder)[-1][0]
    assert at["epoch"] > last  # the lr change is not in the last checkpoint: resuming replays it
    stop_at = last + 2  # the epoch of the replayed lr change, and one more
    r = shoal.babysit(data="digits", params={"width": 32, "batch_size": 32, "lr": 0.01}, epochs=300, storage="p.db",
                      device="cpu", progress=False, on_epoch=lambda rec: rec.epoch >= stop_at)
    assert r.trial == 0 and r.state == "complete"
    whats = [e["what"] for e in r.events]
    assert whats[whats.index("resume") + 1] == "set_lr"  # replayed after the resume, at its own epoch and step
    expected = reference({"width": 32, "batch_size": 32, "lr": 0.01}, 300,
                         at=[("set_lr", 0.003, at["epoch"], at["step"])], stop_after=stop_at)
    assert len(r.history.epochs) == stop_at
    assert curves_of(r.history.epochs) == curves_of(expected.epochs)
    assert [e["id"] for e in r.events if e["what"] == "set_lr"] == [lr["id"]]
    assert "pause" not in whats  # the pause applied after the checkpoint is not repeated, but listed
    resumed = r.events[whats.index("resume")]
    assert [e["what"] for e in resumed["not_repeated"]] == ["pause"] and resumed["value"] == f"epoch-{last:03d}.pt"


def test_the_same_fork_command_after_sigkill_continues_the_fork(workdir):
    shoal.babysit(data="digits", params=SMALL, epochs=3, storage="p.db", progress=False, device="cpu")
    cmd = [sys.executable, "-m", "shoal", "fork", "--trial", "0", "--epoch", "2", "-p", "lr=0.001", "--epochs", "300",
           "-s", "p.db", "--quiet", "--poll", "0.01"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        folder = workdir / "p.checkpoints" / "digits-mlp-panda" / "trial-1"
        _wait_for(lambda: (folder / "epoch-004.pt").exists() or proc.poll() is not None, what="the fork's epoch 4")
        assert proc.poll() is None, proc.stdout.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert load("p.db").trials[1].state == TrialState.RUNNING
    # The same fork again (from Python, to stop it early): trial 1 goes on; it was started over as trial 2
    # and trial 1 stayed RUNNING for good.
    again = panda.fork(trial=0, epoch=2, params={"lr": 0.001}, epochs=300, storage="p.db", progress=False,
                       on_epoch=lambda r: r.epoch >= 6)
    assert again.trial == 1 and again.state == "complete" and len(load("p.db").trials) == 2
    assert [e["what"] for e in again.events].count("resume") == 1
    expected = reference(SMALL, 300, at=[("set_lr", 0.001, 3, 0)], stop_after=6)
    assert curves_of(again.history.epochs) == curves_of(expected.epochs)
