"""Several ``shoal tune`` drivers on one study in a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

TRIALS, DRIVERS, POPULATION = 12, 3, 2


def _max_overlap(trials) -> int:
    """The most trials running at one instant, from their recorded start and end times."""
    events = sorted([(t.datetime_start, 1) for t in trials] + [(t.datetime_complete, -1) for t in trials])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_drivers_share_one_study_and_one_budget(postgres_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    from shoal.study._runner import trial_seed

    cmd = [sys.executable, "-m", "shoal", "tune", "--data", "digits", "--preset", "mlp", "--strategy", "random",
           "--trials", str(TRIALS), "--epochs", "2", "--population", str(POPULATION), "--study", "shared",
           "--storage", postgres_url, "-p", "width=16:64", "-q"]
    env = subprocess_env()
    drivers = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(DRIVERS)]
    outputs = [d.communicate(timeout=240)[0] for d in drivers]
    for d, out in zip(drivers, outputs):
        assert d.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    # Nothing lost: every trial finished, none left running or queued; nothing duplicated: one row
    # per trial number, each with its own seed and its own two-epoch curve.
    assert [t.number for t in trials] == list(range(len(trials)))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert all(t.user_attrs["seed"] == trial_seed(0, t.number) for t in trials)
    assert all(len(t.user_attrs["curves"]["val_loss"]) == 2 for t in trials)
    # One budget for the study: the count before each ask and the ask are two steps, so drivers
    # asking in the same instant may each take the last slot (see shoal.study._shared).
    assert TRIALS <= len(trials) <= TRIALS + DRIVERS - 1
    # The drivers really ran at the same time: one driver alone never has more than POPULATION.
    assert _max_overlap(trials) > POPULATION


def test_only_trials_of_a_silent_driver_are_recovered(postgres_url):
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    from shoal.space import preset
    from shoal.study._experiment import resolve_storage
    from shoal.study._runner import INTERRUPTED, StudyRunner
    from shoal.study._shared import is_shared, used_budget

    storage = resolve_storage(postgres_url)
    study = optuna.create_study(storage=storage, study_name="s")
    assert is_shared(study)
    space = preset("mlp")
    # Two drivers elsewhere each run a trial; the first stopped beating an hour ago.
    live, dead = (StudyRunner(study, space, trials=5).ask() for _ in range(2))
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour' "
                                     "WHERE trial_id = :id"), {"id": dead.trial._trial_id})
    engine.dispose()

    runner = StudyRunner(study, space, trials=3)
    assert runner.recovered == 1
    states = {t.number: t for t in study.get_trials()}
    assert states[dead.number].state == TrialState.FAIL
    assert states[dead.number].user_attrs["fail_reason"] == INTERRUPTED
    assert states[live.number].state == TrialState.RUNNING  # its driver is alive: left alone
    # The budget counts the live driver's trial: two more may start, the first being the retry.
    assert used_budget(study) == 1
    first, second = runner.ask(), runner.ask()
    assert first.trial.user_attrs["retry_of"] == dead.number and first.config == dead.config
    assert second is not None and runner.ask() is None


@pytest.mark.slow
def test_drivers_opening_an_empty_database_at_once_all_succeed(postgres_server, tmp_path):
    """Optuna's table creation races on an empty PostgreSQL database; shoal opens it again."""
    import psycopg

    host, port, user = postgres_server
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute('CREATE DATABASE "empty_race"')
    url = f"postgresql+psycopg://{user}@{host}:{port}/empty_race"
    # Each process imports first, then waits at a barrier (a file per process) and opens at once.
    code = ("import os, pathlib, sys, time; import optuna, sqlalchemy, psycopg; "
            "from shoal.study._experiment import resolve_storage; d = pathlib.Path(sys.argv[2]); "
            "(d / str(os.getpid())).touch(); "
            "exec('while len(list(d.iterdir())) < 4: time.sleep(0.005)'); "
            "resolve_storage(sys.argv[1]); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(tmp_path)], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 and out.strip().endswith("ok") for p, out in zip(procs, outs)), outs
