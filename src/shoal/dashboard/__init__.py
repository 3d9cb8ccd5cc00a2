"""The live dashboard: a local web app over a study storage.

Studies, live learning curves and best so far, the population's slots and decisions, each trial's
config, curves, checkpoints, events and lineage, and panda mode's controls for babysat runs. The
data views (``study_view`` ...) need no web framework; ``create_app`` and ``serve`` need the
``dashboard`` extra (Starlette and uvicorn).

Example:
    >>> from shoal.dashboard import serve
    >>> serve("runs.db", port=8050)  # then open http://127.0.0.1:8050/  # doctest: +SKIP
"""

from shoal.dashboard._app import create_app
from shoal.dashboard._data import NotFound, Source, population_view, study_list, study_view, trial_view
from shoal.dashboard._server import serve

__all__ = ["NotFound", "Source", "create_app", "population_view", "serve", "study_list", "study_view", "trial_view"]
