"""Shared fixtures: a fresh working folder per test (studies default to ./shoal.db)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Studies train in the test's own process (and in those it starts) unless a test asks for workers:
# the default on a CPU is one worker process per core, whose start (2-3 s) each of the suite's
# ~200 small studies would pay. tests/study/test_caviar.py checks the default itself.
os.environ.setdefault("SHOAL_WORKERS", "1")
MNIST_10K = REPO.parent / "shared" / "data" / "mnist-10k"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    # Tests run small models: extra threads only add contention on the 2-core CI machine.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env
