"""The service manager finds a new task's parent by a dictionary lookup, not a scan.

py-libp2p 0.8.1's ``TrioManager.run_task`` looks up the caller's task by walking every task
of the service (``_find_parent_task``), and pubsub starts a task for every message a peer
sends: on a node with a few dozen tasks that walk was most of the cost of taking a gossip
message in (measurements: docs/design-notes.md, "Service tasks").
"""

from __future__ import annotations

import weakref
from typing import Any

from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.tools.anyio_service.trio_tasks import FunctionTask

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.patch import Patch

#: manager -> (trio task -> its FunctionTask, or None: a task that is none of its tasks)
_PARENTS: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, Any]] = (
    weakref.WeakKeyDictionary()
)
_NONE = object()


def find_parent_task_cached(self: Any, trio_task: Any) -> Any:
    """py-libp2p's ``_find_parent_task`` with its answer kept per trio task.

    Sound because the answer cannot change while ``trio_task`` runs: a FunctionTask binds
    its trio task when it starts (the caller is running, so it has) and never rebinds it;
    a trio task that is not a FunctionTask never becomes one. The one exception is the
    end of a FunctionTask (it leaves the tree once done): a cached task that is done is
    looked up again.
    """
    parents = _PARENTS.get(self)
    if parents is None:
        parents = _PARENTS[self] = weakref.WeakKeyDictionary()
    found = parents.get(trio_task)
    if found is _NONE:
        return None
    if found is not None and not found.is_done:
        return found
    for task in FunctionTask.iterate_tasks(*self._root_tasks):
        if task.has_trio_task and trio_task is task.trio_task:
            parents[trio_task] = task
            return task
    parents[trio_task] = _NONE
    return None


PATCHES: tuple[Patch, ...] = (
    Patch(
        "TrioManager._find_parent_task",
        Expect(TrioManager, "_find_parent_task", "self, trio_task"),
        find_parent_task_cached,
        requires=(
            Expect(FunctionTask, "iterate_tasks", "*tasks"),
            Expect(FunctionTask, "has_trio_task"),
            Expect(FunctionTask, "trio_task"),
            Expect(FunctionTask, "is_done"),
        ),
    ),
)
