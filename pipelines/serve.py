"""Long-running scheduled reprocessing with ``prefect.serve`` (no work pool needed).

Two deployments: ``ttsprep-run/scheduled`` on a cron or interval schedule, and
``process-new-data/new-data`` polling the dataset roots for new or changed files. For work pools and
workers use ``prefect.yaml`` at the repository root instead (``prefect deploy --all``). Runs of a served
process never overlap (``limit=1``), and every run holds the output directory's lock.
"""

from __future__ import annotations

from prefect import serve

from pipelines.flows import process_new_data, ttsprep_run


def serve_pipeline(config_path: str, out_dir: str, *, cron: str | None, interval_s: int | None,
                   watch_interval_s: int | None, workers: int | None) -> None:
    parameters = {"config_path": config_path, "out_dir": out_dir, "workers": workers}
    deployments = [ttsprep_run.to_deployment(name="scheduled", cron=cron, interval=interval_s,
                                             parameters=parameters, tags=["ttsprep"])]
    if watch_interval_s:
        deployments.append(process_new_data.to_deployment(name="new-data", interval=watch_interval_s,
                                                          parameters=parameters, tags=["ttsprep"]))
    serve(*deployments, limit=1)  # one run at a time: a run that comes due meanwhile waits for it
