"""shoal: tune the hyperparameters of neural networks, many at once.

``import shoal`` stays light: torch, ray and plotly load only where they are used.

Example:
    >>> import shoal
    >>> space = shoal.Space([shoal.Float("x", -5.0, 5.0)])
    >>> result = shoal.tune(lambda c: (c["x"] - 1) ** 2, space=space, trials=20,
    ...                     storage="quad.db", progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

from shoal._errors import ConfigError, Diverged, MissingDependencyError, ShoalError, StorageError, TrialFailed
from shoal.space import Categorical, Fixed, Float, Int, Space, preset
from shoal.study import Experiment, TuneResult, load_experiment, retune, tune
from shoal.panda import babysit  # panda mode: one model, watched and steered

__version__ = "0.1.0"

__all__ = [
    "Categorical",
    "ConfigError",
    "Diverged",
    "Experiment",
    "Fixed",
    "Float",
    "Int",
    "MissingDependencyError",
    "ShoalError",
    "Space",
    "StorageError",
    "TrialFailed",
    "TuneResult",
    "__version__",
    "babysit",
    "load_experiment",
    "preset",
    "retune",
    "tune",
]
