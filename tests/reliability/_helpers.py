"""Helpers for the reliability tests: a `shoal tune` subprocess and read-only looks at its storage."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

# A small fixed space: 2 epochs of a 1-layer MLP on digits take a fraction of a second per trial.
SMALL_SPACE = ["-p", "width=32,64", "-p", "depth=1", "-p", "batch_size=128", "-p", "optimizer=adam",
               "-p", "lr=1e-3:1e-1"]


def tune_cmd(storage: Path, *extra: str, engine: str = "single", trials: int = 12, epochs: int = 2) -> list[str]:
    return [sys.executable, "-m", "shoal", "tune", "--data", "digits", "--preset", "mlp", "--strategy", "random",
            "--trials", str(trials), "--epochs", str(epochs), "--engine", engine, "--seed", "3", "-q",
            "-s", str(storage), *SMALL_SPACE, *extra]


def start(cmd: list[str], cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def snapshot(db: Path, study: str = "digits-mlp", *, settled: bool = False) -> list:
    """Every trial in the storage (FrozenTrials), or [] when the study does not exist yet.

    While a process runs, the file is read read-only (opening it as usual would create Optuna's
    tables, racing the process under test), and any error counts as "not there yet". With
    ``settled`` (no process left: it was killed or it ended) the file is opened as usual, which
    rolls back a transaction the killed process left in SQLite's journal (a read-only reader cannot,
    and fails), and errors other than a missing study are raised.
    """
    import optuna

    if not db.exists():
        return []
    if settled:
        try:
            return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
        except KeyError:  # killed before it created the study
            return []
    try:
        return optuna.load_study(study_name=study, storage=f"sqlite:///file:{db}?mode=ro&uri=true").get_trials(
            deepcopy=False)
    except Exception:  # not created yet, or created half-way by a process killed at that moment
        return []


def wait_until(predicate, proc: subprocess.Popen | None = None, timeout: float = 120.0, step: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy (returned) or the process ends (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {predicate}")
