"""Initialise the DiT decoder from a pretrained Whisper decoder (`decoder_conf.init_from_whisper`).

A decoder trained from scratch must learn both language and which audio frames each output position
reads; Whisper's decoder already knows both. Its blocks map one to one onto DiT blocks:

    Whisper (pre-LN)                       DiT (adaLN-zero)
    LN_affine(x) = n(x) * g + b            n(x) * (1 + scale) + shift,  scale = g - 1, shift = b
    x + Attn(...)                          x + gate * Attn(...),        gate = 1
    learned absolute positions             decoder_conf.max_positions, rotary: false
    state j predicts token j + 1           shift_readout: true (logits of j read from state j - 1)

The modulation weights stay zero, so at initialisation the time embedding has no effect and the
network is Whisper's decoder with bidirectional self-attention. The head starts as the (tied) token
embedding. The compact output units are Whisper tokens; each row is copied from its Whisper id, and
rows without one (<blank>, <unk>, the mask token) start at the mean embedding. The audio projection
is set so that it returns the encoder's output unchanged (it undoes, then redoes, the encoder's
final layer norm).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from drax.pretrained.whisper import resolve_whisper

logger = logging.getLogger(__name__)

KEY = "decoder_conf.init_from_whisper"


def read_whisper_state(name_or_dir: str) -> tuple[object, dict[str, torch.Tensor]]:
    """(WhisperConfig, tensors of model.decoder.* and model.encoder.layer_norm.*) in float32."""
    from transformers import WhisperConfig  # slow to import; only this path needs it


    source = resolve_whisper(name_or_dir, key=KEY)
    path = Path(source)
    wanted = ("model.decoder.", "model.encoder.layer_norm.")
    if not path.is_dir():
        from transformers import WhisperForConditionalGeneration  # slow to import; only this path needs it

        model = WhisperForConditionalGeneration.from_pretrained(source)
        state = {k: v for k, v in model.state_dict().items() if k.startswith(wanted)}
        return model.config, {k: v.float() for k, v in state.items()}
    from safetensors import safe_open  # slow to import; only this path needs it

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{KEY}: no *.safetensors weights in {path}")
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith(wanted):
                    state[key] = f.get_tensor(key).float()
    return WhisperConfig.from_pretrained(path), state


def whisper_token_ids(source: str, token_list: list[str]) -> list[int | None]:
    """Whisper id of every entry of the token list (None where Whisper has no such token)."""
    from transformers import AutoTokenizer  # slow to import; only this path needs it


    tokenizer = AutoTokenizer.from_pretrained(resolve_whisper(source, key=KEY))
    vocab = tokenizer.get_vocab()
    return [vocab.get(tok) for tok in token_list]


@torch.no_grad()
def init_dit_from_whisper(decoder, source: str, token_list: list[str]) -> None:
    if source == "recipe":
        raise ValueError(f"{KEY}: 'recipe' means the recipe's Whisper and is filled in by stage 7 of a recipe; "
                         "outside a recipe give a Whisper model dir or hub id")
    config, state = read_whisper_state(source)
    expected = dict(hidden_size=config.d_model, num_blocks=config.decoder_layers,
                    num_heads=config.decoder_attention_heads,
                    mlp_ratio=config.decoder_ffn_dim / config.d_model, encoder_output_size=config.d_model)
    actual = dict(hidden_size=decoder.hidden_size, num_blocks=len(decoder.blocks), num_heads=decoder.num_heads,
                  mlp_ratio=decoder.blocks[0].mlp[0].out_features / decoder.hidden_size,
                  encoder_output_size=decoder.audio_proj[0].in_features)
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    ours = (isinstance(decoder.audio_proj[-1], torch.nn.LayerNorm) and decoder.blocks[0].self_attn.qkv.bias is not None
            and decoder.preserve is None)
    if wrong or decoder.rotary or not decoder.shift_readout or decoder.positions is None or not ours:
        raise ValueError(
            f"{KEY}={source}: the decoder must have Whisper's shape; set decoder_conf "
            + ", ".join(f"{k}: {v}" for k, (_, v) in wrong.items())
            + (", " if wrong else "") + "rotary: false, shift_readout: true, max_positions: > 0, "
            "audio_proj: linear_norm, attention_bias: true, preserve_embedding: false"
            + (f" (differs: {', '.join(f'{k}={a}' for k, (a, _) in wrong.items())})" if wrong else "")
        )
    if decoder.positions.num_embeddings > config.max_target_positions:
        raise ValueError(f"{KEY}: decoder_conf.max_positions must be <= {config.max_target_positions}")

    p = "model.decoder."
    table = state[p + "embed_tokens.weight"]
    ids = whisper_token_ids(source, token_list)
    found = [i for i in ids if i is not None]
    if len(found) < len(ids) // 2:
        raise ValueError(f"{KEY}: only {len(found)} of {len(ids)} output units are Whisper tokens; "
                         "use Whisper units (recipe `units: whisper`) to start from Whisper's decoder")
    mean = table[found].mean(0)
    rows = torch.stack([table[i] if i is not None else mean for i in ids])
    decoder.embed.weight.copy_(torch.cat([rows, mean[None]]))  # + the mask token
    decoder.head.weight.copy_(rows)
    decoder.head.bias.zero_()
    logger.info("%s: %d of %d output units start from Whisper embeddings", KEY, len(found), len(ids))
    n_pos = decoder.positions.num_embeddings
    decoder.positions.weight.copy_(state[p + "embed_positions.weight"][:n_pos])

    # Identity audio projection: Linear undoes the encoder's final LN affine, our LN redoes it.
    g, b = state["model.encoder.layer_norm.weight"], state["model.encoder.layer_norm.bias"]
    linear, norm = decoder.audio_proj
    linear.weight.copy_(torch.diag(1.0 / g))
    linear.bias.copy_(-b / g)
    norm.weight.copy_(g)
    norm.bias.copy_(b)

    d = decoder.hidden_size
    for i, block in enumerate(decoder.blocks):
        w = lambda name: state[f"{p}layers.{i}.{name}"]  # noqa: E731
        zeros = torch.zeros(d)
        sa, ca = "self_attn.", "encoder_attn."
        block.self_attn.qkv.weight.copy_(torch.cat([w(sa + "q_proj.weight"), w(sa + "k_proj.weight"),
                                                    w(sa + "v_proj.weight")]))
        block.self_attn.qkv.bias.copy_(torch.cat([w(sa + "q_proj.bias"), zeros, w(sa + "v_proj.bias")]))
        block.self_attn.out.weight.copy_(w(sa + "out_proj.weight"))
        block.self_attn.out.bias.copy_(w(sa + "out_proj.bias"))
        block.cross_attn.q.weight.copy_(w(ca + "q_proj.weight"))
        block.cross_attn.q.bias.copy_(w(ca + "q_proj.bias"))
        block.cross_attn.kv.weight.copy_(torch.cat([w(ca + "k_proj.weight"), w(ca + "v_proj.weight")]))
        block.cross_attn.kv.bias.copy_(torch.cat([zeros, w(ca + "v_proj.bias")]))
        block.cross_attn.out.weight.copy_(w(ca + "out_proj.weight"))
        block.cross_attn.out.bias.copy_(w(ca + "out_proj.bias"))
        block.mlp[0].weight.copy_(w("fc1.weight"))
        block.mlp[0].bias.copy_(w("fc1.bias"))
        block.mlp[-1].weight.copy_(w("fc2.weight"))
        block.mlp[-1].bias.copy_(w("fc2.bias"))
        # modulation chunks: (shift, scale, gate) for self-attention, cross-attention, MLP
        bias = []
        for norm_name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            bias += [w(norm_name + ".bias"), w(norm_name + ".weight") - 1.0, torch.ones(d)]
        block.modulation[1].weight.zero_()
        block.modulation[1].bias.copy_(torch.cat(bias))
    decoder.final_modulation[1].weight.zero_()
    decoder.final_modulation[1].bias.copy_(torch.cat([state[p + "layer_norm.bias"],
                                                      state[p + "layer_norm.weight"] - 1.0]))
