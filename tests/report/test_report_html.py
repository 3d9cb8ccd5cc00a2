"""The HTML report: every section present, each figure valid for plotly, nothing loaded from outside."""

from __future__ import annotations

import math
import re
import sys

import optuna
import pytest

from shoal.report import build_report, load_report, render_html, write_report
from shoal.report._html import (SECTIONS, WEBGL_FROM_POINTS, _contour_fig, _curves_fig, _gap_fig, _history_fig,
                                _importance_fig, _lineage_fig, _parallel_fig, _slice_fig, _svg_when_small,
                                _timeline_fig, _train_val_fig)


def external_references(page: str) -> list[str]:
    """src/href attributes and script tags that point outside the file."""
    tags = re.findall(r"<(?:script|link|img|iframe|source|embed)\b[^>]*>", page, flags=re.I)
    found = [t for t in tags if re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", t, flags=re.I)]
    # Outside script bodies, no attribute anywhere may point to http(s).
    outside = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.I | re.S)
    found += re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*""", outside, flags=re.I)
    return found


def test_external_reference_check_can_fail():
    assert external_references('<script src="https://cdn.plot.ly/plotly.js"></script>')
    assert external_references('<a href="http://example.org">x</a>')
    assert not external_references('<a href="#history">x</a><script>var u = "https://x";</script>')


def test_report_holds_every_section_and_no_external_url(known_db, tmp_path):
    path = write_report(str(known_db), "known", tmp_path / "r.html", color_by="lr")
    page = path.read_text(encoding="utf-8")
    for sid, heading in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
        assert f'<a href="#{sid}">' in page
    assert external_references(page) == []
    assert page.count("<script type=\"text/javascript\">") == 1  # plotly.js embedded once
    assert len(page) > 3_000_000  # ... and it is the whole library
    for name in ("history", "curves", "parallel", "slice", "contour", "importance", "gap", "lineage", "timing"):
        assert f'id="fig-{name}"' in page, name
    assert "training diverged at epoch 1" in page  # failed trials listed with their reason
    assert "overfit" in page and "stage" in page
    # 4 complete trials: the importance is read as a hint
    assert "From 4 complete trials only: with fewer than 20, a parameter can look important by chance" in page


def test_every_figure_is_valid_plotly(known_db):
    go = pytest.importorskip("plotly.graph_objects")
    d = load_report(str(known_db), color_by="optimizer")
    figs = [_history_fig(d), _curves_fig(d), _parallel_fig(d)[0], _slice_fig(d), _contour_fig(d), _importance_fig(d),
            _gap_fig(d), _lineage_fig(d), _timeline_fig(d)]
    for fig in figs:
        assert fig is not None
        go.Figure(fig)  # raises on any unknown property or bad value
    # The numeric colouring bins curves into groups, one trace per group.
    numeric = _curves_fig(load_report(str(known_db), color_by="lr"))
    go.Figure(numeric)
    drawn = sum(sum(1 for x in tr["x"] if x is None) for tr in numeric["data"])
    assert drawn == 5  # every curve drawn once (4 complete, 1 pruned), each ended by a None gap


def test_history_marks_pruned_trials_where_they_stopped_and_failed_ones_at_the_worst_end(known_db):
    d = load_report(str(known_db))
    traces = {t["name"]: t for t in _history_fig(d)["data"]}
    # trial 3 was pruned after reporting val_loss 1.6; trial 4 failed with no value: at the worst (0.9),
    # not on the best-so-far line where they read as best trials
    assert traces["pruned (last value)"]["x"] == [3] and traces["pruned (last value)"]["y"] == [1.6]
    assert traces["fail (no value)"]["x"] == [4] and traces["fail (no value)"]["y"] == [0.9]


def test_small_figures_are_svg_and_large_ones_webgl(known_db):
    # a page with many WebGL figures lost the oldest one's drawing (browsers cap WebGL contexts)
    small = _svg_when_small(_history_fig(load_report(str(known_db))))
    assert {t["type"] for t in small["data"]} == {"scatter"}
    big = {"data": [{"type": "scattergl", "x": list(range(WEBGL_FROM_POINTS)), "y": [0] * WEBGL_FROM_POINTS}]}
    assert _svg_when_small(big)["data"][0]["type"] == "scattergl"


def test_curves_leave_out_diverged_trials_use_a_log_axis_over_decades_and_name_whole_values(tmp_path):
    go = pytest.importorskip("plotly.graph_objects")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(storage=url, study_name="c")
    rows = [("COMPLETE", 2, [1.0, 0.5, 0.3]), ("COMPLETE", 4, [2.0, 0.05, 0.01]), ("COMPLETE", 2, [0.9, 0.6, 0.4]),
            ("FAIL", 3, [5.0, 2.0e14])]
    for state, depth, val in rows:
        t = study.ask({"depth": optuna.distributions.IntDistribution(1, 4)})
        t.set_user_attr("config", {"depth": depth})
        t.set_user_attr("curves", {"val_loss": val, "train_loss": [v * 0.9 for v in val]})
        study.tell(t, val[-1] if state == "COMPLETE" else None, state=getattr(optuna.trial.TrialState, state))
    d = load_report(url, "c", color_by="depth")
    assert d.curves.failed == 1 and [c.number for c in d.curves.curves] == [0, 1, 2]
    fig = _curves_fig(d)
    go.Figure(fig)
    assert fig["layout"]["yaxis"]["type"] == "log"  # 0.01 .. 2: two decades
    assert [t["name"] for t in fig["data"]] == ["depth=2", "depth=4"]  # not "depth 1.9-2.2"
    assert fig["data"][0]["text"][:3] == ["trial 0"] * 3  # hover names the trial
    tv = _train_val_fig(d)
    go.Figure(tv)
    assert [t["name"] for t in tv["data"][:2]] == ["trial 1 validation", "trial 1 train"]  # best first
    assert tv["data"][1]["line"]["dash"] == "dot"


def test_slice_rows_leave_room_for_their_labels_and_powers_of_two_get_a_log2_axis(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s")
    for i, (bs, opt) in enumerate(((16, "sgd"), (64, "adam"), (256, "sgd"), (512, "adam"), (32, "rmsprop"))):
        t = study.ask()
        t.set_user_attr("config", {"batch_size": bs, "optimizer": opt, "lr": 0.1 / (i + 1), "dropout": 0.1 * i,
                                   "depth": i % 3 + 1})
        study.tell(t, 1.0 / (i + 1))
    fig = _slice_fig(load_report(url, "s"))
    lay = fig["layout"]
    axes = sorted(k for k in lay if k.startswith("yaxis"))
    height = lay["height"] - 90
    rows = sorted({tuple(lay[k]["domain"]) for k in axes}, reverse=True)
    for upper, lower in zip(rows, rows[1:]):
        # the gap between two rows, in pixels: room for the upper row's x labels and title
        assert (upper[0] - lower[1]) * height >= 85 - 1e-6
    bs = next(lay[k.replace("y", "x")] for k in axes if lay[k.replace("y", "x")]["title"]["text"] == "batch_size")
    assert bs["type"] == "log" and bs["tickvals"] == [16, 32, 64, 256, 512]


def test_an_empty_study_still_renders_and_says_why(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty")
    page = render_html(build_report(study))
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "No trial has finished yet." in page and "importance needs at least 2 complete trials" in page
    assert "fig-" not in page  # no figure without data


def test_cli_report_prints_tables_and_writes_html(known_db, workdir, monkeypatch, capsys):
    from tests.cli.test_cli import run_cli

    assert run_cli(monkeypatch, "report", "-s", str(known_db), "-o", "out.html", "--color-by", "lr") == 0
    out = capsys.readouterr().out
    assert "best val_loss 0.2 at trial 5" in out
    assert "parameter importance (fANOVA)" in out and "1 of 5 trials flagged overfitting" in out
    assert "importance from 4 complete trials only: a hint" in " ".join(out.split())
    assert "report written to" in out and (workdir / "out.html").stat().st_size > 1_000_000
    assert run_cli(monkeypatch, "report", "-s", str(known_db), "--no-html") == 0
    assert "report written" not in capsys.readouterr().out
    assert not list(workdir.glob("report-*.html"))
    assert run_cli(monkeypatch, "report", "-s", str(known_db), "--study", "nope", "--no-html") == 2
    assert "No study named 'nope'" in capsys.readouterr().err


def test_a_log_parameter_with_an_off_value_keeps_its_log_axis(tmp_path):
    # weight_decay: log-sampled, 0 when off; it was drawn on a linear axis, every "on" value piled at 0
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    url = f"sqlite:///{tmp_path / 'wd.db'}"
    study = optuna.create_study(storage=url, study_name="wd")
    dists = {"weight_decay_on": CategoricalDistribution([False, True]), "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
             "lr": FloatDistribution(1e-4, 1.0, log=True)}
    for i, wd in enumerate((0.0, 1e-5, 3e-4, 0.0, 5e-3)):
        params = {"weight_decay_on": wd > 0, "lr": 0.01 * (i + 1), **({"weight_decay": wd} if wd else {})}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=1.0 / (i + 1),
            user_attrs={"config": {"weight_decay": wd, "lr": 0.01 * (i + 1)}}))
    d = load_report(url, "wd")
    assert d.params.logs["weight_decay"]
    fig = _slice_fig(d)
    axis = next(v for k, v in fig["layout"].items() if k.startswith("xaxis") and v["title"]["text"].startswith("weight_decay"))
    assert axis["type"] == "log" and axis["title"]["text"] == "weight_decay (2 off, not drawn)"
    trace = next(t for t in fig["data"] if t["name"] == "weight_decay")
    assert sorted(trace["x"]) == [1e-5, 3e-4, 5e-3]
    par, _ = _parallel_fig(d)
    dim = next(x for x in par["data"][0]["dimensions"] if x["label"] == "weight_decay (log)")
    assert all(math.isfinite(v) for v in dim["values"]) and dim["ticktext"][0] == "off"
    assert dim["values"][0] == dim["tickvals"][0] == -6  # a decade below 1e-5
