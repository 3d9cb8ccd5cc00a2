"""Kill `shoal tune` at random moments (SIGKILL) or stop it with Ctrl-C (SIGINT), run it again:
finished trials are never lost, changed or counted twice, the budget holds, interrupted trials run again.

The single-kill test in tests/cli/test_cli.py covers one kill of a TPE study; these kill repeatedly,
at seeded random moments (before the study exists, between trials, inside populations), on both engines.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from shoal.study._runner import INTERRUPTED, counted
from tests.conftest import subprocess_env
from tests.reliability._helpers import snapshot, start, tune_cmd, wait_until

TRIALS = 12


def _finished(trials) -> dict[int, tuple]:
    """What must survive: each finished trial's state, parameters, value and reason."""
    return {t.number: (t.state, t.params, t.value, t.user_attrs.get("fail_reason"))
            for t in trials if t.state.is_finished()}


def _planned(t) -> dict:
    """The parameters a trial sampled, and those it was queued with (a retry)."""
    return {**t.system_attrs.get("fixed_params", {}), **t.params}


@pytest.mark.slow
# The population run trains 6 epochs: with 2 its training (~1 s, four members at a time) could end
# before the second kill.
# (12 epochs for the population: with 6, a population of small digits nets could finish inside the
# kill's random delay on a fast machine, and no kill landed while a trial trained, once in ~10 CI runs)
@pytest.mark.parametrize("engine, extra, epochs", [("single", [], 2), ("population", ["--population", "4"], 12)])
def test_repeated_sigkill_loses_and_repeats_nothing(workdir, engine, extra, epochs):
    db = workdir / "crash.db"
    cmd = tune_cmd(db, *extra, engine=engine, trials=TRIALS, epochs=epochs)
    rng = random.Random(f"kill-{engine}")
    recorded: dict[int, tuple] = {}  # every finished trial seen after any kill
    running_at_kill: set[int] = set()
    kills = 0
    for attempt in range(3):
        proc = start(cmd, workdir)
        if attempt != 1:
            # Kill while it trains: after at least one more trial appears in the storage, plus a
            # random delay (so the kill lands mid-epoch, mid-population or between trials).
            seen = len(snapshot(db))
            if wait_until(lambda: len(snapshot(db)) > seen, proc) is None:
                assert proc.wait() == 0, proc.stderr.read()
                break  # it finished before the kill: nothing left to interrupt
            try:
                proc.wait(timeout=rng.uniform(0.0, 1.5))
            except subprocess.TimeoutExpired:
                pass
        else:
            # Kill at a random moment from the start: while torch loads, while the study is created,
            # in the first epochs (the start alone takes 2-4 s on the 2-core CI machine)
            try:
                proc.wait(timeout=rng.uniform(0.5, 4.0))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is not None:  # it finished on its own
            assert proc.returncode == 0, proc.stderr.read()
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        now = snapshot(db, settled=True)  # the killed process may have left a journal to roll back
        running_at_kill |= {t.number for t in now if t.state == TrialState.RUNNING}
        after = _finished(now)
        for number, record in recorded.items():  # nothing finished before an earlier kill changed
            assert after[number] == record
        recorded.update(after)
    assert kills >= 2

    done = subprocess.run(cmd, cwd=workdir, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    study = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    final = _finished(trials)
    for number, record in recorded.items():
        assert final[number] == record, f"trial {number} changed after a kill"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    # The budget: complete + pruned + failed-not-interrupted is exactly the number of trials asked for.
    assert sum(counted(t) for t in trials) == TRIALS
    interrupted = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") == INTERRUPTED]
    assert {t.number for t in interrupted} == running_at_kill
    assert interrupted, "at least one kill should land while a trial trains"
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert len(retries) == len([t for t in trials if "retry_of" in t.user_attrs])  # each retried once
    for t in interrupted:  # each interrupted trial ran again, later, with the same configuration
        again = retries[t.number]
        assert again.number > t.number
        # (a process killed while a trial sampled its parameters leaves some unset: the retry draws those)
        assert {k: _planned(again)[k] for k in _planned(t)} == _planned(t)
        while again.number in retries:  # a retry can be interrupted too: follow to the last attempt
            again = retries[again.number]
        assert counted(again)
        if "config" in t.user_attrs:  # it had started training: the very same configuration again
            assert again.user_attrs["config"] == t.user_attrs["config"]
    # No duplicates: each counted trial is a distinct draw, or the single retry of an interrupted one.
    assert len(trials) == TRIALS + len(interrupted)

    # Once more: the finished study stays as it is.
    subprocess.run(cmd, cwd=workdir, env=subprocess_env(), check=True, capture_output=True)
    assert _finished(snapshot(db)) == final


@pytest.mark.slow
@pytest.mark.parametrize("engine, extra", [
    ("single", []),
    ("population", ["--population", "3"]),
    # Ctrl-C in a terminal signals the whole process group, worker processes too: they must leave
    # the decision to the parent, or their members would fail instead of being interrupted.
    ("population", ["--population", "3", "--workers", "2"]),
])
def test_sigint_finishes_the_epoch_records_interrupted_trials_and_exits_130(workdir, engine, extra):
    db = workdir / "int.db"
    epochs = 40  # a wide window in which one trial has finished and another is mid-training (small nets
    # on digits train an epoch in ~20 ms: with fewer epochs an idle machine can finish before a poll sees it)
    cmd = tune_cmd(db, *extra, engine=engine, trials=8, epochs=epochs)
    group = "--workers" in extra
    before, code, err = _signal_mid_run(db, cmd, workdir, signal.SIGINT, group, epochs)
    assert code == 130, err
    assert "Traceback" not in err
    assert "run the same command again" in " ".join(err.split())
    _check_interrupted(db, before, epochs, cmd, workdir)


def _mid_training(t, epochs: int) -> bool:
    # Training, past its first epoch, and far enough from its last not to finish before the signal.
    return t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) < epochs - 1


def _one_done_and_one_mid_training(db, epochs: int):
    """For ``wait_until``: the trials once one has completed and another is mid-training, else None."""
    def ready():
        trials = snapshot(db)
        if any(_mid_training(t, epochs) for t in trials) and any(t.state == TrialState.COMPLETE for t in trials):
            return trials
        return None

    return ready


def _signal_mid_run(db, cmd, workdir, sig, group: bool, epochs: int):
    """Start ``cmd``, send ``sig`` (to its whole process group with ``group``) once one trial has
    completed and another is mid-training; the trials then, the exit code and stderr."""
    proc = start(cmd, workdir, start_new_session=group)
    before = wait_until(_one_done_and_one_mid_training(db, epochs), proc)
    assert before is not None, proc.communicate()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return before, proc.returncode, err


def _check_interrupted(db, before, epochs, cmd, workdir) -> None:

    trials = snapshot(db)
    by_number = {t.number: t for t in trials}
    for number, record in _finished(before).items():  # finished trials are kept as they were
        assert _finished([by_number[number]])[number] == record
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert not [t for t in trials if t.state == TrialState.FAIL and t.user_attrs["fail_reason"] != INTERRUPTED]
    for t in before:
        if _mid_training(t, epochs):
            stopped = by_number[t.number]
            assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == INTERRUPTED
            # It stopped at an epoch's end (at once, for SIGTERM): every epoch it had reported is
            # kept, the one it was in (if the signal came while it trained) reported too, and
            # nothing after a gap.
            reported = sorted(stopped.intermediate_values)
            assert reported == list(range(1, len(reported) + 1))
            assert len(reported) >= len(t.intermediate_values)
            assert stopped.intermediate_values[len(t.intermediate_values)] == t.intermediate_values[
                len(t.intermediate_values)]
        elif t.state == TrialState.RUNNING:  # asked, or early in its first epoch: interrupted as well,
            # unless it finished between the snapshot and the signal (a busy machine allows that)
            now = by_number[t.number]
            assert now.user_attrs.get("fail_reason") == INTERRUPTED or now.state == TrialState.COMPLETE
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == INTERRUPTED]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == sorted(t.number for t in interrupted)

    # The next run trains the interrupted trials again and completes the budget.
    subprocess.run(cmd, cwd=workdir, env=subprocess_env(), check=True, capture_output=True)
    trials = snapshot(db)
    assert sum(counted(t) for t in trials) == 8
    retried = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    for t in interrupted:
        again = retried[t.number]
        assert again.state == TrialState.COMPLETE and again.params == t.params
        # with the seed of the trial it repeats, a retry trains as that trial did: the epochs the
        # interrupted trial reported come out again (a new seed made a resumed study differ)
        assert again.user_attrs["seed"] == t.user_attrs["seed"]
        for epoch, value in t.intermediate_values.items():
            assert again.intermediate_values[epoch] == pytest.approx(value, rel=1e-5, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True])
def test_sigterm_stops_at_once_records_interrupted_trials_and_exits_clean(workdir, group):
    # `kill`, `timeout`, Slurm (the whole group), `docker stop`: SIGTERM; it left trials RUNNING and
    # said nothing. Now it stops at once, as a second Ctrl-C does.
    db = workdir / "term.db"
    epochs = 40
    cmd = tune_cmd(db, "--population", "3", *(["--workers", "2"] if group else []), engine="population",
                   trials=8, epochs=epochs)
    before, code, err = _signal_mid_run(db, cmd, workdir, signal.SIGTERM, group, epochs)
    assert code == 130, err
    assert "Traceback" not in err and "terminated (SIGTERM)" in err
    _check_interrupted(db, before, epochs, cmd, workdir)
