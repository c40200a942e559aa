"""Output length from the audio (`model_conf.canvas_margin`), counted as Paraformer's CIF predictor does.

Every encoder frame f emits a weight alpha_f in (0, 1) and the predicted number of text tokens is
their sum over the valid frames,

    n_hat = sum_f sigmoid(w . ReLU(Conv1d(h)_f) + b),

trained with |n_hat - n| (L1). A sum over frames rather than a pooled classifier, so a longer
utterance gets proportionally more tokens even at a length it has not seen in training.
"""
from __future__ import annotations

import torch
from torch import nn


class LengthPredictor(nn.Module):
    def __init__(self, encoder_output_size: int, hidden_size: int = 256, kernel_size: int = 3,
                 init_rate: float = 0.08):
        """init_rate: the starting weight per frame (tokens per encoder frame; ~4 tokens/s at 50 Hz)."""
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"model_conf.length_conf.kernel_size must be odd (got {kernel_size})")
        self.conv = nn.Conv1d(encoder_output_size, hidden_size, kernel_size, padding=kernel_size // 2)
        self.out = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, float(torch.logit(torch.tensor(init_rate))))

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        """Expected token count (B,) float for encoder states enc (B, T, D) of lengths enc_lens (B,)."""
        valid = torch.arange(enc.shape[1], device=enc.device)[None] < enc_lens[:, None]
        h = torch.relu(self.conv((enc * valid[..., None]).transpose(1, 2))).transpose(1, 2)
        alpha = torch.sigmoid(self.out(h).squeeze(-1))
        return (alpha * valid).sum(-1)
