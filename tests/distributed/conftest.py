"""A local Ray instance and a real PostgreSQL server on loopback, each started once per session.

PostgreSQL: ``initdb`` into a temporary folder owned by the ``postgres`` user (the server refuses
to run as root), ``pg_ctl start`` on 127.0.0.1 and a free port with its socket in that folder,
stopped at teardown. ``.ci/run`` installs Debian's ``postgresql`` package; where its binaries are
missing the PostgreSQL tests skip and say so.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """``ray.init(num_cpus=2)``: two one-core workers, as on the CI machine; stopped after the module
    (its processes would otherwise idle through the rest of the suite).
    Its workers and this process take the same optimizer step (the C kernel, ``_pop_native``),
    so records compared between them agree to the bit.
    """
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'shoal[ray]')")
    # Ray's workers run at niceness 15; on a busy 2-core machine they would wait for the cores.
    before = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if before is None:
            del os.environ["RAY_worker_niceness"]
        else:
            os.environ["RAY_worker_niceness"] = before
    yield ray
    ray.shutdown()


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):  # Debian keeps them off PATH
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server: (host, port, superuser). Trust authentication on loopback."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's 'postgresql' "
                    "package (.ci/run does) to run the shared-storage tests")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'shoal[postgres]')")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()
    run = lambda *args: subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, timeout=60)  # noqa: E731
    out = run(bindir / "initdb", "-D", data, "-U", "shoal", "--auth=trust", "-E", "UTF8", "--no-sync")
    if out.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {out.stderr[-2000:]}")
    # fsync off: a test database need not survive a power cut, and it saves seconds per study
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=100"
    out = run(bindir / "pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "30", "start")
    if out.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {out.stderr[-1000:]} {text[-2000:]}")
    try:
        yield "127.0.0.1", port, "shoal"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the test server, as a SQLAlchemy URL with Optuna's schema in it.

    The schema is created here, once: Optuna drivers that create it at the same instant on an empty
    database race (a duplicate-type error in PostgreSQL's catalog).
    """
    import optuna
    import psycopg

    host, port, user = postgres_server
    name = f"shoal_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()
    return url


@pytest.fixture(scope="session")
def digits_data():
    """Digits split 80/20 with seed 0, as tensors (the engine tests' data)."""
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData

    ds = load_dataset("digits")
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0)))
