"""Several drivers on one study: a database server's storage, heartbeats, one budget for all.

With a SQLite file or a journal, one ``shoal tune`` drives a study, and a trial it left RUNNING
when it was killed is stale at once: the next run fails it ("interrupted") and queues it again.
On a database server (PostgreSQL, MySQL) several drivers may run the same study at once, so a
RUNNING trial may belong to a live driver elsewhere. There, each driver records a heartbeat for its
running trials (Optuna's heartbeat table) every ``HEARTBEAT_S`` seconds, and only trials whose last
heartbeat is older than ``GRACE_S`` seconds are recovered.

The budget (``--trials N``) is for the study, not for each driver: before each ask a driver counts
the trials in the storage that use budget or are running anywhere. The count and the ask are two
steps, so drivers that ask in the same instant can each see one slot left: the study ends with at
most ``drivers - 1`` trials more than N (never fewer; measured in tests/distributed).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["GRACE_S", "HEARTBEAT_S", "Heartbeat", "is_shared", "server_storage",
           "stale_trial_numbers", "used_budget"]

HEARTBEAT_S = 5
GRACE_S = 30
SERVER_SCHEMES = ("postgresql", "mysql", "mariadb", "oracle", "mssql")


def _is_server(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() in SERVER_SCHEMES


@contextlib.contextmanager
def _server_errors(url: str):
    """A database server that cannot be reached (missing driver, bad host, user, password or
    database) as one ConfigError paragraph, the password hidden."""
    from shoal._errors import ConfigError

    try:
        yield
    except ImportError as exc:
        raise ConfigError(f"The storage URL needs a database driver that is not installed ({exc}). For "
                          "PostgreSQL: pip install 'shoal[postgres]' and a postgresql+psycopg:// URL.") from None
    except Exception as exc:  # sqlalchemy's OperationalError and friends: bad host, user, database
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"Cannot open the storage {_hide_password(url)!r}: {first}. Check that the server "
                          "runs, and the user, password and database in the URL.") from None


def server_storage(url: str) -> Any:
    """An Optuna RDBStorage with heartbeats for a database server URL; other URLs stay as they are."""
    if not _is_server(url):
        return url
    import warnings

    import optuna

    # shoal asks and tells itself and records the heartbeats (``Heartbeat``); Optuna warns on each ask
    # that heartbeats are meant for its own ``optimize`` loop.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    with warnings.catch_warnings(), _server_errors(url):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open_rdb(url)


def check_server(url: str) -> None:
    """Connect to a database server's URL and leave at once (no table is created): ``--check``
    finds a bad host, user, password or database as the run would, without writing."""
    if not _is_server(url):
        return
    with _server_errors(url):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        try:
            engine.connect().close()
        finally:
            engine.dispose()


def _open_rdb(url: str, tries: int = 4) -> Any:
    """RDBStorage, again after a short wait when another driver was creating Optuna's tables at the
    same instant (on an empty PostgreSQL database two ``CREATE TABLE`` race on the catalog:
    "duplicate key value violates unique constraint pg_type_typname_nsp_index"); the second try
    finds the tables made."""
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    def open_() -> Any:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)

    for attempt in range(tries - 1):
        try:
            return open_()
        except (IntegrityError, ProgrammingError) as exc:
            if not any(w in str(exc) for w in ("already exists", "duplicate key")):
                raise
            time.sleep(0.2 * (attempt + 1))
    return open_()


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


def is_shared(study: optuna.Study) -> bool:
    """Whether the study's storage keeps heartbeats (a database server: several drivers may run)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def stale_trial_numbers(study: optuna.Study) -> set[int]:
    """RUNNING trials whose driver stopped sending heartbeats more than GRACE_S seconds ago."""
    ids = set(study._storage._get_stale_trial_ids(study._study_id))
    return {t.number for t in study.get_trials(deepcopy=False) if t._trial_id in ids}


def used_budget(study: optuna.Study) -> int:
    """Trials of every driver that use budget: finished and counted, or running now."""
    from optuna.trial import TrialState

    from shoal.study._runner import counted

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING or counted(t))


class Heartbeat:
    """A daemon thread recording a heartbeat for each running trial of a runner every HEARTBEAT_S.

    It holds the runner weakly and ends with it (or with ``stop``).
    """

    def __init__(self, runner: Any, interval: float = HEARTBEAT_S) -> None:
        self._runner = weakref.ref(runner)
        self._storage = runner.study._storage
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shoal-heartbeat", daemon=True)
        self._thread.start()

    def beat(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            runner = self._runner()
            if runner is None:
                return
            ids = [job.trial._trial_id for job in list(runner.running.values())]
            del runner
            for trial_id in ids:
                try:
                    self.beat(trial_id)
                except Exception:  # a finished trial, a dropped connection: the next beat retries
                    pass

    def stop(self) -> None:
        self._stop.set()

