"""Multi-head attention with rotary positions, shared by the DiT decoder and the p_mid network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(length: int, head_dim: int, device, dtype, base: float = 10000.0):
    """cos/sin tables (length, head_dim) for rotary position embeddings (half-split layout)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, L, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attend(q, k, v, mask: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """Scaled dot-product attention; on a CPU in float32 even under a bf16/fp16 autocast, whose
    attention backward is slower there than float32's (benchmarks/train_step.py)."""
    if q.device.type == "cpu" and q.dtype != torch.float32:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class SelfAttention(nn.Module):
    """Self-attention over the L output positions, rotary positions on q and k.

    Bidirectional unless a mask says otherwise: `mask` (B or 1, 1, L, L) bool, True where query i
    may attend to key j (a causal mask makes it Whisper's autoregressive decoder).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, rotary=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))

    def step(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None, rotary=None,
             mask: torch.Tensor | None = None):
        """Attention of the next n positions over the m before them and themselves: causal, or `mask`
        (B, 1, n, m + n) bool (True: may read).

        x (B, n, D); past: (K, V) (B, H, m, D / H) of the earlier positions, or None (m = 0); rotary:
        the tables of the n new positions. Returns (B, n, D) and (K, V) of all m + n positions.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        if mask is None:
            m = k.shape[2] - n
            mask = torch.ones(n, m + n, dtype=torch.bool, device=x.device).tril(m)  # new i reads 0 .. m + i
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d)), (k, v)


class CrossAttention(nn.Module):
    """Attention from the output positions to audio frames.

    `memory_kv` turns audio frames into per-head (K, V) once per utterance; the sampler reuses them
    across all NFE steps (App. C.3).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = memory.shape
        k, v = self.kv(memory).view(b, t, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor):
        """mask: (B, 1, 1, T) bool, True where the frame is valid."""
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        y = attend(q, kv[0], kv[1], mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 4.0, dropout: float = 0.0):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                         nn.Linear(hidden, dim))


def pool_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average every k consecutive frames (B, T, D) -> (B, ceil(T/k), D); padding frames are not averaged in."""
    if k == 1:
        return x, lengths
    valid = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
    pad = (-x.shape[1]) % k
    xs = F.pad(x * valid[..., None], (0, 0, 0, pad)).unflatten(1, (-1, k)).sum(2)
    counts = F.pad(valid, (0, pad)).unflatten(1, (-1, k)).sum(2).clamp_min(1)
    return xs / counts[..., None], (lengths + k - 1) // k
