"""A hand-built SQLite study with everything the dashboard shows: curves, a running trial, PBT
slots and a copy, rung decisions, a babysat trial with events and checkpoints, hostile names."""

from __future__ import annotations

from pathlib import Path

import pytest

XSS = "<script>alert(1)</script>"
XSS_PARAM = "<img src=x onerror=alert(2)>"


def build_study(path: Path) -> Path:
    """``path``: studies "live" (PBT, halving, babysat, running) and ``XSS`` (one trial)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    s = optuna.create_study(storage=url, study_name="live")
    s.set_user_attr("shoal", {"metric": "val_loss", "data": "digits"})
    s.set_user_attr("pbt", {"population": 2, "interval": 2, "quantile": 0.5, "explore": "perturb"})
    dist = {"lr": FloatDistribution(1e-4, 10.0, log=True), "optimizer": CategoricalDistribution(["adam", "sgd"])}

    def add(state, value=None, lr=0.01, optimizer="adam", iv=None, **attrs):
        cfg = {"lr": lr, "optimizer": optimizer}
        s.add_trial(create_trial(state=state, value=value, params=cfg, distributions=dist,
                                 intermediate_values=iv or {}, user_attrs={"config": cfg, **attrs}))

    curves = lambda *v: {"val_loss": list(v), "train_loss": [x * 0.9 for x in v], "lr": [0.01] * len(v)}  # noqa: E731
    # 0, 1: PBT members in slots 0 and 1; 1 is replaced at epoch 2 by 2, a copy of 0
    add(TrialState.COMPLETE, 0.5, iv={1: 0.9, 2: 0.7, 3: 0.6, 4: 0.5}, curves=curves(0.9, 0.7, 0.6, 0.5),
        epochs_run=4, pbt={"slot": 0, "parent": None, "start_epoch": 0})
    add(TrialState.PRUNED, None, lr=0.5, iv={1: 1.5, 2: 1.4}, curves=curves(1.5, 1.4), epochs_run=2,
        pbt={"slot": 1, "parent": None, "start_epoch": 0, "replaced_by": 2, "at_epoch": 2})
    add(TrialState.COMPLETE, 0.3, lr=0.012, iv={3: 0.5, 4: 0.3}, curves=curves(0.9, 0.7, 0.5, 0.3), epochs_run=4,
        pbt={"slot": 1, "parent": 0, "start_epoch": 2},
        schedule=[{"from_epoch": 0, "seed": 1, "config": {"lr": 0.01}}, {"from_epoch": 2, "seed": 7, "config": {"lr": 0.012}}])
    # 3: stopped at a rung; 4: failed
    add(TrialState.PRUNED, None, lr=0.9, iv={1: 2.0}, curves=curves(2.0), epochs_run=1, bracket=0,
        rungs=[{"epoch": 1, "value": 2.0, "rank": 3, "of": 3, "kept": False}])
    add(TrialState.FAIL, None, lr=3.0, fail_reason="training diverged at epoch 1")
    # 5: running, no curves attribute yet: its live curve is its intermediate values
    add(TrialState.RUNNING, None, lr=0.02, iv={1: 0.8, 2: 0.6})
    # 6: a babysat trial, running, with events and checkpoints (by hand: no trainer works on it)
    folder = path.with_suffix(".checkpoints") / "live" / "trial-6"
    folder.mkdir(parents=True)
    for name in ("epoch-001.pt", "epoch-002.pt", "epoch-002-step-00010.pt", "notes.txt"):
        (folder / name).write_bytes(b"x" * 2048)
    add(TrialState.RUNNING, None, lr=0.05, iv={1: 0.7, 2: 0.65}, curves=curves(0.7, 0.65), epochs_run=2,
        panda={"settings": {"epochs": 5}, "folder": str(folder)}, lineage=None,
        events=[{"what": "pause", "value": None, "epoch": 0, "step": 0, "lr": 0.05, "source": "start"},
                {"what": "set_lr", "value": 0.05, "epoch": 1, "step": 3, "lr": 0.05, "id": "panda_cmd:1:1"}])
    # 7: a trial with a hostile parameter name in its config
    s.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={}, distributions={},
                             user_attrs={"config": {XSS_PARAM: XSS, "lr": 0.1}, "curves": {"val_loss": [1.0, 0.9]}}))
    x = optuna.create_study(storage=url, study_name=XSS)
    x.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs={"config": {"lr": 0.1}}))
    return path


@pytest.fixture(scope="session")
def live_db(tmp_path_factory) -> Path:
    return build_study(tmp_path_factory.mktemp("dashboard") / "live.db")


@pytest.fixture
def client(live_db):
    from starlette.testclient import TestClient

    from shoal.dashboard import create_app

    with TestClient(create_app(str(live_db)), base_url="http://127.0.0.1") as c:
        yield c
