"""A fidelity objective's trial killed mid-training goes on from its last saved epoch and state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import optuna
import pytest

import shoal
from shoal.space import Float, Space
from shoal.study._fidelity import StateFiles
from tests.conftest import subprocess_env

EPOCHS = 5

# Deterministic: the value after `step` epochs depends on x and step only. Each call is logged as
# [x, the step it starts from], so the test sees which epochs were trained, in which process.
SCRIPT = """
import json, os, sys, time
import shoal
from shoal.space import Float, Space

def fn(config, epochs, state=None):
    step = (state or {"step": 0})["step"]
    with open("calls.jsonl", "a") as f:
        f.write(json.dumps([config["x"], step]) + "\\n")
    time.sleep(float(os.environ.get("EPOCH_SECONDS", "0")))
    step += epochs
    return (config["x"] - 0.3) ** 2 + 1.0 / step, {"step": step}

# grid: each trial its own x (a resumed random sampler would draw x values again)
shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="grid", grid_points=3, trials=3, epochs=%d,
           seed=1, storage="f.db", study="f", progress=False)
""" % EPOCHS


def _value(x: float, step: int) -> float:
    return (x - 0.3) ** 2 + 1.0 / step


def _calls(path) -> list[tuple[float, int]]:
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_killed_trial_goes_on_from_its_last_epoch(workdir):
    import torch

    (workdir / "run.py").write_text(SCRIPT)
    files = StateFiles(str(workdir / "f.db"), "f")
    env = {**subprocess_env(), "EPOCH_SECONDS": "0.25"}
    proc = subprocess.Popen([sys.executable, "run.py"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    saved = None
    while saved is None and time.monotonic() < deadline and proc.poll() is None:
        for path in files.folder.glob(f"{files.stem}.trial-*.state.pt"):
            try:
                if torch.load(path, weights_only=False)["epoch"] >= 2:
                    saved = path
            except Exception:  # being replaced right now
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert saved is not None, "no trial saved two epochs before the deadline"
    left = {}  # x -> the epoch its saved state had when the process died
    for path in files.folder.glob(f"{files.stem}.trial-*.state.pt"):
        state = torch.load(path, weights_only=False)
        left[round(state["curve"][0] - 1.0, 12)] = state["epoch"]  # curve[0] = (x - .3)^2 + 1
    assert len(left) == 1
    before = len(_calls(workdir / "calls.jsonl"))

    subprocess.run([sys.executable, "run.py"], cwd=workdir, env=subprocess_env(), check=True, capture_output=True)
    study = optuna.load_study(study_name="f", storage=f"sqlite:///{workdir / 'f.db'}")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert sorted(t.params["x"] for t in done) == [0.0, 0.5, 1.0]
    for t in done:  # every curve is what an uninterrupted run gives, epoch by epoch
        x = t.params["x"]
        assert t.user_attrs["curves"]["value"] == pytest.approx([_value(x, s) for s in range(1, EPOCHS + 1)])
        assert t.value == pytest.approx(_value(x, EPOCHS))
    retry = next(t for t in done if t.user_attrs.get("retry_of") is not None)
    (key, k), = left.items()
    assert round((retry.params["x"] - 0.3) ** 2, 12) == pytest.approx(key)
    assert retry.user_attrs["resumed_from_epoch"] == k
    assert list(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    # the rerun trained the retry's missing epochs only: its calls start from the saved step
    rerun = [s for x, s in _calls(workdir / "calls.jsonl")[before:] if x == retry.params["x"]]
    assert rerun == list(range(k, EPOCHS))
    assert not list(files.folder.glob(f"{files.stem}.trial-*")), "finished trials leave no state files"


def test_state_files_are_removed_and_an_unpicklable_state_only_turns_resume_off(workdir, caplog):
    def fn(config, epochs, state=None):
        step = (state or (lambda: 0))() + epochs
        return config["x"] + 1.0 / step, (lambda: step)  # a lambda: torch.save cannot pickle it

    result = shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="random", trials=2, epochs=3,
                        storage="s.db", study="s", progress=False)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert "cannot be saved" in caplog.text
    files = StateFiles("s.db", "s")
    assert not list(files.folder.glob(f"{files.stem}.*"))


def test_a_fidelity_objective_without_state_is_warned_about_once(workdir, caplog):
    def fn(config, epochs, state=None):  # no state: each call starts over
        return config["x"]

    result = shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="random", trials=3, epochs=2,
                        storage="n.db", progress=False)
    assert all(t.state.name == "COMPLETE" for t in result.study.trials)
    assert caplog.text.count("returned no state") == 1

    def stateful(config, epochs, state=None):
        return config["x"], (state or 0) + epochs

    caplog.clear()
    shoal.tune(stateful, space=Space([Float("x", 0.0, 1.0)]), strategy="random", trials=2, epochs=2,
               storage="m.db", progress=False)
    assert "returned no state" not in caplog.text


def test_ctrl_c_stops_after_the_epoch_and_the_same_call_goes_on_from_it(workdir):
    import os

    calls = []

    def fn(config, epochs, state=None):
        step = state or 0
        calls.append(step)
        if step == 1 and len(calls) == 2:  # Ctrl-C while the first trial trains its second epoch
            os.kill(os.getpid(), signal.SIGINT)
        return config["x"] + 1.0 / (step + epochs), step + epochs

    settings = dict(space=Space([Float("x", 0.0, 1.0)]), strategy="grid", grid_points=2, trials=2, epochs=4,
                    storage="c.db", study="c", progress=False)
    with pytest.raises(KeyboardInterrupt):
        shoal.tune(fn, **settings)
    assert calls == [0, 1]  # the epoch under way finished, and was saved
    result = shoal.tune(fn, **settings)
    assert calls[2:4] == [2, 3]  # the retry trains epochs 3 and 4 only
    done = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        assert t.user_attrs["curves"]["value"] == pytest.approx([t.params["x"] + 1 / s for s in range(1, 5)])
