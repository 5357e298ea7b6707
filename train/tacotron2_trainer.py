"""Training a Tacotron 2 aligner on the corpus itself, and extracting durations from it by teacher forcing.

A batch is a dict of padded tensors (the form ``ttsprep.train.collate`` produces; ``shard_batches`` makes them from
the training shards)::

    tokens        int64 [B, N]         token ids, 0-padded
    token_lengths int64 [B]
    mel           float [B, T, n_mels] natural-log mel, padded; T is padded up to a multiple of r by the model
    mel_lengths   int64 [B]            frames; a multiple of r for durations that sum to num_frames / r
    utt_ids       list[str]

Training runs on CUDA when available (bf16 autocast, or fp16 with a GradScaler where bf16 is unsupported),
else on the CPU in fp32. Non-finite steps are skipped; checkpoints are written atomically and a run resumes
from the latest one in ``out_dir`` (model, optimizer, scaler, step and torch RNG; the data iterator restarts
with a fresh epoch from ``batches_iterable_factory``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ttsprep.aligners.attention_durations import attention_quality, durations_from_attention
from ttsprep.models.tacotron2 import Tacotron2, Tacotron2Config, tacotron2_loss
from ttsprep.stages.core.atomic import atomic_path
from ttsprep.stages.core.config import AlignConfig
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError, TtsprepError
from ttsprep.stages.core.reasons import Reason
from ttsprep.train.collate import Collate
from ttsprep.train.dataset import ShardBatches, ShardDataset
from ttsprep.train.shards import ShardSet, SymbolMaps

log = logging.getLogger(__name__)

Batch = dict[str, Any]
#: Skipped non-finite steps are reported at most once per this many steps.
WARN_EVERY_STEPS = 50


@dataclass(frozen=True)
class TrainConfig:
    model: Tacotron2Config
    max_steps: int = 10_000
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    grad_clip_norm: float = 1.0
    guided_attention_sigma: float = 0.2
    guided_attention_weight: float = 1.0
    checkpoint_every: int = 500
    #: Older checkpoints beyond this many are deleted.
    keep_checkpoints: int = 2
    #: Consecutive non-finite steps (loss or gradient) after which training stops with an error.
    max_bad_steps: int = 20
    #: ``auto``: bf16 on CUDA where supported, else fp16 on CUDA, fp32 on the CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    model: Tacotron2
    step: int  # batches consumed in total, skipped ones included
    bad_steps: int  # non-finite steps skipped in total
    losses: dict[str, float]  # of the last good step; empty when resumed at max_steps
    checkpoint: Path


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when one is available, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as
    given (``ConfigError`` when CUDA is asked for and absent)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def shard_batches(shard_set: ShardSet, maps: SymbolMaps, *, batch_size: int, seed: int = 0,
                  group_size: int = 32) -> Callable[[], Iterable[Batch]]:
    """A ``batches_iterable_factory`` over training shards: each call is the next shuffled epoch of
    length-bucketed batches of ``tokens`` and ``mel`` (``group_size`` batches are sorted together)."""
    batches = ShardBatches(ShardDataset(shard_set, maps, features=("mel", "tokens"), seed=seed),
                           Collate(reduction_factor=shard_set.reduction_factor), batch_size=batch_size,
                           group_size=group_size)
    epochs = itertools.count()

    def next_epoch() -> Iterable[Batch]:
        batches.set_epoch(next(epochs))
        return batches

    return next_epoch


def load_tacotron2(checkpoint: Path, device: str | torch.device = "cpu") -> Tacotron2:
    """The model of a checkpoint written by ``train_tacotron2``, on ``device``, in eval mode."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = Tacotron2(Tacotron2Config(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def _checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints in ``out_dir``, oldest first (names carry the zero-padded step)."""
    return sorted(out_dir.glob("checkpoint-*.pt"))


def _save_checkpoint(out_dir: Path, state: dict[str, Any], keep: int) -> Path:
    path = out_dir / f"checkpoint-{state['step']:09d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in _checkpoints(out_dir)[:-keep]:
        old.unlink()
    return path


def _resume(out_dir: Path, model: Tacotron2, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
            model_cfg: Tacotron2Config) -> tuple[int, int, Path | None]:
    """Load the latest checkpoint of ``out_dir`` (if any) into the objects and the torch RNG;
    return (step, bad steps so far, checkpoint path)."""
    checkpoints = _checkpoints(out_dir)
    if not checkpoints:
        return 0, 0, None
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    if state["model_config"] != asdict(model_cfg):
        raise ConfigError(f"{checkpoints[-1]} was trained with model config {state['model_config']}, "
                          f"not {asdict(model_cfg)}; use another out_dir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    device = next(model.parameters()).device
    if device.type == "cuda" and state["rng_cuda"] is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return state["step"], state["bad_steps"], checkpoints[-1]


def _train_step(model: Tacotron2, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batch: Batch,
                cfg: TrainConfig, autocast_dtype: torch.dtype | None) -> dict[str, float] | None:
    """One optimizer update; ``None`` (and no update, batch-norm statistics included) when the loss or the
    gradient is not finite."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    device_type = batch["mel"].device.type
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        output = model(batch["tokens"], batch["token_lengths"], batch["mel"], batch["mel_lengths"])
        losses = tacotron2_loss(output, batch["mel"], batch["mel_lengths"], batch["token_lengths"],
                                reduction_factor=cfg.model.reduction_factor,
                                guided_attention_sigma=cfg.guided_attention_sigma,
                                guided_attention_weight=cfg.guided_attention_weight)
    if not torch.isfinite(losses["total"]):
        model.load_state_dict(buffers, strict=False)
        return None
    scaler.scale(losses["total"]).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    if not torch.isfinite(grad_norm) and not scaler.is_enabled():  # fp16 overflow is the scaler's business
        optimizer.zero_grad(set_to_none=True)
        model.load_state_dict(buffers, strict=False)
        return None
    scaler.step(optimizer)
    scaler.update()
    return {name: value.item() for name, value in losses.items()} | {"grad_norm": grad_norm.item()}


def train_tacotron2(batches_iterable_factory: Callable[[], Iterable[Batch]], cfg: TrainConfig, out_dir: Path, *,
                    device: str | torch.device | None = None,
                    on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train (or resume training) until ``cfg.max_steps`` batches have been consumed.

    ``batches_iterable_factory()`` is called once per epoch. ``on_step(step, losses)`` is called after every
    good step with the float losses (``total``, ``mel``, ``postnet``, ``gate``, ``guided_attention``,
    ``grad_norm``). Raises ``TtsprepError`` (reason ``training_diverged``) after ``cfg.max_bad_steps``
    consecutive non-finite steps, ``ConfigError`` when the factory yields nothing or the checkpoint in
    ``out_dir`` was written for another model configuration.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    model = Tacotron2(cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    autocast_dtype = _autocast_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    step, bad_total, checkpoint = _resume(out_dir, model, optimizer, scaler, cfg.model)

    def save() -> Path:
        return _save_checkpoint(out_dir, {
            "step": step, "bad_steps": bad_total, "model_config": asdict(cfg.model), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}, cfg.keep_checkpoints)

    losses: dict[str, float] = {}
    consecutive_bad, unreported_bad, last_warned_step = 0, 0, -WARN_EVERY_STEPS
    checkpoint_step = step if checkpoint is not None else None
    while step < cfg.max_steps:
        consumed_before = step
        for batch in batches_iterable_factory():
            if step >= cfg.max_steps:
                break
            step += 1
            step_losses = _train_step(model, optimizer, scaler, _to_device(batch, device), cfg, autocast_dtype)
            if step_losses is None:
                bad_total, consecutive_bad, unreported_bad = bad_total + 1, consecutive_bad + 1, unreported_bad + 1
                if consecutive_bad >= cfg.max_bad_steps:
                    raise TtsprepError(f"training diverged: {consecutive_bad} consecutive steps with a non-finite "
                                       f"loss or gradient (last at step {step}); the checkpoints in {out_dir} "
                                       "predate the divergence", reason=Reason.TRAINING_DIVERGED)
                if step - last_warned_step >= WARN_EVERY_STEPS:
                    log.warning("skipped %d step(s) with a non-finite loss or gradient (step %d, %d in total)",
                                unreported_bad, step, bad_total)
                    unreported_bad, last_warned_step = 0, step
            else:
                consecutive_bad, losses = 0, step_losses
                if on_step is not None:
                    on_step(step, losses)
            if step % cfg.checkpoint_every == 0:
                checkpoint, checkpoint_step = save(), step
        if step == consumed_before:
            raise ConfigError("the batch factory yielded no batches")
    if checkpoint_step != step:
        checkpoint = save()
    return TrainResult(model=model, step=step, bad_steps=bad_total, losses=losses, checkpoint=checkpoint)


@torch.no_grad()
def extract_durations(model: Tacotron2, batches: Iterable[Batch], r: int, *, config: AlignConfig = AlignConfig()
                      ) -> Iterator[tuple[str, np.ndarray | AlignmentFailed, dict[str, float]]]:
    """Teacher-force every batch and yield ``(utt_id, durations, quality)`` per utterance.

    durations: int32 [token_length] summing to ceil(mel_length / r) (= num_frames / r on the shard grid).
    An utterance whose attention fails the thresholds of ``config`` yields the ``AlignmentFailed`` instead of
    durations (the caller raises it where the rejects ledger is written). The model is put in eval mode
    (prenet dropout stays on if so configured).
    """
    if r != model.cfg.reduction_factor:
        raise ConfigError(f"r={r} but the model was trained with reduction_factor={model.cfg.reduction_factor}")
    model.eval()
    device = next(model.parameters()).device
    for batch in batches:
        batch = _to_device(batch, device)
        output = model(batch["tokens"], batch["token_lengths"], batch["mel"], batch["mel_lengths"])
        alignments = output.alignments.float().cpu().numpy()
        token_lengths = batch["token_lengths"].tolist()
        step_lengths = [-(-length // r) for length in batch["mel_lengths"].tolist()]
        for utt_id, attention, token_length, step_length in zip(batch["utt_ids"], alignments, token_lengths,
                                                                 step_lengths):
            quality = attention_quality(attention[:step_length, :token_length])
            try:
                durations, _ = durations_from_attention(attention, token_length, step_length, config=config)
            except AlignmentFailed as failure:
                yield utt_id, failure, quality
            else:
                yield utt_id, durations, quality
