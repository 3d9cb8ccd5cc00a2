"""Panda mode with the user's code: a fidelity objective (one call per epoch) and the user's nn.Module,
steered from other processes, checkpointed, resumed after SIGKILL, forked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from torch import nn

import shoal
from shoal import panda
from shoal._errors import ConfigError
from shoal.panda._checkpoint import list_checkpoints
from shoal.panda._trainer import Trainer
from shoal.study._builtin import prepare_data
from shoal.study._experiment import make_experiment
from tests.conftest import subprocess_env

# The user's code, as a file of their own: the subprocesses import it by name ("ucode:fn").
UCODE = '''
import json, os, time

def fn(config, epochs, state=None):
    """Deterministic: the loss after `step` epochs is lr * 10 + 1 / step, with the lr of that call."""
    step = (state or {"step": 0})["step"]
    with open("calls.jsonl", "a") as f:
        f.write(json.dumps([config["lr"], step]) + "\\n")
    time.sleep(float(os.environ.get("EPOCH_SECONDS", "0")))
    step += epochs
    return {"val_loss": config["lr"] * 10 + 1.0 / step, "train_loss": 1.0 / step}, {"step": step}
'''


class Net(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def forward(self, x):
        return self.net(x)


def _calls(workdir) -> list[tuple[float, int]]:
    path = workdir / "calls.jsonl"
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(predicate, proc, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the babysit process ended early: {proc.stdout.read().decode()}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_objective_is_steered_from_another_process_resumed_after_sigkill_and_forked(workdir):
    (workdir / "ucode.py").write_text(UCODE)
    env = {**subprocess_env(), "PYTHONPATH": f"{workdir}:{subprocess_env()['PYTHONPATH']}", "EPOCH_SECONDS": "0.05"}
    cmd = [sys.executable, "-m", "shoal", "babysit", "--objective", "ucode:fn", "-p", "lr=0.01", "--epochs", "400",
           "-s", "p.db", "--poll", "0", "-q"]
    folder = workdir / "p.checkpoints" / "fn-panda" / "trial-0"
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: (folder / "epoch-002.pt").exists(), proc, what="epoch 2 checkpoint")
        # from this process, as `shoal control lr 0.05` from another terminal (tests/panda/test_cli_and_aids.py)
        assert panda.set_lr("p.db", None, 0, 0.05, wait=30)["event"] is not None
        _wait_for(lambda: any(lr == 0.05 for lr, _ in _calls(workdir)), proc, what="a call with the new lr")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = list_checkpoints(folder)[-1][0]
    killed_calls = len(_calls(workdir))
    events = optuna.load_study(study_name="fn-panda", storage="sqlite:///p.db").trials[0].user_attrs["events"]
    at = next(e["epoch"] for e in events if e["what"] == "set_lr")  # the first epoch trained with lr 0.05
    assert [lr for lr, _ in _calls(workdir)][:at - 1] == [0.01] * (at - 1)  # the lr reached config["lr"]

    # The same command again resumes the trial from its last checkpoint; a stop command ends it.
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: len(_calls(workdir)) >= killed_calls + 3, proc, what="three epochs after the resume")
        assert panda.stop("p.db", None, 0, wait=30)["event"] is not None
        assert proc.wait(timeout=60) == 0, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    t = optuna.load_study(study_name="fn-panda", storage="sqlite:///p.db").trials[0]
    assert t.state == TrialState.COMPLETE and t.user_attrs["stopped_by_user"] is True
    n = t.user_attrs["epochs_run"]
    assert n >= last + 3
    lrs = [0.01 if e < at else 0.05 for e in range(1, n + 1)]
    assert t.user_attrs["curves"]["val_loss"] == pytest.approx([lr * 10 + 1 / e for e, lr in zip(range(1, n + 1), lrs)])
    assert t.value == pytest.approx(0.05 * 10 + 1 / n)
    # the resumed process called the objective for the missing epochs only, from the saved state
    assert [s for _, s in _calls(workdir)[killed_calls:]] == list(range(last, n))
    assert "resume" in [e["what"] for e in t.user_attrs["events"]]

    forked = panda.fork(trial=0, epoch=2, params={"lr": 0.001}, epochs=4, storage="p.db", study="fn-panda",
                        objective="ucode.py:fn", progress=False)  # the file path form of 'ucode:fn'
    assert forked.state == "complete"
    child = optuna.load_study(study_name="fn-panda", storage="sqlite:///p.db").trials[1]
    assert child.user_attrs["lineage"] == {"parent_trial": 0, "parent_epoch": 2, "changes": {"lr": 0.001}}
    assert child.user_attrs["curves"]["val_loss"] == pytest.approx([0.1 + 1, 0.1 + 1 / 2, 0.01 + 1 / 3, 0.01 + 1 / 4])


def objective(config, epochs, state=None):
    step = (state or 0) + epochs
    return config["lr"] * 10 + 1.0 / step, step


def test_objective_babysit_in_process_applies_commands_between_epochs(workdir):
    def on_epoch(record):
        if record.epoch == 1:
            panda.multiply_lr("p.db", None, None, 0.5)
        if record.epoch == 2:
            panda.pause("p.db", None, 0)
            panda.resume("p.db", None, 0)

    r = shoal.babysit(objective=objective, params={"lr": 0.02}, epochs=3, storage="p.db", progress=False, poll=0,
                      on_epoch=on_epoch)
    assert r.state == "complete" and r.study == "objective-panda"
    assert [rec.lr for rec in r.history.epochs] == pytest.approx([0.02, 0.01, 0.01])
    assert [rec.val_loss for rec in r.history.epochs] == pytest.approx([1.2, 0.6, 0.1 + 1 / 3])
    assert [(e["what"], e["epoch"]) for e in r.events] == [("multiply_lr", 2), ("pause", 3), ("resume", 3)]
    assert [e for e, _, _ in list_checkpoints(r.checkpoints)] == [1, 2, 3]
    t = optuna.load_study(study_name="objective-panda", storage="sqlite:///p.db").trials[0]
    assert t.user_attrs["panda"]["settings"]["code"] == "tests.panda.test_usercode:objective"


def test_user_model_babysits_like_the_trainer_and_forks(workdir):
    params = {"hidden": 8, "lr": 0.01, "batch_size": 32}
    r = shoal.babysit(model=Net, params=params, epochs=2, storage="p.db", progress=False, device="cpu")
    assert r.state == "complete" and r.study == "digits-Net-panda"
    data = prepare_data(make_experiment({"data": "digits", "seed": 0, "engine": "single", "device": "cpu"})).folds[0]
    ref = Trainer(params, data, epochs=2, seed=0, model=Net, model_keys=["hidden"]).run()
    assert [x.val_loss for x in r.history.epochs] == [x.val_loss for x in ref.epochs]
    assert panda.fork(trial=0, epoch=1, params={"lr": 0.001}, storage="p.db", progress=False).state == "complete"
    with pytest.raises(ConfigError, match="'hidden' cannot change"):
        panda.fork(trial=0, epoch=1, params={"hidden": 4}, storage="p.db", progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"model": Net, "objective": objective}, "either model= .* or objective="),
    ({"objective": lambda config: 0.0}, "must take a fidelity argument"),
    ({"objective": "no_such_module_here:fn"}, "Cannot import 'no_such_module_here:fn'"),
    ({"model": Net(64, 10)}, "must be an nn.Module class or a builder"),
    ({"model": Net, "params": {"lr": 0.01, "hiden": 32}}, r"\['hiden'\] are read neither by Net\(\).*'hidden'\?"),
])
def test_bad_user_code_is_a_config_error_and_writes_nothing(workdir, kwargs, message):
    params = kwargs.pop("params", {"lr": 0.01})
    with pytest.raises(ConfigError, match=message):
        shoal.babysit(params=params, epochs=1, storage="p.db", progress=False, **kwargs)
    assert not (workdir / "p.db").exists()


def test_objective_trials_name_their_engine_and_the_study_its_code(workdir):
    shoal.babysit(objective=objective, params={"lr": 0.01}, epochs=1, storage="p.db", progress=False)
    st = optuna.load_study(study_name="objective-panda", storage="sqlite:///p.db")
    assert st.trials[0].user_attrs["engine"] == "objective"
    assert st.user_attrs["shoal"]["objective"] == "objective"
