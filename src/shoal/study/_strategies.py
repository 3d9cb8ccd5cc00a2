"""Strategies and pruners by name: thin, seeded wrappers over Optuna's own."""

from __future__ import annotations

import difflib
import functools
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from shoal.space import Space

__all__ = ["PRUNERS", "STRATEGIES", "make_pruner", "make_sampler"]

STRATEGIES = {
    "grid": "every combination of a few values per parameter (--grid-points)",
    "random": "independent random sampling, each parameter on its own scale",
    "qmc": "quasi-random (scrambled Sobol) sampling: covers the space more evenly than random",
    "tpe": "Tree-structured Parzen Estimator (Bayesian, handles conditional parameters)",
    "gp": "Gaussian-process Bayesian optimization",
    "cmaes": "CMA-ES evolution strategy (categorical parameters sampled at random)",
    "nsga2": "NSGA-II genetic algorithm, for several objectives (Pareto search) and constraints",
    "coarse-to-fine": "stages: a wide quasi-random search, then TPE in ranges narrowed around the best (--stages)",
    "pbt": "population-based training: the worst copy the best's weights and perturb their settings",
}

PRUNERS = {
    "none": "train every trial for all its epochs",
    "median": "stop a trial whose value is worse than the median of earlier trials at the same epoch",
    "sha": "asynchronous successive halving",
    "hyperband": "Hyperband: several successive-halving brackets",
}


MAX_GRID = 100_000  # Optuna's GridSampler holds every point in memory


def _unknown(kind: str, name: str, table: dict[str, str]) -> ConfigError:
    close = difflib.get_close_matches(str(name), list(table), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown {kind} {name!r}.{hint} Choose one of: {', '.join(table)}.")


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise _unknown("strategy", name, STRATEGIES)


def check_pruner(name: str) -> None:
    if name not in PRUNERS:
        raise _unknown("pruner", name, PRUNERS)


def _tpe_sampler(**kwargs: Any) -> optuna.samplers.BaseSampler:
    """Optuna's TPE, learning from trials that are still training.

    TPE splits the trials into a good and a bad group. A pruned trial ranks by how far it got,
    then by its value there; a running one, with ``constant_liar``, counts as bad. When trials
    train one or two at a time that costs little. In caviar mode dozens train at once, and the
    running ones are the promoted ones: at the 60th ask of a 100-trial MNIST study not one trial
    had completed, and TPE counted the members still training, the best known, as bad. Its asks
    stayed near uniform over the widths (trials 50-99: 26/54/39/54/27 of widths 32-512) where
    Optuna's sequential study concentrated (5/6/86/7/96).
    Here a running trial that has reported epochs ranks as a pruned trial at its last epoch would:
    what it has shown so far. Measured on that study (5 seeds, benchmarks/README.md): the best
    recorded accuracy rose in every seed (median 0.9705 -> 0.9715).
    A running trial with nothing reported is left out (``make_sampler`` turns the liar off): a
    population refills a dozen slots in one go, and with the liar each ask of the round pushed the
    next away from where the last went, the good region (``tests/study/test_tpe_so_far.py``: the
    mean of 20 asks 0.84 without it, 0.76 with it, over 4 seeds).
    """
    return _tpe_class()(**kwargs)


@functools.cache
def _tpe_class() -> type:
    """The sampler class, made on first use: Optuna loads only then."""
    import optuna

    class TPESoFar(optuna.samplers.TPESampler):
        def _sample(self, study, trial, search_space):  # type: ignore[no-untyped-def]
            return super()._sample(_SoFar(study), trial, search_space)

    TPESoFar.__module__, TPESoFar.__qualname__ = __name__, "TPESoFar"
    return TPESoFar


def __getattr__(name: str) -> Any:
    """``shoal.study._strategies.TPESoFar``: where pickle finds the sampler's class."""
    if name == "TPESoFar":
        return _tpe_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _SoFar:
    """A study as TPE sees it: running trials that have reported values show as pruned there."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = False, states: Any = None, use_cache: bool = False) -> list:
        import copy

        from optuna.trial import TrialState

        asked = None if states is None else tuple(states)
        fetch = asked if asked is None or TrialState.RUNNING in asked else asked + (TrialState.RUNNING,)
        out = []
        for t in self._study._get_trials(deepcopy=deepcopy, states=fetch, use_cache=use_cache):
            if t.state == TrialState.RUNNING and t.intermediate_values:
                t = copy.copy(t)
                t.state = TrialState.PRUNED
            elif t.state == TrialState.RUNNING and asked is not None and TrialState.RUNNING not in asked:
                continue
            out.append(t)
        return out


def make_sampler(name: str, *, seed: int, space: Space | None = None, grid_points: int = 3,
                 n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for a strategy name, seeded."""
    import optuna

    check_strategy(name)
    if name == "grid":
        if space is None:
            raise ConfigError("The grid strategy needs a search space to enumerate.")
        grid = space.grid(grid_points)
        if not grid:
            raise ConfigError("The grid strategy found nothing to search: every parameter is fixed.")
        size = space.grid_size(grid_points)
        if size > MAX_GRID:
            raise ConfigError(f"The grid has {size:,} points ({len(grid)} parameters, {grid_points} values per "
                              f"number), more than {MAX_GRID:,}: a grid cannot cover this space. Fix most "
                              "parameters (-p name=value), or use random, qmc or tpe, which scale to any space.")
        return _GridSampler(grid, seed=seed)
    if name in ("random", "pbt"):  # PBT's first generation is random
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "coarse-to-fine":
        raise ConfigError("coarse-to-fine chooses its samplers per stage (shoal.study._stages); "
                          "it has no single Optuna sampler.")
    if name == "qmc":
        import warnings

        warnings.filterwarnings("ignore", "QMCSampler is experimental", optuna.exceptions.ExperimentalWarning)
        return _space_qmc_sampler(space, seed=seed)
    if name == "tpe":
        # group=True lets multivariate TPE model conditional parameters (momentum only for SGD with
        # momentum, betas only for Adam) jointly within each sub-space instead of falling back.
        # No constant liar: trials in training count for what they reported (_tpe_sampler), and one
        # that reported nothing yet is left out rather than counted as bad (MNIST, 10 paired runs:
        # its picks trained again +0.0009 in the mean, benchmarks/README.md, ninth session).
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _tpe_sampler(seed=seed, multivariate=True, group=True, n_startup_trials=n_startup_trials,
                                constant_liar=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_startup_trials * 2)))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials,
                                         warn_independent_sampling=False)
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials,
                                        warn_independent_sampling=False)


def _space_qmc_sampler(space: Space | None, *, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's scrambled Sobol sampler over the space's unconditional parameters, every trial.

    Optuna's QMCSampler infers its space from the first finished trial, or, before one finishes,
    from the union of the running trials' parameters, and keys its position in the sequence by
    that space. With many trials asked before any finishes (caviar mode) and conditional
    parameters, the union changed from ask to ask, each new union started the sequence again at
    its first point, and trials repeated it (digits, 10 trials: 8 distinct). Conditional
    parameters are drawn at random, as Optuna does."""
    import optuna

    kwargs = {"qmc_type": "sobol", "scramble": True, "seed": seed, "warn_independent_sampling": False,
              "warn_asynchronous_seeding": False}
    if space is None:
        return optuna.samplers.QMCSampler(**kwargs)
    fixed = space.unconditional_distributions()

    class SpaceQMCSampler(optuna.samplers.QMCSampler):
        def infer_relative_search_space(self, study, trial):  # noqa: D102
            return {name: d for name, d in fixed.items() if not d.single()}

    return SpaceQMCSampler(**kwargs)


def make_pruner(name: str, *, epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for a name; rungs are in epochs."""
    import optuna

    check_pruner(name)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4))
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler for an ask / tell loop.

        Optuna's version calls ``study.stop()`` once the grid is exhausted, which only works inside
        ``study.optimize``; our runner caps the budget at the grid size instead.
        """

        def after_trial(self, study, trial, state, values):  # noqa: D102
            return None

    return GridSampler


def _GridSampler(grid, seed):  # noqa: N802 - a lazily built class, used like one
    return _grid_sampler_class()(grid, seed=seed)
