"""End to end in headless Chromium: `shoal dashboard` and `shoal babysit` as real processes; the
study page draws a curve, the trial page sends a learning-rate change, the trainer applies it and
the event shows in the page and in the storage. Screenshots are kept under tests/artifacts/dashboard
(or $SHOAL_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, subprocess_env
from tests.dashboard.conftest import XSS, XSS_PARAM
from tests.report.conftest import MULTI_FRONT, build_multi_study

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)),
                None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install "
                                                "chromium chromium-driver; .ci/run does it)"),
    pytest.mark.slow,
]
ARTIFACTS = Path(os.environ.get("SHOAL_TEST_ARTIFACTS", REPO / "tests" / "artifacts")) / "dashboard"


def _wait(what: str, check, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _trial(db: Path, study: str):
    import optuna

    try:
        st = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    except KeyError:  # the babysit process has not created its study yet
        return None
    return st.trials[0] if st.trials else None


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_study_page_curve_and_lr_change_in_chromium(tmp_path, processes):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    import optuna
    from optuna.trial import TrialState, create_trial

    from shoal.panda import pause, resume

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "panda.db"
    env = subprocess_env() | {"PYTHONUNBUFFERED": "1"}
    optuna.storages.RDBStorage(f"sqlite:///{db}")  # the schema first: two processes must not both create it
    # A babysat run, started paused; run one epoch or more, then pause it again (through the storage).
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "shoal", "babysit", "--data", "digits", "-p", "width=32", "-p", "depth=1",
         "-p", "lr=0.05", "--epochs", "60", "--study", "panda", "-s", str(db), "--paused", "--quiet", "--poll", "0.1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    _wait("the babysat trial's trainer", lambda: (t := _trial(db, "panda")) is not None
          and "panda_alive" in t.user_attrs, timeout=120)
    resume(str(db), "panda", 0, wait=30)
    _wait("a finished epoch", lambda: len(_trial(db, "panda").user_attrs.get("curves", {}).get("val_loss", [])) >= 1)
    paused = pause(str(db), "panda", 0, wait=30)
    assert paused["event"] is not None and paused["event"]["what"] == "pause"
    # A study and a trial with hostile names in the same storage.
    x = optuna.create_study(storage=f"sqlite:///{db}", study_name=XSS)
    x.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0,
                             user_attrs={"config": {XSS_PARAM: XSS}, "curves": {"val_loss": [2.0, 1.0]}}))
    build_multi_study(db)  # a multi-objective study with limits: its page draws the front

    dash = subprocess.Popen([sys.executable, "-m", "shoal", "dashboard", "-s", str(db), "--port", "0"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(dash)
    line = _wait("the dashboard's address", lambda: dash.stdout.readline(), timeout=60, every=0)
    base = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert base, line
    base = base.group(0)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(base)
        page.get_by_role("link", name="panda").click()
        page.wait_for_function("() => { const d = document.getElementById('fig-curves');"
                               " return d && d.data && d.data.some(t => t.y.filter(v => v !== null).length > 0); }",
                               timeout=20000)
        ys = page.evaluate("() => document.getElementById('fig-curves').data.flatMap(t => t.y).filter(v => v !== null)")
        assert len(ys) >= 1 and all(isinstance(v, float) and v > 0 for v in ys)
        page.wait_for_selector("#running tbody tr")
        assert page.inner_text("#running tbody tr td:nth-child(4)") == "yes"  # babysat
        page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=True)

        page.click("#running tbody tr td a")
        page.wait_for_selector("#controls:not([hidden])", timeout=20000)
        page.fill("#lr", "0.0042")
        page.click("#set-lr")
        page.wait_for_function("() => document.getElementById('control-result').textContent.includes('applied')",
                               timeout=20000)
        assert "lr now 0.0042" in page.inner_text("#control-result")
        page.wait_for_function("() => [...document.querySelectorAll('#events tbody tr')].some("
                               "r => r.cells[0].textContent === 'set_lr' && r.cells[1].textContent === '0.0042')",
                               timeout=20000)
        page.screenshot(path=str(ARTIFACTS / "trial.png"), full_page=True)

        # hostile names show as typed, and run nothing
        page.goto(f"{base}study?study={XSS}")
        page.wait_for_function("() => document.getElementById('top').tBodies[0].rows.length > 0", timeout=20000)
        assert page.inner_text("#title") == XSS
        page.goto(f"{base}trial?study={XSS}&trial=0")
        page.wait_for_function("() => document.getElementById('config').tBodies[0].rows.length > 0", timeout=20000)
        assert page.inner_text("#config tbody tr td:nth-child(1)") == XSS_PARAM
        page.screenshot(path=str(ARTIFACTS / "escaped.png"), full_page=True)

        page.goto(f"{base}study?study=multi")
        page.wait_for_function("() => document.getElementById('front').tBodies[0].rows.length > 0", timeout=20000)
        assert page.evaluate("() => [...document.querySelectorAll('#front tbody tr')].map(r => r.cells[0].textContent)"
                             ) == [str(n) for n in MULTI_FRONT]
        assert page.evaluate("() => document.getElementById('fig-pareto').data.length") == 3
        assert "2 infeasible trials (limits: params<=100000)" in page.inner_text("#constraints")
        page.screenshot(path=str(ARTIFACTS / "pareto.png"), full_page=True)
        browser.close()
    assert dialogs == [] and errors == []

    events = _trial(db, "panda").user_attrs["events"]
    set_lr = [e for e in events if e["what"] == "set_lr"]
    assert len(set_lr) == 1 and set_lr[0]["value"] == pytest.approx(0.0042) and set_lr[0]["lr"] == pytest.approx(0.0042)
    print(f"screenshots in {ARTIFACTS}")
