"""Studies: experiments, strategies by name, the ask / tell loop over Optuna, and ``tune``."""

from shoal.study._experiment import Experiment, load_experiment, make_experiment, resolve_storage
from shoal.study._runner import Job, StudyRunner, trial_seed
from shoal.study._strategies import PRUNERS, STRATEGIES, make_pruner, make_sampler
from shoal.study._tune import TuneResult, open_study, retune, tune

__all__ = [
    "PRUNERS",
    "STRATEGIES",
    "Experiment",
    "Job",
    "StudyRunner",
    "TuneResult",
    "load_experiment",
    "make_experiment",
    "make_pruner",
    "make_sampler",
    "open_study",
    "resolve_storage",
    "retune",
    "trial_seed",
    "tune",
]
