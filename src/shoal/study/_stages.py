"""Coarse-to-fine: search wide, then focus around the best region, in stages, in one study.

A plan is a list of stages, each a strategy and a number of trials, e.g. ``qmc:40, tpe:60``. The
first stage samples the whole space. Each later stage starts once every trial of the stage before
has finished: the space is narrowed around the top configurations found so far (``narrow``), and
the stage's sampler searches that narrowed space, warm-started with every earlier trial that lies
inside it.

Optuna keeps one distribution per parameter name for a whole study (categorical choices cannot
shrink), so a stage samples in a private in-memory study over its narrowed space, and the chosen
configuration is enqueued into the real study as fixed parameters of the full space. The real
study therefore stays an ordinary Optuna study, readable by Optuna's own tools; each trial carries
user attribute ``stage`` (0-based), and study attribute ``stages`` holds each stage's strategy,
size and narrowed space, from which a resumed run rebuilds the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from shoal.space import Space

__all__ = ["StagePlanner", "narrow", "parse_stages"]

DEFAULT_STAGES = ("qmc:0.4", "tpe")
WAIT = object()  # the stage's trials are all asked, but not all finished: ask again later


def parse_stages(spec: Sequence[str] | str | None, trials: int) -> list[tuple[str, int]]:
    """``["random:30", "tpe:70"]``, ``"qmc:0.4,tpe"``: stage sizes as counts or fractions of
    ``trials``; a stage without a size takes what is left. The sizes must add up to ``trials``."""
    from shoal.study._strategies import check_strategy

    raw = spec.split(",") if isinstance(spec, str) else (spec or DEFAULT_STAGES)
    if not isinstance(raw, (list, tuple)) or not all(isinstance(s, str) for s in raw):
        raise ConfigError(f"The 'stages' setting must be a list such as ['qmc:0.4', 'tpe'] or a string "
                          f"such as 'qmc:0.4,tpe'. Got {spec!r} instead.")
    items = [s.strip() for s in raw]
    if len(items) < 2 or any(not s for s in items):
        raise ConfigError(f"Coarse-to-fine needs at least two stages, such as 'qmc:0.4,tpe'. Got {spec!r}.")
    sizes: list[int | None] = []
    names = []
    for item in items:
        name, _, size = item.partition(":")
        name = name.strip()
        if name in ("coarse-to-fine", "pbt"):
            raise ConfigError(f"A stage's strategy must be a sampler (random, qmc, tpe, gp, cmaes, grid). Got {name!r}.")
        check_strategy(name)
        names.append(name)
        if not size.strip():
            sizes.append(None)
            continue
        try:
            value = float(size)
        except ValueError:
            raise ConfigError(f"The size of stage {item!r} must be a number of trials or a fraction. Got {size!r}.") from None
        n = round(value * trials) if 0 < value < 1 else value
        if n < 1 or n != int(n):
            raise ConfigError(f"The size of stage {item!r} must be a whole number of trials >= 1, or a fraction in (0, 1).")
        sizes.append(int(n))
    free = [i for i, n in enumerate(sizes) if n is None]
    fixed = sum(n for n in sizes if n is not None)
    if len(free) > 1:
        raise ConfigError(f"Only one stage may leave its size out (it takes the rest). Got {spec!r}.")
    if free:
        sizes[free[0]] = trials - fixed
    if any(n < 1 for n in sizes) or sum(sizes) != trials:
        raise ConfigError(f"The stage sizes {sizes} must each be >= 1 and add up to the trial budget {trials}. "
                          "Give each stage a count or a fraction, and leave one stage's size out to take the rest.")
    return list(zip(names, [int(n) for n in sizes]))


def _span(values: list[float], low: float, high: float, log: bool, margin: float) -> tuple[float, float]:
    """[min, max] of ``values`` widened by ``margin`` of the original width on each side (on the
    log scale for log parameters), clipped to [low, high]."""
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    g = (lambda v: 10**v) if log else (lambda v: v)
    lo, hi, a, b = f(min(values)), f(max(values)), f(low), f(high)
    pad = margin * (b - a)
    return max(low, g(lo - pad)), min(high, g(hi + pad))


def narrow(space: Space, top: Sequence[Mapping[str, Any]], margin: float = 0.1) -> tuple[Space, dict[str, Any]]:
    """The space narrowed around ``top`` configurations, and the overrides that make it.

    Numbers: the range of the top values, widened by ``margin`` of the full width on each side
    (log-aware). Categorical values that no top configuration uses are dropped. A parameter that
    no top configuration has (a condition was off) keeps its range.
    """
    from shoal.space import Categorical, Fixed, Float, Int

    overrides: dict[str, Any] = {}
    for p in space:
        if isinstance(p, Fixed):
            continue
        values = [c[p.name] for c in top if p.name in c]
        if not values:
            continue
        if isinstance(p, Categorical):
            kept = [c for c in p.choices if any(type(v) is type(c) and v == c for v in values)]
            if len(kept) < len(p.choices):
                overrides[p.name] = kept
        elif isinstance(p, Float):
            on = [v for v in values if p.off is None or v != p.off]
            if not on:
                overrides[p.name] = {"value": float(p.off)}
                continue
            lo, hi = _span(on, p.low, p.high, p.log, margin)
            if p.step is not None:
                lo = p.low + math.floor((lo - p.low) / p.step + 1e-9) * p.step
                hi = p.low + math.ceil((hi - p.low) / p.step - 1e-9) * p.step
            fields: dict[str, Any] = {}
            if lo > p.low or hi < p.high:
                fields.update(low=float(f"{lo:.6g}"), high=float(f"{hi:.6g}"))
                fields["low"] = min(fields["low"], min(on))
                fields["high"] = max(fields["high"], max(on))
            if p.off is not None and len(on) == len(values):
                fields["off"] = None  # every top configuration has it on
            if fields.get("low", p.low) >= fields.get("high", p.high):
                overrides[p.name] = {"value": on[0]}
            elif fields:
                overrides[p.name] = fields
        elif isinstance(p, Int):
            if p.pow2:
                lo, hi = min(values), max(values)
            else:
                lo, hi = _span(values, p.low, p.high, p.log, margin)
                lo = p.low + math.floor((lo - p.low) / p.step) * p.step
                hi = p.low + math.ceil((hi - p.low) / p.step) * p.step
                lo, hi = max(p.low, min(int(lo), min(values))), min(p.high, max(int(hi), max(values)))
            if lo >= hi:
                overrides[p.name] = {"value": int(values[0])}
            elif lo > p.low or hi < p.high:
                overrides[p.name] = {"low": int(lo), "high": int(hi)}
    return space.copy().update(overrides), overrides


@dataclass
class _Stage:
    strategy: str
    trials: int
    overrides: dict[str, Any] | None = None  # None: not started
    first_trial: int | None = None
    space: Any = None
    private: Any = None  # optuna.Study over the stage's space
    asked: int = 0
    pending: dict[int, Any] = field(default_factory=dict)  # real trial number -> private trial

    def record(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "trials": self.trials, "overrides": self.overrides,
                "first_trial": self.first_trial,
                "space": self.space.describe() if self.space is not None else None}


class StagePlanner:
    """Chooses each trial's configuration for a coarse-to-fine study (see the module docstring).

    The runner calls ``propose`` before it asks Optuna for a trial, and ``tell`` when a trial ends.

    Args:
        study: the real Optuna study.
        space: the full search space.
        stages: (strategy, trials) per stage, from ``parse_stages``.
        seed: the study seed; stage ``i``'s sampler is seeded with ``seed + i`` (on resume, with a seed
            derived from it and the stage's stored trial count).
        top_fraction: the share of finished trials a stage narrows around (at least 3).
        margin: how far past the top configurations' range a narrowed range reaches (a share of
            the full range, on each side).
        grid_points: values per continuous parameter for a grid stage.
        on_stage: called with (stage index, strategy, trials, narrowed space text) when a stage starts.
    """

    def __init__(self, study: optuna.Study, space: Space, stages: Sequence[tuple[str, int]], *, seed: int = 0,
                 top_fraction: float = 0.2, margin: float = 0.1, grid_points: int = 3,
                 on_stage=None) -> None:
        if not 0 < top_fraction <= 1:
            raise ConfigError(f"The 'top_fraction' of coarse-to-fine must be in (0, 1]. Got {top_fraction!r}.")
        self.study, self.space, self.seed = study, space, seed
        self.top_fraction, self.margin, self.grid_points = top_fraction, margin, grid_points
        self.on_stage = on_stage
        self.stages = [_Stage(s, int(n)) for s, n in stages]
        self._restore()

    # ------------------------------------------------------------------ persistence
    def _restore(self) -> None:
        """Rebuild the plan from a study that already ran some of it (same stages only)."""
        from shoal.study._runner import counted

        saved = self.study.user_attrs.get("stages")
        if saved:
            # Stages already left behind keep their sizes; the current and later ones may change
            # (a larger --trials continues the last stage).
            started = [rec.get("overrides") is not None for rec in saved]
            ok = [rec["strategy"] for rec in saved] == [st.strategy for st in self.stages]
            if ok:  # finished stages keep their sizes (fractions of a larger budget move); the last takes the rest
                for i, (rec, st) in enumerate(zip(saved, self.stages)):
                    if any(started[i + 1:]) and rec["trials"] != st.trials:
                        self.stages[-1].trials += st.trials - rec["trials"]
                        st.trials = rec["trials"]
                ok = self.stages[-1].trials >= 1 and not any(
                    rec["trials"] != st.trials for i, (rec, st) in enumerate(zip(saved, self.stages)) if any(started[i + 1:]))
            if not ok:
                raise ConfigError(
                    f"The study {self.study.study_name!r} ran the stages "
                    f"{[(rec['strategy'], rec['trials']) for rec in saved]}; this run asks for "
                    f"{[(st.strategy, st.trials) for st in self.stages]}. Keep the strategies and the sizes of the "
                    "stages already finished (the last one may grow), or use another --study name.")
            for stage, rec in zip(self.stages, saved):
                if rec.get("overrides") is not None:
                    self._open(stage, rec["overrides"], rec.get("first_trial"), announce=False)
        if self.stages[0].overrides is None:
            self._open(self.stages[0], {}, 0, announce=False)
        for t in self.study.get_trials(deepcopy=False):
            i = t.user_attrs.get("stage")
            if i is None or i >= len(self.stages):
                continue
            stage = self.stages[i]
            if counted(t):
                stage.asked += 1
                if stage.private is not None:
                    self._add_finished(stage, t)
        self._save()

    def _save(self) -> None:
        self.study.set_user_attr("stages", [s.record() for s in self.stages])

    # ------------------------------------------------------------------ stages
    def _open(self, stage: _Stage, overrides: dict[str, Any], first_trial: int | None, announce: bool = True) -> None:
        import optuna

        from shoal.study._strategies import make_sampler

        stage.overrides = overrides
        stage.first_trial = first_trial
        stage.space = self.space.copy().update(overrides)
        i = self.stages.index(stage)
        from shoal.study._tune import resumed_seed

        # a stage resumed with trials stored continues its stream instead of drawing them again
        stored = sum(1 for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("stage") == i)
        sampler = make_sampler(stage.strategy, seed=resumed_seed(self.seed + i, stored), space=stage.space,
                               grid_points=self.grid_points)
        stage.private = optuna.create_study(direction=self.study.direction.name.lower(), sampler=sampler)
        if i > 0:  # warm start: what earlier stages found inside this stage's space
            for t in self.study.get_trials(deepcopy=False, states=(_state("COMPLETE"),)):
                if t.user_attrs.get("stage", i) < i:
                    self._add_finished(stage, t)
        if announce and self.on_stage is not None:
            self.on_stage(i, stage.strategy, stage.trials, stage.space.describe())

    def _add_finished(self, stage: _Stage, t: optuna.trial.FrozenTrial) -> None:
        import optuna
        from optuna.trial import FixedTrial, TrialState

        config = t.user_attrs.get("config")
        if t.state != TrialState.COMPLETE or not config or not stage.space.contains(config):
            return
        fixed = FixedTrial(stage.space.params_from_config(config))
        stage.space.sample(fixed)
        stage.private.add_trial(optuna.trial.create_trial(params=fixed.params, distributions=fixed.distributions,
                                                          value=t.value))

    def _current(self) -> int:
        for i, s in enumerate(self.stages):
            if s.asked < s.trials:
                return i
        return len(self.stages)

    def _top(self) -> list[dict[str, Any]]:
        done = [t for t in self.study.get_trials(deepcopy=False, states=(_state("COMPLETE"),))
                if t.user_attrs.get("config")]
        sign = -1.0 if self.study.direction.name.lower() == "maximize" else 1.0
        done.sort(key=lambda t: sign * t.value)
        k = max(3, math.ceil(self.top_fraction * len(done)))
        return [t.user_attrs["config"] for t in done[:k]]

    # ------------------------------------------------------------------ runner hooks
    def propose(self, running: int) -> Any:
        """The next trial's (stage, config); ``WAIT`` while the stage before has trials running;
        None when every stage is full."""
        i = self._current()
        if i == len(self.stages):
            return None
        stage = self.stages[i]
        if stage.private is None:
            if running:
                return WAIT
            top = self._top()
            overrides = narrow(self.space, top, self.margin)[1] if len(top) >= 2 else {}
            self._open(stage, overrides, None)
            self._save()
        pt = stage.private.ask()
        config = stage.space.sample(pt)
        stage.asked += 1
        return i, config, pt

    def attach(self, number: int, stage_index: int, private_trial: Any) -> None:
        stage = self.stages[stage_index]
        stage.pending[number] = private_trial
        if stage.first_trial is None:
            stage.first_trial = number
            self._save()

    def retried(self, stage_index: int) -> None:
        """A trial of this stage that was interrupted is being run again: it takes a place again."""
        self.stages[stage_index].asked += 1

    def tell(self, frozen: optuna.trial.FrozenTrial) -> None:
        """A real trial ended: tell its stage's private study (failed and pruned ones as such)."""
        from optuna.trial import TrialState

        i = frozen.user_attrs.get("stage")
        if i is None or i >= len(self.stages) or self.stages[i].private is None:
            return
        stage = self.stages[i]
        pt = stage.pending.pop(frozen.number, None)
        if pt is None:  # a retry of an interrupted trial: learn from it if it completed
            self._add_finished(stage, frozen)
        elif frozen.state == TrialState.COMPLETE:
            stage.private.tell(pt, frozen.value)
        elif frozen.state in (TrialState.PRUNED, TrialState.FAIL):
            stage.private.tell(pt, state=frozen.state)


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
