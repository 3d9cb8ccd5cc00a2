"""The package surface: light import, exported names."""

from __future__ import annotations

import subprocess
import sys

import shoal
from tests.conftest import subprocess_env


def test_import_shoal_leaves_heavy_libraries_out():
    code = "import shoal, sys; heavy = {'torch', 'ray', 'plotly', 'optuna', 'sklearn'} & set(sys.modules); print(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "[]"


def test_exported_names_exist_and_are_public():
    for name in shoal.__all__:
        assert hasattr(shoal, name), name
    public = {n for n in dir(shoal) if not n.startswith("_") and n not in ("annotations",)}
    modules = {"space", "study", "data", "engine", "cli", "panda", "report", "dashboard"}
    assert public - modules - set(shoal.__all__) == set()
