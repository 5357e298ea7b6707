"""The ``ttsprep`` command line.

    ttsprep run --config datasets.yaml --out out/ [--dataset NAME ...] [--stages ingest shards finalize]
                [--workers N] [--dask-address tcp://host:8786]
    ttsprep demo [--out demo/]            # synthesise a small corpus with espeak-ng and run the pipeline on it
    ttsprep validate --config datasets.yaml
    ttsprep serve --config datasets.yaml --out out/ --cron '0 3 * * *' [--watch-interval 600]
    ttsprep train-aligner --config datasets.yaml --out out/ --steps N [--dataset NAME ...] [--batch-size B]
                          [--device auto|cpu|cuda]   # train the Tacotron 2 aligner, then add its durations
    ttsprep extract-durations --config datasets.yaml --out out/ [--checkpoint PATH] [--dataset NAME ...]
    ttsprep server status|stop            # the local Prefect server (and UI) that run starts and later runs reuse

Exit status: 0 when the run finished (rejected utterances are in the ledger, not errors); 2 when it cannot
proceed (invalid configuration or layout, output directory locked); 1 when the run failed (a self-check or an
unexpected error). Errors print as one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ttsprep.pipelines.prefect_api import PrefectApi
from ttsprep.stages.core.errors import ConfigError


def _run(config: Path, out: Path, datasets: list[str] | None, stages: list[str] | None,
         workers: int | None, dask_address: str | None = None) -> dict:
    _validate(config, datasets)  # before starting Prefect: a bad config or dataset name costs no server start
    from ttsprep.pipelines.lock import output_lock

    with output_lock(out):
        api = PrefectApi()  # a server to start starts now, while the pipeline's modules are imported
        from ttsprep.pipelines import progress
        from ttsprep.pipelines.flows import ttsprep_run

        progress.enable(sys.stderr.isatty() or os.environ.get("TTSPREP_PROGRESS") == "1")
        with api as api_url:
            if dask_address and (warning := unreachable_api_warning(api_url, dask_address)):
                print(f"ttsprep: warning: {warning}", file=sys.stderr)
            return ttsprep_run(str(config.resolve()), str(out.resolve()), datasets, stages, workers, dask_address)


def _validate(config: Path, datasets: list[str] | None = None):
    """The validated project, after checking the chosen ``datasets`` exist and this machine has the tools
    their settings need."""
    from ttsprep.pipelines.preflight import check_project
    from ttsprep.stages.step1_ingest.project import load_project

    project = load_project(config)
    check_project(project, project.select(datasets))
    return project


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
    from ttsprep.pipelines import progress
    from ttsprep.pipelines.aligner_flow import aligner_datasets, extract_durations_flow, train_aligner
    from ttsprep.pipelines.lock import output_lock
    from ttsprep.train.tacotron2_trainer import resolve_device

    progress.enable(sys.stderr.isatty() or os.environ.get("TTSPREP_PROGRESS") == "1")
    config, out = str(args.config.resolve()), str(args.out.resolve())
    aligner_datasets(config, out, args.dataset)  # refuse before starting Prefect
    resolve_device(args.device)
    with output_lock(args.out), PrefectApi():
        if args.command == "train-aligner":
            return train_aligner(config, out, args.dataset, args.steps, args.batch_size, args.device)
        return extract_durations_flow(config, out, args.dataset, args.checkpoint and str(args.checkpoint.resolve()),
                                      args.device, args.batch_size)


def _server(action: str) -> int:
    """``ttsprep server status`` (exit status 0 when the local server runs, 3 when not) or ``stop`` (the warm
    runners too, once their commands have ended)."""
    from ttsprep.pipelines.prefect_api import alive, prefect_home, read_local_state, server_answers, stop_local
    from ttsprep.pipelines.warm_client import read_runners, stop_runners

    home = prefect_home()
    if action == "stop":
        for runner in stop_runners(home):
            pid = runner["pid"]
            print(f"asked the warm runner (pid {pid}) to stop: it ends when its commands have" if alive(runner)
                  else f"stopped the warm runner (pid {pid}, working directory {runner['cwd']})")
        state = stop_local(home)
        print(f"stopped the local Prefect server (pid {state['pid']}, {state['ui_url']})" if state
              else f"no local Prefect server running for PREFECT_HOME {home}")
        return 0
    for runner in read_runners(home):
        print(f"warm runner: pid {runner['pid']}, started {runner['started']}, working directory {runner['cwd']}")
    state = read_local_state(home)
    if state is None:
        print(f"no local Prefect server running for PREFECT_HOME {home} (the next `ttsprep run` starts one)")
        return 3
    version = server_answers(state["url"], timeout_s=5.0)
    print(f"local Prefect server: pid {state['pid']}, Prefect {state['prefect_version']}, started {state['started']}\n"
          f"  UI:   {state['ui_url']}\n  API:  {state['url']} "
          f"({'answering' if version else 'not answering'})\n  home: {state['prefect_home']}\n  log:  {state['log']}")
    return 0


def _print_counts(results: dict, out: Path) -> None:
    for name, counts in results.items():
        print(f"{name}: {json.dumps(counts)}")
    print(f"output: {out.resolve()}")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status. Run as the ``ttsprep`` command itself (``argv`` None and
    ``sys.argv[0]`` the script or this module), the process ends here once the exit handlers ran
    (``_exit_now``)."""
    status = _main(argv)
    if argv is None and Path(sys.argv[0]).name in ("ttsprep", "cli.py"):
        _exit_now(status)
    return status


def run_exit_handlers() -> None:
    """What the interpreter does at exit before its module teardown: join the non-daemon threads, run the
    ``atexit`` handlers in its order (Prefect sends its last logs and events, then an embedded server stops),
    flush the standard streams."""
    import atexit
    import threading

    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads, as at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit_now(status: int) -> None:
    """End the process as the interpreter would, without its module teardown and garbage collection
    (0.65-0.9 CPU-s and ~0.8 s of wall after a run)."""
    run_exit_handlers()
    os._exit(status)


DESCRIPTION = """ttsprep turns raw speech corpora (LJSpeech, VCTK, LibriTTS, Common Voice, ... declared in a
datasets.yaml) into training-ready data for TTS and voice conversion: conditioned audio, log-mel, F0 and energy
on one frame grid, phonemes and durations, in Parquet shards with an index, statistics, a rejects ledger and an
HTML report per dataset, orchestrated by Prefect."""
EPILOG = """exit status: 0 the run finished (rejected utterances are in the ledger, not errors); 2 it cannot
proceed (invalid configuration or layout, output directory locked); 1 the run failed (a self-check or an
unexpected error). Errors print as one line; --debug shows the traceback. See README.md."""


class _HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help text, followed by its default where it has one the text does not already name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    """The ``ttsprep`` argument parser: every option with its help text and default."""
    formatter = _HelpWithDefaults
    parser = argparse.ArgumentParser(prog="ttsprep", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, default=Path("datasets.yaml"), help="the datasets.yaml to read")

    def workers_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--workers", type=int, help="shard worker processes (default: every core)")

    run = command("run", "process the corpora declared in a datasets.yaml")
    config_option(run)
    run.add_argument("--out", type=Path, required=True, help="the output directory (one folder per dataset)")
    run.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: all)")
    run.add_argument("--stages", nargs="+", choices=["ingest", "shards", "finalize"],
                     help="only these stages (default: all three)")
    workers_option(run)
    run.add_argument("--dask-address", help="run the shard tasks on this Dask scheduler (tcp://host:port) "
                                            "instead of local processes")

    demo = command("demo", "synthesise a small multi-language corpus with espeak-ng and process it")
    demo.add_argument("--out", type=Path, default=Path("demo"), help="where the corpus and its output go")
    workers_option(demo)

    serve = command("serve", "run the pipeline on a schedule (and on new data) until Ctrl-C or SIGTERM, which "
                             "pause its deployments and cancel their pending runs")
    config_option(serve)
    serve.add_argument("--out", type=Path, required=True, help="the output directory (one folder per dataset)")
    when = serve.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron schedule, e.g. '0 3 * * *' (UTC)")
    when.add_argument("--interval", type=int, help="seconds between runs")
    serve.add_argument("--watch-interval", type=int, help="also poll for new or changed files every N seconds "
                                                          "(default: no polling)")
    workers_option(serve)

    validate = command("validate", "check a datasets.yaml, the tools, languages and corpus layouts it needs, "
                                   "without processing anything")
    config_option(validate)
    server = command("server", "the local Prefect server (API and UI) that run starts and later runs reuse")
    server.add_argument("action", choices=["status", "stop"], help="show it, or stop it")

    for name, help_text in [("train-aligner", "train the Tacotron 2 aligner on the shards, then add its durations"),
                             ("extract-durations", "add the durations of a trained Tacotron 2 aligner to the shards")]:
        aligner = command(name, help_text)
        config_option(aligner)
        aligner.add_argument("--out", type=Path, required=True, help="the output directory a run wrote")
        aligner.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: every "
                                                                "dataset with align.method tacotron2)")
        aligner.add_argument("--batch-size", type=int, default=16, help="utterances per batch")
        aligner.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                             help="auto: CUDA with mixed precision when present, else the CPU")
        if name == "train-aligner":
            aligner.add_argument("--steps", type=int, required=True, help="batches in total (a re-run resumes)")
        else:
            aligner.add_argument("--checkpoint", type=Path, help="the checkpoint to use (default: the latest in "
                                                                 "OUT/tacotron2-aligner)")
    return parser


#: The commands a warm runner runs (``warm_client``), when one is enabled.
WARM_COMMANDS = ("run", "demo")


def parse(argv: list[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def _main(argv: list[str] | None) -> int:
    args = parse(argv)
    from ttsprep.pipelines import warm_client

    if args.command in WARM_COMMANDS and warm_client.enabled():
        try:
            return warm_client.run_warm(sys.argv[1:] if argv is None else argv)
        except warm_client.RunnerUnavailable as reason:
            print(f"ttsprep: warning: {reason}; running the command in this process", file=sys.stderr)
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run the parsed command in this process; its exit status."""
    try:
        if args.command == "server":
            return _server(args.action)
        if args.command == "validate":
            project = _validate(args.config)
            count = len(project.datasets)
            print(f"{args.config}: {count} dataset{'s' if count != 1 else ''} OK (settings, tools, languages and "
                  f"layouts): {', '.join(d.name for d in project.datasets)}")
        elif args.command == "run":
            _print_counts(_run(args.config, args.out, args.dataset, args.stages, args.workers, args.dask_address),
                          args.out)
        elif args.command in ("train-aligner", "extract-durations"):
            _print_counts(_align(args), args.out)
        elif args.command == "serve":
            _validate(args.config)
            from ttsprep.pipelines.serve import serve_pipeline

            with PrefectApi(long_lived=True):
                serve_pipeline(str(args.config.resolve()), str(args.out.resolve()), cron=args.cron,
                               interval_s=args.interval, watch_interval_s=args.watch_interval,
                               workers=args.workers)
        elif args.command == "demo":
            from ttsprep.stages.step1_ingest.demo_corpus import write_demo_config, write_demo_corpus

            corpus = write_demo_corpus(args.out / "corpus")
            config = write_demo_config(corpus)
            print(f"demo corpus: {corpus}")
            _print_counts(_run(config, args.out / "output", None, None, args.workers), args.out / "output")
    except ConfigError as error:
        if args.debug:
            raise
        print(f"ttsprep: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - one line for the user; the traceback with --debug
        if args.debug:
            raise
        print(f"ttsprep: error: {type(error).__name__}: {error} (the traceback: ttsprep --debug ...)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
