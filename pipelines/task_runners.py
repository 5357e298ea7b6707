"""The shards flow's task runner on this machine: task runs on threads, shards in Prefect-free processes.

``ShardPoolTaskRunner`` is Prefect's ``ThreadPoolTaskRunner`` (one thread per worker: each ``process-shard``
task run, its states, retries and logs, lives in the flow's process) that also holds a ``shard_pool.ShardPool``
of as many worker processes while the flow runs: the task hands its shard to the pool (see ``shard_pool``).
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from ttsprep.pipelines import shard_pool


class ShardPoolTaskRunner(ThreadPoolTaskRunner):
    """Made right before the shards flow is called: its first worker starts then (``ShardPool.start``), so that
    spawning it and importing the shard stack overlap the subflow's creation; its copies share that pool."""

    def __init__(self, max_workers: int, pool: shard_pool.ShardPool | None = None):
        super().__init__(max_workers=max_workers)
        if pool is None:
            pool = shard_pool.ShardPool(max_workers)
            pool.start()
        self._pool = pool
        self._pool_context: Any = None

    def duplicate(self) -> ShardPoolTaskRunner:
        return type(self)(max_workers=self._max_workers, pool=self._pool)

    def __enter__(self) -> ShardPoolTaskRunner:
        self._pool_context = shard_pool.local_pool(self._max_workers, self._pool)
        self._pool_context.__enter__()
        try:
            return super().__enter__()
        except BaseException:
            self._pool_context.__exit__(None, None, None)
            raise

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            context, self._pool_context = self._pool_context, None
            if context is not None:
                context.__exit__(exc_type, exc_value, traceback)
