"""Where populations train: in this process, or spread over worker processes (one per core).

Both pools take the same calls (``add``, ``remove``, ``run_epoch``, ``close``), so caviar mode is
written once. On a CPU, populations of small networks are bound by per-operation dispatch, which a
second thread does not speed up but a second process does (measured in
``benchmarks/throughput.py``): the process pool gives each worker one thread and its own
populations, and every worker trains its epoch at the same time.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import traceback
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from shoal._errors import ShoalError

__all__ = ["GroupPool", "LocalPool", "ProcessPool", "WorkerStartError", "make_pool"]


class GroupPool:
    """Populations in this process, one per group key: what every in-process pool shares (removing
    members, snapshots, one epoch of every population, failures). Subclasses decide ``add``: which
    population a member joins (``LocalPool``: the built-in engine; ``ModulePool``: a user's module).
    """

    def __init__(self, folds: Sequence[Any]) -> None:
        self.folds = list(folds)
        self.populations: dict[Hashable, Any] = {}
        self.where: dict[Hashable, Hashable] = {}  # member key -> population key
        self.failed: dict[Hashable, str] = {}  # member key -> why its add failed (reported next epoch)

    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def remove(self, key: Hashable) -> None:
        gk = self.where.pop(key, None)
        self.failed.pop(key, None)
        if gk is not None:
            self.populations[gk].remove(key)
            if len(self.populations[gk]) == 0:
                del self.populations[gk]

    def __len__(self) -> int:
        return len(self.where)

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Member ``key``'s weights, optimizer state and position (see ``Population.snapshot``)."""
        return self.populations[self.where[key]].snapshot(key)

    def run_epoch(self) -> tuple[dict, dict]:
        """One epoch of every member: (records by key, failure reasons by key)."""
        records: dict = {}
        failed, self.failed = self.failed, {}
        for gk in list(self.populations):
            pop = self.populations[gk]
            try:
                records.update(pop.run_epoch())
            except Exception as exc:  # the whole population failed: its members fail, others go on
                reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
                for key in pop.keys():
                    failed[key] = reason
                    self.where.pop(key, None)
                del self.populations[gk]
        return records, failed

    def close(self) -> None:
        self.populations.clear()
        self.where.clear()


class LocalPool(GroupPool):
    """Populations of the built-in engine in this process, one per group key (batch size, family).

    Args:
        family: "mlp" or "cnn".
        folds: the TensorData each member may train on (a member names its fold by index).
        device: where the populations live.
        pad: passed to each Population.
    """

    def __init__(self, family: str, folds: Sequence[Any], device: Any = "cpu", pad: bool = False) -> None:
        super().__init__(folds)
        self.family, self.device, self.pad = family, device, pad

    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        from shoal.engine._packer import group_key
        from shoal.engine._population import Population

        try:
            gk = group_key(config, self.family)
            if gk not in self.populations:
                data = self.folds[fold]
                self.populations[gk] = Population(self.family, data.input_shape, data.n_outputs, data.task,
                                                  batch_size=int(config["batch_size"]), device=self.device,
                                                  pad=self.pad)
            self.populations[gk].add(key, config, seed, self.folds[fold], epochs, start)
            self.where[key] = gk
        except Exception as exc:  # reported at the next epoch, like any failure of this member
            self.failed[key] = f"{type(exc).__name__}: {exc}"


def _worker(conn, family: str, folds: list[dict], device: str, pad: bool, factory=None) -> None:
    import signal

    import torch

    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it finishes the
    # epoch and records its trials as interrupted); a worker dying of it would fail its members.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from shoal.engine._single import TensorData

    torch.set_num_threads(1)
    datas = [TensorData(**{k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in f.items()})
             for f in folds]
    pool = factory(datas) if factory is not None else LocalPool(family, datas, device, pad)
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        op = msg[0]
        if op == "add":
            pool.add(*msg[1:])
        elif op == "remove":
            pool.remove(msg[1])
        elif op == "snapshot":
            try:
                conn.send(("ok", pool.snapshot(msg[1])))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
        elif op == "epoch":
            from shoal.engine._packer import PeakMemory

            with PeakMemory(device) as observed:
                records, failed = pool.run_epoch()
            conn.send((records, failed, observed.bytes))
        elif op == "close":
            conn.close()
            return


class WorkerStartError(ShoalError):
    """A worker process exited while starting, before it trained anything."""


def _spawned(conn) -> None:
    """A ``spawn`` worker's target: its setup arrives on ``conn`` once it has started."""
    try:
        args = conn.recv()
    except EOFError:
        return
    _worker(conn, *args)


def _worker_main(fd: int) -> None:
    """A worker started as a plain ``python -c`` process (``_Launched``): its setup arrives first on
    the socket ``fd``, then it serves like a ``spawn`` worker."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        # the parent's key first: tensors sent back (snapshots) share their memory through
        # multiprocessing's resource sharer, which checks it, as it does for spawn children
        mp.current_process().authkey = conn.recv_bytes()
    except EOFError:
        return
    _spawned(conn)


class _Launched:
    """A worker process started with ``subprocess`` (the ``multiprocessing.Process`` calls the pool
    uses: ``pid``, ``is_alive``, ``exitcode``, ``join``, ``terminate``).

    Python's ``spawn`` start method runs the parent's main script again in every worker before
    the worker's own code. A user's script that calls ``shoal.tune`` without an
    ``if __name__ == "__main__":`` guard would then start a study in each worker (which fails there),
    and the parent waits forever writing the workers' data into a pipe whose reader has died (the
    parent holds that pipe's other end until the write ends). The built-in engine's workers need
    nothing from the script, so they are started as ``python -c`` with the parent's ``sys.path``
    and receive their data over a socket: no script runs twice, and a worker that dies shows as a
    closed socket, never a hang.
    """

    def __init__(self) -> None:
        import json
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        code = ("import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
                "from shoal.engine._pool import _worker_main; _worker_main(int(sys.argv[1]))")
        paths = [p for p in sys.path if isinstance(p, str)]
        try:
            self.popen = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno()), json.dumps(paths)],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.pid = self.popen.pid
        try:
            self.conn.send_bytes(bytes(mp.current_process().authkey))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # it died at once: the pool's start-up check reports it

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def join(self, timeout: float | None = None) -> None:
        import subprocess

        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self) -> None:
        if self.is_alive():
            self.popen.terminate()


REBALANCE_GAP = 0.1  # move members when the workers' epochs differ by more than this share
MAX_MOVES = 4  # members moved after one epoch, at most


class ProcessPool:
    """Populations spread over worker processes of one thread each, trained at the same time.

    Workers train in lockstep (an epoch ends when the slowest worker's does), so members are placed
    by their time, not their size: each member goes to the worker where the epoch would end soonest,
    counting the per-step work of a new population where the worker has none for its batch size
    (so a batch size stays in one population until splitting it pays). A member's time is estimated
    (``member_seconds``) until its first epoch, then measured; estimates are rescaled by how the
    measured times compare with them. A worker that dies fails its members with a clear reason.

    ``factory`` (picklable) builds each worker's pool from its folds instead of a ``LocalPool``
    (``ModulePool`` for a user's module); ``place(key, config, fold)`` names a member's group: members of
    one group go to the same worker (they batch there), members of group None spread by load.
    """

    def __init__(self, family: str, folds: Sequence[Any], device: Any = "cpu", workers: int = 2,
                 pad: bool = False, factory: Any = None, place: Any = None) -> None:
        self.family = family
        self.input_shape, self.n_outputs = folds[0].input_shape, folds[0].n_outputs
        payload = [{"X_train": f.X_train.cpu().numpy(), "y_train": f.y_train.cpu().numpy(),
                    "X_val": f.X_val.cpu().numpy(), "y_val": f.y_val.cpu().numpy(),
                    "input_shape": tuple(f.input_shape), "n_outputs": int(f.n_outputs), "task": f.task}
                   for f in folds]
        self.conns, self.procs = [], []
        for _ in range(workers):
            if factory is None and os.name == "posix" and sys.executable:  # nothing from the script is needed
                proc = _Launched()
                self.conns.append(proc.conn)
            else:  # a user's module: the workers import it, so they start as `spawn` children
                ctx = mp.get_context("spawn")
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_spawned, args=(child,), daemon=True)
                proc.start()
                child.close()
                self.conns.append(parent)
            self.procs.append(proc)
        # The data goes once every worker has started (they import in parallel), over the
        # connection: in the arguments of start() a large payload could block it (see _Launched).
        for conn in self.conns:
            try:
                conn.send((family, payload, str(device), pad, factory))
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # it died at once: reported just below
        self.workers = workers
        self._await_ready(factory is not None)
        self.last_peak_bytes = 0  # the last epoch's observed peak memory, summed over the workers
        self.rows = [int(f.X_train.shape[0]) for f in folds]
        self.load = [0.0] * workers  # seconds of an epoch: members' times and their populations' own
        self.where: dict[Hashable, tuple[int, float]] = {}  # member -> (worker, seconds)
        self.group_of: dict[Hashable, tuple[Hashable, float]] = {}  # member -> (group, its population's seconds)
        self.groups: list[dict[Hashable, int]] = [{} for _ in range(workers)]  # group -> members, per worker
        self.scale = 1.0  # measured / estimated seconds, from the last epoch
        self.specs: dict[Hashable, tuple] = {}  # member -> (config, seed, fold, epochs): to move it
        self.estimated: set = set()  # members not measured yet
        self.moves = 0  # members moved to another worker to even the load (``_rebalance``)
        self.place = place
        self.sticky: dict[Hashable, int] = {}  # group -> the worker its members train in (place=...)

    def _await_ready(self, imports_main: bool) -> None:
        """Wait until every worker has loaded its data; one that died starting stops the pool with
        the reason, instead of failing every member it would have trained."""
        dead = []
        for w, (conn, proc) in enumerate(zip(self.conns, self.procs)):
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = None
            if msg != ("ready",):
                proc.join(timeout=5)
                dead.append(f"worker process {w} (exit code {proc.exitcode})")
        if dead:
            self.close()
            hint = ("Its workers start by importing the script that called shoal (Python's spawn): put "
                    "that call under `if __name__ == \"__main__\":`, or pass workers=1. "
                    if imports_main else "")
            raise WorkerStartError(f"{', '.join(dead)} exited while starting, before training anything. {hint}"
                             "Its error is printed above this message.")

    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        from shoal.engine._packer import group_key, member_seconds, population_seconds

        rows = self._rows(fold)
        try:
            cost = self.scale * member_seconds(config, self.family, self.input_shape, self.n_outputs, rows)
            group = group_key(config, self.family)
            opening = self.scale * population_seconds(config, rows)
        except Exception:  # a user's module, or a config the worker will reject: spread by count
            cost, group, opening = 1.0, None, 0.0
        live = [w for w in range(len(self.conns)) if not math.isinf(self.load[w])] or [0]
        if self.place is not None:  # a user's module: one group, one worker
            group, opening = self.place(key, config, fold), 0.0
            w = self.sticky.get(group) if group is not None else None
            if w is None or math.isinf(self.load[w]):
                w = min(live, key=lambda i: (self.load[i], i))
                if group is not None:
                    self.sticky[group] = w
        else:  # where this epoch would end soonest; a new population there costs its own steps
            w = min(live, key=lambda i: (self.load[i] + (0.0 if self.groups[i].get(group) else opening), i))
        self._send_add(w, key, (dict(config), seed, fold, epochs), cost, group, opening, start)

    def _rows(self, fold: int) -> int:
        return self.rows[fold] if 0 <= fold < len(self.rows) else self.rows[0]

    def _send_add(self, w: int, key: Hashable, spec: tuple, cost: float, group: Hashable, opening: float,
                  start: Mapping[str, Any] | None) -> None:
        if group is not None and not self.groups[w].get(group):
            self.load[w] += opening
        self.groups[w][group] = self.groups[w].get(group, 0) + 1
        self.load[w] += cost
        self.where[key] = (w, cost)
        self.group_of[key] = (group, opening)
        self.specs[key] = spec
        if start is None:
            self.estimated.add(key)
        try:
            self.conns[w].send(("add", key, *spec, start))
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: the next epoch reports this member as failed

    def remove(self, key: Hashable) -> None:
        w, cost = self.where.pop(key, (None, 0.0))
        if w is None:
            return
        group, opening = self.group_of.pop(key, (None, 0.0))
        self.specs.pop(key, None)
        self.estimated.discard(key)
        self.load[w] = max(0.0, self.load[w] - cost)
        n = self.groups[w].get(group, 0) - 1
        if n <= 0:
            self.groups[w].pop(group, None)
            self.load[w] = max(0.0, self.load[w] - opening)
        else:
            self.groups[w][group] = n
        if self.procs[w].is_alive():
            try:
                self.conns[w].send(("remove", key))
            except (BrokenPipeError, OSError):
                pass

    def _measured(self, records: Mapping[Hashable, Any]) -> None:
        """Replace estimates by the last epoch's measured seconds; rescale the estimates by how the
        members that had only an estimate compare with it."""
        est = got = 0.0
        for key, r in records.items():
            if key in self.where and getattr(r, "seconds", None) is not None and r.seconds > 0:
                w, cost = self.where[key]
                if key in self.estimated:
                    est, got = est + cost, got + r.seconds
                    self.estimated.discard(key)
                self.where[key] = (w, float(r.seconds))
                self.group_of[key] = (self.group_of.get(key, (None, 0.0))[0], 0.0)  # now inside its time
        if est > 0:
            self.scale *= got / est
        for w in range(len(self.load)):
            if not math.isinf(self.load[w]):  # a population's own steps are inside its members' measured times
                self.load[w] = sum(c for ww, c in self.where.values() if ww == w)

    def _rebalance(self) -> None:
        """Move members from the slowest worker to the fastest while their epochs differ by more than
        ``REBALANCE_GAP`` of the slowest's time and a move narrows that (a few moves an epoch). A
        move copies the member's state (``snapshot``) and goes on from it: the member computes what
        it would have."""
        from shoal.engine._packer import population_seconds

        if self.place is not None:  # a user's module's groups must stay whole
            return
        live = [w for w in range(len(self.conns)) if not math.isinf(self.load[w])]
        for _ in range(MAX_MOVES):
            if len(live) < 2:
                return
            hi = max(live, key=lambda w: (self.load[w], -w))
            lo = min(live, key=lambda w: (self.load[w], w))
            gap = self.load[hi] - self.load[lo]
            if gap <= REBALANCE_GAP * self.load[hi]:
                return
            best = None
            for key, (w, cost) in self.where.items():
                if w != hi or key not in self.specs:
                    continue
                group = self.group_of[key][0]
                config, _, fold, _ = self.specs[key]
                extra = 0.0 if self.groups[lo].get(group) else \
                    self.scale * population_seconds(config, self._rows(fold))
                after = abs((self.load[hi] - cost) - (self.load[lo] + cost + extra))
                if after < gap * (1 - REBALANCE_GAP) and (best is None or after < best[0]):
                    best = (after, key, cost)
            if best is None:
                return
            _, key, cost = best
            try:
                state = self.snapshot(key)
            except Exception:  # noqa: BLE001 - it stays where it is; its worker reports any failure
                return
            spec = self.specs[key]
            group = self.group_of[key][0]
            self.remove(key)
            self._send_add(lo, key, spec, cost, group, 0.0, state)
            self.moves += 1

    def __len__(self) -> int:
        return len(self.where)

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Member ``key``'s state, fetched from its worker (see ``Population.snapshot``)."""
        from shoal._errors import TrialFailed

        w, _ = self.where[key]
        try:
            self.conns[w].send(("snapshot", key))
            status, value = self.conns[w].recv()
        except (EOFError, BrokenPipeError, OSError) as exc:
            raise TrialFailed(f"worker process {w} died before member {key!r} could be copied") from exc
        if status != "ok":
            raise TrialFailed(value)
        return value

    def run_epoch(self) -> tuple[dict, dict]:
        self._rebalance()  # after the caller's removals and additions since the last epoch
        busy = sorted({w for w, _ in self.where.values()})
        sent = []
        for w in busy:
            try:
                self.conns[w].send(("epoch",))
                sent.append(w)
            except (BrokenPipeError, OSError):
                pass
        records: dict = {}
        failed: dict = {}
        self.last_peak_bytes = 0
        for w in busy:
            try:
                if w not in sent:
                    raise EOFError
                r, f, peak = self.conns[w].recv()
            except (EOFError, OSError):
                code = self.procs[w].exitcode
                reason = f"worker process {w} died (exit code {code}); its members are lost for this run"
                for key, (ww, _) in list(self.where.items()):
                    if ww == w:
                        failed[key] = reason
                        del self.where[key]
                        self.group_of.pop(key, None)
                self.groups[w].clear()
                self.load[w] = math.inf  # no new members for a dead worker
                continue
            records.update(r)
            failed.update(f)
            self.last_peak_bytes += peak
        self._measured(records)
        return records, failed

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            try:
                if proc.is_alive():
                    conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def make_pool(family: str, folds: Sequence[Any], device: Any, workers: int | None, pad: bool = False,
              executor: str = "auto", address: str | None = None):
    """Where populations train.

    ``executor``: "local" (this process), "processes" (``workers`` processes, default one per
    core), "ray" (actors of a Ray cluster at ``address``; ``workers`` None fills the cluster; see
    ``RayPool``), or "auto": a LocalPool for one worker, a ProcessPool for more.
    """
    if executor == "ray":
        from shoal.engine._ray_pool import RayPool

        return RayPool(family, folds, device, workers, pad, address=address)
    if executor == "processes":
        return ProcessPool(family, folds, device, workers or (os.cpu_count() or 1), pad)
    if executor == "local" or not workers or workers <= 1:
        return LocalPool(family, folds, device, pad)
    return ProcessPool(family, folds, device, workers, pad)
