"""Multi-objective and constrained studies in the dashboard's JSON API: the study list, the front and
its figure, feasible-only bests, infeasible trials; strict JSON with no infinities."""

from __future__ import annotations

import json

import pytest

from tests.report.conftest import LIMIT, MULTI_FRONT, build_multi_study


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def mo_db(tmp_path_factory):
    import optuna
    from optuna.trial import create_trial

    path = tmp_path_factory.mktemp("dashboard-mo") / "mo.db"
    build_multi_study(path)
    url = f"sqlite:///{path}"
    # One objective with a limit: trial 1 has the best value but broke it.
    c = optuna.create_study(storage=url, study_name="limited", direction="maximize")
    c.set_user_attr("shoal", {"metric": "val_acc", "constraints": ["epoch_seconds<=2"]})
    for acc, over in ((0.9, -0.5), (0.97, 1.0), (0.8, -1.5)):
        c.add_trial(create_trial(value=acc, system_attrs={"constraints:epoch_seconds": over},
                                 user_attrs={"config": {"lr": acc / 10}}))
    # A front whose parameters are markup: the hover text must reach plotly escaped.
    x = optuna.create_study(storage=url, study_name="hostile", directions=["maximize", "minimize"])
    x.add_trial(create_trial(values=[0.9, 2.0], user_attrs={"config": {"act": "<b>relu</b>"}}))
    x.add_trial(create_trial(values=[0.8, 1.0], user_attrs={"config": {"act": "tanh"}}))
    return path


@pytest.fixture
def mo_client(mo_db):
    from starlette.testclient import TestClient

    from shoal.dashboard import create_app

    with TestClient(create_app(str(mo_db)), base_url="http://127.0.0.1") as c:
        yield c


def test_study_list_shows_the_front_size_and_feasible_bests(mo_client):
    r = mo_client.get("/api/studies")
    studies = {s["name"]: s for s in _strict(r.text)["studies"]}
    multi = studies["multi"]
    assert multi["direction"] == "maximize, minimize" and multi["metric"] == "val_acc, train_seconds"
    assert multi["objectives"] == ["val_acc", "train_seconds"] and multi["front_size"] == len(MULTI_FRONT)
    assert multi["best_value"] is None and multi["best_trial"] is None
    limited = studies["limited"]  # Optuna's study summary would name trial 1 (0.97), which broke the limit
    assert limited["best_trial"] == 0 and limited["best_value"] == pytest.approx(0.9) and limited["front_size"] is None
    assert studies["hostile"]["objectives"] == ["value 0", "value 1"]


def test_study_view_front_figure_and_infeasible_trials(mo_client):
    r = mo_client.get("/api/study", params={"study": "multi"})
    assert r.status_code == 200
    d = _strict(r.text)
    assert d["objectives"] == ["val_acc", "train_seconds"] and d["directions"] == ["maximize", "minimize"]
    assert [f["number"] for f in d["front"]] == MULTI_FRONT
    assert d["front"][0] == {"number": 11, "values": [0.92, 8.0], "spread": None,
                             "config": {"optimizer": "adam", "lr": 0.005, "width": 128}}
    assert d["best"]["number"] == 11 and d["best"]["values"] == [0.92, 8.0]  # not trial 4 (0.95, infeasible)
    assert [t["number"] for t in d["top"]][:3] == [11, 1, 6]
    assert d["constrained"] and d["constraints"] == [f"params<={LIMIT}"]
    assert [(i["number"], i["values"], i["reason"]) for i in d["infeasible"]] == [
        (4, [0.95, 9.0], ""), (5, [None, None], f"params 400000 > {LIMIT}")]
    fig = d["figures"]["pareto"]
    front = next(t for t in fig["data"] if t["name"].startswith("Pareto front"))
    assert front["x"] == [1.0, 2.0, 2.0, 3.0, 5.0, 8.0] and front["y"] == [0.7, 0.8, 0.8, 0.85, 0.9, 0.92]
    assert next(t for t in fig["data"] if t["name"] == "infeasible")["x"] == [9.0]
    assert "pareto_matrix" not in d["figures"]  # two objectives
    assert {"history", "curves"} <= set(d["figures"])
    best = next(t for t in d["figures"]["history"]["data"] if t["name"] == "best feasible so far")
    assert max(best["y"]) == pytest.approx(0.92)


def test_trial_view_of_a_trial_stopped_before_training(mo_client):
    t = _strict(mo_client.get("/api/trial", params={"study": "multi", "trial": 5}).text)
    assert t["state"] == "complete" and t["values"] == [None, None] and t["value"] is None
    assert t["feasible"] is False and t["constraints"] == {"params": 300_000.0}
    assert t["infeasible_before_training"] == f"params 400000 > {LIMIT}"
    ok = _strict(mo_client.get("/api/trial", params={"study": "multi", "trial": 1}).text)
    assert ok["values"] == [0.9, 5.0] and ok["feasible"] is True and ok["measures"]["params"] == 90_000.0


def test_hover_text_of_the_front_is_escaped(mo_client):
    d = _strict(mo_client.get("/api/study", params={"study": "hostile"}).text)
    assert [f["number"] for f in d["front"]] == [0, 1] and d["front"][0]["config"] == {"act": "<b>relu</b>"}
    texts = [x for t in d["figures"]["pareto"]["data"] for x in t["text"]]
    assert any("act=&lt;b&gt;relu&lt;/b&gt;" in x for x in texts)
    assert not any("<b>" in x for x in texts)
