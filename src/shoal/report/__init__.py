"""Reports: a stored study as plot data, one offline HTML file, and terminal tables.

The data layer (``load_report``, ``build_report``, the dataclasses) needs no plotting library; the
HTML renderer imports plotly when it runs.

Example:
    >>> from shoal.report import load_report, write_html
    >>> data = load_report("shoal.db", "digits-mlp", color_by="lr")  # doctest: +SKIP
    >>> write_html(data, "report.html")  # doctest: +SKIP
"""

from shoal.report._compare import ComparisonData, GroupStats, load_comparison, run_comparison
from shoal.report._compare_view import print_comparison, render_comparison, write_comparison
from shoal.report._data import (
    BestRow,
    Contour,
    Curve,
    CurveSet,
    GapRow,
    GapRules,
    History,
    Importance,
    InfeasibleRow,
    LineageData,
    ParamData,
    ParetoData,
    ReportData,
    StageRow,
    Timing,
    TrialInfo,
)
from shoal.report._html import render_html, write_html, write_report
from shoal.report._load import build_report, load_report, open_stored_study, read_trials

__all__ = [
    "BestRow",
    "ComparisonData",
    "Contour",
    "Curve",
    "CurveSet",
    "GapRow",
    "GapRules",
    "GroupStats",
    "History",
    "Importance",
    "InfeasibleRow",
    "LineageData",
    "ParamData",
    "ParetoData",
    "ReportData",
    "StageRow",
    "Timing",
    "TrialInfo",
    "build_report",
    "load_comparison",
    "load_report",
    "open_stored_study",
    "print_comparison",
    "read_trials",
    "render_comparison",
    "render_html",
    "run_comparison",
    "write_comparison",
    "write_html",
    "write_report",
]
