"""DiT decoder with cross-attention to audio (paper Sec. 3.2, Fig. 1c; Peebles & Xie 2023).

Each block applies, with adaLN-zero modulation from the time embedding c,

    x = x + g1 * SelfAttn(mod(LN(x), a1, b1))        bidirectional, rotary positions
    x = x + g2 * CrossAttn(mod(LN(x), a2, b2), audio)
    x = x + g3 * MLP(mod(LN(x), a3, b3))

where (a, b, g) = Linear(SiLU(c)) is zero-initialised, so every block starts as the identity.
The output head predicts logits of p_{1|t}(x1 | x_t, audio) for all L positions at once.

`DiTDecoder.step` runs the same blocks autoregressively (causal self-attention, cached keys/values of
earlier positions): the AR yardstick `model: drax_ar` (drax/asr/ar_model.py), and `PrefixCache`, the
causal denoiser of the jacobi sampler evaluated only from the first position that changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from torch import nn

from drax.nets import precision
from drax.nets.attention import CrossAttention, FeedForward, SelfAttention, pool_frames, rotary_tables


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of scale * t, t in [0, 1] (1000: DiT's integer timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


AUDIO_PROJECTIONS = ("linear_norm", "mlp")


def modulate(x, shift, scale):
    """adaLN: x (B, L, D) scaled and shifted by (B, 1 or L, D)."""
    return x * (1 + scale) + shift


@dataclass
class TimeCondition:
    """The time embeddings of a call: c (B, K, C), K times per row, and `select` (B, L) long, which of
    them each position reads (None: K = 1, every position reads its row's). Two times per row (clean
    t = 1 and the active block's t) cost two modulations per row, not one per position."""

    c: torch.Tensor
    select: torch.Tensor | None = None

    def modulation(self, linear: nn.Module) -> torch.Tensor:
        """linear(c) per position: (B, 1 or L, out)."""
        m = linear(self.c)
        return m if self.select is None else m.gather(1, self.select[..., None].expand(-1, -1, m.shape[-1]))


@dataclass
class AudioMemory:
    """Per-utterance audio state reused across sampling steps: per-block (K, V) and the frame mask."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor  # (B, 1, 1, T) bool

    def repeat_interleave(self, n: int) -> "AudioMemory":
        """Expand every utterance to n candidates (rows b*n .. b*n+n-1 belong to utterance b)."""
        return AudioMemory(
            kv=[(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.kv],
            mask=self.mask.repeat_interleave(n, 0),
        )

    def select(self, rows: torch.Tensor) -> "AudioMemory":
        """The utterances of `rows` (a bool mask or indices over B)."""
        return AudioMemory(kv=[(k[rows], v[rows]) for k, v in self.kv], mask=self.mask[rows])


@dataclass(frozen=True)
class BlockLayout:
    """What differs between DiT layouts inside a block (defaults: ours; drax/pretrained/release.py
    sets the authors' released one)."""

    cond_dim: int  # width of the time embedding c that the adaLN modulation reads
    attention_bias: bool = True  # biases on the q/k/v/out projections of both attentions
    norm_weight: bool = False  # LayerNorms with a learned weight (no bias); else without affine
    norm_eps: float = 1e-6
    audio_norm: bool = False  # a LayerNorm of the block's own on the audio before its cross-attention K/V

    def norm(self, dim: int) -> nn.LayerNorm:
        return nn.LayerNorm(dim, eps=self.norm_eps, elementwise_affine=self.norm_weight, bias=False)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, layout: BlockLayout):
        super().__init__()
        self.norm1 = layout.norm(dim)
        self.self_attn = SelfAttention(dim, heads, dropout, bias=layout.attention_bias)
        self.norm2 = layout.norm(dim)
        self.norm_audio = layout.norm(dim) if layout.audio_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, heads, dropout, bias=layout.attention_bias)
        self.norm3 = layout.norm(dim)
        self.mlp = FeedForward(dim, mlp_ratio, dropout)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(layout.cond_dim, 9 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def audio_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This block's cross-attention (K, V) of projected audio frames (B, T, D)."""
        return self.cross_attn.memory_kv(self.norm_audio(memory))

    def forward(self, x, cond: TimeCondition, rotary, kv, mask, self_mask=None):
        s1, a1, g1, s2, a2, g2, s3, a3, g3 = cond.modulation(self.modulation).chunk(9, dim=-1)
        x = x + g1 * self.self_attn(modulate(self.norm1(x), s1, a1), rotary, self_mask)
        x = x + g2 * self.cross_attn(modulate(self.norm2(x), s2, a2), kv, mask)
        return x + g3 * self.mlp(modulate(self.norm3(x), s3, a3))

    def step(self, x, cond: TimeCondition, rotary, kv, mask, past=None, self_mask=None):
        """As forward for the next n positions (B, n, D), self-attention over the cached (K, V) `past`
        of the earlier ones and themselves (causal, or `self_mask` (B, 1, n, m + n)); returns
        (x, (K, V) of all positions so far)."""
        s1, a1, g1, s2, a2, g2, s3, a3, g3 = cond.modulation(self.modulation).chunk(9, dim=-1)
        y, past = self.self_attn.step(modulate(self.norm1(x), s1, a1), past, rotary, self_mask)
        x = x + g1 * y
        x = x + g2 * self.cross_attn(modulate(self.norm2(x), s2, a2), kv, mask)
        return x + g3 * self.mlp(modulate(self.norm3(x), s3, a3)), past


class DiTDecoder(AbsDecoder):
    """ESPnet decoder choice `dit`: predicts p_{1|t} for a fixed-length token sequence.

    The embedding table has one extra row (id = vocab_size) for the mask token of the `mask` path;
    the head never predicts it.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        hidden_size: int = 256,
        num_blocks: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        time_embed_dim: int = 256,
        audio_pool: int = 1,
        max_positions: int = 0,
        rotary: bool = True,
        shift_readout: bool = False,
        init_from_whisper: str | None = None,
        attention_block: int | None = None,
        autocast: str | None = None,
        cond_dim: int | None = None,
        time_scale: float = 1000.0,
        audio_proj: str = "linear_norm",
        attention_bias: bool = True,
        norm_weight: bool = False,
        norm_eps: float = 1e-6,
        preserve_embedding: bool = False,
    ):
        """audio_pool: average this many encoder frames into one before cross-attention (1 = paper;
        2 halves the cost of the audio side, which dominates a small decoder's step on a CPU).

        max_positions: if > 0, also add a learned absolute position embedding (as Whisper's decoder
        does) for up to this many positions. Rotary positions are relative, and with every input
        token noise (t near 0) an output position can hardly tell which word of the audio is its own;
        an absolute index gives its cross-attention query that anchor.

        rotary: rotary positions in self-attention (off to match Whisper's decoder).
        shift_readout: read the logits of position j from the state of position j - 1, as an
        autoregressive decoder's head does (position 0, always the pinned prompt, reads its own).
        init_from_whisper: a Whisper model (dir or hub id) whose decoder initialises this one
        (drax/nets/whisper_init.py); the model applies it, as it needs the token list. In a recipe's
        train config, `recipe` stands for the recipe's Whisper (stage 7 passes its directory).
        attention_block: null: bidirectional self-attention (paper). n: block-causal, position i reads
        the positions of its own block of n and of the blocks before it (block = i // n; 1 = causal,
        as Whisper's pretrained decoder reads). The denoiser then keeps the left-to-right structure
        a Whisper-initialised decoder starts with; training, sampling and scoring all see the mask.
        autocast: null (float32, the default) or bfloat16 / float16: matrix products in that dtype,
        logits returned in float32 (drax/nets/precision.py).

        Layout keys (defaults: ours; the authors' release sets the other choice of each,
        drax/pretrained/release.py): cond_dim: width of the time embedding (null: hidden_size);
        time_scale: t is embedded as time_scale * t (release: 1); audio_proj: linear_norm (Linear,
        LayerNorm) or mlp (Linear-GELU-Linear, then each block's own LayerNorm before its K/V);
        attention_bias: biases on the attention projections; norm_weight, norm_eps: LayerNorms with a
        learned weight (no bias) and their epsilon; preserve_embedding: a learned 2-row embedding added
        at every position, row 1 where the position is pinned (the prompt), row 0 elsewhere.
        """
        super().__init__()
        if attention_block is not None and not (int(attention_block) == attention_block and attention_block >= 1):
            raise ValueError(f"decoder_conf.attention_block must be null or an integer >= 1 (got {attention_block})")
        self.attention_block = None if attention_block is None else int(attention_block)
        self.vocab_size = vocab_size
        self.audio_pool = audio_pool
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.rotary = rotary
        self.shift_readout = shift_readout
        self.init_from_whisper = init_from_whisper
        self.autocast_dtype = precision.autocast_dtype(autocast, "decoder_conf.autocast")
        self.embed = nn.Embedding(vocab_size + 1, hidden_size)
        self.positions = nn.Embedding(max_positions, hidden_size) if max_positions > 0 else None
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)
        if audio_proj not in AUDIO_PROJECTIONS:
            raise ValueError(f"decoder_conf.audio_proj: unknown choice '{audio_proj}'; valid: {', '.join(AUDIO_PROJECTIONS)}")
        cond_dim = cond_dim or hidden_size
        layout = BlockLayout(cond_dim, attention_bias, norm_weight, norm_eps, audio_norm=audio_proj == "mlp")
        self.preserve = nn.Embedding(2, hidden_size) if preserve_embedding else None
        if self.preserve is not None:
            nn.init.normal_(self.preserve.weight, std=0.02)
        self.time_embed_dim, self.time_scale = time_embed_dim, time_scale
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        if audio_proj == "mlp":
            self.audio_proj = nn.Sequential(nn.Linear(encoder_output_size, hidden_size), nn.GELU(),
                                            nn.Linear(hidden_size, hidden_size))
        else:
            self.audio_proj = nn.Sequential(nn.Linear(encoder_output_size, hidden_size), nn.LayerNorm(hidden_size))
        # Stands in for the audio when conditioning is dropped (App. C.2, p = 0.1).
        self.null_audio = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, dropout, layout) for _ in range(num_blocks)
        )
        self.final_norm = layout.norm(hidden_size)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * hidden_size))
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].bias)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode_audio(
        self, enc: torch.Tensor, enc_lens: torch.Tensor, drop: torch.Tensor | None = None
    ) -> AudioMemory:
        """Project encoder states and compute every block's cross-attention K/V once.

        drop: (B,) bool; dropped utterances see only the learned null-audio frame.
        """
        enc, enc_lens = pool_frames(enc, enc_lens, self.audio_pool)
        with precision.autocast(enc.device, self.autocast_dtype):
            memory = self.audio_proj(enc)
            kv = [blk.audio_kv(memory) for blk in self.blocks]
        valid = torch.arange(enc.shape[1], device=enc.device)[None] < enc_lens[:, None]
        if drop is not None:
            # Dropped utterances read one frame, the null frame's K/V. Substituting K/V (not the
            # frames) keeps the backward of a frozen K/V projection off the real frames. Done for a
            # batch without a dropped utterance too: DDP needs every trained parameter in the graph.
            first = torch.arange(enc.shape[1], device=enc.device)[None] == 0
            valid = torch.where(drop[:, None], first, valid)
            swap = (drop[:, None] & first)[:, None, :, None]  # (B, 1, T, 1)
            with precision.autocast(enc.device, self.autocast_dtype):
                null = [blk.audio_kv(self.null_audio) for blk in self.blocks]
            kv = [(torch.where(swap, nk.to(k.dtype), k), torch.where(swap, nv.to(v.dtype), v))
                  for (k, v), (nk, nv) in zip(kv, null)]
        return AudioMemory(kv=kv, mask=valid[:, None, None, :])

    def forward(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        audio: AudioMemory,
        soft_delta: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
        pinned: torch.Tensor | None = None,
        soft_rows: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, V) of p_{1|t}(. | x_t = tokens, audio) at times t (B,).

        pinned (B, L) bool: the positions held fixed (prompt); read only with `preserve_embedding`.

        soft_delta (B, L, V): straight-through Gumbel-softmax term (numerically zero) that routes the
        loss gradient into p_mid. soft_rows (B, L) bool: the positions where it is not zero (default: all);
        only those rows are multiplied with the embedding table, which at a large vocabulary costs as
        much as the readout when done for every position.
        self_mask (B or 1, 1, L, L) bool: which positions each position's self-attention may read
        (default: all of them); e.g. causal, or the annealed mask of `model_conf.attention_anneal_steps`.
        With `attention_block` the block-causal mask is applied on top (both must allow a key).
        active (B, L) bool: each row's active block (`model_conf.active_block`): its positions read
        each other both ways (on top of the masks above) and are read at time t; every other position
        is clean, read at t = 1, as the block decoder's cache of committed positions holds them.
        """
        with precision.autocast(tokens.device, self.autocast_dtype):
            return self._forward(tokens, t, audio, soft_delta, self_mask, pinned, soft_rows, active).float()

    def condition(self, t: torch.Tensor, active: torch.Tensor | None = None) -> TimeCondition:
        """The time embedding of rows at t (B,); with `active` (B, L), the other positions' at t = 1."""
        c = self.time_mlp(timestep_embedding(t, self.time_embed_dim, self.time_scale))[:, None]
        if active is None:
            return TimeCondition(c)
        clean = self.time_mlp(timestep_embedding(torch.ones_like(t), self.time_embed_dim, self.time_scale))[:, None]
        return TimeCondition(torch.cat([clean, c], 1), active.long())

    def _forward(self, tokens, t, audio, soft_delta, self_mask, pinned, soft_rows, active):
        self_mask = self.combine_masks(self_mask, tokens.shape[1], tokens.device)
        if active is not None and self_mask is not None:
            self_mask = self_mask | (active[:, None, :, None] & active[:, None, None, :])
        x = self.embed(tokens)
        if self.preserve is not None:
            if pinned is None:
                raise ValueError("decoder_conf.preserve_embedding: the decoder needs the pinned positions")
            x = x + self.preserve(pinned.long())
        if self.positions is not None:
            if tokens.shape[1] > self.positions.num_embeddings:
                raise ValueError(f"output length {tokens.shape[1]} exceeds decoder_conf.max_positions "
                                 f"{self.positions.num_embeddings}")
            x = x + self.positions.weight[: tokens.shape[1]]
        if soft_delta is not None:
            table = self.embed.weight[: soft_delta.shape[-1]]
            if soft_rows is None:
                x = x + soft_delta @ table
            else:
                rows = soft_rows.nonzero(as_tuple=True)
                x = x.index_put(rows, (soft_delta[rows] @ table).to(x.dtype), accumulate=True)
        cond = self.condition(t, active)
        rotary = None
        if self.rotary:
            rotary = rotary_tables(tokens.shape[1], self.hidden_size // self.num_heads, x.device, x.dtype)
        for block, kv in zip(self.blocks, audio.kv):
            x = block(x, cond, rotary, kv, audio.mask, self_mask)
        if self.shift_readout:
            x = torch.cat([x[:, :1], x[:, :-1]], dim=1)
            if cond.select is not None:
                cond = TimeCondition(cond.c, torch.cat([cond.select[:, :1], cond.select[:, :-1]], 1))
        shift, scale = cond.modulation(self.final_modulation).chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(x), shift, scale))

    def block_mask(self, length: int, device) -> torch.Tensor | None:
        """The (1, 1, L, L) block-causal mask of `attention_block` (True: may read), or None."""
        if self.attention_block is None:
            return None
        block = torch.arange(length, device=device) // self.attention_block
        return (block[None, :] <= block[:, None])[None, None]

    def combine_masks(self, self_mask: torch.Tensor | None, length: int, device) -> torch.Tensor | None:
        block = self.block_mask(length, device)
        if block is None or self_mask is None:
            return self_mask if block is None else block
        return self_mask & block

    def step(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        audio: AudioMemory,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Autoregressive pass: causal self-attention, keys/values of earlier positions from `cache`.

        tokens (B, n): the tokens of positions m .. m + n - 1, where m is the cached length (0 without
        a cache); cache: per block (K, V) (B, H, m, D / H), as the previous call returned it.
        Returns logits (B, n, V), row i from the state of position m + i, i.e. the prediction of the
        token at m + i + 1 (whatever `shift_readout` says: that shift is for the fixed-length forward),
        and the cache of positions 0 .. m + n - 1. Without a cache, on a whole sequence, this is
        forward(tokens, t, audio, self_mask=causal) with its readout shifted.
        """
        with precision.autocast(tokens.device, self.autocast_dtype):
            logits, new_cache = self._step(tokens, t, audio, cache)
        return logits.float(), new_cache

    def _step(self, tokens, t, audio, cache):
        if self.preserve is not None:
            raise ValueError("decoder_conf.preserve_embedding is for the fixed-length denoiser; the "
                             "autoregressive step (model: drax_ar) has no pinned positions")
        m, n = (0 if cache is None else cache[0][0].shape[2]), tokens.shape[1]
        x = self.embed(tokens)
        if self.positions is not None:
            if m + n > self.positions.num_embeddings:
                raise ValueError(f"sequence length {m + n} exceeds decoder_conf.max_positions "
                                 f"{self.positions.num_embeddings}")
            x = x + self.positions.weight[m: m + n]
        cond = self.condition(t)
        rotary = None
        if self.rotary:
            cos, sin = rotary_tables(m + n, self.hidden_size // self.num_heads, x.device, x.dtype)
            rotary = cos[m:], sin[m:]
        new_cache = []
        for i, (block, kv) in enumerate(zip(self.blocks, audio.kv)):
            x, past = block.step(x, cond, rotary, kv, audio.mask, None if cache is None else cache[i])
            new_cache.append(past)
        shift, scale = cond.modulation(self.final_modulation).chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(x), shift, scale)), new_cache

    def block_step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        t: torch.Tensor,
        audio: AudioMemory,
        active: torch.Tensor,
        valid: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        past_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One call of the block decoder (drax/flow/block.py): the rows' next positions, each row its own.

        tokens, positions (B, q): tokens at absolute positions (increasing along each row); valid (B, q):
        which are real (the rest pad a row to q); active (B, q): the row's active block, read at time
        t (B,) and both ways among itself; the others are committed, read at t = 1 and causally, as in
        `forward(..., active=...)`. past: per block (K, V) (B, H, M, D / H) of the committed positions
        before them, past_valid (B, M) which of the M cached slots a row has.
        Returns logits (B, q, V), row i from the state of position i (no readout shift), and per block
        the (K, V) (B, H, q, D / H) of the q new positions.
        """
        with precision.autocast(tokens.device, self.autocast_dtype):
            logits, new = self._block_step(tokens, positions, t, audio, active, valid, past, past_valid)
        return logits.float(), new

    def _block_step(self, tokens, positions, t, audio, active, valid, past, past_valid):
        q = tokens.shape[1]
        own = torch.eye(q, dtype=torch.bool, device=tokens.device)[None]
        reads = ((positions[:, None, :] <= positions[:, :, None]) | (active[:, :, None] & active[:, None, :]))
        mask = (reads & valid[:, None, :]) | own  # (B, q, q); a padding position reads itself only
        if past is not None:
            mask = torch.cat([past_valid[:, None, :].expand(-1, q, -1), mask], 2)
        x, cond, new = self._run(self.embed(tokens), positions, self.condition(t, active), audio, mask[:, None], past)
        return self.readout(x, cond), new

    def _run(self, x, positions, cond: TimeCondition, audio, mask, past=None):
        """The blocks on token embeddings x (B, q, D) at absolute positions (B, q) under the self-attention
        mask (B, 1, q, m + q) over `past` (m cached positions) and themselves: (states, cond, (K, V) of the
        q positions per block)."""
        if self.preserve is not None:
            raise ValueError("decoder_conf.preserve_embedding is for the fixed-length denoiser")
        q = x.shape[1]
        if self.positions is not None:
            x = x + self.positions.weight[positions]
        rotary = None
        if self.rotary:
            cos, sin = rotary_tables(int(positions.max()) + 1, self.hidden_size // self.num_heads, x.device, x.dtype)
            rotary = cos[positions][:, None], sin[positions][:, None]
        new = []
        for i, (block, kv) in enumerate(zip(self.blocks, audio.kv)):
            x, (k, v) = block.step(x, cond, rotary, kv, audio.mask, None if past is None else past[i], mask)
            new.append((k[:, :, -q:], v[:, :, -q:]))
        return x, cond, new

    def readout(self, x: torch.Tensor, cond: TimeCondition) -> torch.Tensor:
        shift, scale = cond.modulation(self.final_modulation).chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(x), shift, scale))

    def forward_blocks(self, clean: torch.Tensor, noised: torch.Tensor, t: torch.Tensor, audio: AudioMemory,
                       block: torch.Tensor, soft_delta: torch.Tensor | None = None,
                       soft_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every block of a canvas at once (`model_conf.block_loss: all`; x_t beside x_1 as in BD3-LM):
        the clean canvas (B, L) and its noised copy (B, L) in one forward of 2L positions.

        block (B, L) long: the block of each position (-1: not in one, e.g. the prompt), blocks in
        increasing order along a row. A clean position reads the clean ones before it and itself
        (causal, at t = 1); a noised position in block k reads the clean positions before block k and
        the noised positions of block k (at time t (B,)), as the block decoder reads its cache and its
        active block. soft_delta, soft_rows: the straight-through p_mid term of the noised copy.
        Returns (logits of each noised position (its block's prediction; the block's first position
        reads the clean state before it, the others the noised state before them), logits of each clean
        position read from the clean state before it: the AR prediction), each (B, L, V).
        """
        with precision.autocast(clean.device, self.autocast_dtype):
            blocks, ar = self._forward_blocks(clean, noised, t, audio, block, soft_delta, soft_rows)
        return blocks.float(), ar.float()

    def _forward_blocks(self, clean, noised, t, audio, block, soft_delta, soft_rows):
        b, n = clean.shape
        pos = torch.arange(n, device=clean.device)
        in_block = block >= 0
        x = self.embed(torch.cat([clean, noised], 1))
        if soft_delta is not None:
            table = self.embed.weight[: soft_delta.shape[-1]]
            rows, cols = soft_rows.nonzero(as_tuple=True)
            x = x.index_put((rows, cols + n), (soft_delta[rows, cols] @ table).to(x.dtype), accumulate=True)
        same = block[:, :, None] == block[:, None, :]  # (B, L, L)
        first = torch.where(in_block, (same & (pos[None, None, :] <= pos[None, :, None])).int().argmax(2), pos[None])
        causal = (pos[None, :] <= pos[:, None])[None].expand(b, -1, -1)
        clean_rows = torch.cat([causal, torch.zeros_like(causal)], 2)
        noised_reads_clean = torch.where(in_block[..., None], pos[None, None, :] < first[..., None], causal)
        own = torch.eye(n, dtype=torch.bool, device=clean.device)
        noised_reads_noised = (same & in_block[:, :, None] & in_block[:, None, :]) | own
        mask = torch.cat([clean_rows, torch.cat([noised_reads_clean, noised_reads_noised], 2)], 1)[:, None]
        cond = self.condition(t, torch.cat([torch.zeros_like(in_block), in_block], 1))
        states, cond, _ = self._run(x, torch.cat([pos, pos])[None].expand(b, -1), cond, audio, mask)
        logits = self.readout(states, cond)  # (B, 2L, V)
        before = (pos - 1).clamp(min=0)[None].expand(b, -1)
        within = in_block & (pos > first)  # the state before is the noised one of the same block
        source = torch.where(within, before + n, before)
        gather = lambda idx: logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))  # noqa: E731
        return gather(source), gather(before)


class Denoiser:
    """The DiT as a sampler's posterior (drax/flow/sampler.py): logits of `decoder(x, t, audio)`, the
    positions held fixed (pinned (B, L)) given to a decoder that reads them."""

    def __init__(self, decoder: DiTDecoder, audio: AudioMemory, pinned: torch.Tensor | None = None):
        self.decoder, self.audio, self.pinned = decoder, audio, pinned

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pinned = None if self.pinned is None else self.pinned[:, : x.shape[1]]  # a causal step may read fewer
        return self.decoder(x, t, self.audio, pinned=pinned)


class PrefixCache:
    """A causal DiT (`attention_block: 1`) as the sampler's posterior, called repeatedly at one time t
    on canvases that change from some position on (the jacobi sampler's steps, drax/flow/sampler.py).

    With causal self-attention the state of position j reads the tokens 0 .. j only, so between two
    calls the states before the first position p whose token changed (in any row) are the same: a call
    runs `DiTDecoder.step` on positions p .. w - 1 (w - 2 with the shifted readout: the state of w - 1
    would predict a position beyond the canvas) from the cached self-attention K/V of positions
    0 .. p - 1, and keeps the earlier logits of the positions whose states did not change. The logits
    are those of `decoder(x, t, audio)` (B, w, V), up to float rounding, at the cost of the changed
    suffix instead of the whole canvas.
    """

    def __init__(self, decoder: DiTDecoder, audio: AudioMemory):
        if decoder.attention_block != 1 or decoder.preserve is not None:
            raise ValueError("PrefixCache needs causal self-attention (decoder_conf.attention_block: 1) "
                             "and no preserve_embedding")
        self.decoder, self.audio = decoder, audio
        self.tokens = self.t = self.logits = self.kv = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w = x.shape[1]
        p = 0  # positions 0 .. p - 1 keep their states (and their K/V in the cache)
        if self.tokens is not None and self.tokens.shape[0] == x.shape[0] and torch.equal(t, self.t):
            common = min(w, self.tokens.shape[1])
            changed = (x[:, :common] != self.tokens[:, :common]).any(0)
            p = int(changed.int().argmax()) if changed.any() else common
            # with the shifted readout the logits of position p come from state p - 1: kept only if computed
            p = min(p, w - 1, self.logits.shape[1] - int(self.decoder.shift_readout))
        past = [(k[:, :, :p], v[:, :, :p]) for k, v in self.kv] if p > 0 else None
        # with the shifted readout the last state predicts a position beyond the canvas: not computed
        end = max(w - 1, p + 1) if self.decoder.shift_readout else w
        rows, self.kv = self.decoder.step(x[:, p:end], t, self.audio, past)  # row i: state p + i
        if not self.decoder.shift_readout:  # logits of position j from state j
            logits = rows if p == 0 else torch.cat([self.logits[:, :p], rows], 1)
        elif p == 0:  # position 0 reads state 0, position j state j - 1
            logits = torch.cat([rows[:, :1], rows], 1)[:, :w]
        else:
            logits = torch.cat([self.logits[:, : p + 1], rows], 1)[:, :w]
        self.tokens, self.t, self.logits = x.clone(), t.clone(), logits
        return logits
