"""shoal studies stay readable by Optuna's own tools (what optuna-dashboard reads too)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.conftest import subprocess_env


def test_a_shoal_pbt_study_loads_in_optuna(tmp_path):
    import optuna

    import shoal
    from shoal.dashboard import Source, population_view, study_view

    space = shoal.Space([shoal.Float("lr", 1e-4, 1.0, log=True), shoal.Float("wd", 1e-6, 1e-2, log=True)])

    def objective(config, epochs, state=None):  # a quadratic bowl in log lr; each epoch halves the distance
        done = (state or 0) + epochs
        return (math.log10(config["lr"]) + 2) ** 2 * 0.5 ** done + 0.01 * math.log10(1 / config["wd"]), done

    db = tmp_path / "pbt.db"
    shoal.tune(objective, space=space, strategy="pbt", trials=4, epochs=4, pbt_interval=2, storage=str(db),
               study="compat", progress=False)

    st = optuna.load_study(study_name="compat", storage=f"sqlite:///{db}")
    complete = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 4 and st.best_trial.value == min(t.value for t in complete)
    assert set(st.best_trial.params) == {"lr", "wd"}
    importance = optuna.importance.get_param_importances(st)
    assert set(importance) == {"lr", "wd"} and math.isclose(sum(importance.values()), 1.0)
    assert optuna.get_all_study_names(f"sqlite:///{db}") == ["compat"]
    # and the dashboard reads the same study: best value and PBT copies
    src = Source(str(db))
    assert study_view(src, "compat")["best"]["value"] == pytest.approx(st.best_value)
    pop = population_view(src, "compat")
    replaced = [t for t in st.trials if "replaced_by" in (t.user_attrs.get("pbt") or {})]
    assert pop["kind"] == "pbt" and len(pop["copies"]) == len(replaced) >= 1


def test_cli_dashboard_bad_storage_is_one_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "shoal", "dashboard", "-s", str(tmp_path / "none.db")],
                         capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "Storage file not found" in out.stderr and "Traceback" not in out.stderr
    import optuna

    optuna.create_study(storage=f"sqlite:///{tmp_path / 'ok.db'}", study_name="s")
    out = subprocess.run([sys.executable, "-m", "shoal", "dashboard", "-s", "ok.db", "--port", "70000"],
                         capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "'port' setting must be a whole number from 0 to 65535" in out.stderr
    assert "Traceback" not in out.stderr
