"""The audio-conditioned middle distribution p_mid(. | a) (paper Sec. 3.2, App. C.2).

One transformer block turns L learned position queries into per-position states by self-attention
among the queries and cross-attention to the encoder states; a projection gives logits over the
vocabulary for each of the L output positions.
"""
from __future__ import annotations

import torch
from torch import nn

from drax.nets.attention import CrossAttention, FeedForward, SelfAttention, pool_frames


class PMidNetwork(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        output_length: int,
        hidden_size: int = 256,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        audio_pool: int = 1,
    ):
        super().__init__()
        self.output_length = output_length
        self.audio_pool = audio_pool
        self.queries = nn.Parameter(torch.randn(output_length, hidden_size) * 0.02)
        self.audio_proj = nn.Sequential(nn.Linear(encoder_output_size, hidden_size), nn.LayerNorm(hidden_size))
        self.norm1 = nn.LayerNorm(hidden_size)
        self.self_attn = SelfAttention(hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.cross_attn = CrossAttention(hidden_size, num_heads, dropout)
        self.norm3 = nn.LayerNorm(hidden_size)
        self.mlp = FeedForward(hidden_size, mlp_ratio, dropout)
        self.out_norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Logits (B, length, V) of p_mid's first `length` positions (default: all L) for encoder states
        enc (B, T, D); the queries still attend to all L, so a shorter canvas reads the same logits."""
        enc, enc_lens = pool_frames(enc, enc_lens, self.audio_pool)
        mask = (torch.arange(enc.shape[1], device=enc.device)[None] < enc_lens[:, None])[:, None, None]
        kv = self.cross_attn.memory_kv(self.audio_proj(enc))
        x = self.queries[None].expand(enc.shape[0], -1, -1)
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), kv, mask)
        x = x + self.mlp(self.norm3(x))
        return self.head(self.out_norm(x[:, :length]))
