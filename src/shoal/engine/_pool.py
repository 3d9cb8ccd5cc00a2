"""Where populations train: in this process, or spread over worker processes (one per core).

Both pools take the same calls (``add``, ``remove``, ``run_epoch``, ``close``), so caviar mode is
written once. On a CPU, populations of small networks are bound by per-operation dispatch, which a
second thread does not speed up but a second process does (measured in
``benchmarks/throughput.py``): the process pool gives each worker one thread and its own
populations, and every worker trains its epoch at the same time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from shoal._errors import ShoalError
from shoal.engine._balance import Balancer, Booked

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


class _Array:
    """A CPU tensor crossing a pipe as its bytes (``_to_wire``)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _walk(obj: Any, leaf: Any) -> Any:
    """``obj`` rebuilt through its dicts, lists and tuples, each other value passed through ``leaf``."""
    if isinstance(obj, dict):
        return {k: _walk(v, leaf) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_walk(v, leaf) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # a namedtuple: by position
    return leaf(obj)


def _to_wire(obj: Any) -> Any:
    """``obj`` with its CPU tensors as plain arrays, for a pipe. A tensor sent as it is goes through
    shared memory, one segment and one file descriptor passed per tensor: a member's state (~40
    tensors, 1.4 MB on digits) took 18-20 ms to fetch that way, ~4 ms as bytes."""
    import torch

    return _walk(obj, lambda x: _Array(x.detach().numpy())
                 if isinstance(x, torch.Tensor) and x.device.type == "cpu" else x)


def _from_wire(obj: Any) -> Any:
    """The inverse of ``_to_wire``: the same values, bit for bit, as tensors again."""
    import torch

    return _walk(obj, lambda x: torch.from_numpy(x.array) if isinstance(x, _Array) else x)


def _worker(conn, family: str, folds: list[dict], device: str, pad: bool, factory=None) -> None:
    import signal

    import torch

    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it finishes the
    # epoch and records its trials as interrupted); a worker dying of it would fail its members.
    # So does a SIGTERM sent to the group (Slurm): the worker ends when the parent closes its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

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
            pool.add(*msg[1:-1], _from_wire(msg[-1]))
        elif op == "remove":
            pool.remove(msg[1])
        elif op == "snapshot":
            try:
                conn.send(("ok", _to_wire(pool.snapshot(msg[1]))))
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
        _worker(conn, *args)
    except (EOFError, OSError):  # the driver is gone (killed: reset, broken pipe): so is this worker's job
        return


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
    # Done: leave without the interpreter's teardown (torch's takes ~0.4 s here, and the parent's
    # close() waits for it). Nothing of this process outlives it: its results went over the socket.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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


class ProcessPool(Booked):
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
        self.books = Balancer(family, self.input_shape, self.n_outputs, [int(f.X_train.shape[0]) for f in folds],
                              workers, place)
        self.specs: dict[Hashable, tuple] = {}  # member -> (config, seed, fold, epochs): to move it

    @property
    def where(self) -> dict[Hashable, tuple[int, float]]:
        """member -> (worker, seconds an epoch)"""
        return self.books.where

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
        w = self.books.add(key, config, fold)
        self._send_add(w, key, (dict(config), seed, fold, epochs), start)

    def _send_add(self, w: int, key: Hashable, spec: tuple, start: Mapping[str, Any] | None) -> None:
        self.specs[key] = spec
        try:
            self.conns[w].send(("add", key, *spec, _to_wire(start)))
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: the next epoch reports this member as failed

    def remove(self, key: Hashable) -> None:
        placed = self.books.remove(key)
        self.specs.pop(key, None)
        if placed is not None and self.procs[placed.worker].is_alive():
            try:
                self.conns[placed.worker].send(("remove", key))
            except (BrokenPipeError, OSError):
                pass

    def _relocate(self, key: Hashable, old: int, new: int, state: Mapping[str, Any]) -> None:
        """Member ``key`` leaves worker ``old`` and goes on from ``state`` on worker ``new`` (the
        books are already moved; see ``Booked._rebalance``)."""
        if self.procs[old].is_alive():
            try:
                self.conns[old].send(("remove", key))
            except (BrokenPipeError, OSError):
                pass
        self._send_add(new, key, self.specs[key], state)

    def __len__(self) -> int:
        return len(self.books.members)

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Member ``key``'s state, fetched from its worker (see ``Population.snapshot``)."""
        from shoal._errors import TrialFailed

        w = self.books.members[key].worker
        try:
            self.conns[w].send(("snapshot", key))
            status, value = self.conns[w].recv()
            value = _from_wire(value)
        except (EOFError, BrokenPipeError, OSError) as exc:
            raise TrialFailed(f"worker process {w} died before member {key!r} could be copied") from exc
        if status != "ok":
            raise TrialFailed(value)
        return value

    def run_epoch(self) -> tuple[dict, dict]:
        self._rebalance()  # after the caller's removals and additions since the last epoch
        busy = sorted({p.worker for p in self.books.members.values()})
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
                for key in self.books.lost(w):  # and no new members for a dead worker
                    failed[key] = reason
                    self.specs.pop(key, None)
                continue
            records.update(r)
            failed.update(f)
            self.last_peak_bytes += peak
        self.books.measured(records)
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
