"""Tacotron 2 (Shen et al., 2018) for teacher-forced alignment, with a reduction factor and guided attention.

Only what an aligner needs: a teacher-forced forward pass whose attention matrix gives token durations
(``ttsprep.aligners.attention_durations``), and the training loss. Shapes use B = batch, N = tokens, T = mel frames,
r = reduction factor (frames emitted per decoder step) and T_dec = T / r decoder steps.

Architecture (sizes in ``Tacotron2Config``):

* encoder: embedding -> ``encoder_n_convolutions`` x (conv1d, batch norm, ReLU, dropout) -> BiLSTM;
* location-sensitive attention over the encoder outputs, fed the previous and cumulative weights;
* decoder: prenet (dropout also at inference, as in the paper; ``prenet_dropout_always``) -> attention LSTM
  -> decoder LSTM -> a linear projection to r frames and one stop-token (gate) logit per step;
* optional postnet: 5 x (conv1d, batch norm, tanh, dropout) predicting a residual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class Tacotron2Config:
    """Model sizes; the defaults are the paper's (NVIDIA's reference implementation)."""

    n_symbols: int
    n_mels: int = 80
    reduction_factor: int = 1
    embedding_dim: int = 512
    encoder_n_convolutions: int = 3
    encoder_kernel_size: int = 5
    encoder_dim: int = 512
    attention_rnn_dim: int = 1024
    attention_dim: int = 128
    location_n_filters: int = 32
    location_kernel_size: int = 31
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    prenet_dropout: float = 0.5
    #: Keep prenet dropout on in eval mode too (the paper's choice; it makes the decoder rely on attention).
    prenet_dropout_always: bool = True
    attention_dropout: float = 0.1
    decoder_dropout: float = 0.1
    #: 0 disables the postnet (``mel_postnet`` is then ``mel_outputs``).
    postnet_n_convolutions: int = 5
    postnet_dim: int = 512
    postnet_kernel_size: int = 5


class Tacotron2Output(NamedTuple):
    mel_outputs: torch.Tensor  # [B, T, n_mels] decoder prediction
    mel_postnet: torch.Tensor  # [B, T, n_mels] after the postnet residual
    gate_outputs: torch.Tensor  # [B, T_dec] stop-token logits
    alignments: torch.Tensor  # [B, T_dec, N] attention weights, rows sum to 1 over the valid tokens


def length_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Bool [B, max_length], True at the valid positions ``i < lengths[b]``."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def _ceil_div(values: torch.Tensor, divisor: int) -> torch.Tensor:
    return torch.div(values + divisor - 1, divisor, rounding_mode="floor")


class MaskedConvStack(nn.Module):
    """(conv1d, batch norm, activation, dropout) per layer over [B, C, time], 'same' padding; padded positions
    are zeroed before every convolution, so a sequence's output does not depend on how it was padded."""

    def __init__(self, channels: list[int], kernel_size: int, activations: list[nn.Module], dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.BatchNorm1d(c_out),
                          activation, nn.Dropout(dropout))
            for c_in, c_out, activation in zip(channels[:-1], channels[1:], activations))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, C, L], mask [B, L] (True = valid) -> [B, C_out, L]."""
        for layer in self.layers:
            x = layer(x * mask[:, None, :])
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        channels = [cfg.embedding_dim] + [cfg.encoder_dim] * cfg.encoder_n_convolutions
        activations = [nn.ReLU() for _ in range(cfg.encoder_n_convolutions)]
        self.convolutions = MaskedConvStack(channels, cfg.encoder_kernel_size, activations, 0.5)
        self.lstm = nn.LSTM(channels[-1], cfg.encoder_dim // 2, batch_first=True, bidirectional=True)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, N, E] embeddings -> [B, N, encoder_dim]; positions past ``lengths`` are zero."""
        x = self.convolutions(embedded.transpose(1, 2), length_mask(lengths, embedded.shape[1])).transpose(1, 2)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = self.lstm(packed)
        return pad_packed_sequence(outputs, batch_first=True, total_length=embedded.shape[1])[0]


class LocationSensitiveAttention(nn.Module):
    """Additive attention whose energies also see conv features of the previous and cumulative weights."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.query_layer = nn.Linear(cfg.attention_rnn_dim, cfg.attention_dim, bias=False)
        self.memory_layer = nn.Linear(cfg.encoder_dim, cfg.attention_dim, bias=False)
        self.location_conv = nn.Conv1d(2, cfg.location_n_filters, cfg.location_kernel_size,
                                       padding=cfg.location_kernel_size // 2, bias=False)
        self.location_layer = nn.Linear(cfg.location_n_filters, cfg.attention_dim, bias=False)
        self.v = nn.Linear(cfg.attention_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, processed_memory: torch.Tensor, weights_cat: torch.Tensor,
                token_mask: torch.Tensor) -> torch.Tensor:
        """query [B, attention_rnn_dim], processed_memory [B, N, attention_dim], weights_cat [B, 2, N]
        (previous and cumulative weights), token_mask [B, N] -> attention weights [B, N]."""
        location = self.location_layer(self.location_conv(weights_cat).transpose(1, 2))
        energies = self.v(torch.tanh(self.query_layer(query)[:, None, :] + location + processed_memory)).squeeze(-1)
        return torch.softmax(energies.float().masked_fill(~token_mask, -math.inf), dim=-1)


class Prenet(nn.Module):
    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(cfg.n_mels, cfg.prenet_dim), nn.Linear(cfg.prenet_dim, cfg.prenet_dim)])
        self.dropout, self.always = cfg.prenet_dropout, cfg.prenet_dropout_always

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            frames = F.dropout(F.relu(layer(frames)), self.dropout, training=self.always or self.training)
        return frames


class Decoder(nn.Module):
    """Autoregressive decoder; in teacher forcing step t is fed the last ground-truth frame of step t - 1."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.cfg = cfg
        self.prenet = Prenet(cfg)
        self.attention_rnn = nn.LSTMCell(cfg.prenet_dim + cfg.encoder_dim, cfg.attention_rnn_dim)
        self.attention = LocationSensitiveAttention(cfg)
        self.decoder_rnn = nn.LSTMCell(cfg.attention_rnn_dim + cfg.encoder_dim, cfg.decoder_rnn_dim)
        self.frame_projection = nn.Linear(cfg.decoder_rnn_dim + cfg.encoder_dim, cfg.n_mels * cfg.reduction_factor)
        self.gate_projection = nn.Linear(cfg.decoder_rnn_dim + cfg.encoder_dim, 1)

    def forward(self, memory: torch.Tensor, token_mask: torch.Tensor, mel: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory [B, N, encoder_dim], token_mask [B, N], mel [B, T, n_mels] with T a multiple of r
        -> (frames [B, T, n_mels], gate logits [B, T_dec], alignments [B, T_dec, N])."""
        cfg, r = self.cfg, self.cfg.reduction_factor
        batch_size, num_tokens = token_mask.shape
        num_steps = mel.shape[1] // r
        go_frame = mel.new_zeros(batch_size, 1, cfg.n_mels)
        previous_frames = torch.cat([go_frame, mel[:, r - 1::r][:, :-1]], dim=1)  # [B, T_dec, n_mels]
        prenet_out = self.prenet(previous_frames)
        processed_memory = self.attention.memory_layer(memory)

        def zeros(size: int) -> torch.Tensor:
            return memory.new_zeros(batch_size, size)

        attention_state = (zeros(cfg.attention_rnn_dim), zeros(cfg.attention_rnn_dim))
        decoder_state = (zeros(cfg.decoder_rnn_dim), zeros(cfg.decoder_rnn_dim))
        context = zeros(cfg.encoder_dim)
        weights, cumulative = zeros(num_tokens).float(), zeros(num_tokens).float()
        frames, gates, alignments = [], [], []
        for step in range(num_steps):
            attention_state = self.attention_rnn(torch.cat([prenet_out[:, step], context], dim=-1), attention_state)
            query = F.dropout(attention_state[0], cfg.attention_dropout, self.training)
            weights_cat = torch.stack([weights, cumulative], dim=1).to(processed_memory.dtype)
            weights = self.attention(query, processed_memory, weights_cat, token_mask)
            cumulative = cumulative + weights
            context = torch.bmm(weights[:, None, :].to(memory.dtype), memory).squeeze(1)
            decoder_state = self.decoder_rnn(torch.cat([query, context], dim=-1), decoder_state)
            hidden_context = torch.cat([F.dropout(decoder_state[0], cfg.decoder_dropout, self.training), context], -1)
            frames.append(self.frame_projection(hidden_context))
            gates.append(self.gate_projection(hidden_context).squeeze(-1))
            alignments.append(weights)
        mel_outputs = torch.stack(frames, dim=1).reshape(batch_size, num_steps * r, cfg.n_mels)
        return mel_outputs, torch.stack(gates, dim=1), torch.stack(alignments, dim=1)


class Tacotron2(nn.Module):
    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.n_symbols, cfg.embedding_dim)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        postnet_channels = [cfg.n_mels] + [cfg.postnet_dim] * (cfg.postnet_n_convolutions - 1) + [cfg.n_mels]
        activations = [nn.Tanh() for _ in range(cfg.postnet_n_convolutions - 1)] + [nn.Identity()]
        self.postnet = (MaskedConvStack(postnet_channels, cfg.postnet_kernel_size, activations, 0.5)
                        if cfg.postnet_n_convolutions else None)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor, mel: torch.Tensor,
                mel_lengths: torch.Tensor) -> Tacotron2Output:
        """Teacher forcing. tokens [B, N] (int64), token_lengths [B], mel [B, T, n_mels] (natural-log mel),
        mel_lengths [B] frames.

        ``mel`` is zero-padded on the right to a multiple of r, so the outputs have ceil(T / r) * r frames;
        outputs past an utterance's ceil(mel_length / r) decoder steps are not meaningful.
        """
        r = self.cfg.reduction_factor
        mel = F.pad(mel, (0, 0, 0, -mel.shape[1] % r))
        token_mask = length_mask(token_lengths, tokens.shape[1])
        memory = self.encoder(self.embedding(tokens), token_lengths)
        mel_outputs, gate_outputs, alignments = self.decoder(memory, token_mask, mel)
        mel_postnet = mel_outputs
        if self.postnet is not None:
            frame_mask = length_mask(_ceil_div(mel_lengths, r) * r, mel.shape[1])
            mel_postnet = mel_outputs + self.postnet(mel_outputs.transpose(1, 2), frame_mask).transpose(1, 2)
        return Tacotron2Output(mel_outputs, mel_postnet, gate_outputs, alignments)


def guided_attention_loss(alignments: torch.Tensor, token_lengths: torch.Tensor, step_lengths: torch.Tensor,
                          sigma: float = 0.2) -> torch.Tensor:
    """Guided attention (Tachibana et al., 2018): the penalty W[t, n] = 1 - exp(-(n / N - t / T_dec)^2 / (2 sigma^2))
    weighted by the attention, summed over tokens and averaged over the valid decoder steps, so the value
    (in [0, 1]) is the expected off-diagonal penalty per step whatever N. alignments [B, T_dec, N]; lengths [B]."""
    _, num_steps, num_tokens = alignments.shape
    n = torch.arange(num_tokens, device=alignments.device)[None, None, :] / token_lengths[:, None, None]
    t = torch.arange(num_steps, device=alignments.device)[None, :, None] / step_lengths[:, None, None]
    penalty = 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma ** 2))
    mask = length_mask(step_lengths, num_steps)[:, :, None] & length_mask(token_lengths, num_tokens)[:, None, :]
    return (alignments.float() * penalty * mask).sum() / step_lengths.sum()


def tacotron2_loss(output: Tacotron2Output, mel: torch.Tensor, mel_lengths: torch.Tensor, token_lengths: torch.Tensor,
                   *, reduction_factor: int, guided_attention_sigma: float = 0.2,
                   guided_attention_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Masked losses: MSE of both mel predictions, stop-token BCE (target 1 from the last valid step on),
    guided attention; ``total`` is their weighted sum. mel [B, T, n_mels] as given to ``forward``."""
    r = reduction_factor
    mel = F.pad(mel, (0, 0, 0, -mel.shape[1] % r)).float()
    step_lengths = _ceil_div(mel_lengths, r)
    frame_mask = length_mask(step_lengths * r, mel.shape[1])[:, :, None]
    frame_count = frame_mask.sum() * mel.shape[2]
    mel_loss = (((output.mel_outputs.float() - mel) ** 2) * frame_mask).sum() / frame_count
    postnet_loss = (((output.mel_postnet.float() - mel) ** 2) * frame_mask).sum() / frame_count
    num_steps = output.gate_outputs.shape[1]
    step_index = torch.arange(num_steps, device=mel.device)[None, :]
    gate_target = (step_index >= step_lengths[:, None] - 1).float()
    step_mask = length_mask(step_lengths, num_steps)
    gate_loss = F.binary_cross_entropy_with_logits(output.gate_outputs.float()[step_mask], gate_target[step_mask])
    attention_loss = guided_attention_loss(output.alignments, token_lengths, step_lengths, guided_attention_sigma)
    total = mel_loss + postnet_loss + gate_loss + guided_attention_weight * attention_loss
    return {"total": total, "mel": mel_loss, "postnet": postnet_loss, "gate": gate_loss,
            "guided_attention": attention_loss}
