"""Populations on a Ray cluster: one actor per worker slot, and a lost worker loses no epoch.

``RayPool`` takes the same calls as ``LocalPool`` and ``ProcessPool`` (``add``, ``remove``,
``run_epoch``, ``snapshot``, ``close``), so caviar mode runs on a cluster unchanged: the driver
keeps the strategy and the storage, each actor holds a ``LocalPool`` of members, and every epoch
each actor sends back its members' records.

Fault tolerance. After each epoch every actor also sends back a snapshot of each of its members
(weights, optimizer moments, epoch and step count; see ``Population.snapshot``), and the driver
keeps the latest one in its own memory. When an actor dies (its process is killed, its node is
lost), its members are added again from those snapshots on a replacement actor (or, when none can
be started, on the surviving ones) and train the epoch they missed, within the same
``run_epoch`` call. A resumed member continues exactly where it was, so the study's numbers are
those of an undisturbed run (up to the float rounding of a different batch of co-members).

Why the driver's memory and not Ray's object store: an object belongs to the process that created
it, and a task's return value is held in the object store of the node that computed it. Either
way a node that dies takes its copies with it, which is the very failure being guarded against.
The driver is the one process a study cannot lose anyway (it holds the storage connection and the
strategy; if it dies, ``shoal tune`` resumes from the storage). The price is the transfer: one
member's state is its parameter count times 4 bytes, times 3 with Adam's moments (an MLP of width
256 on MNIST: ~1.1 MB), sent once per epoch, which is small next to an epoch of training
(measured in ``benchmarks/ray_throughput.py``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from shoal._errors import ConfigError, MissingDependencyError
from shoal.engine._balance import Balancer, Booked

__all__ = ["RayPool"]

log = logging.getLogger("shoal")


class _Worker:
    """The actor's body: a LocalPool on this worker's cores (or its one GPU)."""

    def __init__(self, family: str, folds: list[dict], device: str, pad: bool, threads: int, every: int = 1) -> None:
        import torch

        from shoal.engine._pool import LocalPool
        from shoal.engine._single import TensorData

        torch.set_num_threads(max(1, int(threads)))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        # np.array copies: Ray hands out read-only views of its object store
        datas = [TensorData(**{k: (torch.from_numpy(np.array(v)).to(device) if isinstance(v, np.ndarray) else v)
                               for k, v in f.items()})
                 for f in folds]
        self.pool = LocalPool(family, datas, device, pad)
        self.family, self.datas, self.pad, self.every = family, datas, pad, max(1, int(every))

    def ready(self) -> tuple[int, str]:
        """The process id (tests kill it) and the device this worker trains on."""
        return os.getpid(), str(self.device)

    def add(self, key, config, seed, fold, epochs, start=None) -> None:
        self.pool.add(key, config, seed, fold, epochs, start)

    def remove(self, key) -> None:
        self.pool.remove(key)

    def snapshot(self, key) -> dict:
        return self.pool.snapshot(key)

    def _snapshots(self, pool, keys) -> dict:
        snaps = {}
        for key in keys:
            if key in pool.where:
                snaps[key] = pool.snapshot(key)
        return snaps

    def run_epoch(self) -> tuple[dict, dict, dict, int]:
        """One epoch of every member: (records, failure reasons, snapshots of the members whose
        epoch is a multiple of the checkpoint interval, this actor's peak memory in the epoch)."""
        from shoal.engine._packer import PeakMemory

        with PeakMemory(self.device) as observed:
            records, failed = self.pool.run_epoch()
        snaps = self._snapshots(self.pool, [k for k, r in records.items() if r.epoch % self.every == 0])
        return records, failed, snaps, observed.bytes

    def catch_up(self, members: list[tuple]) -> tuple[dict, dict, dict, int]:
        """Members of a lost worker, apart from this worker's own (which already trained this
        epoch): each trains from its snapshot up to its ``target`` epoch, and joins this worker's
        populations from there. Returns each one's record of its target epoch and its snapshot
        (and 0 for the memory peak, which ``run_epoch`` measured for this epoch already)."""
        from shoal.engine._pool import LocalPool

        side = LocalPool(self.family, self.datas, self.device, self.pad)
        specs = {m[0]: m for m in members}
        for key, config, seed, fold, epochs, start, _ in members:
            side.add(key, config, seed, fold, epochs, start)
        records: dict = {}
        failed: dict = {}
        snaps: dict = {}
        while len(side):
            r, f = side.run_epoch()
            failed.update(f)
            for key, rec in r.items():
                key, config, seed, fold, epochs, _, target = specs[key]
                if rec.epoch >= target:  # earlier epochs were reported before the worker was lost
                    records[key], snaps[key] = rec, side.snapshot(key)
                    side.remove(key)
                    self.pool.add(key, config, seed, fold, epochs, snaps[key])
            if not r and not f:
                break
        side.close()
        return records, failed, snaps, 0


@dataclass
class _Member:
    config: dict
    seed: int
    fold: int
    epochs: int
    snap: Mapping[str, Any] | None  # the latest state the driver holds (None: not trained yet)
    slot: int
    epoch: int = 0  # the last epoch reported to the caller

    def spec(self, key: Hashable) -> tuple:
        return key, self.config, self.seed, self.fold, self.epochs, self.snap


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "The 'ray' executor needs Ray. Install it with: pip install 'shoal[ray]'."
        ) from None
    return ray


class RayPool(Booked):
    """Populations spread over the actors of a Ray cluster; members of a lost actor resume elsewhere.

    Args:
        family: "mlp" or "cnn".
        folds: the TensorData each member may train on (sent to the cluster once).
        device: "cpu" (actors of ``cpus_per_worker`` cores), "cuda"/"cuda:N" (one GPU per actor) or
            "auto" (GPUs when the cluster has any).
        workers: number of actors; None fills the cluster (its GPUs, or its CPUs / cpus_per_worker).
        pad: passed to each Population.
        address: a running cluster (``ray start --head`` prints it; "auto" finds the local one);
            None connects to the Ray already initialized in this process, or starts a local one.
        cpus_per_worker: cores (and torch threads) per actor. One is fastest for small networks on
            CPUs, where a process per core beats threads (see ``benchmarks/README.md``).
        restart_timeout: seconds to wait for a replacement actor before the lost members go to the
            surviving actors instead.
        checkpoint_every: epochs between the snapshots each member sends the driver. 1 loses no
            epoch; k sends 1/k of the bytes, and a lost member trains again up to k-1 epochs (its
            repeated epochs are not reported twice).

    Example:
        >>> import ray
        >>> ray.init(num_cpus=2)  # doctest: +SKIP
        >>> pool = RayPool("mlp", [data], workers=2)  # doctest: +SKIP
        >>> pool.add("a", normalize({"lr": 1e-3}), seed=0, fold=0, epochs=5)  # doctest: +SKIP
        >>> records, failed = pool.run_epoch()  # doctest: +SKIP
    """

    def __init__(self, family: str, folds: Sequence[Any], device: Any = "cpu", workers: int | None = None,
                 pad: bool = False, address: str | None = None, cpus_per_worker: int = 1,
                 restart_timeout: float = 60.0, max_recoveries: int = 3, checkpoint_every: int = 1) -> None:
        ray = _import_ray()
        if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, int) or cpus_per_worker < 1:
            raise ConfigError(f"The 'cpus_per_worker' setting must be an integer >= 1. Got {cpus_per_worker!r} instead.")
        self._started_ray = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise ConfigError(f"Cannot reach a Ray cluster at {address!r}: {exc}. Start one with "
                                  "`ray start --head` and pass the address it prints.") from None
            self._started_ray = True
        self.family = family
        self.input_shape, self.n_outputs = folds[0].input_shape, folds[0].n_outputs
        self.restart_timeout, self.max_recoveries = float(restart_timeout), int(max_recoveries)
        resources = ray.cluster_resources()
        device = str(device)
        if device == "auto":
            device = "cuda" if resources.get("GPU", 0) >= 1 else "cpu"
        gpu = device.startswith("cuda")
        if gpu:
            have = int(resources.get("GPU", 0))
            if have < 1:
                if self._started_ray:
                    ray.shutdown()
                raise ConfigError(f"The device {device!r} asks for GPUs, but the Ray cluster has none. "
                                  "Use --device cpu, or add GPU nodes to the cluster.")
            n = workers or have
            options = {"num_gpus": 1, "num_cpus": cpus_per_worker}
            device = "cuda"  # Ray shows each actor only its own GPU, as cuda:0
        else:
            n = workers or max(1, int(resources.get("CPU", 1)) // cpus_per_worker)
            options = {"num_cpus": cpus_per_worker}
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"The 'workers' setting must be an integer >= 1. Got {workers!r} instead.")
        # Lost actors are replaced by this pool (their state must be sent again anyway), not by
        # Ray's restarts, so that the members can go elsewhere when a node is gone for good.
        self._actor_cls = ray.remote(max_restarts=0, **options)(_Worker)
        payload = [{"X_train": f.X_train.cpu().numpy(), "y_train": f.y_train.cpu().numpy(),
                    "X_val": f.X_val.cpu().numpy(), "y_val": f.y_val.cpu().numpy(),
                    "input_shape": tuple(f.input_shape), "n_outputs": int(f.n_outputs), "task": f.task}
                   for f in folds]
        self._data = ray.put(payload)  # owned by the driver: restarted actors can fetch it again
        self._spec = (family, device, pad, cpus_per_worker, int(checkpoint_every))
        self.device = device
        self.actors: list[Any] = [self._spawn() for _ in range(n)]
        self.alive = [True] * n
        self.last_peak_bytes = 0
        # Actors train in lockstep, like worker processes: members are placed and moved by time.
        self.books = Balancer(family, self.input_shape, self.n_outputs, [int(f.X_train.shape[0]) for f in folds], n)
        self.members: dict[Hashable, _Member] = {}
        self.recovered: list[Hashable] = []  # members that resumed after losing their actor
        self._costs: dict[Hashable, float] = {}  # members of dead actors -> their last epoch's seconds
        refs = [a.ready.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=n, timeout=self.restart_timeout)
        if len(ready) < n:  # more actors than the cluster can place: they would wait forever
            self.close()
            raise ConfigError(f"The Ray cluster started {len(ready)} of {n} workers within {self.restart_timeout:g} s "
                              f"({options} each; the cluster has {resources.get('CPU', 0):g} CPUs and "
                              f"{resources.get('GPU', 0):g} GPUs). Ask for fewer with --workers.")
        self.pids = [pid for pid, _ in ray.get(refs)]

    @property
    def workers(self) -> int:
        return sum(self.alive)

    def _spawn(self):
        family, device, pad, threads, every = self._spec
        return self._actor_cls.remote(family, self._data, device, pad, threads, every)

    # ------------------------------------------------------------------ members
    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        slot = self.books.add(key, config, fold, among=self._live())
        m = _Member(dict(config), int(seed), int(fold), int(epochs), start, slot,
                    int(start["epoch"]) if start is not None else 0)
        self.members[key] = m
        # Fire and forget: Ray runs one caller's calls to an actor in order, and a lost call shows
        # as the actor's death at the next epoch, where the member is added again elsewhere.
        self.actors[slot].add.remote(*m.spec(key))

    def remove(self, key: Hashable) -> None:
        m = self.members.pop(key, None)
        if m is None:
            return
        self.books.remove(key)
        if self.alive[m.slot]:
            self.actors[m.slot].remove.remote(key)

    def __len__(self) -> int:
        return len(self.members)

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Member ``key``'s latest state: the copy the driver holds when it is current, else its
        actor's (see ``Population.snapshot``)."""
        import ray

        from shoal._errors import TrialFailed

        m = self.members[key]
        if m.snap is not None and m.snap["epoch"] == m.epoch:
            return m.snap
        try:
            return ray.get(self.actors[m.slot].snapshot.remote(key))
        except ray.exceptions.RayActorError as exc:
            raise TrialFailed(f"Ray worker {m.slot} died before member {key!r} could be copied") from exc

    def _live(self) -> list[int]:
        slots = [i for i in range(len(self.actors)) if self.alive[i]]
        if not slots:
            raise RuntimeError("no live Ray worker")
        return slots

    def _relocate(self, key: Hashable, old: int, new: int, state: Mapping[str, Any]) -> None:
        """Member ``key`` leaves actor ``old`` and starts on actor ``new`` from ``state``, its latest
        (the driver's copy when current, else its actor's; see ``Booked._rebalance``)."""
        m = self.members[key]
        self.actors[old].remove.remote(key)
        m.slot, m.snap, m.epoch = new, state, int(state["epoch"])
        self.actors[new].add.remote(*m.spec(key))

    # ------------------------------------------------------------------ epochs
    def run_epoch(self) -> tuple[dict, dict]:
        """One epoch of every member: (records by key, failure reasons by key).

        Members of an actor that dies during the epoch are added again from their last snapshot
        and train the epoch on another actor before this call returns.
        """
        self._rebalance()  # after the caller's removals and additions since the last epoch
        busy = sorted({m.slot for m in self.members.values()})
        calls = {self.actors[s].run_epoch.remote(): s for s in busy}
        records: dict = {}
        failed: dict = {}
        self.last_peak_bytes = 0  # the actors' peak memory in this epoch, summed
        lost = self._collect(calls, records, failed)
        for _ in range(self.max_recoveries):
            if not lost:
                break
            lost = self._recover(lost, records, failed)
        for key in lost:  # still nowhere to run after several tries
            failed[key] = "Ray workers kept dying; the member could not be resumed"
            self.members.pop(key, None)
            self.books.remove(key)
        self.books.measured(records)
        return records, failed

    def _collect(self, calls: dict, records: dict, failed: dict) -> list:
        """Gather the actors' answers as they come; return the members of actors that died."""
        import ray

        lost: list = []
        pending = list(calls)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            slot = calls[done[0]]
            try:
                r, f, snaps, peak = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                if self.alive[slot]:
                    log.warning("Ray worker %d (pid %s) died: %s; its members resume from their last epoch",
                                slot, self.pids[slot], str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self.alive[slot] = False
                gone = self.books.lost(slot)
                self._costs.update({k: p.cost for k, p in gone.items()})
                lost += [k for k, m in self.members.items() if m.slot == slot and k not in records]
                continue
            self.last_peak_bytes += peak
            for key, reason in f.items():
                failed[key] = reason
                if self.members.pop(key, None) is not None:
                    self.books.remove(key)
            for key, record in r.items():
                if key in self.members:
                    records[key] = record
                    m = self.members[key]
                    m.epoch, m.snap = record.epoch, snaps.get(key, m.snap)
        return lost

    def _recover(self, lost: list, records: dict, failed: dict) -> list:
        """Start replacements for dead actors and train the lost members' missed epoch there (or on
        the survivors when no replacement comes up in time)."""
        import ray

        for slot in range(len(self.actors)):
            if self.alive[slot]:
                continue
            actor = self._spawn()
            ready, _ = ray.wait([ref := actor.ready.remote()], timeout=self.restart_timeout)
            if ready:
                try:
                    self.pids[slot] = ray.get(ref)[0]
                except ray.exceptions.RayActorError:
                    continue
                self.actors[slot], self.alive[slot] = actor, True
                self.books.revive(slot)
                log.warning("Ray worker %d replaced (pid %s)", slot, self.pids[slot])
            else:
                ray.kill(actor)
        if not any(self.alive):
            return lost
        fresh = [s for s in range(len(self.actors)) if self.alive[s] and
                 not any(m.slot == s for k, m in self.members.items() if k not in lost)]
        batches: dict[int, list] = {}
        for key in lost:
            m = self.members[key]
            self.books.remove(key)  # booked on an actor that died in this round's catch-up
            m.slot = self.books.add(key, m.config, m.fold, among=fresh or self._live(), cost=self._costs.pop(key, None))
            batches.setdefault(m.slot, []).append((*m.spec(key), m.epoch + 1))
        self.recovered += lost
        # The lost members train from their snapshots up to this round's epoch in a side population
        # (a survivor already trained this epoch for its own members), then join its populations.
        calls = {self.actors[slot].catch_up.remote(specs): slot for slot, specs in batches.items()}
        return self._collect(calls, records, failed)

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for actor, alive in zip(self.actors, self.alive):
            if alive:
                try:
                    ray.kill(actor)
                except Exception:  # already gone
                    pass
        self.actors, self.members = [], {}
        if self._started_ray:
            ray.shutdown()

