"""The dashboard's JSON API over a real SQLite storage, through Starlette's test client."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.conftest import XSS, XSS_PARAM, build_study


def _trace_points(fig: dict) -> list[tuple[float, float]]:
    return [(x, y) for tr in fig["data"] for x, y in zip(tr["x"], tr["y"]) if x is not None and y is not None]


def test_studies_list_counts_states_and_best(client):
    studies = {s["name"]: s for s in client.get("/api/studies").json()["studies"]}
    assert set(studies) == {"live", XSS}
    live = studies["live"]
    assert live["trials"] == 8 and live["direction"] == "minimize" and live["metric"] == "val_loss"
    assert live["states"] == {"complete": 3, "pruned": 2, "fail": 1, "running": 2}
    assert live["best_value"] == pytest.approx(0.3) and live["best_trial"] == 2


def test_study_view_best_so_far_running_trials_and_live_curves(client):
    d = client.get("/api/study", params={"study": "live"}).json()
    assert d["best"]["number"] == 2 and d["best"]["value"] == pytest.approx(0.3)
    assert d["best_so_far"] == {"numbers": [0, 2, 7], "values": [0.5, 0.3, 0.3]}
    assert [t["number"] for t in d["top"]] == [2, 0, 7]
    running = {r["number"]: r for r in d["running"]}
    assert set(running) == {5, 6}
    assert running[5]["epoch"] == 2 and running[5]["last"] == pytest.approx(0.6) and not running[5]["babysat"]
    assert running[6]["babysat"]
    # trial 5 has no curves attribute: its curve is drawn from the values it reported so far
    points = _trace_points(d["figures"]["curves"])
    assert (1, 0.8) in points and (2, 0.6) in points and (4, 0.3) in points
    assert "running" in json.dumps(d["states"])
    hist = d["figures"]["history"]
    best_trace = next(t for t in hist["data"] if t["name"] == "best so far")
    assert best_trace["y"] == [0.5, 0.3, 0.3]
    lineage = {t["name"]: t for t in d["figures"]["lineage"]["data"]}  # PBT drawn by epoch
    # the copy 0 -> 2 made at epoch 2: a dotted line from trial 0's value there to trial 2's next epoch
    assert lineage["copy (from its parent)"]["x"] == [2, 3, None]


def test_population_view_slots_copies_and_rungs(client):
    p = client.get("/api/population", params={"study": "live"}).json()
    assert p["kind"] == "pbt" and p["pbt"]["population"] == 2
    m = {x["number"]: x for x in p["members"]}
    assert (m[0]["slot"], m[1]["slot"], m[2]["slot"]) == (0, 1, 1)
    assert (m[2]["from_epoch"], m[2]["epoch"], m[2]["parent"]) == (2, 4, 0)
    assert m[1]["replaced_by"] == 2 and m[5]["epoch"] == 2
    assert p["copies"] == [{"epoch": 2, "replaced": 1, "slot": 1, "child": 2, "parent": 0}]
    assert p["rungs"] == [{"number": 3, "bracket": 0, "epoch": 1, "value": 2.0, "rank": 3, "of": 3, "kept": False}]
    assert p["running"] == 2
    bars = _trace_points(p["figure"])
    assert (2, 1) in bars and (4, 1) in bars  # trial 2 in slot 1 from epoch 2 to 4


def test_population_slots_rebuilt_from_times_without_pbt(tmp_path):
    import datetime as dt

    import optuna
    from optuna.trial import TrialState, create_trial

    from shoal.dashboard import Source, population_view

    s = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}", study_name="pop")
    s.set_user_attr("population", {"max_members": 2})
    t0 = dt.datetime(2026, 1, 1)
    for a, b in ((0, 10), (0, 4), (5, 9), (11, 12)):  # two slots: 0 | 1 then 1 again | 0 again
        t = create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs={"config": {}})
        t.datetime_start, t.datetime_complete = t0 + dt.timedelta(seconds=a), t0 + dt.timedelta(seconds=b)
        s.add_trial(t)
    p = population_view(Source(str(tmp_path / "p.db")), "pop")
    assert p["kind"] == "population"
    assert [m["slot"] for m in p["members"]] == [0, 1, 1, 0]


def test_trial_view_config_curves_events_lineage_checkpoints(client):
    t = client.get("/api/trial", params={"study": "live", "trial": 6}).json()
    assert t["state"] == "running" and t["babysat"] and t["alive"] is False
    assert [e["what"] for e in t["events"]] == ["pause", "set_lr"]
    assert [(c["epoch"], c["step"], c["name"]) for c in t["checkpoints"]] == [
        (1, 0, "epoch-001.pt"), (2, 0, "epoch-002.pt"), (2, 10, "epoch-002-step-00010.pt")]  # notes.txt is no checkpoint
    assert t["checkpoints"][0]["bytes"] == 2048
    assert t["curves"]["val_loss"] == [0.7, 0.65] and t["intermediate"] == {"epochs": [1, 2], "values": [0.7, 0.65]}
    names = [tr["name"] for tr in t["figure"]["data"]]
    assert "val_loss" in names and "lr" in names and "events" in names
    c = client.get("/api/trial", params={"study": "live", "trial": 2}).json()
    assert c["lineage"]["parent"] == 0 and c["lineage"]["ancestors"] == [0] and c["lineage"]["pbt"]["start_epoch"] == 2
    assert [s["from_epoch"] for s in c["schedule"]] == [0, 2] and c["checkpoints"] == [] and not c["babysat"]
    assert client.get("/api/trial", params={"study": "live", "trial": 0}).json()["lineage"]["children"] == [2]
    f = client.get("/api/trial", params={"study": "live", "trial": 4}).json()
    assert f["state"] == "fail" and f["fail_reason"] == "training diverged at epoch 1"


@pytest.mark.parametrize("path,params,status,message", [
    ("/api/study", {"study": "nope"}, 404, "No study named 'nope'"),
    ("/api/study", {}, 400, "Missing the 'study'"),
    ("/api/trial", {"study": "live", "trial": 99}, 404, "No trial 99"),
    ("/api/trial", {"study": "live", "trial": "1; rm"}, 400, "must be a whole number"),
    ("/api/trial", {"study": "live", "trial": "-1"}, 400, "must be a whole number >= 0"),
])
def test_bad_requests_are_clear_json_errors(client, path, params, status, message):
    r = client.get(path, params=params)
    assert r.status_code == status and message in r.json()["error"]


def test_names_are_data_never_markup(client):
    # pages are fixed files: no study or parameter text is ever written into HTML by the server
    for page in ("/", "/study?study=" + XSS, "/trial?study=" + XSS + "&trial=0"):
        r = client.get(page)
        assert r.status_code == 200 and "<script>alert" not in r.text and "onerror" not in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
    d = client.get("/api/study", params={"study": XSS}).json()
    assert d["name"] == XSS  # JSON keeps the name as typed; the page sets it as text
    t = client.get("/api/trial", params={"study": "live", "trial": 7}).json()
    assert t["config"][XSS_PARAM] == XSS
    # plotly renders some HTML in trace names: names reach it escaped
    figs = json.dumps(client.get("/api/study", params={"study": "live"}).json()["figures"])
    assert "<script" not in figs and "<img" not in figs


def test_static_files_are_a_fixed_list(client):
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()
    assert client.get("/static/dashboard.js").status_code == 200
    for name in ("_app.py", "..%2F_app.py", "..%2F..%2F..%2Fetc%2Fpasswd", "index.html"):
        assert client.get(f"/static/{name}").status_code == 404, name


def test_unknown_host_is_refused(live_db):
    from starlette.testclient import TestClient

    from shoal.dashboard import create_app

    with TestClient(create_app(str(live_db))) as c:  # Host: testserver, as a rebinding DNS name would send
        r = c.get("/api/studies")
    assert r.status_code == 400 and "Unknown host" in r.json()["error"]


def test_missing_storage_is_a_config_error(tmp_path):
    from shoal._errors import ConfigError
    from shoal.dashboard import Source

    with pytest.raises(ConfigError, match="Storage file not found"):
        Source(str(tmp_path / "absent.db"))
    assert not (tmp_path / "absent.db").exists()


# ------------------------------------------------------------------------------------------ controls
@pytest.fixture
def control_db(tmp_path):
    return build_study(tmp_path / "c.db")


@pytest.fixture(scope="module")
def shared_control_db(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("controls") / "c.db")


def _app(db, token=None):
    from starlette.testclient import TestClient

    from shoal.dashboard import create_app

    return TestClient(create_app(str(db), token=token), base_url="http://127.0.0.1")


def _commands(db, number):
    import optuna

    st = optuna.load_study(study_name="live", storage=f"sqlite:///{db}")
    return [v for k, v in st.trials[number].user_attrs.items() if k.startswith("panda_cmd:")]


def test_set_lr_reaches_the_trial_through_panda(control_db):
    with _app(control_db) as c:
        r = c.post("/api/control", json={"study": "live", "trial": 6, "what": "set_lr", "value": 0.003})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["trial"] == 6 and out["alive"] is False and out["event"] is None  # no trainer: it waits
    assert [(c["what"], c["value"]) for c in _commands(control_db, 6)] == [("set_lr", 0.003)]


@pytest.mark.parametrize("body,message", [
    ({"study": "live", "trial": 6, "what": "set_lr", "value": -1}, "must be a positive number"),
    ({"study": "live", "trial": 6, "what": "set_lr", "value": "0.1"}, "must be a positive number"),
    ({"study": "live", "trial": 6, "what": "rm -rf", "value": None}, "Unknown command"),
    ({"study": "live", "trial": 0, "what": "pause"}, "was not started by `shoal babysit`"),
    ({"study": "live", "trial": "6", "what": "pause"}, "whole number"),
])
def test_bad_controls_write_nothing(shared_control_db, body, message):
    control_db = shared_control_db
    with _app(control_db) as c:
        r = c.post("/api/control", json=body)
    assert r.status_code == 400 and message in r.json()["error"]
    assert _commands(control_db, 6) == []


def test_controls_need_json_same_origin_and_the_token(control_db):
    body = {"study": "live", "trial": 6, "what": "pause"}
    with _app(control_db, token="s3cret-token") as c:
        assert c.post("/api/control", data=body).status_code == 400  # a form post (cross-site forms can)
        assert c.post("/api/control", json=body).status_code == 401
        assert c.post("/api/control", json=body, headers={"X-Shoal-Token": "wrong-token!"}).status_code == 401
        r = c.post("/api/control", json=body, headers={"X-Shoal-Token": "s3cret-token", "Origin": "http://evil.example"})
        assert r.status_code == 403
        assert _commands(control_db, 6) == []
        ok = c.post("/api/control", json=body, headers={"X-Shoal-Token": "s3cret-token", "Origin": "http://127.0.0.1"})
        assert ok.status_code == 200, ok.text
        assert c.get("/api/info").json()["token_required"] is True
    assert [x["what"] for x in _commands(control_db, 6)] == ["pause"]


def test_fork_checks_its_checkpoint_and_parameters_before_starting(control_db):
    with _app(control_db) as c:
        r = c.post("/api/fork", json={"study": "live", "trial": 6, "epoch": 5, "params": {"lr": 0.001}})
        assert r.status_code == 400 and "no checkpoint after epoch 5" in r.json()["error"]
        r = c.post("/api/fork", json={"study": "live", "trial": 6, "epoch": 2, "params": {"width": 8}})
        assert r.status_code == 400 and "'width' cannot change" in r.json()["error"]
        r = c.post("/api/fork", json={"study": "live", "trial": 6, "epoch": 2, "params": {"lrr": 0.1}})
        assert r.status_code == 400 and "Did you mean 'lr'" in r.json()["error"]
        r = c.post("/api/fork", json={"study": "live", "trial": 6, "epoch": 2, "params": {"lr_decay": "a,b"}})
        assert r.status_code == 400 and "plain word" in r.json()["error"]
