"""The send scheduler hypercorn is given: the part of priority.PriorityTree it uses."""

from __future__ import annotations

import pytest
from priority.priority import (
    DeadlockError,
    DuplicateStreamError,
    MissingStreamError,
    TooManyStreamsError,
)
from requestplane_http.stream_scheduler import RoundRobinScheduler


def _take(scheduler: RoundRobinScheduler, count: int) -> list[int]:
    return [next(scheduler) for _ in range(count)]


def test_streams_with_data_take_turns() -> None:
    scheduler = RoundRobinScheduler(10)
    for stream_id in (1, 3, 5):
        scheduler.insert_stream(stream_id)
    assert _take(scheduler, 7) == [1, 3, 5, 1, 3, 5, 1]


def test_blocked_and_removed_streams_are_skipped_until_unblocked() -> None:
    scheduler = RoundRobinScheduler(10)
    for stream_id in (1, 3, 5):
        scheduler.insert_stream(stream_id)
        scheduler.block(stream_id)  # as hypercorn does: no data yet
    with pytest.raises(DeadlockError):
        next(scheduler)
    scheduler.unblock(3)
    scheduler.unblock(3)  # twice: still one turn per round
    scheduler.unblock(5)
    assert _take(scheduler, 4) == [3, 5, 3, 5]
    scheduler.remove_stream(3)
    assert _take(scheduler, 2) == [5, 5]
    scheduler.block(5)
    with pytest.raises(DeadlockError):
        next(scheduler)


def test_the_priority_tree_errors_hypercorn_handles() -> None:
    scheduler = RoundRobinScheduler(2)
    scheduler.insert_stream(1)
    with pytest.raises(DuplicateStreamError):
        scheduler.insert_stream(1)
    scheduler.insert_stream(3, depends_on=1, weight=200, exclusive=True)
    with pytest.raises(TooManyStreamsError):
        scheduler.insert_stream(5)
    scheduler.reprioritize(3, depends_on=0, weight=1)
    for method in (scheduler.block, scheduler.unblock, scheduler.remove_stream):
        with pytest.raises(MissingStreamError):
            method(7)
    with pytest.raises(MissingStreamError):
        scheduler.reprioritize(7)
    scheduler.remove_stream(1)
    scheduler.insert_stream(5)  # room again
