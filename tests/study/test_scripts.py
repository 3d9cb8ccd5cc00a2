"""A script that calls shoal.tune at its top level, with no ``if __name__ == "__main__":`` guard.

Caviar mode starts worker processes by default on a CPU. With Python's ``spawn``, each worker runs
the parent's script again first; a script without the guard then started a study in every worker,
and the parent hung forever (it waited to write the workers' data into a pipe nobody read).
"""

from __future__ import annotations

import subprocess
import sys

import optuna

from tests.conftest import subprocess_env

SCRIPT = '''
import shoal
from torch import nn

print("script started")  # once: workers must not run this script again


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


r = shoal.tune(data="digits", preset="mlp", trials=8, epochs=2, storage="builtin.log", seed=0, progress=False)
print("builtin best", r.best_value)
space = shoal.Space([shoal.Float("lr", 1e-3, 1e-1, log=True)])
r = shoal.tune(model=Net, space=space, data="digits", trials=4, epochs=2, workers=2, storage="model.log",
               seed=0, progress=False)
print("model best", r.best_value)
'''


def _study(path):
    return optuna.load_study(study_name=None, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))


def test_a_script_without_a_main_guard_trains_in_workers_and_finishes(workdir):
    (workdir / "unguarded.py").write_text(SCRIPT)
    env = {**subprocess_env(), "SHOAL_WORKERS": "2"}
    out = subprocess.run([sys.executable, "unguarded.py"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # The built-in engine's workers never run the script: one study of 8 trials, trained in 2 workers.
    assert out.stdout.count("builtin best") == 1, out.stdout
    builtin = _study(workdir / "builtin.log")
    assert builtin.user_attrs["population"]["workers"] == 2
    assert len(builtin.trials) == 8 and sum(t.state.name == "COMPLETE" for t in builtin.trials) >= 6
    # A user's module needs the script in its workers (spawn). Unguarded, each worker runs the script
    # again, where shoal.tune refuses to start a second study (the study above still has 8 trials);
    # the workers cannot start, and the model's study trains in this process instead, saying why.
    assert out.stdout.count("script started") == 3  # this process and the 2 spawn workers
    assert out.stderr.count("shoal: shoal.tune was called while a worker process was starting") == 2
    assert "Traceback" not in out.stderr  # one paragraph per worker, not multiprocessing's frames
    assert "training in this process, not in 2 worker processes" in out.stderr
    assert 'if __name__ == "__main__":' in out.stderr
    model = _study(workdir / "model.log")
    assert [t.state.name for t in model.trials] == ["COMPLETE"] * 4
    assert "model best" in out.stdout
