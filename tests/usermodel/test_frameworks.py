"""The Keras and Lightning examples run as studies (skipped where the package is not installed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"shoal_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_keras_example_prunes_and_copies_states(workdir, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras)")
    example = load("keras_example")
    result = example.main(trials=4, epochs=2, storage="k.db", strategy="pbt", pruner="none", pbt_interval=1)
    trials = result.study.trials
    import keras

    assert keras.backend.backend() == "torch"
    copies = [t for t in trials if t.user_attrs["pbt"]["parent"] is not None]
    assert len(copies) == 1 and copies[0].state.name == "COMPLETE"  # the bottom quarter of 4: one copy
    assert all(len(t.user_attrs["curves"]["value"]) == 2 for t in trials if t.state.name == "COMPLETE")
    assert 0.0 < result.best_value < 2.3  # better than a uniform guess over 10 classes


@pytest.mark.slow
def test_lightning_example_reports_each_epoch(workdir):
    pytest.importorskip("lightning", reason="PyTorch Lightning is not installed (pip install lightning)")
    example = load("lightning_example")
    result = example.main(trials=2, epochs=2, storage="l.db")
    for t in result.study.trials:
        assert t.state.name == "COMPLETE"
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == pytest.approx(t.intermediate_values[2])
    assert result.best_value < 2.3


def test_your_model_example(workdir):
    example = load("your_model")
    result = example.with_objective(trials=4, epochs=2, storage="o.db", strategy="pbt")
    assert {t.state.name for t in result.study.trials} <= {"COMPLETE", "PRUNED"}
    assert result.best_value < 2.3
