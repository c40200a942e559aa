"""The authors' released Drax decoder, rebuilt from its published description (issue 25), apart from
drax/nets/dit.py, with the release's parameter names: the yardstick drax/pretrained/release.py is
tested against. `write_release` writes a tiny random release directory in the published layout.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class WeightNorm(nn.Module):
    """LayerNorm with a weight and no bias (eps 1e-5)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:]) * self.weight


class Rotary(nn.Module):
    def __init__(self, head_dim, base=10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, x):
        """x (B, S, H, D): rotate-half rotary positions."""
        freqs = torch.arange(x.shape[1]).float()[:, None] * self.inv_freq[None]
        emb = torch.cat([freqs, freqs], -1)[None, :, None]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * emb.cos() + rotated * emb.sin()


class Block(nn.Module):
    def __init__(self, h, heads, cond):
        super().__init__()
        self.heads = heads
        for name in ("norm1", "norm_cross", "norm_audio", "norm2"):
            setattr(self, name, WeightNorm(h))
        for name in ("qw", "kw", "vw", "attn_out", "q_cross", "k_cross", "v_cross", "cross_out"):
            setattr(self, name, nn.Linear(h, h, bias=False))
        self.mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(approximate="tanh"), nn.Linear(4 * h, h))
        self.adaLN_modulation = nn.Linear(cond, 9 * h)

    def heads_of(self, x):
        b, s, h = x.shape
        return x.view(b, s, self.heads, h // self.heads)

    def forward(self, x, c, audio, rotary):
        b, s, h = x.shape
        mods = self.adaLN_modulation(c)[:, None].chunk(9, dim=-1)
        y = self.norm1(x) * (1 + mods[1]) + mods[0]
        q, k, v = (self.heads_of(f(y)) for f in (self.qw, self.kw, self.vw))
        q, k = rotary(q), rotary(k)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + mods[2] * self.attn_out(att.transpose(1, 2).reshape(b, s, h))
        y = self.norm_cross(x) * (1 + mods[4]) + mods[3]
        a = self.norm_audio(audio)
        q, k, v = self.heads_of(self.q_cross(y)), self.heads_of(self.k_cross(a)), self.heads_of(self.v_cross(a))
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + mods[5] * self.cross_out(att.transpose(1, 2).reshape(b, s, h))
        return x + mods[8] * self.mlp(self.norm2(x) * (1 + mods[7]) + mods[6])


class TimeEmbedding(nn.Module):
    def __init__(self, cond, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond), nn.SiLU(), nn.Linear(cond, cond))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half).float() / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], -1))


class OutputLayer(nn.Module):
    def __init__(self, h, vocab, cond):
        super().__init__()
        self.norm_final = WeightNorm(h)
        self.linear = nn.Linear(h, vocab)
        self.adaLN_modulation = nn.Linear(cond, 2 * h)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=-1)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


class ReleaseDecoder(nn.Module):
    def __init__(self, dc: dict):
        super().__init__()
        h, cond = dc["hidden_size"], dc["cond_dim"]
        self.vocab_embed = nn.Embedding(dc["vocab_size"], h)
        self.time_embedding = TimeEmbedding(cond)
        self.audio_proj = nn.Sequential(nn.Linear(dc["whisper_dim"], h), nn.GELU(), nn.Linear(h, h))
        self.rotary_emb = Rotary(h // dc["n_heads"])
        self.preserve_embeddings = nn.Embedding(2, h)
        self.blocks = nn.ModuleList(Block(h, dc["n_heads"], cond) for _ in range(dc["n_blocks"]))
        self.output_layer = OutputLayer(h, dc["vocab_size"], cond)

    def forward(self, x_t, t, audio_states, preserve_mask):
        """Logits (B, L, V) for tokens x_t (B, L), times t (B,), encoder states (B, T, D)."""
        x = self.vocab_embed(x_t) + self.preserve_embeddings(preserve_mask.long())
        c = F.silu(self.time_embedding(t))
        audio = self.audio_proj(audio_states)
        for block in self.blocks:
            x = block(x, c, audio, self.rotary_emb)
        return self.output_layer(x, c)


def tiny_configs(vocab_size: int) -> dict:
    decoder = dict(vocab_size=vocab_size, masked=False, hidden_size=32, cond_dim=16, whisper_dim=24, n_heads=2,
                   n_blocks=2, dropout=0.0, length=12, support_language_codes=["en", "de"])
    whisper = dict(d_model=24, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=48, num_mel_bins=80,
                   max_source_positions=1500, vocab_size=vocab_size, decoder_layers=1, decoder_attention_heads=2,
                   decoder_ffn_dim=48)
    return {"model_type": "drax", "decoder_config": decoder, "whisper_config": whisper}


def write_release(out: Path, vocab_size: int, seed: int = 0) -> tuple[ReleaseDecoder, nn.Module]:
    """A random tiny release (every parameter drawn, adaLN included, so no block is the identity)."""
    from safetensors.torch import save_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    config = tiny_configs(vocab_size)
    decoder = ReleaseDecoder(config["decoder_config"])
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.2 * torch.randn_like(p))
    encoder = WhisperEncoder(WhisperConfig(**config["whisper_config"])).eval()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(out / "decoder.safetensors"))
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(out / "encoder.safetensors"))
    return decoder.eval(), encoder
