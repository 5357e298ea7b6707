"""Long-running scheduled reprocessing with Prefect's ``Runner`` (no work pool needed).

Two deployments: ``ttsprep-run/scheduled`` on a cron or interval schedule, and
``process-new-data/new-data`` polling the dataset roots for new or changed files. For work pools and
workers use ``prefect.yaml`` at the repository root instead (``prefect deploy --all``).

Overlaps build no backlog: every run is started when it comes due, and one that finds the output directory
locked by a run still going ends at once, in a Completed state named Skipped, logged "skipped: previous run
still running" (``flows._lock_or_skip``; costs a short process, ~2 s of CPU). The lock, unlike a deployment
concurrency limit ("cancel new"), also covers the two deployments against each other and a ``ttsprep run`` on
the same output. (The runner's ``limit=1`` used before queued due runs instead: they went Late, then ran
one after the other.)

SIGINT and SIGTERM stop it cleanly, exit status 0, so that nothing piles up on the server while nobody serves
the deployments: they are paused (which deletes their future scheduled runs) and their runs not started (Late,
Pending) are cancelled, before the runner stops (a run it was about to start then finds itself cancelled);
the runner cancels the runs in progress; a last pass cancels any run it left unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.logging import get_logger
from prefect.runner import Runner
from prefect.settings import get_current_settings
from prefect.states import Cancelled

from ttsprep.pipelines.flows import process_new_data, ttsprep_run

logger = get_logger("ttsprep.serve")


class _Runner(Runner):
    """Prefect's runner with every due run started at once (no ``limit``) and only once it is due (no
    prefetch: a run started early would find the previous one still going), and a SIGTERM handler that only
    asks ``serve`` to stop. Prefect's own handler calls the synchronous ``stop()`` inside the event loop, which
    there just creates the ``astop()`` coroutine ("coroutine 'Runner.astop' was never awaited"), then exits
    before the deployments are paused."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=None, prefetch_seconds=0, pause_on_shutdown=False)  # ``_withdraw`` pauses them
        self.stop_requested = asyncio.Event()
        self._signal_loop = loop

    def handle_sigterm(self, *_) -> None:  # for SIGINT too (``_serve``)
        self._signal_loop.call_soon_threadsafe(self.stop_requested.set)


def serve_pipeline(config_path: str, out_dir: str, *, cron: str | None, interval_s: int | None,
                   watch_interval_s: int | None, workers: int | None) -> None:
    """Serve the deployments until SIGINT or SIGTERM; returns once they are paused and their runs cancelled."""
    parameters = {"config_path": config_path, "out_dir": out_dir, "workers": workers}
    deployments = [ttsprep_run.to_deployment(name="scheduled", cron=cron, interval=interval_s,
                                             parameters=parameters, tags=["ttsprep"])]
    if watch_interval_s:
        deployments.append(process_new_data.to_deployment(name="new-data", interval=watch_interval_s,
                                                          parameters=parameters, tags=["ttsprep"]))
    asyncio.run(_serve(deployments))


async def _serve(deployments: list) -> None:
    runner = _Runner(asyncio.get_running_loop())
    for signum in (signal.SIGINT, signal.SIGTERM):  # runner.start() installs it again for SIGTERM
        signal.signal(signum, runner.handle_sigterm)
    deployment_ids = [await runner.aadd_deployment(deployment) for deployment in deployments]
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    ui_url = get_current_settings().ui_url
    print(f"ttsprep serve: serving {names}" + (f"; UI: {ui_url}/deployments" if ui_url else "") +
          "; stop with Ctrl-C or SIGTERM", flush=True)

    serving = asyncio.create_task(runner.start())
    stop = asyncio.create_task(runner.stop_requested.wait())
    await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if serving.done():
        return serving.result()  # the runner ended without a signal: raise its error
    logger.info("stopping: pausing %s and cancelling their runs not started", names)
    not_started = await _withdraw(deployment_ids, pause=True, states=[StateType.SCHEDULED, StateType.PENDING])
    if runner.started:
        await runner.astop()  # stops polling, cancels the runs in progress and waits for their processes
    else:
        serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    # Prefect's runner may leave a run behind: one whose start was under way at the stop, killed as it exits.
    left = await _withdraw(deployment_ids, states=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING])
    logger.info("stopped: deployments paused; cancelled %d runs not started and %d left unfinished by the runner",
                not_started, left)


async def _withdraw(deployment_ids: list[UUID], *, pause: bool = False, states: list[StateType]) -> int:
    """Pause the deployments if ``pause``, and cancel their runs in ``states``; returns how many."""
    async with get_client() as client:
        for deployment_id in deployment_ids if pause else []:
            await client.pause_deployment(deployment_id)
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))))
        for run in runs:
            await client.set_flow_run_state(run.id, Cancelled(message="ttsprep serve stopped"), force=True)
    return len(runs)
