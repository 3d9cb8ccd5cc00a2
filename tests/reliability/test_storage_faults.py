"""The storage fails under a running study: locked by another program, read-only, or its disk full.

Each must end with exit code 2 and one paragraph naming the cause, and leave the study readable and
whole: every trial recorded before the fault is there, unchanged, and the same command continues it
once the cause is gone.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from optuna.trial import TrialState

from shoal.study._runner import counted
from tests.conftest import subprocess_env
from tests.reliability._helpers import snapshot, start, tune_cmd, wait_until


def _finished(trials) -> dict[int, tuple]:
    return {t.number: (t.state, t.params, t.value) for t in trials if t.state.is_finished()}


def _one_paragraph(stderr: str) -> str:
    text = stderr.strip()
    assert "Traceback" not in stderr and "\n\n" not in text, stderr
    assert text.startswith("error:"), stderr
    return " ".join(text.split())


def _intact(db, before: dict[int, tuple]) -> list:
    """The file passes SQLite's integrity check and holds every trial of ``before`` unchanged."""
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    trials = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    now = _finished(trials)
    for number, record in before.items():
        assert now[number] == record
    return trials


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory):
    """A study of 2 finished trials, trained once for this module; each test copies the file."""
    folder = tmp_path_factory.mktemp("two-trials")
    subprocess.run(tune_cmd(folder / "s.db", trials=2), cwd=folder, env=subprocess_env(), check=True,
                   capture_output=True)
    return folder / "s.db"


def _finish_and_count(workdir, cmd, trials: int) -> None:
    """The same command, once the fault is gone, completes the study: the budget exactly."""
    done = subprocess.run(cmd, cwd=workdir, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sum(counted(t) for t in snapshot(workdir / "s.db")) == trials


@pytest.mark.slow
def test_a_database_locked_mid_study_stops_it_clearly_and_loses_nothing(workdir):
    db = workdir / "s.db"
    cmd = tune_cmd(db, trials=30)
    proc = start(cmd, workdir)
    assert wait_until(lambda: sum(t.state == TrialState.COMPLETE for t in snapshot(db)) >= 2, proc)
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")  # another program takes the whole file: every write now waits, then fails
    try:
        # What the file holds at this moment, read through the lock holder's own connection.
        before = dict(((n, s), v) for n, s, v in con.execute(
            "SELECT t.number, t.state, v.value FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
            "WHERE t.state IN ('COMPLETE', 'PRUNED', 'FAIL')"))
        _, err = proc.communicate(timeout=180)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert proc.returncode == 2, err
    message = _one_paragraph(err)
    assert "could not be written" in message and "lock" in message and "Nothing recorded is lost" in message
    assert len(before) >= 2
    trials = _intact(db, {})
    assert {(n, s): v for (n, s), v in before.items()} == {
        (t.number, t.state.name): t.value for t in trials if t.number in {n for n, _ in before}}
    _finish_and_count(workdir, cmd, 30)
    _intact(db, _finished(trials))


def test_a_database_locked_before_the_start_is_a_clear_error(workdir, two_trials):
    db = workdir / "s.db"
    cmd = tune_cmd(db, trials=3)
    shutil.copy(two_trials, db)
    before = _finished(snapshot(db))
    assert len(before) == 2
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        out = subprocess.run(cmd, cwd=workdir, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert out.returncode == 2, out.stderr
    assert "another program holds a lock" in _one_paragraph(out.stderr)
    _intact(db, before)
    _finish_and_count(workdir, cmd, 3)


def test_a_read_only_database_is_a_clear_error_and_stays_as_it_was(workdir, two_trials):
    db = workdir / "s.db"
    shutil.copy(two_trials, db)
    before = _finished(snapshot(db))
    data = db.read_bytes()
    # Opened read-only by SQLite itself: this holds even for root, whom file permissions do not stop.
    ro = tune_cmd(workdir / "unused.db", trials=4)
    ro[ro.index("-s") + 1] = f"sqlite:///file:{db}?mode=ro&uri=true"
    out = subprocess.run(ro, cwd=workdir, env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "it is read-only" in _one_paragraph(out.stderr)
    assert db.read_bytes() == data
    _intact(db, before)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions; the mode=ro variant "
                                              "above covers a read-only database for root")
def test_a_read_only_file_and_folder_are_a_clear_error(workdir, two_trials):
    db = workdir / "s.db"
    shutil.copy(two_trials, db)
    before = _finished(snapshot(db))
    db.chmod(0o444)
    workdir.chmod(0o555)
    try:
        out = subprocess.run(tune_cmd(db, trials=4), cwd=workdir, env=subprocess_env(), capture_output=True,
                             text=True)
    finally:
        workdir.chmod(0o755)
        db.chmod(0o644)
    assert out.returncode == 2, out.stderr
    assert "could not be written" in _one_paragraph(out.stderr)
    _intact(db, before)


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    # Writes past the limit fail with EFBIG, as on a full disk (SIGXFSZ would kill the process instead).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = ["shoal", *sys.argv[2:]]
    from shoal.cli import main
    main()
""")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s.db", "s.log"])
def test_a_full_disk_stops_the_study_clearly_and_keeps_what_was_written(workdir, name):
    path = workdir / name
    first = tune_cmd(path, trials=2)
    subprocess.run(first, cwd=workdir, env=subprocess_env(), check=True, capture_output=True)
    storage = f"sqlite:///{path}" if name.endswith(".db") else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    before = _finished(optuna.load_study(study_name="digits-mlp", storage=storage).get_trials())
    assert len(before) == 2

    cmd = tune_cmd(path, trials=12)
    limit = path.stat().st_size + 6000  # room for a trial or two more, then the "disk" is full
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(limit), *cmd[3:]], cwd=workdir,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    message = _one_paragraph(out.stderr)
    assert "could not be written" in message and ("full" in message or "too large" in message), message
    assert path.stat().st_size <= limit

    # Reopened without the limit: readable, every earlier trial as it was; the same command finishes it.
    storage = f"sqlite:///{path}" if name.endswith(".db") else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    trials = optuna.load_study(study_name="digits-mlp", storage=storage).get_trials()
    now = _finished(trials)
    for number, record in before.items():
        assert now[number] == record
    if name.endswith(".db"):
        _intact(path, before)
    done = subprocess.run(cmd, cwd=workdir, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="digits-mlp", storage=storage).get_trials()
    assert sum(counted(t) for t in trials) == 12
    for number, record in now.items():
        assert _finished(trials)[number] == record


def _run_cli(workdir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal", *args], cwd=workdir, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def test_files_that_are_no_storage_are_refused_and_left_as_they_were(workdir):
    # an application's log named like a journal: repairing a journal's cut last line would have cut it
    (workdir / "app.log").write_bytes(b"INFO started\nINFO epoch 1 done")
    (workdir / "garbage.db").write_bytes(os.urandom(5000))
    with sqlite3.connect(workdir / "other.db") as con:  # another application's SQLite database
        con.execute("CREATE TABLE customers (id INTEGER)")
    (workdir / "folder.db").mkdir()
    before = {p: (workdir / p).read_bytes() for p in ("app.log", "garbage.db", "other.db")}
    cases = [("app.log", "is not an Optuna journal"), ("garbage.db", "is not a SQLite database"),
             ("other.db", "is another application's database (tables customers)"),
             ("folder.db", "is a folder, not a SQLite file")]
    for name, message in cases:
        for args in (("show", "-s", name), ("tune", "--check", "-s", name),
                     ("tune", "-s", name, "--trials", "1", "--epochs", "1", "-q")):
            done = _run_cli(workdir, *args)
            assert done.returncode == 2 and message in _one_paragraph(done.stderr), (args, done.stderr)
    assert {p: (workdir / p).read_bytes() for p in before} == before  # not a byte changed
    assert (workdir / "folder.db").is_dir() and not list((workdir / "folder.db").iterdir())


def test_a_second_driver_on_a_file_study_is_refused_while_the_first_runs(workdir):
    # The second driver took the first's running trials for a killed run's (failed them, ran them
    # again) and the first then crashed writing to them. The lock is held here as a run holds it.
    from shoal.study._experiment import one_driver

    args = ("tune", "-s", "d.db", "--trials", "2", "--epochs", "1", "-q", "-p", "width=32", "-p", "depth=1")
    with one_driver("d.db", "digits-mlp"):
        done = _run_cli(workdir, *args)
        assert done.returncode == 2
        text = _one_paragraph(done.stderr)
        assert f"Another shoal process (pid {os.getpid()}) is running the study 'digits-mlp' in 'd.db'" in text
        assert "PostgreSQL" in text
        other = _run_cli(workdir, *args, "--study", "other")  # another study of the file: its own driver
        assert other.returncode == 0, other.stderr
    assert _run_cli(workdir, *args).returncode == 0  # released: the same command runs
    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///" + str(workdir / "d.db"))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


def test_a_read_only_error_in_an_unwritable_folder_names_the_folder(tmp_path, monkeypatch):
    # SQLite says "readonly database" when it cannot write its journal beside a writable file; the
    # fix is the folder (tested by the message: root, which runs these tests, writes through permissions)
    from shoal.study._tune import storage_error

    db = tmp_path / "x.db"
    db.write_bytes(b"")
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    assert "it is read-only" in str(storage_error(readonly, str(db)))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) == str(tmp_path) else real(p, mode))
    assert "its folder is not writable (SQLite writes a journal file beside the database)" in \
        str(storage_error(readonly, str(db)))


def test_a_foreign_studies_table_and_another_optuna_versions_schema_are_clear_errors(workdir):
    with sqlite3.connect(workdir / "clash.db") as con:  # an application's own "studies" table
        con.execute("CREATE TABLE studies (x INTEGER)")
    before = (workdir / "clash.db").read_bytes()
    done = _run_cli(workdir, "tune", "--check", "-s", "clash.db")
    assert done.returncode == 2 and "is another application's database (tables studies)" in _one_paragraph(done.stderr)
    assert (workdir / "clash.db").read_bytes() == before
    # a schema Optuna does not know (another version made it): Optuna's reason, one paragraph, exit 2
    assert _run_cli(workdir, "tune", "-s", "old.db", "--trials", "1", "--epochs", "1", "-q", "-p", "width=32",
                    "-p", "depth=1").returncode == 0
    with sqlite3.connect(workdir / "old.db") as con:
        con.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    for args in (("show", "-s", "old.db"), ("tune", "-s", "old.db", "--trials", "2", "--epochs", "1", "-q")):
        done = _run_cli(workdir, *args)
        assert done.returncode == 2, done.stderr
        text = _one_paragraph(done.stderr)
        assert "The storage could not be used" in text and "compatible with the table schema" in text
