"""The ``ttsprep`` command line.

    ttsprep run --config datasets.yaml --out out/ [--dataset NAME ...] [--stages ingest shards finalize]
                [--workers N] [--dask-address tcp://host:8786]
    ttsprep demo [--out demo/]            # synthesise a small corpus with espeak-ng and run the pipeline on it
    ttsprep validate --config datasets.yaml
    ttsprep serve --config datasets.yaml --out out/ --cron '0 3 * * *' [--watch-interval 600]
    ttsprep train-aligner --config datasets.yaml --out out/ --steps N [--dataset NAME ...] [--batch-size B]
                          [--device auto|cpu|cuda]   # train the Tacotron 2 aligner, then add its durations
    ttsprep extract-durations --config datasets.yaml --out out/ [--checkpoint PATH] [--dataset NAME ...]

Exit status: 0 when the run finished (rejected utterances are in the ledger, not errors); 2 when it cannot
proceed (invalid configuration, output directory locked); 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.prefect_api import PrefectApi
from stages.errors import ConfigError


def _run(config: Path, out: Path, datasets: list[str] | None, stages: list[str] | None,
         workers: int | None, dask_address: str | None = None) -> dict:
    from stages.config import load_project

    load_project(config)  # validate before starting Prefect: a bad config costs no server start
    from pipelines.lock import output_lock

    with output_lock(out):
        api = PrefectApi()  # the embedded server starts now, while the pipeline's modules are imported
        from pipelines import progress
        from pipelines.flows import ttsprep_run

        progress.enable(sys.stderr.isatty() or os.environ.get("TTSPREP_PROGRESS") == "1")
        with api as api_url:
            if dask_address and (warning := unreachable_api_warning(api_url, dask_address)):
                print(f"ttsprep: warning: {warning}", file=sys.stderr)
            return ttsprep_run(str(config.resolve()), str(out.resolve()), datasets, stages, workers, dask_address)


def unreachable_api_warning(api_url: str, dask_address: str) -> str | None:
    """What to tell the user when the Prefect API is on this host's loopback and the Dask scheduler is not:
    the scheduler's workers on other hosts record their task runs through that API, and cannot reach it."""
    api_host, scheduler_host = urlsplit(api_url).hostname, urlsplit(dask_address).hostname
    if not _is_loopback(api_host) or _is_loopback(scheduler_host):
        return None
    return (f"the Prefect API is {api_url}, which Dask workers on other hosts than this one cannot reach; "
            f"set PREFECT_API_URL to a Prefect server they can reach (README: Scheduling, a Prefect server and Dask)")


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _align(args: argparse.Namespace) -> dict:
    """``train-aligner`` (train, then extract) or ``extract-durations``, holding the output's lock."""
    from pipelines import progress
    from pipelines.aligner_flow import aligner_datasets, extract_durations_flow, train_aligner
    from pipelines.lock import output_lock
    from train.tacotron2_trainer import resolve_device

    progress.enable(sys.stderr.isatty() or os.environ.get("TTSPREP_PROGRESS") == "1")
    config, out = str(args.config.resolve()), str(args.out.resolve())
    aligner_datasets(config, out, args.dataset)  # refuse before starting Prefect
    resolve_device(args.device)
    with output_lock(args.out), PrefectApi():
        if args.command == "train-aligner":
            return train_aligner(config, out, args.dataset, args.steps, args.batch_size, args.device)
        return extract_durations_flow(config, out, args.dataset, args.checkpoint and str(args.checkpoint.resolve()),
                                      args.device, args.batch_size)


def _print_counts(results: dict, out: Path) -> None:
    for name, counts in results.items():
        print(f"{name}: {json.dumps(counts)}")
    print(f"output: {out.resolve()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ttsprep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="process the corpora declared in a datasets.yaml")
    run.add_argument("--config", type=Path, default=Path("datasets.yaml"))
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    run.add_argument("--stages", nargs="+", choices=["ingest", "shards", "finalize"])
    run.add_argument("--workers", type=int, help="worker processes (default: every core)")
    run.add_argument("--dask-address", help="run the shard tasks on this Dask scheduler (tcp://host:port)")

    demo = commands.add_parser("demo", help="synthesise a small corpus with espeak-ng and process it")
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument("--workers", type=int)

    serve = commands.add_parser("serve", help="run the pipeline on a schedule (and on new data) until stopped")
    serve.add_argument("--config", type=Path, default=Path("datasets.yaml"))
    serve.add_argument("--out", type=Path, required=True)
    when = serve.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron schedule, e.g. '0 3 * * *'")
    when.add_argument("--interval", type=int, help="seconds between runs")
    serve.add_argument("--watch-interval", type=int, help="also poll for new/changed files every N seconds")
    serve.add_argument("--workers", type=int)

    validate = commands.add_parser("validate", help="check a datasets.yaml without processing anything")
    validate.add_argument("--config", type=Path, default=Path("datasets.yaml"))

    for name, help_text in [("train-aligner", "train the Tacotron 2 aligner on the shards, then add its durations"),
                             ("extract-durations", "add the durations of a trained Tacotron 2 aligner to the shards")]:
        aligner = commands.add_parser(name, help=help_text)
        aligner.add_argument("--config", type=Path, default=Path("datasets.yaml"))
        aligner.add_argument("--out", type=Path, required=True)
        aligner.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: every "
                                                                "dataset with align.method tacotron2)")
        aligner.add_argument("--batch-size", type=int, default=16)
        aligner.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                             help="auto: CUDA with mixed precision when present, else the CPU")
        if name == "train-aligner":
            aligner.add_argument("--steps", type=int, required=True, help="batches in total (a re-run resumes)")
        else:
            aligner.add_argument("--checkpoint", type=Path, help="default: the latest in OUT/tacotron2-aligner")

    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            from stages.config import load_project

            project = load_project(args.config)
            print(f"{args.config}: {len(project.datasets)} datasets OK: {', '.join(d.name for d in project.datasets)}")
        elif args.command == "run":
            _print_counts(_run(args.config, args.out, args.dataset, args.stages, args.workers, args.dask_address),
                          args.out)
        elif args.command in ("train-aligner", "extract-durations"):
            _print_counts(_align(args), args.out)
        elif args.command == "serve":
            from stages.config import load_project

            load_project(args.config)
            from pipelines.serve import serve_pipeline

            with PrefectApi(long_lived=True):
                serve_pipeline(str(args.config.resolve()), str(args.out.resolve()), cron=args.cron,
                               interval_s=args.interval, watch_interval_s=args.watch_interval,
                               workers=args.workers)
        elif args.command == "demo":
            from stages.demo_corpus import write_demo_config, write_demo_corpus

            corpus = write_demo_corpus(args.out / "corpus")
            config = write_demo_config(corpus)
            print(f"demo corpus: {corpus}")
            _print_counts(_run(config, args.out / "output", None, None, args.workers), args.out / "output")
    except ConfigError as error:
        print(f"ttsprep: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
