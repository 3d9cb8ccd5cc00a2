"""The books of lockstep pools (``_balance.Balancer``): placement by time, measured times, dead workers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from shoal.engine import normalize
from shoal.engine._balance import Balancer
from shoal.engine._packer import member_seconds

SLOW = normalize({"width": 128, "depth": 2, "batch_size": 16})
QUICK = normalize({"width": 32, "depth": 1, "batch_size": 256})


def _books(workers=2):
    return Balancer("mlp", (64,), 10, [1437], workers)


def test_measured_times_replace_estimates_and_rescale_the_rest():
    books = _books()
    for i in range(4):
        books.add(i, SLOW, 0)
    estimate = member_seconds(SLOW, "mlp", (64,), 10, 1437)
    assert books.members[0].cost == pytest.approx(estimate)
    # Members 0 and 1 ran an epoch and took twice their estimate: their times are now the measured
    # ones, and members 2 and 3 (not measured yet) are now expected to take twice theirs too.
    books.measured({0: SimpleNamespace(seconds=2 * estimate), 1: SimpleNamespace(seconds=2 * estimate)})
    assert books.scale == pytest.approx(2.0)
    assert [books.members[k].estimated for k in range(4)] == [False, False, True, True]
    books.add(4, SLOW, 0)
    assert books.members[4].cost == pytest.approx(2 * estimate)
    # Both workers hold a measured member of this batch size: their populations' own steps are
    # inside the measured times, so the load is the members' times alone.
    assert sum(books.load) == pytest.approx(sum(p.cost for p in books.members.values()))


def test_a_dead_worker_gets_no_members_until_revived():
    books = _books()
    books.add("a", SLOW, 0)
    books.add("b", SLOW, 0)
    assert {p.worker for p in books.members.values()} == {0, 1}
    gone = books.lost(1)
    assert list(gone) == [k for k in ("a", "b") if k in gone] and len(gone) == 1
    assert math.isinf(books.load[1])
    for k in "cde":
        assert books.add(k, QUICK, 0) == 0
    books.revive(1)
    assert books.load[1] == 0.0
    assert books.add("f", SLOW, 0) == 1


def test_moves_narrow_the_gap_and_stop_within_it():
    books = _books()
    for k in range(6):
        books.add(k, SLOW, 0, worker=0, cost=1.0)  # all on worker 0, measured at 1 s each
    moved = 0
    while (step := books.move()) is not None:
        key, to = step
        cost = books.remove(key).cost
        books.add(key, SLOW, 0, worker=to, cost=cost)
        moved += 1
    assert moved == 3 and books.load == [3.0, 3.0]
    books.add(6, SLOW, 0, worker=0, cost=1.0)  # 4 s against 3 s: a move would only swap the gap
    assert books.move() is None
