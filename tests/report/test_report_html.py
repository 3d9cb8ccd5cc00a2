"""The HTML report: every section present, each figure valid for plotly, nothing loaded from outside."""

from __future__ import annotations

import re
import sys

import optuna
import pytest

from shoal.report import build_report, load_report, render_html, write_report
from shoal.report._html import (SECTIONS, _contour_fig, _curves_fig, _gap_fig, _history_fig, _importance_fig,
                                _lineage_fig, _parallel_fig, _slice_fig, _timeline_fig)


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
    assert drawn == 5  # every curve drawn once, each ended by a None gap


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
