"""Population-based training: train, evaluate, copy the best, perturb, repeat ("natural selection").

Every member of the population trains as part of one batched computation. Every ``interval``
epochs the members are ranked by the study's metric; each member in the bottom ``quantile`` is
replaced by a copy of a random member of the top ``quantile``: weights, optimizer moments, batch
norm statistics and position are copied in memory (``Population.snapshot``), and the copy's
hyperparameters are explored: multiplied by 0.8 or 1.2 (``perturb``) or drawn anew from the space
(``resample``). Only settings that keep the network's shape change (learning rate, regularization,
dropout, optimizer coefficients, decay); the architecture, batch size and optimizer family are
inherited.

In the study, a member's life between two copies is one trial. A replaced member's trial ends
PRUNED (``pbt.replaced_by``); the copy is a new trial whose ``pbt`` attribute names its parent and
the epoch of the copy, and whose ``schedule`` holds the full hyperparameter schedule that produced
its weights, from epoch 0: ``[{"from_epoch", "seed", "config"}, ...]``. ``replay`` trains that
schedule again and ends with the same numbers. The population is checkpointed after each exploit
step (next to the storage), and a killed study resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from shoal.space import Space
    from shoal.study._builtin import PreparedData
    from shoal.study._experiment import Experiment
    from shoal.study._runner import Job, StudyRunner

__all__ = ["explore", "mutable_params", "replay", "run_pbt", "schedule_of"]

log = logging.getLogger("shoal")

SHAPE_PARAMS = ("depth", "width", "shape", "conv_layers", "channels", "kernel_size", "batch_size")
FACTORS = (0.8, 1.2)


def replaced_per_step(population: int, quantile: float) -> int:
    """How many members each exploit step replaces."""
    return max(1, int(math.floor(quantile * population))) if population >= 2 else 0


def expected_trials(population: int, epochs: int, interval: int, quantile: float) -> int:
    """Trials a PBT study ends with when no member fails: the members, plus a copy for each
    member replaced at each exploit step (every ``interval`` epochs before the last)."""
    steps = max(0, math.ceil(epochs / interval) - 1)
    return population + steps * replaced_per_step(population, quantile)


def mutable_params(space: Space) -> list[str]:
    """The searched parameters PBT may change on a copy: numbers that leave the network's shape alone."""
    from shoal.space import Float, Int

    return [p.name for p in space
            if p.name not in SHAPE_PARAMS and (isinstance(p, Float) or (isinstance(p, Int) and not p.pow2))]


def explore(config: Mapping[str, Any], space: Space, rng: np.random.Generator, how: str = "perturb") -> dict[str, Any]:
    """A copy's new hyperparameters: each mutable value times 0.8 or 1.2 (clipped to its range), or
    drawn anew from its range; a value switched off (weight decay 0) stays off when perturbed."""
    from shoal.space import Float

    out = dict(config)
    for name in mutable_params(space):
        if name not in config:
            continue
        p, v = space[name], config[name]
        if isinstance(p, Float) and p.off is not None and v == p.off and how == "perturb":
            continue
        if how == "resample":
            if p.log:
                new = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
            else:
                new = rng.uniform(p.low, p.high)
        else:
            new = v * FACTORS[int(rng.integers(2))]
        new = min(max(new, p.low), p.high)
        if isinstance(p, Float):
            if p.step is not None:
                new = p.low + round((new - p.low) / p.step) * p.step
            out[name] = float(new)
        else:
            step = p.step
            new = int(p.low + round((new - p.low) / step) * step)
            if how == "perturb" and new == v:  # an integer must move to change
                new = v + step if FACTORS[int(rng.integers(2))] > 1 and v + step <= p.high else max(p.low, v - step)
            out[name] = int(new)
    return out


@dataclass
class _Member:
    slot: int
    job: Job
    cfg: dict[str, Any]
    seed: int
    schedule: list[dict[str, Any]]
    history: list = field(default_factory=list)  # EpochRecords, from epoch 1 (the parent's first)
    start_epoch: int = 0
    parent: int | None = None


def _key(m: _Member) -> tuple[int, int]:
    return (m.job.number, 0)


def checkpoint_path(storage: Any, study: str) -> Path:
    """Where a PBT study's population checkpoint lives: beside a SQLite or journal file, else in
    ``.shoal/`` of the working directory."""
    url = str(storage) if storage else "shoal.db"
    base, stem = Path(".shoal"), ""
    if url.startswith("sqlite:///") or "://" not in url:
        file = Path(url.removeprefix("sqlite:///").removeprefix("journal:"))
        # named after the storage file too: one study name in two files of a folder (a.db and b.db,
        # both "digits-mlp") must not share, and delete, one checkpoint
        base, stem = file.parent, file.name + "."
    from shoal.study._experiment import file_safe

    return base / f".{stem}{file_safe(study)}.pbt.pt"


def _save(path: Path, payload: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def run_pbt(runner: StudyRunner, exp: Experiment, data: PreparedData | None, *, pool: Any = None,
            maximize: bool | None = None, metric: str | None = None) -> None:
    """Train a PBT population (``exp.trials`` members) for ``exp.epochs`` epochs.

    ``pool`` is where members train: by default the population engine on ``data``; a
    ``FunctionPool`` runs a user's fidelity objective instead (``maximize`` and ``metric`` then
    say how to rank its records).
    """
    from shoal.engine import normalize
    from shoal.engine._config import divergence_reason, diverged
    from shoal.study._builtin import trial_attrs

    if data is not None and len(data.folds) > 1:
        raise ConfigError("PBT trains each member on one split; drop --folds (k-fold) or use another strategy.")
    space = runner.space
    if not mutable_params(space):
        raise ConfigError("PBT has nothing to perturb: no searched learning rate, regularization or optimizer "
                          "coefficient is left in the space. Open one up with -p lr=1e-4:1e-1:log.")
    maximize = exp.direction == "maximize" if maximize is None else maximize
    metric = metric or exp.metric
    from shoal.engine import EpochRecord

    if data is not None and metric not in EpochRecord.__dataclass_fields__:
        raise ConfigError(f"PBT ranks members by a measure of their last epoch; {metric!r} is not one. Use "
                          "val_loss, val_acc, val_balanced_acc, val_f1, val_r2 or val_mse.")
    device, engine = (data.device, "population") if data is not None else ("cpu", "objective")
    norm = normalize if data is not None else dict  # a user objective gets its config as sampled
    study = runner.study
    ckpt = checkpoint_path(exp.storage, study.study_name)
    rng = np.random.default_rng([exp.seed, 7])
    if pool is None:  # as caviar mode's; worker processes: MNIST-10k, 24 members x 8 epochs, 84 -> 57 s
        from shoal.study._caviar import builtin_pool

        pool = builtin_pool(exp, data, exp.trials)
    members: list[_Member] = []
    empty: list[int] = []  # slots whose member failed: the next exploit step fills them with copies
    epoch = 0

    def attrs_of(m: _Member) -> dict[str, Any]:
        if data is None:  # a user objective: its value per epoch
            a = {"curves": {"value": [r.value for r in m.history]}, "epochs_run": len(m.history)}
        else:
            a = trial_attrs([m.history], device, engine)
        a["schedule"] = m.schedule
        a["pbt"] = {"slot": m.slot, "parent": m.parent, "start_epoch": m.start_epoch}
        return a

    def spawn(slot: int, cfg: dict, seed_from: _Member | None, start: dict | None, extra: dict) -> _Member:
        # the copy's seed (data order, dropout from here on) depends on its slot and epoch only, so a
        # resumed run, whose trial numbers differ, draws what an uninterrupted run draws
        seed = int(np.random.SeedSequence([exp.seed, slot, epoch]).generate_state(1)[0] & 0x7FFFFFFF)
        job = runner.spawn(cfg, extra, seed=seed)
        schedule = list(seed_from.schedule) if seed_from is not None else []
        schedule.append({"from_epoch": epoch, "seed": seed, "config": cfg})
        job.trial.set_user_attr("schedule", schedule)
        m = _Member(slot, job, norm(cfg), seed, schedule,
                    history=list(seed_from.history) if seed_from is not None else [],
                    start_epoch=epoch, parent=seed_from.job.number if seed_from is not None else None)
        pool.add(_key(m), m.cfg, seed, 0, exp.epochs, start)
        return m

    def checkpoint() -> None:
        payload = {"epoch": epoch, "rng": rng.bit_generator.state, "members": [
            {"slot": m.slot, "number": m.job.number, "cfg": m.cfg, "seed": m.seed, "schedule": m.schedule,
             "history": m.history, "start_epoch": m.start_epoch, "parent": m.parent,
             "snapshot": pool.snapshot(_key(m))} for m in members]}
        _save(ckpt, payload)

    resumed = _resume(runner, ckpt, pool, exp, metric)
    if resumed is not None:
        epoch, members, state = resumed
        rng.bit_generator.state = state
        log.info("PBT: resumed %d members at epoch %d from %s", len(members), epoch, ckpt)
    else:
        # members interrupted before any checkpoint (or whose checkpoint is gone) start again from
        # epoch 0 in their retries, as many as the population holds; the strategy fills the rest
        retried = runner.take_waiting()
        for job in retried[exp.trials:]:  # copies made at exploit steps, beyond the population
            runner.fail(job, "interrupted, and no PBT checkpoint was left to resume it from; the population "
                             "started again from epoch 0")
        queue = list(retried[:exp.trials])
        while (job := queue.pop(0) if queue else (runner.ask() if len(members) < exp.trials else None)) is not None:
            try:
                cfg = norm(job.config)
            except ConfigError as exc:
                runner.fail(job, str(exc))
                continue
            m = _Member(len(members), job, cfg, job.seed, [{"from_epoch": 0, "seed": job.seed, "config": job.config}])
            job.trial.set_user_attr("schedule", m.schedule)
            members.append(m)
            pool.add(_key(m), cfg, job.seed, 0, exp.epochs)
    if not members:
        pool.close()
        return
    study.set_user_attr("pbt", {"population": len(members), "interval": exp.pbt_interval,
                                "quantile": exp.pbt_quantile, "explore": exp.pbt_explore,
                                "mutable": mutable_params(space),
                                "pool": type(pool).__name__, "workers": int(getattr(pool, "workers", 1))})
    try:
        while members and epoch < exp.epochs:
            records, failed = pool.run_epoch()
            epoch += 1
            alive: list[_Member] = []
            for m in members:
                r = records.get(_key(m))
                reason = failed.get(_key(m))
                if r is not None:
                    m.history.append(r)
                if reason is None and r is not None and diverged(r.train_loss, r.val_loss):
                    reason = divergence_reason(epoch, r.train_loss, r.val_loss, r.lr)
                if reason is not None or r is None:
                    pool.remove(_key(m))
                    runner.fail(m.job, (reason or "no record").split("\n")[0], attrs_of(m))
                    empty.append(m.slot)
                    continue
                runner.report(m.job, epoch, getattr(r, metric), ask_pruner=False)
                alive.append(m)
            members = alive
            if epoch >= exp.epochs or not members:
                break
            if runner.past_deadline():  # the timeout: the population ends at this epoch, ranked as it is
                log.info("PBT: the timeout passed; the population ends at epoch %d of %d", epoch, exp.epochs)
                break
            if epoch % exp.pbt_interval == 0:
                members = _exploit(members, epoch, exp, space, rng, pool, runner, spawn, attrs_of, maximize, metric,
                                   empty)
                empty = []
                checkpoint()
        for m in members:
            pool.remove(_key(m))
            value = getattr(m.history[-1], metric)
            if data is not None:  # built-in models: every measure of the member's whole history
                from shoal.study._objectives import epoch_measures

                value = {**epoch_measures([m.history]), metric: value}
            if epoch < exp.epochs:  # the timeout ended the population
                runner.stop_at_deadline(m.job, attrs_of(m), value)
            else:
                runner.complete(m.job, value, attrs_of(m))
        members = []
        ckpt.unlink(missing_ok=True)
    except KeyboardInterrupt:
        for m in members:  # the checkpoint holds them; the next run continues from it
            runner.interrupt(m.job)
        raise
    finally:
        pool.close()


def _exploit(members, epoch, exp, space, rng, pool, runner, spawn, attrs_of, maximize, metric, empty=()):
    """Rank by the metric; the bottom quantile copies a random top-quantile member and explores.
    Slots left ``empty`` by failed members are filled with copies too."""
    sign = -1.0 if maximize else 1.0
    ranked = sorted(members, key=lambda m: sign * getattr(m.history[-1], metric))
    n = replaced_per_step(len(ranked), exp.pbt_quantile)
    top, bottom = ranked[:n], ranked[len(ranked) - n:]
    out = [m for m in members if m not in bottom]
    for loser in bottom:
        parent = top[int(rng.integers(len(top)))]
        snap = pool.snapshot(_key(parent))
        cfg = explore(parent.job.config, space, rng, exp.pbt_explore)
        pool.remove(_key(loser))
        child = spawn(loser.slot, cfg, parent, snap,
                      {"pbt": {"slot": loser.slot, "parent": parent.job.number, "start_epoch": epoch}})
        a = attrs_of(loser)
        a["pbt"]["replaced_by"] = child.job.number
        a["pbt"]["at_epoch"] = epoch
        runner.prune(loser.job, a)
        out.append(child)
        log.info("PBT epoch %d: trial %d replaced by trial %d, a copy of trial %d", epoch, loser.job.number,
                 child.job.number, parent.job.number)
    donors = top or ranked[:1]
    for slot in empty if donors else ():
        parent = donors[int(rng.integers(len(donors)))]
        cfg = explore(parent.job.config, space, rng, exp.pbt_explore)
        out.append(spawn(slot, cfg, parent, pool.snapshot(_key(parent)),
                         {"pbt": {"slot": slot, "parent": parent.job.number, "start_epoch": epoch}}))
        log.info("PBT epoch %d: empty slot %d refilled with a copy of trial %d", epoch, slot, parent.job.number)
    return sorted(out, key=lambda m: m.slot)


def _resume(runner: StudyRunner, ckpt: Path, pool, exp: Experiment, metric: str):
    """Continue from the last checkpoint: each member whose trial was interrupted goes on in that
    trial's retry, at the checkpoint's epoch, with the checkpoint's weights and seed."""
    import torch

    if not ckpt.exists():
        return None
    try:
        payload = torch.load(ckpt, weights_only=False)
        missing = [k for k in ("members", "epoch", "rng") if k not in payload]
        if missing:
            raise ValueError(f"no {', '.join(missing)} in it")
    except Exception as exc:  # a truncated or foreign file: kept aside, never deleted, and not used
        aside = ckpt.with_name(ckpt.name + ".unreadable")
        os.replace(ckpt, aside)
        log.warning("PBT: the checkpoint %s cannot be read (%s); moved to %s. The population starts again from "
                    "epoch 0 (every trial recorded so far stays in the study).", ckpt, str(exc).split("\n")[0], aside)
        return None
    retries = {job.trial.user_attrs.get("retry_of"): job for job in runner.take_waiting()}
    members = []
    for rec in payload["members"]:
        job = retries.pop(rec["number"], None)
        if job is None:  # it ended after the checkpoint (completed or failed): nothing to resume
            continue
        job.seed = rec["seed"]
        job.trial.set_user_attr("seed", rec["seed"])
        job.trial.set_user_attr("schedule", rec["schedule"])
        job.trial.set_user_attr("pbt", {"slot": rec["slot"], "parent": rec["parent"], "start_epoch": rec["start_epoch"]})
        m = _Member(rec["slot"], job, rec["cfg"], rec["seed"], rec["schedule"], list(rec["history"]),
                    rec["start_epoch"], rec["parent"])
        for r in m.history[m.start_epoch:]:
            runner.report(job, r.epoch, getattr(r, metric), ask_pruner=False)
        pool.add(_key(m), m.cfg, m.seed, 0, exp.epochs, rec["snapshot"])
        members.append(m)
    for job in retries.values():
        runner.fail(job, "interrupted before PBT's first checkpoint of this member; see the trial it retries")
    if not members:
        ckpt.unlink(missing_ok=True)
        return None
    return payload["epoch"], members, payload["rng"]


# ---------------------------------------------------------------------- schedules and replay
def schedule_of(trial) -> list[dict[str, Any]]:
    """A PBT trial's full hyperparameter schedule (``[{"from_epoch", "seed", "config"}, ...]``)."""
    sched = trial.user_attrs.get("schedule")
    if not sched:
        raise ConfigError(f"Trial {trial.number} has no PBT schedule: it was not trained by the pbt strategy.")
    return sched


def replay(schedule: Sequence[Mapping[str, Any]], data, *, family: str = "mlp", epochs: int) -> list:
    """Train a PBT schedule again from epoch 0: each segment's config and seed from its epoch on,
    weights carried across (``Population.snapshot``). Returns the epoch records (1..epochs).

    ``data`` is a ``shoal.engine.TensorData`` (the study's split: same data, seed and fraction).
    """
    from shoal.engine import normalize
    from shoal.engine._population import Population

    if not schedule or schedule[0].get("from_epoch") != 0:
        raise ConfigError("A PBT schedule must start at epoch 0: [{'from_epoch': 0, 'seed': ..., 'config': {...}}, ...].")
    records: list = []
    snap = None
    bounds = [int(s["from_epoch"]) for s in schedule[1:]] + [epochs]
    for seg, end in zip(schedule, bounds):
        cfg = normalize(seg["config"])
        pop = Population(family, data.input_shape, data.n_outputs, data.task, int(cfg["batch_size"]))
        pop.add("m", cfg, int(seg["seed"]), data, epochs, start=snap)
        while pop.epoch_of("m") < end:
            records.append(pop.run_epoch()["m"])
        snap = pop.snapshot("m")
    return records
