"""The service manager's parent lookup (repp2p.net.libp2p_compat.service): the cached
answer is the scan's answer, for tasks of the service, their children and other tasks."""

from __future__ import annotations

import trio
from libp2p.tools.anyio_service import Service, background_trio_service
from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.tools.anyio_service.trio_tasks import FunctionTask

from repp2p.net.libp2p_compat import install
from repp2p.net.libp2p_compat.service import find_parent_task_cached


def _scan(manager, trio_task):
    """py-libp2p 0.8.1's ``_find_parent_task``: every task of the service, walked."""
    for task in FunctionTask.iterate_tasks(*manager._root_tasks):
        if task.has_trio_task and trio_task is task.trio_task:
            return task
    return None


class _Tree(Service):
    """Root tasks that start children that start grandchildren; each records what the
    lookup answers for it, twice (the second from the cache), beside the scan's answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[object, object, object]] = []
        self.started = 0

    async def _node(self, depth: int) -> None:
        me = trio.lowlevel.current_task()
        first = find_parent_task_cached(self.manager, me)
        again = find_parent_task_cached(self.manager, me)
        self.answers.append((first, again, _scan(self.manager, me)))
        if depth < 2:
            for _ in range(3):
                self.manager.run_task(self._node, depth + 1)
                self.started += 1
        await trio.sleep_forever()

    async def run(self) -> None:
        for _ in range(4):
            self.manager.run_task(self._node, 0)
            self.started += 1
        await trio.sleep_forever()


async def test_the_cached_parent_is_the_scanned_parent():
    install()
    assert TrioManager._find_parent_task.__wrapped__ is find_parent_task_cached
    tree = _Tree()
    async with background_trio_service(tree) as manager:
        with trio.fail_after(10):
            while len(tree.answers) < tree.started or tree.started < 4 + 12 + 36:
                await trio.sleep(0.01)
        assert len(tree.answers) == 52
        for first, again, scanned in tree.answers:
            assert first is scanned and again is scanned
            assert isinstance(scanned, FunctionTask)  # each ran as a task of the service
        # A trio task that is none of the service's tasks has no parent, cached or not.
        me = trio.lowlevel.current_task()
        assert find_parent_task_cached(manager, me) is None
        assert find_parent_task_cached(manager, me) is None
        # Children were filed under their parents: the tree holds all 52 tasks.
        assert sum(1 for _ in FunctionTask.iterate_tasks(*manager._root_tasks)) >= 52
        manager.cancel()


async def test_a_task_that_is_done_is_looked_up_again():
    """A cached FunctionTask that finished left the tree: the lookup scans again (the
    scan's answer, None), instead of filing new tasks under a finished one."""
    install()
    seen: list[object] = []
    tree = _Tree()
    async with background_trio_service(tree) as manager:

        async def short() -> None:
            seen.append(trio.lowlevel.current_task())
            seen.append(find_parent_task_cached(manager, seen[0]))

        manager.run_task(short)
        with trio.fail_after(10):
            while len(seen) < 2 or not seen[1].is_done:
                await trio.sleep(0.01)
        assert isinstance(seen[1], FunctionTask)
        assert find_parent_task_cached(manager, seen[0]) is None
        assert _scan(manager, seen[0]) is None
        manager.cancel()
