"""Where members train when several workers run their epochs in lockstep (``ProcessPool``, ``RayPool``).

An epoch ends when the slowest worker's does, so members are placed by their time, not their size:
each member goes to the worker where the epoch would end soonest, counting the per-step work of a
new population where the worker has none for its batch size (a batch size stays in one population
until splitting it pays). A member's time is estimated (``_packer.member_seconds``) until its first
epoch, then measured; the estimates of members still unmeasured are rescaled by how the measured
times compare with theirs. While the workers' epochs differ by more than ``REBALANCE_GAP``,
``move()`` names a member whose move from the slowest worker to the fastest narrows the gap: the
pool moves it with its state (weights, optimizer moments, epoch), so it computes what it would have.

The balancer only keeps the books; the pools send the members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

__all__ = ["MAX_MOVES", "REBALANCE_GAP", "Balancer", "Booked", "Placed"]

REBALANCE_GAP = 0.1  # move members while the workers' epochs differ by more than this share
MAX_MOVES = 4  # members moved before one epoch, at most


@dataclass
class Placed:
    """One member's place and its share of that worker's epoch."""

    worker: int
    cost: float  # seconds an epoch: estimated until its first epoch, then measured
    group: Hashable  # the population it joins on that worker (None: spread by count)
    opening: float  # seconds its population costs of its own, counted while the member is estimated
    config: Mapping[str, Any]
    fold: int
    estimated: bool


class Balancer:
    """The books of a lockstep pool: each worker's epoch in seconds and where each member is.

    Args:
        family, input_shape, n_outputs: what the members are (for the time estimates).
        rows: training rows of each fold.
        workers: how many workers train in lockstep.
        place: ``place(key, config, fold)`` names a member's sticky group (a user's module): members
            of one group go to one worker and never move; None spreads and moves members by time.
    """

    def __init__(self, family: str, input_shape: Sequence[int], n_outputs: int, rows: Sequence[int],
                 workers: int, place: Callable[[Hashable, Mapping[str, Any], int], Hashable] | None = None) -> None:
        self.family, self.input_shape, self.n_outputs = family, tuple(input_shape), int(n_outputs)
        self.rows = [int(r) for r in rows]
        self.load = [0.0] * workers  # seconds of an epoch per worker; inf: a dead worker
        self.members: dict[Hashable, Placed] = {}
        self.groups: list[dict[Hashable, int]] = [{} for _ in range(workers)]  # group -> members, per worker
        self.scale = 1.0  # measured / estimated seconds, from the last measured epoch
        self.place = place
        self.sticky: dict[Hashable, int] = {}  # group -> its worker (place=...)
        self.moves = 0  # members moved to even the load

    @property
    def where(self) -> dict[Hashable, tuple[int, float]]:
        """member -> (worker, seconds an epoch)"""
        return {k: (p.worker, p.cost) for k, p in self.members.items()}

    def live(self) -> list[int]:
        return [w for w in range(len(self.load)) if not math.isinf(self.load[w])]

    def _rows(self, fold: int) -> int:
        return self.rows[fold] if 0 <= fold < len(self.rows) else self.rows[0]

    def _estimate(self, config: Mapping[str, Any], fold: int) -> tuple[float, Hashable, float]:
        from shoal.engine._packer import group_key, member_seconds, population_seconds

        rows = self._rows(fold)
        try:
            return (self.scale * member_seconds(config, self.family, self.input_shape, self.n_outputs, rows),
                    group_key(config, self.family), self.scale * population_seconds(config, rows))
        except Exception:  # a user's module, or a config its worker will reject: spread by count
            return 1.0, None, 0.0

    def add(self, key: Hashable, config: Mapping[str, Any], fold: int, among: Sequence[int] | None = None,
            worker: int | None = None, cost: float | None = None) -> int:
        """Book member ``key`` and return its worker: ``worker``, else where its epoch ends soonest
        (among ``among``, default the live workers). ``cost`` is a measured time (a member that moves
        or resumes); None estimates it."""
        est, group, opening = self._estimate(config, fold)
        estimated = cost is None
        if not estimated:
            opening = 0.0  # a measured time holds the member's share of its population
        candidates = [w for w in (among if among is not None else self.live()) if not math.isinf(self.load[w])]
        candidates = candidates or self.live() or [0]
        if worker is None and self.place is not None:  # a user's module: one group, one worker
            group, opening = self.place(key, config, fold), 0.0
            worker = self.sticky.get(group) if group is not None else None
            if worker is None or worker not in candidates:
                worker = min(candidates, key=lambda i: (self.load[i], i))
                if group is not None:
                    self.sticky[group] = worker
        elif worker is None:  # a new population on a worker costs its own steps there
            worker = min(candidates, key=lambda i: (self.load[i] + (0.0 if self.groups[i].get(group) else opening), i))
        if group is not None and not self.groups[worker].get(group):
            self.load[worker] += opening
        self.groups[worker][group] = self.groups[worker].get(group, 0) + 1
        cost = est if estimated else float(cost)
        self.load[worker] += cost
        self.members[key] = Placed(worker, cost, group, opening, dict(config), int(fold), estimated)
        return worker

    def remove(self, key: Hashable) -> Placed | None:
        p = self.members.pop(key, None)
        if p is None:
            return None
        if math.isinf(self.load[p.worker]):
            return p
        self.load[p.worker] = max(0.0, self.load[p.worker] - p.cost)
        n = self.groups[p.worker].get(p.group, 0) - 1
        if n <= 0:
            self.groups[p.worker].pop(p.group, None)
            self.load[p.worker] = max(0.0, self.load[p.worker] - p.opening)
        else:
            self.groups[p.worker][p.group] = n
        return p

    def lost(self, worker: int) -> dict[Hashable, Placed]:
        """Worker ``worker`` died: forget its members (returned) and give it no new ones until
        ``revive``."""
        gone = {k: p for k, p in self.members.items() if p.worker == worker}
        for k in gone:
            del self.members[k]
        self.groups[worker].clear()
        self.load[worker] = math.inf
        return gone

    def revive(self, worker: int) -> None:
        """A fresh worker took the dead one's place: empty."""
        self.groups[worker].clear()
        self.load[worker] = 0.0

    def measured(self, records: Mapping[Hashable, Any]) -> None:
        """Replace estimates by the last epoch's measured seconds (``record.seconds``); rescale the
        estimates of members not measured yet by how the newly measured ones compare with theirs."""
        est = got = 0.0
        for key, r in records.items():
            p = self.members.get(key)
            seconds = getattr(r, "seconds", None)
            if p is None or seconds is None or seconds <= 0:
                continue
            if p.estimated:
                est, got = est + p.cost, got + float(seconds)
                p.estimated = False
            p.cost, p.opening = float(seconds), 0.0  # the population's own steps are inside it now
        if est > 0:
            self.scale *= got / est
        for w in self.live():
            here = [p for p in self.members.values() if p.worker == w]
            timed = {p.group for p in here if not p.estimated}  # their populations' steps are inside
            openings = {p.group: p.opening for p in here if p.estimated and p.group not in timed}
            self.load[w] = sum(p.cost for p in here) + sum(openings.values())

    def move(self, movable: Callable[[Hashable], bool] = lambda key: True) -> tuple[Hashable, int] | None:
        """A member to move from the slowest worker to the fastest, and where to: None while the
        epochs differ by at most ``REBALANCE_GAP`` of the slowest's, or when no move narrows the gap
        by that share. The caller moves it (``remove``, then ``add`` with its measured cost)."""
        from shoal.engine._packer import population_seconds

        live = self.live()
        if self.place is not None or len(live) < 2:  # a user's module's groups stay whole
            return None
        hi = max(live, key=lambda w: (self.load[w], -w))
        lo = min(live, key=lambda w: (self.load[w], w))
        gap = self.load[hi] - self.load[lo]
        if gap <= REBALANCE_GAP * self.load[hi]:
            return None
        best = None
        for key, p in self.members.items():
            if p.worker != hi or not movable(key):
                continue
            try:
                extra = 0.0 if self.groups[lo].get(p.group) else \
                    self.scale * population_seconds(p.config, self._rows(p.fold))
            except Exception:  # noqa: BLE001 - not a built-in config: no population share to count
                extra = 0.0
            after = abs((self.load[hi] - p.cost) - (self.load[lo] + p.cost + extra))
            if after < gap * (1 - REBALANCE_GAP) and (best is None or after < best[0]):
                best = (after, key)
        return None if best is None else (best[1], lo)


class Booked:
    """A lockstep pool that keeps its ``books`` in a ``Balancer``: what it shows of them, and the
    moves that even its workers' epochs. The pool supplies ``snapshot(key)`` and
    ``_relocate(key, old, new, state)``, which tells the workers."""

    books: Balancer

    def _rebalance(self) -> None:
        """Move members from the slowest worker to the fastest while ``Balancer.move`` finds a move
        worth making (at most ``MAX_MOVES`` an epoch). A moved member goes on from a copy of its
        state (``snapshot``), so it computes what it would have."""
        for _ in range(MAX_MOVES):
            step = self.books.move()
            if step is None:
                return
            key, new = step
            try:
                state = self.snapshot(key)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - it stays where it is; its worker reports any failure
                return
            placed = self.books.remove(key)
            self.books.add(key, placed.config, placed.fold, worker=new, cost=placed.cost)
            self._relocate(key, placed.worker, new, state)  # type: ignore[attr-defined]
            self.books.moves += 1

    @property
    def load(self) -> list[float]:
        """Each worker's epoch in seconds (estimated until measured); inf: a dead worker."""
        return self.books.load

    @property
    def moves(self) -> int:
        """Members moved so far to even the workers' epochs."""
        return self.books.moves
