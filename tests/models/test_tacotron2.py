"""Tacotron 2 aligner: masking, guided attention, training (loss falls, NaN steps, resume) and durations.

The synthetic corpus: each of 5 symbols is a distinct mel pattern held for 2-5 frames, plus noise.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ttsprep.models.tacotron2 import Tacotron2, Tacotron2Config, guided_attention_loss, tacotron2_loss
from ttsprep.stages.core.config import AlignConfig
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError, TtsprepError
from ttsprep.stages.core.frames import pad_to_multiple
from ttsprep.train.tacotron2_trainer import TrainConfig, extract_durations, train_tacotron2

torch.set_num_threads(1)

N_MELS, N_SYMBOLS = 8, 6  # symbol 0 is padding
LENIENT = AlignConfig(attention_min_focus_rate=0.0, attention_min_diagonality=-1.0)


def tiny_config(r: int = 1, **overrides) -> Tacotron2Config:
    sizes = dict(embedding_dim=16, encoder_dim=16, encoder_kernel_size=3, attention_rnn_dim=32, attention_dim=16,
                 location_n_filters=4, location_kernel_size=5, decoder_rnn_dim=32, prenet_dim=16, postnet_dim=16,
                 postnet_n_convolutions=2)
    return Tacotron2Config(n_symbols=N_SYMBOLS, n_mels=N_MELS, reduction_factor=r, **(sizes | overrides))


def synthetic_batches(r: int, *, num_utterances: int = 8, batch_size: int = 4, seed: int = 0) -> list[dict]:
    """Padded batches; every mel is edge-padded to a multiple of r, as on the shard frame grid."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(99).normal(scale=2.0, size=(N_SYMBOLS, N_MELS)).astype(np.float32)
    utterances = []
    for index in range(num_utterances):
        tokens = rng.integers(1, N_SYMBOLS, size=rng.integers(3, 7))
        mel = np.repeat(patterns[tokens], rng.integers(2, 6, size=tokens.size), axis=0)
        mel = pad_to_multiple(mel + rng.normal(scale=0.1, size=mel.shape).astype(np.float32), r)
        utterances.append((f"utt{index}", tokens, mel))
    batches = []
    for start in range(0, num_utterances, batch_size):
        chunk = utterances[start:start + batch_size]
        tokens = torch.zeros(len(chunk), max(u[1].size for u in chunk), dtype=torch.long)
        mel = torch.zeros(len(chunk), max(len(u[2]) for u in chunk), N_MELS)
        for row, (_, token_ids, frames) in enumerate(chunk):
            tokens[row, :token_ids.size] = torch.from_numpy(token_ids)
            mel[row, :len(frames)] = torch.from_numpy(frames)
        batches.append({"tokens": tokens, "token_lengths": torch.tensor([u[1].size for u in chunk]), "mel": mel,
                        "mel_lengths": torch.tensor([len(u[2]) for u in chunk]), "utt_ids": [u[0] for u in chunk]})
    return batches


def test_forward_shapes_and_padding_independence():
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(r=2, prenet_dropout_always=False)).eval()
    batch = synthetic_batches(r=2, num_utterances=4)[0]
    with torch.no_grad():
        output = model(batch["tokens"], batch["token_lengths"], batch["mel"], batch["mel_lengths"])
    batch_size, num_tokens = batch["tokens"].shape
    num_frames = batch["mel"].shape[1]
    assert output.mel_outputs.shape == output.mel_postnet.shape == (batch_size, num_frames, N_MELS)
    assert output.gate_outputs.shape == (batch_size, num_frames // 2)
    assert output.alignments.shape == (batch_size, num_frames // 2, num_tokens)
    torch.testing.assert_close(output.alignments.sum(-1), torch.ones(batch_size, num_frames // 2))

    # Each utterance alone (no padding) gives what it gets inside the padded batch.
    for row in range(batch_size):
        n, t = int(batch["token_lengths"][row]), int(batch["mel_lengths"][row])
        with torch.no_grad():
            alone = model(batch["tokens"][row:row + 1, :n], batch["token_lengths"][row:row + 1],
                          batch["mel"][row:row + 1, :t], batch["mel_lengths"][row:row + 1])
        assert output.alignments[row, :t // 2, n:].abs().sum() == 0
        torch.testing.assert_close(output.alignments[row, :t // 2, :n], alone.alignments[0])
        torch.testing.assert_close(output.mel_postnet[row, :t], alone.mel_postnet[0])


def test_output_frames_are_padded_up_to_a_multiple_of_r():
    model = Tacotron2(tiny_config(r=3)).eval()
    batch = synthetic_batches(r=1, num_utterances=1, batch_size=1)[0]
    mel = batch["mel"][:, :10]  # 10 frames -> 4 decoder steps -> 12 output frames
    with torch.no_grad():
        output = model(batch["tokens"], batch["token_lengths"], mel, torch.tensor([10]))
    assert output.mel_outputs.shape[1] == 12 and output.alignments.shape[1] == 4


def test_guided_attention_prefers_the_diagonal_and_ignores_padding():
    steps, tokens = 12, 4
    diagonal = torch.zeros(1, steps, tokens)
    diagonal[0, torch.arange(steps), torch.arange(steps) * tokens // steps] = 1.0
    reversed_path = diagonal.flip(2)
    uniform = torch.full((1, steps, tokens), 1.0 / tokens)
    lengths = (torch.tensor([tokens]), torch.tensor([steps]))
    losses = [float(guided_attention_loss(a, *lengths)) for a in (diagonal, uniform, reversed_path)]
    assert losses[0] < 0.5 * losses[1] and losses[1] < losses[2]

    padded = torch.zeros(1, steps + 3, tokens + 2)
    padded[0, :steps, :tokens] = diagonal[0]
    padded[0, steps:, :] = 1.0  # mass in padded steps and tokens must not count
    padded[0, :, tokens:] = 1.0
    assert float(guided_attention_loss(padded, *lengths)) == pytest.approx(losses[0])


def test_loss_falls_on_the_synthetic_corpus(tmp_path: Path):
    batches = synthetic_batches(r=2)
    losses: list[dict[str, float]] = []
    cfg = TrainConfig(model=tiny_config(r=2), max_steps=50, learning_rate=1e-2, checkpoint_every=1000)
    result = train_tacotron2(lambda: batches, cfg, tmp_path, device="cpu",
                             on_step=lambda step, values: losses.append(values))
    assert result.step == 50 and len(losses) == 50 and result.bad_steps == 0
    for name, factor in [("total", 0.75), ("mel", 0.75), ("guided_attention", 0.5)]:
        assert np.mean([v[name] for v in losses[-5:]]) < factor * np.mean([v[name] for v in losses[:5]]), name
    assert result.checkpoint == tmp_path / "checkpoint-000000050.pt" and result.checkpoint.is_file()


def with_nan_mel(batch: dict) -> dict:
    return batch | {"mel": torch.full_like(batch["mel"], float("nan"))}


def test_non_finite_steps_are_skipped_counted_and_warned_at_a_limited_rate(tmp_path: Path, caplog):
    good = synthetic_batches(r=1, num_utterances=4)[0]
    seen_steps: list[int] = []
    cfg = TrainConfig(model=tiny_config(), max_steps=60, max_bad_steps=2, checkpoint_every=1000)
    with caplog.at_level(logging.WARNING, logger="ttsprep.train.tacotron2_trainer"):
        result = train_tacotron2(lambda: [good, with_nan_mel(good)], cfg, tmp_path, device="cpu",
                                 on_step=lambda step, losses: seen_steps.append(step))
    assert result.bad_steps == 30
    assert seen_steps == list(range(1, 61, 2))
    assert all(torch.isfinite(value).all() for value in result.model.state_dict().values())
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # at steps 2 and 52
    assert warnings[0].startswith("skipped 1 step") and warnings[1].startswith("skipped 25 step")


def test_nan_step_leaves_parameters_untouched_and_too_many_stop_training(tmp_path: Path):
    bad = with_nan_mel(synthetic_batches(r=1, num_utterances=4)[0])
    cfg = TrainConfig(model=tiny_config(), max_steps=2, max_bad_steps=3, checkpoint_every=1000)
    result = train_tacotron2(lambda: [bad], cfg, tmp_path / "a", device="cpu")
    torch.manual_seed(cfg.seed)
    initial = Tacotron2(cfg.model)
    for name, value in initial.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value, msg=name)

    with pytest.raises(TtsprepError, match="3 consecutive steps") as failure:
        train_tacotron2(lambda: [bad], TrainConfig(model=tiny_config(), max_steps=10, max_bad_steps=3),
                        tmp_path / "b", device="cpu")
    assert failure.value.reason == "training_diverged"


def test_resume_continues_from_the_checkpoint_with_identical_parameters(tmp_path: Path):
    batches = synthetic_batches(r=2)  # 2 batches per epoch: step 4 ends an epoch
    cfg = TrainConfig(model=tiny_config(r=2), max_steps=8, checkpoint_every=4, keep_checkpoints=1)
    straight = train_tacotron2(lambda: batches, cfg, tmp_path / "straight", device="cpu")

    resumed_dir = tmp_path / "resumed"
    first_half = train_tacotron2(lambda: batches, replace(cfg, max_steps=4), resumed_dir, device="cpu")
    assert first_half.checkpoint.name == "checkpoint-000000004.pt"
    steps: list[int] = []
    resumed = train_tacotron2(lambda: batches, cfg, resumed_dir, device="cpu",
                              on_step=lambda step, losses: steps.append(step))
    assert steps == [5, 6, 7, 8]
    assert sorted(p.name for p in resumed_dir.glob("*.pt")) == ["checkpoint-000000008.pt"]
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0, msg=name)

    with pytest.raises(ConfigError, match="model config"):
        train_tacotron2(lambda: batches, TrainConfig(model=tiny_config(r=1), max_steps=9), resumed_dir)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_extracted_durations_sum_to_frames_over_r(r: int, tmp_path: Path):
    batches = synthetic_batches(r=r)
    cfg = TrainConfig(model=tiny_config(r=r), max_steps=3, checkpoint_every=1000)
    model = train_tacotron2(lambda: batches, cfg, tmp_path, device="cpu").model
    results = list(extract_durations(model, batches, r, config=LENIENT))
    lengths = {uid: (int(n), int(t)) for b in batches
               for uid, n, t in zip(b["utt_ids"], b["token_lengths"], b["mel_lengths"])}
    assert [uid for uid, _, _ in results] == list(lengths)
    for utt_id, durations, quality in results:
        num_tokens, num_frames = lengths[utt_id]
        assert durations.dtype == np.int32 and durations.shape == (num_tokens,)
        assert durations.sum() == num_frames // r and durations.min() >= 1
        assert 0 < quality["focus_rate"] <= 1

    strict = AlignConfig(attention_min_focus_rate=1.0)  # nothing is that sharp after 3 steps
    failures = [d for _, d, _ in extract_durations(model, batches, r, config=strict)]
    assert all(isinstance(d, AlignmentFailed) and d.reason == "attention_low_quality" for d in failures)


def test_loss_ignores_padded_frames():
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(r=2, prenet_dropout_always=False)).eval()
    batch = synthetic_batches(r=2, num_utterances=4)[0]
    args = (batch["tokens"], batch["token_lengths"])
    noisy_padding = batch["mel"].clone()
    for row, length in enumerate(batch["mel_lengths"]):
        noisy_padding[row, length:] = 100.0
    with torch.no_grad():
        clean = tacotron2_loss(model(*args, batch["mel"], batch["mel_lengths"]), batch["mel"], batch["mel_lengths"],
                               batch["token_lengths"], reduction_factor=2)
        noisy = tacotron2_loss(model(*args, noisy_padding, batch["mel_lengths"]), noisy_padding,
                               batch["mel_lengths"], batch["token_lengths"], reduction_factor=2)
    for name in clean:
        assert float(noisy[name]) == pytest.approx(float(clean[name]), rel=1e-5), name
