"""The panda commands end to end (subprocesses, real SQLite), the lr range test and the view's numbers."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from shoal import panda
from shoal._errors import ConfigError
from shoal.panda._lrfind import suggest
from shoal.panda._view import line_chart, overfitting_run, render
from tests.conftest import subprocess_env


@pytest.fixture
def shoal_cli(capsys, monkeypatch):
    """``shoal ...`` through the real entry point (exit codes, one-paragraph errors), in this process;
    the trainer it steers runs in another one."""
    from types import SimpleNamespace

    from shoal.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["shoal", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=" ".join(out.out.split()), stderr=" ".join(out.err.split()))

    return run


def test_babysit_started_paused_is_steered_by_shoal_control_from_another_process(workdir, shoal_cli):
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "babysit", "--quiet", "--paused", "-s", "p.db", "--epochs", "2",
                             "-p", "width=16", "--device", "cpu", "--poll", "0.05"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = shoal_cli("control", "lr", "0.02", "-s", "p.db", "--wait", "20")
            if out.returncode == 0:
                break
            # until the trainer has created its storage, its study and its trial
            assert any(m in out.stderr for m in ("is running now", "No study", "holds 0", "Storage file not found")), \
                out.stderr
            time.sleep(0.2)
        assert "set_lr applied at epoch 1, step 0; lr now 0.02" in out.stdout, out.stdout + out.stderr
        bad = shoal_cli("control", "lr", "fast", "-s", "p.db")
        assert bad.returncode == 2 and "a factor such as x0.5. Got 'fast'" in bad.stderr
        assert "Traceback" not in bad.stderr
        assert shoal_cli("control", "lr", "x0.5", "-s", "p.db", "--wait", "20").returncode == 0
        assert "resume applied" in shoal_cli("control", "resume", "-s", "p.db", "--wait", "20").stdout
        assert proc.wait(timeout=120) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    t = optuna.load_study(study_name="digits-mlp-panda", storage="sqlite:///p.db").trials[0]
    assert t.state == TrialState.COMPLETE
    assert [e["what"] for e in t.user_attrs["events"]] == ["pause", "set_lr", "multiply_lr", "resume"]
    assert t.user_attrs["curves"]["lr"] == pytest.approx([0.01, 0.01])
    late = shoal_cli("control", "stop", "-s", "p.db", "--trial", "0")
    assert late.returncode == 2 and "is complete, not running" in late.stderr
    fork = shoal_cli("fork", "--trial", "0", "--epoch", "1", "-p", "lr=0.001", "-s", "p.db", "--quiet")
    assert fork.returncode == 0 and "trial 1 of study digits-mlp-panda complete" in fork.stdout, fork.stderr
    child = optuna.load_study(study_name="digits-mlp-panda", storage="sqlite:///p.db").trials[1]
    assert child.user_attrs["lineage"] == {"parent_trial": 0, "parent_epoch": 1, "changes": {"lr": 0.001}}


def test_lr_find_suggests_a_rate_stores_it_and_writes_a_plot(workdir):
    r = panda.lr_find(data="digits", params={"width": 32}, steps=60, min_lr=1e-5, max_lr=1.0, storage="p.db",
                      progress=False, device="cpu")
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) >= 20
    assert r.lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in zip(r.lrs, r.lrs[1:]))
    assert r.lrs[0] < r.suggestion <= r.min_loss_lr
    i = r.lrs.index(r.suggestion)
    assert r.smoothed[i + 1] < r.smoothed[i - 1]  # the loss is falling there
    stored = optuna.load_study(study_name="digits-mlp-panda", storage="sqlite:///p.db").user_attrs["lr_find"]
    assert stored[-1]["suggestion"] == r.suggestion and stored[-1]["config"]["width"] == 32
    assert r.plot is not None and r.plot.exists() and "plotly" in r.plot.read_text()[:200000].lower()
    with pytest.raises(ConfigError, match="'min_lr' setting must be below 'max_lr'"):
        panda.lr_find(min_lr=1.0, max_lr=0.1, storage="p.db", progress=False)


def test_suggest_picks_the_steepest_descent_before_the_minimum():
    import math

    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    # a sigmoid fall centred at lr 1e-3 (index 49.5), then a rise after the minimum at index 80
    loss = [2.0 - 1.5 / (1 + math.exp(-(i - 49.5) / 4)) + (0.02 * (i - 80) ** 2 if i > 80 else 0.0) for i in range(100)]
    steep, at_min = suggest(lrs, loss)
    assert steep in (lrs[49], lrs[50])
    assert at_min == lrs[min(range(100), key=loss.__getitem__)]


def test_view_numbers_overfitting_warning_and_chart():
    assert overfitting_run([1.0, 0.8, 0.6, 0.5], [1.0, 0.9, 0.95, 1.0]) == 2
    assert overfitting_run([1.0, 0.8, 0.9], [1.0, 0.9, 1.0]) == 0  # train loss rose too: not overfitting
    rows = line_chart({"train": [3.0, 2.0, 1.0], "val": [3.0, 2.5, 2.0]}, width=10, height=5, marks=[2])
    assert rows[0][0] == "3" and rows[-2][0] == "1"
    assert [c for c, _ in rows[-1][1]] == ["─", "▲", "─"]
    assert rows[0][1][0][0] in "●○" and rows[-2][1][2][0] == "●"
    from rich.console import Console

    snap = {"epoch": 4, "epochs": 9, "step": 0, "steps": 23, "lr": 0.005, "paused": False, "stopped": False,
            "train_loss": [1.0, 0.8, 0.6, 0.5], "val_loss": [1.0, 0.9, 0.95, 1.0], "train_acc": [], "val_acc": [],
            "seconds": 0.25, "gap": 0.5, "overfitting": True, "overfit_epochs": 2, "plateau_wait": (1, 3), "marks": [3],
            "events": [{"what": "set_lr", "value": 0.005, "lr": 0.005, "epoch": 3, "step": 7}]}
    buf = io.StringIO()
    Console(file=buf, width=100).print(render(snap, "study trial 0"))
    text = buf.getvalue()
    for part in ("epoch 5/9  step 0/23", "lr 0.005", "0.25 s/epoch", "gap +0.5000", "overfitting: validation loss rose",
                 "plateau: 1/3", "epoch 3 step 7: set_lr"):
        assert part in text, part
    # the last frame: the run is over, not at "step 0" of an epoch that never comes
    for changes, shown in (({"epoch": 9}, "epoch 9/9 done"), ({"stopped": True}, "stopped after epoch 4/9")):
        buf = io.StringIO()
        Console(file=buf, width=100).print(render({**snap, **changes}, "t"))
        assert shown in buf.getvalue() and "step 0/23" not in buf.getvalue()


def test_babysit_imports_a_module_from_the_current_folder_and_ends_its_log_lines(workdir):
    """`shoal babysit --objective mymodule:objective` as the docs show it, through the installed
    console script (whose import path holds its own folder, not the current one)."""
    import shutil

    script = shutil.which("shoal") or pytest.skip("the shoal console script is not installed")
    (workdir / "mymodule.py").write_text(
        "def objective(config, epochs, state=None):\n"
        "    step = (state or 0) + epochs\n"
        "    return (config['lr'] - 0.003) ** 2 + 1.0 / step, step\n")
    out = subprocess.run([script, "babysit", "--objective", "mymodule:objective", "-p", "lr=0.01", "--epochs", "3",
                          "-s", "runs.db"], cwd=workdir, env=subprocess_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("trial 0 of study objective-panda complete") for line in lines), out.stdout
    study = optuna.load_study(study_name="objective-panda", storage="sqlite:///runs.db")
    assert study.trials[0].state == TrialState.COMPLETE and len(study.trials[0].intermediate_values) == 3


def test_a_module_that_is_nowhere_says_how_to_name_it(workdir):
    from shoal.panda._usercode import load_path

    with pytest.raises(ConfigError, match=r"No module named 'nomodule'\. Run from the folder that holds it, name "
                                          r"the file \(path/to/nomodule\.py:objective\), or add its folder"):
        load_path("nomodule:objective")


def test_control_and_fork_on_a_mistyped_storage_say_so_and_create_nothing(workdir, shoal_cli):
    for args in (["control", "lr", "0.001", "-s", "nosuch.db"], ["control", "pause", "-s", "nosuch.db"],
                 ["fork", "--trial", "0", "--epoch", "1", "-p", "lr=0.1", "-s", "nosuch.db"]):
        r = shoal_cli(*args)
        assert r.returncode == 2 and "Storage file not found: 'nosuch.db'. Check the path" in r.stderr, (args, r)
        assert not (workdir / "nosuch.db").exists()
