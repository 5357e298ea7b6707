"""Imported by the warm runner's fork server (``warm_runner``) before it forks shard workers: importing this
module loads the shard stack with one BLAS/OpenMP thread and runs its compiled kernels once
(``shard_pool.preload``), so every worker forked from that server starts with them ready."""

import gc

from ttsprep.pipelines.shard_pool import preload, single_threaded_numerics

single_threaded_numerics()
preload()
gc.collect()
gc.freeze()  # as ``warm_runner.freeze_heap``: the workers forked from here do not scan or copy the stack's objects
