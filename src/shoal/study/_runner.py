"""The ask / tell loop over an Optuna study: budget, seeds, records, failures and resume.

Engines pull jobs from a ``StudyRunner`` (``ask``), report each epoch (``report``: returns True when
the pruner says stop) and hand back the outcome (``complete``, ``prune``, ``fail``). The runner
alone talks to the storage; engines never see it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from shoal._errors import ConfigError
from shoal.study._shared import Heartbeat, is_shared, stale_trial_numbers, used_budget

if TYPE_CHECKING:
    import optuna

    from shoal.space import Space

__all__ = ["Job", "StudyRunner", "counted", "trial_seed"]

INTERRUPTED = "interrupted"


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number``: spread out, reproducible, independent of order."""
    return int(np.random.SeedSequence([int(study_seed), int(number)]).generate_state(1)[0] & 0x7FFFFFFF)


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a finished trial uses up budget: complete, pruned or failed (not interrupted)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") != INTERRUPTED



@dataclass
class Job:
    """One trial handed to an engine."""

    trial: optuna.trial.Trial
    config: dict[str, Any]
    seed: int
    started: float

    @property
    def number(self) -> int:
        return self.trial.number


def named_values(out: Mapping[str, Any], names: Sequence[str]) -> tuple[list[Any], dict[str, Any]]:
    """The values ``names`` pick from a user objective's dict, and the other keys (recorded beside)."""
    missing = [name for name in names if name not in out]
    if missing:
        raise ValueError(f"the objective returned a dict without the metric {missing[0]!r} (keys: "
                         f"{', '.join(map(str, out))}); name the key to optimize with metric=")
    return [out[name] for name in names], {k: v for k, v in out.items() if k not in names}


class StudyRunner:
    """Budgeted ask / tell over one Optuna study.

    Args:
        study: the Optuna study (already created or loaded).
        space: the search space each asked trial samples.
        trials: the total budget, counting trials already finished in the storage; None: no budget,
            trials start until ``timeout`` passes.
        metric: the name of the value the study optimizes (for messages and attributes); several
            objectives are comma-separated, in the order of the study's directions.
        constraints: limits on measures (``shoal.study._objectives.Constraint``), checked when a
            trial completes (and before training for what the configuration alone decides: ``admit``).
        seed: the study seed; each trial's training seed derives from it and the trial number.
        timeout: seconds from now after which no trial is asked, and trials still training stop at
            the end of their current epoch (engines check ``past_deadline`` there; a plain objective
            without epochs runs to its end).
        on_finish: called with each finished FrozenTrial (the progress display listens here).
    """

    def __init__(self, study: optuna.Study, space: Space, *, trials: int | None, metric: str = "value",
                 seed: int = 0, timeout: float | None = None,
                 on_finish: Callable[[optuna.trial.FrozenTrial], None] | None = None, planner: Any = None,
                 constraints: list | None = None) -> None:
        self.study = study
        self.space = space
        self.trials = trials
        self.metric = metric
        self.objectives = metric.split(",")
        self.constraints = list(constraints or [])
        self.seed = seed
        self.on_finish = on_finish
        self.deadline = time.monotonic() + timeout if timeout else None
        self.running: dict[int, Job] = {}
        # On a database server several drivers may share the study: heartbeats tell their running
        # trials from those of a dead driver, and the budget is re-counted from the storage.
        self._heartbeat = None
        if is_shared(study):
            self._heartbeat = Heartbeat(self)
        self.timed_out = 0  # trials stopped before their last epoch because the timeout passed
        self.stop_requested = False  # set by a first Ctrl-C (see ``stop_on_interrupt``)
        self.graceful = True  # False: Ctrl-C stops at once (a user objective has no epochs to finish)
        self.recovered = self._recover_interrupted()
        self.planner = planner  # chooses configurations itself (coarse-to-fine stages), or None
        self._waiting = len(self.study.get_trials(deepcopy=False, states=(_state("WAITING"),)))
        # Counted once from the storage, then kept up to date on each tell: re-reading every trial
        # on each ask would make a study of n trials read O(n^2) rows.
        self._finished = sum(1 for t in self.study.get_trials(deepcopy=False) if counted(t))

    # ------------------------------------------------------------------ budget
    def finished_count(self) -> int:
        """Trials that use up budget: those in the storage when this runner started, plus its own."""
        return self._finished

    def past_deadline(self) -> bool:
        """The timeout has passed: ask no more, and stop training at the next epoch's end."""
        return self.deadline is not None and time.monotonic() > self.deadline

    def remaining(self) -> int | float:
        """Trials this runner may still start (``inf`` without a budget: until the timeout)."""
        if self.past_deadline():
            return 0
        if self.trials is None:
            return math.inf
        return max(0, self.trials - self.finished_count() - len(self.running))

    def _recover_interrupted(self) -> int:
        """Trials left RUNNING by a killed process: mark them failed ('interrupted') and queue their
        configuration again, so the study runs them anew and none is lost or counted twice.

        On a shared storage (a database server, see ``_shared``) only trials without a heartbeat for
        GRACE_S seconds are stale: the others belong to drivers that run now.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        stale = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if self._heartbeat is not None:
            dead = stale_trial_numbers(self.study)
            stale = [t for t in stale if t.number in dead]
        for t in stale:
            try:
                self.study._storage.set_trial_user_attr(t._trial_id, "fail_reason", INTERRUPTED)
                self.study.tell(t.number, state=TrialState.FAIL)
            except UpdateFinishedTrialError:  # another driver recovered it first
                continue
            self.study.enqueue_trial(_planned_params(t), user_attrs=_retry_attrs(t), skip_if_exists=False)
        return len(stale)

    # ------------------------------------------------------------------ Ctrl-C
    @contextlib.contextmanager
    def stop_on_interrupt(self):
        """A first SIGINT (Ctrl-C) lets every running trial finish its epoch: engines call
        ``check_stop`` once an epoch is reported (``ask`` calls it too), which raises KeyboardInterrupt
        there, between two storage writes; the engine then marks its running trials interrupted
        (``interrupt``) so the next run trains them again. A second SIGINT stops at once, and so does
        SIGTERM. Outside the main thread (where signals cannot be caught) it does nothing.
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum, frame):
            if self.stop_requested or not self.graceful:
                raise KeyboardInterrupt
            self.stop_requested = True
            logging.getLogger("shoal").warning(
                "interrupted: finishing the current epoch, then recording the running trials as "
                "interrupted (Ctrl-C again stops at once)")

        def on_sigterm(signum, frame):
            # `kill`, `timeout`, Slurm, `docker stop`: a SIGKILL follows within seconds, too soon to
            # wait for an epoch; stop at once, as a second Ctrl-C does (running trials recorded as
            # interrupted, run again next time)
            logging.getLogger("shoal").warning("terminated (SIGTERM): recording the running trials as interrupted")
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
        previous_term = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt if a Ctrl-C asked to stop (call between epochs, never mid-write)."""
        if self.stop_requested:
            raise KeyboardInterrupt

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Job | None:
        """The next job, or None when the budget (or time) is used up."""
        self.check_stop()
        if self.remaining() <= 0:
            return None
        if self._heartbeat is not None and self.trials is not None and used_budget(self.study) >= self.trials:
            return None  # the other drivers' trials fill the budget
        planned = None
        if self._waiting:  # queued earlier (retries of interrupted trials) go first
            self._waiting -= 1
        elif self.planner is not None:
            planned = self.planner.propose(len(self.running))
            if not isinstance(planned, tuple):  # every stage asked, or waiting for a stage to finish
                return None
            stage, planned_config, _ = planned
            self.study.enqueue_trial(self.space.params_from_config(planned_config), user_attrs={"stage": stage},
                                     skip_if_exists=False)
        trial = self._new_trial() if planned is None else self.study.ask()
        if planned is not None:
            self.planner.attach(trial.number, planned[0], planned[2])
        elif self.planner is not None and "stage" in trial.user_attrs:
            self.planner.retried(trial.user_attrs["stage"])
        return self._start(trial)

    def _new_trial(self) -> optuna.trial.Trial:
        """``study.ask()``, without its search for waiting trials when the database has none.

        That search reads every trial of the study the cache has not seen finish, running ones
        included: in caviar mode ~30 training trials, with their params and curves so far, at every
        ask (digits: ~18 ms of an ask's ~110). One query for waiting rows, filtered in the database,
        tells whether there are any; only then does ``study.ask()`` take one, as before.
        """
        import optuna

        storage, study_id = self.study._storage, self.study._study_id
        backend = getattr(storage, "_backend", None)  # Optuna's cache over an RDBStorage
        if not isinstance(backend, optuna.storages.RDBStorage) or backend.get_all_trials(
                study_id, deepcopy=False, states=(_state("WAITING"),)):
            return self.study.ask()
        self.study._thread_local.cached_all_trials = None  # as study.ask(): the sampler reads afresh
        return optuna.trial.Trial(self.study, storage.create_new_trial(study_id))

    def _start(self, trial: optuna.trial.Trial, seed: int | None = None) -> Job:
        if self._heartbeat is not None:
            self._heartbeat.beat(trial._trial_id)
        try:
            config = self.space.sample(trial)
        except ConfigError:
            self.study.tell(trial, state=_state("FAIL"))
            raise
        if seed is None and isinstance(trial.user_attrs.get("retry_seed"), int):
            seed = trial.user_attrs["retry_seed"]  # a retry trains as the trial it repeats would have
        seed = trial_seed(self.seed, trial.number) if seed is None else int(seed)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("config", config)
        job = Job(trial, config, seed, time.perf_counter())
        self.running[trial.number] = job
        return job

    def spawn(self, config: dict[str, Any], attrs: dict[str, Any] | None = None, seed: int | None = None) -> Job:
        """A trial for a configuration the engine chose itself (PBT's copies), outside the budget:
        stored as ordinary params of the space, with ``attrs`` as user attributes.

        One write creates it running, its params fixed as ``enqueue_trial`` would leave them for
        ``ask``: ``ask`` first looks for waiting trials, and that re-reads every running trial
        from the storage, a whole PBT population (digits, 100 members: 149 ms a copy)."""
        import optuna

        if self._waiting:
            raise RuntimeError("spawn() while retries are queued: take them first with take_waiting()")
        template = optuna.trial.create_trial(state=_state("RUNNING"), user_attrs=attrs or {},
                                             system_attrs={"fixed_params": self.space.params_from_config(config)})
        trial_id = self.study._storage.create_new_trial(self.study._study_id, template_trial=template)
        return self._start(optuna.trial.Trial(self.study, trial_id), seed)

    def take_waiting(self) -> list[Job]:
        """Every queued retry of an interrupted trial, started now (whoever resumes them decides)."""
        jobs = []
        while self._waiting:
            self._waiting -= 1
            jobs.append(self._start(self.study.ask()))
        return jobs

    def report(self, job: Job, epoch: int, value: float | Mapping[str, float], ask_pruner: bool = True) -> bool:
        """Report the metric after ``epoch`` (1-based): a value, or the trial's measures by name;
        True means the pruner says stop (asked only with ``ask_pruner``: populations decide
        successive halving themselves). A multi-objective study records curves only: Optuna
        keeps intermediate values and prunes for single-objective studies alone."""
        if len(self.objectives) > 1:
            return False
        if isinstance(value, Mapping):
            value = value.get(self.objectives[0])
        if value is None or not math.isfinite(value):
            return False
        job.trial.report(float(value), step=epoch)
        return ask_pruner and job.trial.should_prune()

    def admit(self, job: Job, static: Mapping[str, float]) -> bool:
        """Check the limits that the configuration alone decides (parameters, memory, latency)
        before training; a configuration over one is recorded as infeasible (COMPLETE with the
        worst values and its constraint values, so samplers rank it last) and not trained."""
        broken = [c for c in self.constraints if c.measure in static and c.violation(static[c.measure]) > 0]
        if not broken:
            return True
        reason = "; ".join(f"{c.measure} {static[c.measure]:.6g} breaks {c.key}" for c in broken)
        worst = [math.inf if d.name == "MINIMIZE" else -math.inf for d in self.study.directions]
        self._constrain(job, static, {"infeasible_before_training": reason})
        self._attrs(job, {"measures": dict(static)})
        self._tell(job, values=worst)
        return False

    def _constrain(self, job: Job, measures: Mapping[str, float], extra: Mapping[str, Any] | None = None) -> None:
        if not self.constraints:
            return
        violations = {c.key: c.violation(measures.get(c.measure)) for c in self.constraints}
        for key, v in violations.items():
            job.trial.set_constraint(key, v)
        job.trial.set_user_attr("violations", violations)
        job.trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
        for key, v in (extra or {}).items():
            job.trial.set_user_attr(key, v)

    def _attrs(self, job: Job, attrs: dict[str, Any] | None) -> None:
        job.trial.set_user_attr("seconds", round(time.perf_counter() - job.started, 4))
        for key, value in (attrs or {}).items():
            job.trial.set_user_attr(key, value)

    def complete(self, job: Job, value: float | Sequence[float] | Mapping[str, float], attrs: dict[str, Any] | None = None) -> None:
        """Tell a finished trial: its value, or its measures by name (recorded as the ``measures``
        attribute; the objectives are picked from them, and limits are checked against them)."""
        if not isinstance(value, Mapping):
            self._attrs(job, attrs)
            self._tell(job, values=[float(v) for v in value] if isinstance(value, (list, tuple)) else float(value))
            return
        measures = {k: float(v) for k, v in value.items() if v is not None}
        missing = [name for name in self.objectives if name not in measures or not math.isfinite(measures[name])]
        if missing:
            self.fail(job, f"the trial has no finite value for the objective(s) {', '.join(missing)}",
                      {**(attrs or {}), "measures": measures})
            return
        self._constrain(job, measures)
        self._attrs(job, {**(attrs or {}), "measures": measures})
        self._tell(job, values=[measures[name] for name in self.objectives])

    def prune(self, job: Job, attrs: dict[str, Any] | None = None) -> None:
        self._attrs(job, attrs)
        self._tell(job, state=_state("PRUNED"))

    def stop_at_deadline(self, job: Job, attrs: dict[str, Any] | None = None,
                         value: float | Mapping[str, float] | None = None) -> None:
        """The timeout passed while ``job`` trained: it ends here, before its last epoch, with
        ``stopped`` = ``"timeout"`` and its curves kept. Pruned, so that samplers rank it by the
        epochs it reached rather than as a finished run; complete with ``value`` where the engine
        ranks members at the epoch they reached anyway (PBT's population)."""
        self.timed_out += 1
        attrs = {**(attrs or {}), "stopped": "timeout"}
        if value is None:
            self.prune(job, attrs)
        else:
            self.complete(job, value, attrs)

    def fail(self, job: Job, reason: str, attrs: dict[str, Any] | None = None) -> None:
        self._attrs(job, attrs)
        job.trial.set_user_attr("fail_reason", reason[:2000])
        self._tell(job, state=_state("FAIL"))

    def interrupt(self, job: Job) -> None:
        """The run was stopped by the user: fail it as interrupted and queue it again.

        A trial the storage already holds as finished (a second Ctrl-C can land between its tell
        and this runner's bookkeeping) is left as it is.
        """
        stored = self.study._storage.get_trial(job.trial._trial_id)
        if stored.state.is_finished():
            self.running.pop(job.number, None)
            return
        job.trial.set_user_attr("fail_reason", INTERRUPTED)
        self._tell(job, state=_state("FAIL"))
        self.study.enqueue_trial(_planned_params(stored), user_attrs=_retry_attrs(job.trial), skip_if_exists=False)
        self._waiting += 1

    def _tell(self, job: Job, **kwargs: Any) -> None:
        frozen = self.study.tell(job.trial, **kwargs)
        self.running.pop(job.number, None)
        if counted(frozen):
            self._finished += 1
        if self.planner is not None:
            self.planner.tell(frozen)
        if self.on_finish is not None:
            self.on_finish(frozen)

    # ------------------------------------------------------------------ user objectives
    def run_objective(self, objective: Callable[..., Any]) -> None:
        """Run a user's objective ``fn(config)`` or ``fn(config, trial)`` until the budget is spent.

        The objective returns a float (or a dict holding ``self.metric``). With ``trial`` it may call
        ``trial.report(value, epoch)`` and ``trial.should_prune()`` (raising ``optuna.TrialPruned``).
        """
        import inspect

        import optuna

        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                      inspect.Parameter.VAR_POSITIONAL)
        try:  # fn(config, *, scale=1) takes the config alone: count what can be passed by position
            n_args = sum(p.kind in positional for p in inspect.signature(objective).parameters.values())
        except (TypeError, ValueError):
            n_args = 1
        self.graceful = False  # the objective is opaque: there is no epoch end to wait for
        while (job := self.ask()) is not None:
            try:
                out = objective(job.config, job.trial) if n_args >= 2 else objective(job.config)
                extra: dict[str, Any] = {}
                if isinstance(out, dict):
                    out, extra = named_values(out, self.objectives)
                elif not isinstance(out, (list, tuple)):
                    out = [out]
                if len(out) != len(self.objectives):
                    raise ValueError(f"the objective returned {len(out)} values for {len(self.objectives)} "
                                     f"objective(s) ({', '.join(self.objectives)})")
                values = [float(v) for v in out]
                if not all(math.isfinite(v) for v in values):
                    raise ValueError(f"the objective returned {values[0] if len(values) == 1 else values}")
            except optuna.TrialPruned:
                self.prune(job)
                continue
            except KeyboardInterrupt:
                self.interrupt(job)
                raise
            except Exception as exc:  # a failing trial is recorded and the study goes on
                self.fail(job, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()[-4000:]})
                continue
            self.complete(job, values[0] if len(values) == 1 else values, extra)


def _planned_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters a re-run must repeat: those sampled so far, and those it was queued with
    (a process killed while a retry was sampling its parameters leaves only some of them set)."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def _retry_attrs(trial: Any) -> dict[str, Any]:
    """What a re-run of an interrupted trial carries: the trial it repeats, its seed and its stage."""
    kept = {k: trial.user_attrs[k] for k in ("stage", "warm_start_of") if k in trial.user_attrs}
    if isinstance(trial.user_attrs.get("seed"), int):  # its seed too: the same data order and initial weights
        kept["retry_seed"] = trial.user_attrs["seed"]
    return {"retry_of": trial.number, **kept}


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
