"""Whole-run benchmark (issue #17): ``ttsprep run`` as the user runs it, against Lhotse and an FS2-style script.

Every side runs as a whole process tree (a child of this script), one after the other, in interleaved
rounds (side 1, side 2, ... then again), so that other tenants' load hits every side alike. Per run:
CPU seconds of the tree (``RUSAGE_CHILDREN``: user + system of every waited-for descendant; for ``ttsprep``
with the local server, plus what its warm runner spent meanwhile: the runner, the fork of it that ran the
command and the shard workers its fork server forked, ``/proc/<pid>/stat`` with their waited-for children),
wall seconds, and for ``ttsprep`` with a reused local Prefect server the server's own CPU during the run (it is
not in the command's tree: ``/proc/<pid>/stat``). x realtime per core = input audio seconds / CPU seconds of the
tree, and of the tree plus that server CPU (the stricter figure: the server works for the run, and its idle services
add ~0.025 CPU-s per second). The corpus is generated: LJSpeech layout (``metadata.csv``, ``wavs/*.wav`` at 22.05
kHz PCM-16), one espeak-ng voice speaking 2-4 Harvard sentences per utterance with pauses, tape-speed change,
silences and a noise floor: ~9.8 s per utterance, 200 make ~32.5 min (cached in ``--scratch``; deterministic).

Sides (``--parts``):

* ``a``: a one-utterance ``ttsprep run`` (default settings) ``cold`` (no local Prefect server or warm runner
  running: the run starts both), ``warm`` (the server and runner the previous run left), and ``embedded``
  (``TTSPREP_SERVER=embedded``: a server started and stopped by the command, as the test suite runs it).
  Goal: warm <= 6 CPU-s and 6 s.
* ``b``: ``ttsprep run`` with pitch, denoising, text and alignment off vs Lhotse 1.33's end-to-end Shar
  export: ``prepare_ljspeech``, ``compute_and_store_features`` (80-bin Fbank, hop 256 at 22.05 kHz, lilcom
  chunky storage, ``num_jobs=1``), ``to_shar`` (audio as FLAC, the features). Skipped, with a message,
  where lhotse is not installed (``pip install -e '.[bench]'``). Goal: ttsprep >= 1.0x Lhotse.
* ``c``: ``ttsprep run`` with default settings but ``align.method: none`` vs an FS2-style script
  (``librosa.load``, STFT log-mel, pyworld DIO + StoneMask at the full rate, energy, one ``.npy`` per
  feature and utterance, as ming024/FastSpeech2's preprocessor). Goal: ttsprep >= 100x realtime per core
  and >= 3x the script.

Lhotse and the FS2 script run with one BLAS/OpenMP/torch thread (``OMP_NUM_THREADS=1``), as ttsprep's
shard workers do: the efficient set-up per CPU second, so the stricter comparison (``--reference-threads 0``:
the libraries' defaults; Lhotse then took 2.7x the CPU). Every side runs without ``PYTHONDONTWRITEBYTECODE``
(ttsprep's own modules compiled once, as installed packages are). The local server's
``PREFECT_HOME`` is a folder of ``--scratch``; ``ttsprep server stop`` runs at the end.

    python bench/bench_whole_run.py                       # 200 utterances, 3 rounds, parts a b c
    python bench/bench_whole_run.py --utterances 50 --rounds 1 --parts a
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from make_load_corpus import SENTENCES  # the same Harvard sentences (bench/ is the script's folder)

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE_RATE = 22050
HOP = 256
CORPUS_VERSION = 2
#: One espeak-ng voice (LJSpeech has one speaker): voice, words per minute, pitch 0-99.
VOICE = ("en-us+f3", 160, 60)
GOAL_CPU_S, GOAL_WALL_S, GOAL_VS_LHOTSE, GOAL_X_REALTIME, GOAL_VS_FS2 = 6.0, 6.0, 1.0, 100.0, 3.0
OFF = {"features": {"f0_method": "none"}, "audio": {"denoise": {"method": "none"}}, "text": {"enabled": False},
       "align": {"method": "none"}}
NO_ALIGN = {"align": {"method": "none"}}


# --- the corpus ---------------------------------------------------------------------------------------------

def write_corpus(root: Path, num_utterances: int, seed: int = 0) -> float:
    """LJSpeech-layout corpus of ``num_utterances`` under ``root`` (kept between calls when complete);
    returns its audio seconds."""
    import numpy as np
    import soundfile as sf
    import soxr

    marker = root / "corpus.json"
    wanted = {"version": CORPUS_VERSION, "seed": seed, "utterances": num_utterances}
    if marker.is_file() and {k: v for k, v in json.loads(marker.read_text()).items() if k in wanted} == wanted:
        return json.loads(marker.read_text())["audio_s"]
    shutil.rmtree(root, ignore_errors=True)
    (root / "wavs").mkdir(parents=True)
    clips = []
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "clip.wav"
        for sentence in SENTENCES:
            subprocess.run(["espeak-ng", "-v", VOICE[0], "-s", str(VOICE[1]), "-p", str(VOICE[2]), "-w", str(wav),
                            sentence], check=True, capture_output=True)
            samples, rate = sf.read(wav, dtype="float32")
            clips.append(soxr.resample(samples, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else samples)
    lines, total = [], 0
    for index in range(num_utterances):
        rng = np.random.default_rng([seed, index])
        chosen = rng.choice(len(SENTENCES), size=int(rng.choice([2, 3, 4], p=[0.15, 0.45, 0.4])), replace=False)
        pieces = []
        for position, s in enumerate(chosen):
            if position:
                pieces.append(np.zeros(int(rng.uniform(0.15, 0.6) * SAMPLE_RATE), np.float32))
            pieces.append(clips[s])
        speech = soxr.resample(np.concatenate(pieces), SAMPLE_RATE * rng.uniform(0.85, 1.15), SAMPLE_RATE)
        speech *= 10 ** (rng.uniform(-12, -1) / 20) / max(float(np.abs(speech).max()), 1e-9)
        lead, tail = (np.zeros(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE), np.float32) for _ in range(2))
        signal = np.concatenate([lead, speech, tail])
        noise = np.sqrt(np.mean(speech ** 2)) * 10 ** (-rng.uniform(30, 50) / 20)
        signal = np.clip(signal + rng.normal(0, noise, signal.size).astype(np.float32), -1, 1)
        utt_id = f"LJW{index // 1000:03d}-{index % 1000:04d}"
        sf.write(root / "wavs" / f"{utt_id}.wav", signal, SAMPLE_RATE, subtype="PCM_16")
        text = " ".join(SENTENCES[s] for s in chosen)
        lines.append(f"{utt_id}|{text}|{text}")
        total += signal.size
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    audio_s = total / SAMPLE_RATE
    marker.write_text(json.dumps({**wanted, "audio_s": audio_s}))
    return audio_s


def write_config(path: Path, corpus: Path, stages: dict) -> Path:
    path.write_text(json.dumps({"datasets": [{"name": "whole", "importer": "ljspeech", "root": str(corpus),
                                              "stages": stages}]}), encoding="utf-8")  # JSON is YAML
    return path


# --- the reference sides, run as children of this script (``python bench_whole_run.py _lhotse CORPUS OUT``) ---

def lhotse_export(corpus: Path, out: Path) -> None:
    """Lhotse 1.33 end to end: manifests, 80-bin Fbank (hop 256 at 22.05 kHz) in lilcom chunks, Shar export."""
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter
    from lhotse.recipes import prepare_ljspeech

    manifests = prepare_ljspeech(corpus, out / "manifests")
    cuts = CutSet.from_manifests(recordings=manifests["recordings"], supervisions=manifests["supervisions"])
    extractor = Fbank(FbankConfig(sampling_rate=SAMPLE_RATE, frame_shift=HOP / SAMPLE_RATE, num_filters=80))
    cuts = cuts.compute_and_store_features(extractor=extractor, storage_path=out / "feats", num_jobs=1,
                                           storage_type=LilcomChunkyWriter, progress_bar=False)
    (out / "shar").mkdir(parents=True, exist_ok=True)
    cuts.to_shar(out / "shar", fields={"recording": "flac", "features": "lilcom"}, shard_size=1000)


def fs2_script(corpus: Path, out: Path) -> None:
    """ming024/FastSpeech2's preprocessing of one utterance, per utterance: librosa load, pyworld DIO +
    StoneMask on the full-rate waveform, STFT magnitude -> log-mel (80 bins, 0-8 kHz) and energy (the frame's
    magnitude norm), each saved as its own ``.npy``."""
    import librosa
    import numpy as np
    import pyworld

    mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=1024, n_mels=80, fmin=0, fmax=8000)
    for name in ("mel", "pitch", "energy"):
        (out / name).mkdir(parents=True, exist_ok=True)
    for line in (corpus / "metadata.csv").read_text(encoding="utf-8").splitlines():
        utt_id = line.split("|")[0]
        wav, _ = librosa.load(corpus / "wavs" / f"{utt_id}.wav", sr=SAMPLE_RATE)
        wav64 = wav.astype(np.float64)
        f0, times = pyworld.dio(wav64, SAMPLE_RATE, frame_period=HOP / SAMPLE_RATE * 1000)
        f0 = pyworld.stonemask(wav64, f0, times, SAMPLE_RATE)
        magnitude = np.abs(librosa.stft(wav, n_fft=1024, hop_length=HOP, win_length=1024))
        mel = np.log(np.clip(mel_basis @ magnitude, 1e-5, None))
        energy = np.linalg.norm(magnitude, axis=0)
        np.save(out / "mel" / f"LJSpeech-mel-{utt_id}.npy", mel.T)
        np.save(out / "pitch" / f"LJSpeech-pitch-{utt_id}.npy", f0)
        np.save(out / "energy" / f"LJSpeech-energy-{utt_id}.npy", energy)


# --- measuring -----------------------------------------------------------------------------------------------

@dataclass
class Side:
    part: str
    name: str
    audio_s: float
    command: list[str]
    env: dict[str, str]
    out: Path
    before: list[list[str]] = field(default_factory=list)  # untimed commands run first (server stop)
    server_home: Path | None = None  # PREFECT_HOME of a local server whose CPU is read from /proc
    runs: list[dict] = field(default_factory=list)


def _cpu_s(pid: int, with_children: bool = False) -> float:
    """CPU seconds of process ``pid`` so far (``with_children``: plus its waited-for children's), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if with_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _server_cpu_s(home: Path | None) -> tuple[int | None, float]:
    """(pid, CPU seconds so far) of the local Prefect server recorded in ``home``, (None, 0) if none runs."""
    if home is None:
        return None, 0.0
    try:
        pid = json.loads((home / "ttsprep-server.json").read_text())["pid"]
        return pid, _cpu_s(pid)
    except (OSError, ValueError, KeyError):
        return None, 0.0


def _runner_cpu_s(home: Path | None) -> dict[int, float]:
    """CPU seconds so far of each warm runner recorded in ``home`` and of its fork server, each with its
    waited-for children: the commands' forks (the runner's) and the shard workers (the fork server's). Waits
    (up to 5 s) until the runner has reaped its commands' forks."""
    usage: dict[int, float] = {}
    for path in (home.glob("ttsprep-runner-*.json") if home else []):
        try:
            state = json.loads(path.read_text())
            runner, fork_server = state["pid"], state["fork_server_pid"]
            deadline = time.monotonic() + 5.0
            while _commands_of(runner) and time.monotonic() < deadline:
                time.sleep(0.05)
            usage[runner], usage[fork_server] = _cpu_s(runner, True), _cpu_s(fork_server, True)
        except (OSError, ValueError, KeyError):
            continue
    return usage


def _commands_of(runner: int) -> list[str]:
    """The runner's children that are forks of it, not reaped yet (its commands: same command line, or none once
    they have exited; not its fork server and resource tracker)."""
    command_line = Path(f"/proc/{runner}/cmdline").read_bytes()
    children = Path(f"/proc/{runner}/task/{runner}/children").read_text().split()
    forks = []
    for child in children:
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes() in (command_line, b""):
                forks.append(child)
        except OSError:
            continue
    return forks


def run_once(side: Side) -> dict:
    shutil.rmtree(side.out, ignore_errors=True)
    for command in side.before:
        subprocess.run(command, env=side.env, cwd=REPO_ROOT, capture_output=True, check=False, timeout=120)
    server_before, runner_before = _server_cpu_s(side.server_home), _runner_cpu_s(side.server_home)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.monotonic()
    done = subprocess.run(side.command, env=side.env, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{side.name} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    server_after, runner_after = _server_cpu_s(side.server_home), _runner_cpu_s(side.server_home)
    server_s = (server_after[1] - (server_before[1] if server_before[0] == server_after[0] else 0.0)
                if server_after[0] else 0.0)
    runner_s = sum(cpu - runner_before.get(pid, 0.0) for pid, cpu in runner_after.items())
    command_s = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    run = {"cpu_s": command_s + runner_s, "runner_cpu_s": runner_s, "wall_s": wall, "server_cpu_s": server_s,
           "load": load}
    side.runs.append(run)
    shutil.rmtree(side.out, ignore_errors=True)
    return run


def _median(side: Side, key: str) -> float:
    return statistics.median(run[key] for run in side.runs)


def _x(side: Side, with_server: bool = False) -> float:
    """Audio seconds per CPU second of the command's tree (``with_server``: plus the local server's CPU during
    the run, which a reused server spends outside the tree: recording the run's flow and task runs, its logs
    and events, and its own background services)."""
    return side.audio_s / (_median(side, "cpu_s") + (_median(side, "server_cpu_s") if with_server else 0.0))


def report(sides: list[Side]) -> str:
    lines = ["| part | side | audio s | CPU-s of the tree (median; all) | of which the warm runner's | wall s "
             "(median; all) | + local server CPU-s | x realtime per core (tree) | (tree + server) |",
             "|---|---|---:|---|---:|---|---:|---:|---:|"]
    for side in sides:
        if not side.runs:
            continue
        cpus = ", ".join(f"{r['cpu_s']:.1f}" for r in side.runs)
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in side.runs)
        lines.append(f"| {side.part} | {side.name} | {side.audio_s:.1f} | {_median(side, 'cpu_s'):.2f} ({cpus}) | "
                     f"{statistics.median(r.get('runner_cpu_s', 0.0) for r in side.runs):.2f} | "
                     f"{_median(side, 'wall_s'):.2f} ({walls}) | {_median(side, 'server_cpu_s'):.2f} | "
                     f"{_x(side):.0f} | {_x(side, with_server=True):.0f} |")
    by_name = {side.name: side for side in sides if side.runs}
    goals = []
    if warm := by_name.get("ttsprep, 1 utterance, warm (server reused)"):
        goals.append(f"* a: warm one-utterance run {_median(warm, 'cpu_s'):.2f} CPU-s (goal <= {GOAL_CPU_S}), "
                     f"{_median(warm, 'wall_s'):.2f} s wall (goal <= {GOAL_WALL_S})")
    if (ours := by_name.get("ttsprep, pitch/denoise/text/align off")) and (lhotse := by_name.get("Lhotse Shar export")):
        goals.append(f"* b: ttsprep {_x(ours):.0f}x vs Lhotse {_x(lhotse):.0f}x realtime per core: "
                     f"{_x(ours) / _x(lhotse):.2f}x (goal >= {GOAL_VS_LHOTSE}); with the server's CPU "
                     f"{_x(ours, True) / _x(lhotse):.2f}x")
    if (ours := by_name.get("ttsprep, defaults, align none")) and (fs2 := by_name.get("FS2-style script")):
        goals.append(f"* c: ttsprep {_x(ours):.0f}x realtime per core (goal >= {GOAL_X_REALTIME:.0f}), "
                     f"FS2-style {_x(fs2):.0f}x: {_x(ours) / _x(fs2):.2f}x (goal >= {GOAL_VS_FS2}); with the "
                     f"server's CPU {_x(ours, True):.0f}x, {_x(ours, True) / _x(fs2):.2f}x")
    loads = [run["load"] for side in sides for run in side.runs]
    return "\n".join(lines + ["", *goals, "", f"1-minute load average at the runs' starts: {min(loads):.1f}-"
                                               f"{max(loads):.1f}" if loads else ""])


def build_sides(args: argparse.Namespace, scratch: Path) -> list[Side]:
    corpus_n = scratch / f"corpus-{args.utterances}" / "LJSpeech-1.1"
    corpus_1 = scratch / "corpus-1" / "LJSpeech-1.1"
    home = scratch / "prefect-home"
    # PYTHONDONTWRITEBYTECODE dropped: ttsprep's modules are byte-compiled once, as in any install (pip compiles
    # a package's modules; the libraries' are compiled already), not recompiled in every process of every run
    base_env = {key: value for key, value in os.environ.items()
                if not key.startswith(("PREFECT_", "TTSPREP_")) and key != "PYTHONDONTWRITEBYTECODE"}
    base_env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", TTSPREP_PROGRESS="0")
    local_env = {**base_env, "TTSPREP_SERVER": args.server}
    threads = {} if args.reference_threads == 0 else {
        name: str(args.reference_threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    one_thread = {**base_env, **threads}
    ttsprep = [str(BIN / "ttsprep"), "run", "--out"]
    stop = [str(BIN / "ttsprep"), "server", "stop"]
    sides = []
    if "a" in args.parts:
        audio_1 = write_corpus(corpus_1, 1)
        config = write_config(scratch / "a.yaml", corpus_1, {})
        out = scratch / "out-a"
        sides += [
            Side("a", "ttsprep, 1 utterance, cold (no server or runner)", audio_1,
                 [*ttsprep, str(out), "--config", str(config)], local_env, out, before=[stop], server_home=home),
            Side("a", "ttsprep, 1 utterance, warm (server reused)", audio_1,
                 [*ttsprep, str(out), "--config", str(config)], local_env, out, server_home=home),
            Side("a", "ttsprep, 1 utterance, embedded server", audio_1, [*ttsprep, str(out), "--config", str(config)],
                 {**base_env, "TTSPREP_SERVER": "embedded"}, out),
        ]
    if "b" in args.parts or "c" in args.parts:
        audio_n = write_corpus(corpus_n, args.utterances)
        print(f"corpus: {args.utterances} utterances, {audio_n:.1f} s of audio ({corpus_n})", flush=True)
    if "b" in args.parts:
        out = scratch / "out-b"
        sides.append(Side("b", "ttsprep, pitch/denoise/text/align off", audio_n,
                          [*ttsprep, str(out), "--config", str(write_config(scratch / "b.yaml", corpus_n, OFF))],
                          local_env, out, server_home=home))
        try:
            import lhotse  # noqa: F401
            import lilcom  # noqa: F401
            sides.append(Side("b", "Lhotse Shar export", audio_n,
                              [sys.executable, __file__, "_lhotse", str(corpus_n), str(scratch / "out-lhotse")],
                              one_thread, scratch / "out-lhotse"))
        except ImportError as missing:
            print(f"part b: Lhotse side skipped ({missing}; pip install -e '.[bench]')", flush=True)
    if "c" in args.parts:
        out = scratch / "out-c"
        sides += [Side("c", "ttsprep, defaults, align none", audio_n,
                       [*ttsprep, str(out), "--config", str(write_config(scratch / "c.yaml", corpus_n, NO_ALIGN))],
                       local_env, out, server_home=home),
                  Side("c", "FS2-style script", audio_n,
                       [sys.executable, __file__, "_fs2", str(corpus_n), str(scratch / "out-fs2")], one_thread,
                       scratch / "out-fs2")]
    return sides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_lhotse", "_fs2"):
        (lhotse_export if argv[0] == "_lhotse" else fs2_script)(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "ttsprep-bench-whole-run")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--reference-threads", type=int, default=1,
                        help="OMP/BLAS threads of the Lhotse and FS2-style sides (0: the libraries' defaults; torch "
                             "then spins a thread per core: Lhotse took 14.7 CPU-s instead of 5.5 here)")
    parser.add_argument("--server", choices=["local", "embedded"], default="local",
                        help="TTSPREP_SERVER of the ttsprep runs of parts b and c and of part a's cold and warm rows "
                             "(embedded: a server per command, as before the local server existed)")
    args = parser.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    sides = build_sides(args, args.scratch)
    warm_up = [side for side in sides if side.command[0].endswith("ttsprep")][:1]
    for side in warm_up:  # Prefect's database migrations on a fresh PREFECT_HOME, numba's cache: not measured
        run_once(side)
        side.runs.clear()
    try:
        for round_number in range(args.rounds):
            for side in sides:
                run = run_once(side)
                print(f"round {round_number + 1}: {side.name}: {run['cpu_s']:.2f} CPU-s, {run['wall_s']:.2f} s wall, "
                      f"runner {run['runner_cpu_s']:.2f}, server {run['server_cpu_s']:.2f} CPU-s, "
                      f"load {run['load']:.1f}", flush=True)
    finally:
        subprocess.run([str(BIN / "ttsprep"), "server", "stop"], env=sides[0].env if sides else None,
                       cwd=REPO_ROOT, capture_output=True, check=False)
    print()
    print(report(sides))
    if args.json:
        args.json.write_text(json.dumps([{"part": s.part, "side": s.name, "audio_s": s.audio_s, "runs": s.runs}
                                         for s in sides], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
