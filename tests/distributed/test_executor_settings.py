"""The executor settings: clear errors for combinations that cannot work, before anything runs."""

from __future__ import annotations

import pytest

from shoal._errors import ConfigError
from shoal.study import make_experiment


@pytest.mark.parametrize("settings, message", [
    ({"executor": "spark"}, r"'executor' setting must be one of \['auto', 'local', 'processes', 'ray'\]"),
    ({"address": "10.0.0.5:6379"}, "needs executor 'ray'"),
    ({"executor": "local", "workers": 2}, "'local' executor trains in this process"),
    ({"executor": "ray", "engine": "single"}, "'ray' executor runs populations"),
])
def test_bad_executor_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_experiment(settings)


def test_ray_trains_cnn_populations_even_on_a_cpu_driver():
    # In this process a CNN on a CPU trains one model at a time (measured faster); on Ray the
    # cluster's devices decide, and populations are what Ray spreads.
    assert make_experiment({"preset": "cnn"}).resolved_engine("cpu") == "single"
    assert make_experiment({"preset": "cnn", "executor": "ray"}).resolved_engine("cpu") == "population"
    assert make_experiment({"executor": "ray", "address": "auto"}).address == "auto"


def test_a_storage_server_that_cannot_be_reached_is_a_clear_error():
    pytest.importorskip("psycopg")
    from shoal.study import resolve_storage

    # port 1 on loopback: nothing listens there
    with pytest.raises(ConfigError, match=r"Cannot open the storage 'postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x'"):
        resolve_storage("postgresql+psycopg://u:secret@127.0.0.1:1/x")


def test_printed_storage_urls_hide_their_password():
    from shoal.study._shared import _hide_password

    assert _hide_password("postgresql+psycopg://u:s3cret@db:5432/x") == "postgresql+psycopg://u:***@db:5432/x"
    assert _hide_password("postgresql+psycopg://u@db/x") == "postgresql+psycopg://u@db/x"
    assert _hide_password("runs.db") == "runs.db"
