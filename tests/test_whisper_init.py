"""The DiT decoder initialised from Whisper-base's decoder computes Whisper's decoder."""
import types

import pytest
import torch
import torch.nn.functional as F

import drax.nets.attention as attention
from drax.nets.dit import DiTDecoder
from drax.nets.whisper_init import init_dit_from_whisper

PROMPT = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
WHISPER_SHAPE = dict(hidden_size=512, num_blocks=6, num_heads=8, max_positions=32, rotary=False,
                     shift_readout=True)


@pytest.fixture(scope="module")
def whisper(whisper_base):
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    return (WhisperForConditionalGeneration.from_pretrained(whisper_base).eval(),
            AutoTokenizer.from_pretrained(whisper_base))


def causal_self_attention(monkeypatch):
    """Whisper's decoder is causal; the DiT's self-attention (the only attention without a mask) is not."""
    sdpa = F.scaled_dot_product_attention

    def causal(q, k, v, attn_mask=None, dropout_p=0.0):
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=attn_mask is None)

    monkeypatch.setattr(attention, "F", types.SimpleNamespace(scaled_dot_product_attention=causal))


def test_initialised_dit_reproduces_whisper_decoder(whisper, whisper_base, monkeypatch):
    model, tokenizer = whisper
    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    text = tokenizer.tokenize(" I would like to buy a cup of coffee.")
    # compact units as the recipe writes them: a Whisper-token subset, specials, plus ids Whisper lacks
    token_list = ["<blank>", "<unk>", *sorted(set(text) | {inv[i] for i in range(300)}), *PROMPT, "<|endoftext|>"]
    decoder = DiTDecoder(len(token_list), 512, **WHISPER_SHAPE)
    init_dit_from_whisper(decoder, str(whisper_base), token_list)
    decoder.eval()
    causal_self_attention(monkeypatch)

    torch.manual_seed(0)
    enc = model.model.encoder.layer_norm(torch.randn(2, 40, 512))  # encoder outputs end with this norm
    seq = PROMPT + text
    ours = torch.tensor([[token_list.index(t) for t in seq]] * 2)
    whisper_ids = torch.tensor([tokenizer.convert_tokens_to_ids(seq)] * 2)
    with torch.no_grad():
        logits = decoder(ours, torch.tensor([0.3, 0.9]), decoder.encode_audio(enc, torch.tensor([40, 40])))
        ref = model(decoder_input_ids=whisper_ids, encoder_outputs=(enc,)).logits
    units = tokenizer.convert_tokens_to_ids(token_list[2:-5])
    # DiT position j (read from state j - 1) = Whisper's next-token prediction after position j - 1
    ours_p = logits[:, 1:, 2:-5].softmax(-1)
    ref_p = ref[:, :-1, units].softmax(-1)
    assert (ours_p.argmax(-1) == ref_p.argmax(-1)).all()
    assert (ours_p - ref_p).abs().max() < 0.02  # GELU tanh vs erf and LN eps only
    # the rows Whisper has no token for start at the mean embedding; t has no effect yet (zero modulation weights)
    assert torch.allclose(decoder.embed.weight[0], decoder.embed.weight[-1])
    with torch.no_grad():
        other_t = decoder(ours, torch.tensor([0.9, 0.0]), decoder.encode_audio(enc, torch.tensor([40, 40])))
    assert torch.allclose(logits, other_t)


def test_wrong_decoder_shape_is_named(whisper_base):
    decoder = DiTDecoder(10, 512, hidden_size=256, num_blocks=6, num_heads=8, max_positions=32)
    with pytest.raises(ValueError, match="hidden_size: 512.*rotary: false, shift_readout: true"):
        init_dit_from_whisper(decoder, str(whisper_base), ["<blank>"] * 10)


def test_recipe_placeholder_outside_a_recipe_is_explained():
    decoder = DiTDecoder(4, 512, **WHISPER_SHAPE)
    with pytest.raises(ValueError, match="stage 7 of a recipe"):
        init_dit_from_whisper(decoder, "recipe", ["<blank>", "<unk>", "a", "b"])


def test_units_that_are_not_whisper_tokens_are_refused(whisper_base):
    decoder = DiTDecoder(4, 512, **WHISPER_SHAPE)
    with pytest.raises(ValueError, match="units: whisper"):
        init_dit_from_whisper(decoder, str(whisper_base), ["<blank>", "<unk>", "▁the", "▁cat"])
