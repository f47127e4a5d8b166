"""A client that closed cleanly does not raise py-libp2p's shutdown race
(repp2p.client.only_shutdown_races): only that race is ignored, nothing else."""

from __future__ import annotations

from libp2p.tools.anyio_service.exceptions import LifecycleError

from repp2p.client import TaskError, only_shutdown_races

RACE = RuntimeError("Nursery is closed to new arrivals")


def test_the_race_alone_nested_or_not_is_ignored():
    assert only_shutdown_races(BaseExceptionGroup("n", [RACE]))
    assert only_shutdown_races(BaseExceptionGroup("n", [BaseExceptionGroup("m", [RACE])]))
    assert only_shutdown_races(
        BaseExceptionGroup("n", [RACE, LifecycleError("Cannot schedule task after stop")])
    )


def test_any_other_error_is_raised():
    assert not only_shutdown_races(BaseExceptionGroup("n", [RuntimeError("something else")]))
    assert not only_shutdown_races(BaseExceptionGroup("n", [RACE, TaskError("no_result")]))
    assert not only_shutdown_races(
        BaseExceptionGroup("n", [BaseExceptionGroup("m", [RACE]), KeyboardInterrupt()])
    )
