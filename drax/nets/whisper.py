"""Whisper log-mel front-end and a frozen pretrained Whisper encoder, as ESPnet components.

The encoder runs on the true input length by calling Whisper's layers directly (conv1, conv2,
positions[:T], blocks, final norm): transformers' WhisperEncoder.forward insists on 30 s (3000
frames), which is ~10x slower for short utterances. `pad_to_30s: true` in the front-end restores the
paper's padded input; `trailing_silence` appends a few seconds of silence instead (`whisper_input`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder

from drax.data.audio import SAMPLE_RATE, pad_batch
from drax.nets import precision
from drax.pretrained.whisper import resolve_whisper

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s window


def mel_filters(n_mels: int) -> torch.Tensor:
    """Whisper's Slaney-scale mel filterbank (n_mels, N_FFT // 2 + 1), from transformers."""
    from transformers.audio_utils import mel_filter_bank  # slow to import; only this path needs it

    fb = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                         max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                         mel_scale="slaney")
    return torch.from_numpy(fb).float().T


def whisper_input(audio: torch.Tensor, pad_to_30s: bool = False, trailing_silence: float = 0.0) -> torch.Tensor:
    """The waveform (samples,) the encoder reads: padded with silence to 30 s (`pad_to_30s`, as Whisper
    was trained), or with `trailing_silence` seconds of silence appended; never past the 30 s window."""
    n = audio.shape[-1]
    target = CHUNK_SAMPLES if pad_to_30s else min(CHUNK_SAMPLES, n + round(trailing_silence * SAMPLE_RATE))
    return F.pad(audio, (0, max(0, target - n)))


def log_mel(audio: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel of one waveform (samples,) -> (frames, n_mels), frames = samples // 160."""
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio.float(), N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    spec = torch.clamp(filters.to(audio.device) @ power, min=1e-10).log10()
    spec = torch.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).T


class WhisperLogMelFrontend(AbsFrontend):
    """ESPnet frontend choice `whisper_logmel`: 16 kHz waveform -> Whisper log-mel features."""

    def __init__(self, fs: int = SAMPLE_RATE, n_mels: int = 80, pad_to_30s: bool = False,
                 trailing_silence: float = 0.0):
        super().__init__()
        if fs != SAMPLE_RATE:
            raise ValueError(f"frontend_conf.fs must be {SAMPLE_RATE} for Whisper (got {fs}); resample the audio")
        self.n_mels = n_mels
        self.pad_to_30s, self.trailing_silence = pad_to_30s, trailing_silence
        self.register_buffer("filters", mel_filters(n_mels), persistent=False)

    def output_size(self) -> int:
        return self.n_mels

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        feats = []
        for wav, n in zip(speech, speech_lengths.tolist()):
            feats.append(log_mel(whisper_input(wav[:n], self.pad_to_30s, self.trailing_silence), self.filters))
        return pad_batch(feats, speech.device)


def whisper_mel_bins(name_or_dir: str) -> int:
    """Mel bins a Whisper model takes (80 for most sizes, 128 for large-v3), from its config alone."""
    from transformers import WhisperConfig  # slow to import; only this path needs it


    return WhisperConfig.from_pretrained(resolve_whisper(name_or_dir)).num_mel_bins


def load_whisper_encoder(name_or_dir: str):
    """transformers WhisperEncoder from a local transformers-format dir or a hub id (e.g. openai/whisper-large-v3).

    From a local dir only the encoder's tensors are read (a large-v3 decoder is ~0.9 GB we do not need).
    """
    from transformers import WhisperConfig, WhisperModel  # slow to import; only this path needs it
    from transformers.models.whisper.modeling_whisper import WhisperEncoder  # slow to import; only this path needs it


    source = resolve_whisper(name_or_dir, key="encoder_conf.model")
    path = Path(source)
    if not path.is_dir():
        return WhisperModel.from_pretrained(source).encoder
    from safetensors import safe_open  # slow to import; only this path needs it

    config = WhisperConfig.from_pretrained(path)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"encoder_conf.model: no *.safetensors weights in {path}")
    encoder = WhisperEncoder(config)
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                for prefix in ("model.encoder.", "encoder."):
                    if key.startswith(prefix):
                        state[key[len(prefix):]] = f.get_tensor(key)
    missing, _ = encoder.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"encoder_conf.model: {path} lacks encoder weights {missing[:5]}...")
    return encoder


class FrozenWhisperEncoder(AbsEncoder):
    """ESPnet encoder choice `whisper_frozen`: a pretrained Whisper encoder, frozen, on the true length.

    autocast: null (float32) or bfloat16 / float16 for its matrix products (drax/nets/precision.py);
    the states it returns are float32.
    """

    def __init__(self, input_size: int, model: str, freeze: bool = True, autocast: str | None = None):
        super().__init__()
        self.autocast_dtype = precision.autocast_dtype(autocast, "encoder_conf.autocast")
        self.whisper = load_whisper_encoder(model)
        n_mels = self.whisper.config.num_mel_bins
        if input_size != n_mels:
            raise ValueError(
                f"Whisper model '{model}' takes {n_mels} mel bins but the features have {input_size}; "
                f"set frontend_conf.n_mels: {n_mels}"
            )
        self.freeze = freeze
        if freeze:
            self.whisper.requires_grad_(False)
            self.whisper.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.whisper.eval()  # no dropout in a frozen encoder
        return self

    def output_size(self) -> int:
        return self.whisper.config.d_model

    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states=None):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze), \
                precision.autocast(xs_pad.device, self.autocast_dtype):
            states, olens, _ = self._forward(xs_pad, ilens)
        return states.float(), olens, None

    def _forward(self, xs_pad, ilens):
        w = self.whisper
        max_frames = 2 * w.config.max_source_positions
        if xs_pad.shape[1] > max_frames:
            raise ValueError(
                f"input of {xs_pad.shape[1]} frames exceeds Whisper's {max_frames} (30 s); "
                "split or filter utterances over 30 s in data preparation"
            )
        x = xs_pad.transpose(1, 2)  # (B, n_mels, T)
        in_mask = torch.arange(x.shape[-1], device=x.device)[None] < ilens[:, None]
        # Zero padded frames after conv1 so conv2 sees the same zero padding as for a lone utterance.
        x = F.gelu(w.conv1(x)) * in_mask[:, None]
        x = F.gelu(w.conv2(x)).transpose(1, 2)
        olens = (ilens + 1) // 2
        x = x + w.embed_positions.weight[: x.shape[1]]
        valid = torch.arange(x.shape[1], device=x.device)[None] < olens[:, None]
        bias = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, torch.finfo(x.dtype).min)
        bias = bias[:, None, None, :]
        for layer in w.layers:
            x = layer(x, attention_mask=bias)
            x = x[0] if isinstance(x, tuple) else x
        return w.layer_norm(x), olens, None


class PrecomputedEncoder(AbsEncoder):
    """ESPnet encoder choice `precomputed`: features are already encoder states (dumped once by the
    recipe from a frozen encoder), so training never re-runs the encoder."""

    def __init__(self, input_size: int):
        super().__init__()
        self._size = input_size

    def output_size(self) -> int:
        return self._size

    def forward(self, xs_pad, ilens, prev_states=None):
        return xs_pad, ilens, None



class FramePooling(AbsPreEncoder):
    """ESPnet preencoder choice `pool`: average `stride` consecutive frames, then project to
    `output_size` (e.g. 50 Hz Whisper states to 12.5 Hz for a CTC baseline's encoder, whose
    self-attention over every 50 Hz frame is what makes a CPU training step slow)."""

    def __init__(self, input_size: int, output_size: int, stride: int = 4):
        super().__init__()
        if stride < 1:
            raise ValueError(f"preencoder_conf.stride must be >= 1 (got {stride})")
        self.stride, self._size = stride, output_size
        self.proj = torch.nn.Linear(input_size, output_size)

    def output_size(self) -> int:
        return self._size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        b, t, d = x.shape
        s = self.stride
        valid = (torch.arange(t, device=x.device)[None] < lengths[:, None]).to(x.dtype)[..., None]
        pad = (-t) % s
        x, valid = F.pad(x * valid, (0, 0, 0, pad)), F.pad(valid, (0, 0, 0, pad))
        pooled = x.view(b, -1, s, d).sum(2) / valid.view(b, -1, s, 1).sum(2).clamp_min(1.0)
        return self.proj(pooled), (lengths + s - 1) // s


class AudioEncoder:
    """Waveforms -> encoder states, as the model was trained: its own front-end and encoder; for a model
    trained on dumped log-mel features (no front-end), Whisper's log-mel first; for a model trained on
    dumped states (`encoder: precomputed`), the Whisper encoder the states came from, run as stage 3
    ran it (`autocast`: the recipe's encoder_autocast, `pad_to_30s` and `trailing_silence`: its
    encoder_pad_to_30s and encoder_trailing_silence)."""

    def __init__(self, model, whisper: str | None, autocast: str | None = None, pad_to_30s: bool = False,
                 trailing_silence: float = 0.0, device: str = "cpu"):
        self.model = model
        self.frontend = self.encoder = None
        precomputed = isinstance(model.encoder, PrecomputedEncoder)
        if precomputed or model.frontend is None:
            if not whisper:
                raise ValueError(f"the model reads dumped {'encoder states' if precomputed else 'log-mel features'}: "
                                 "reading audio needs the Whisper they came from (recipe key `whisper`)")
            n_mels = whisper_mel_bins(whisper)
            self.frontend = WhisperLogMelFrontend(n_mels=n_mels, pad_to_30s=pad_to_30s,
                                                  trailing_silence=trailing_silence).to(device)
        if precomputed:
            self.encoder = FrozenWhisperEncoder(input_size=n_mels, model=whisper, autocast=autocast).to(device).eval()

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """States (B, T', D) and lengths (B,) of one waveform (T,) or a zero-padded batch (B, T) with
        its lengths (B,)."""
        if audio.dim() == 1:
            audio, lengths = audio[None], torch.tensor([audio.shape[0]], device=audio.device)
        speech = audio.float()
        if self.frontend is not None:
            speech, lengths = self.frontend(speech, lengths)
        if self.encoder is None:
            return self.model.encode(speech, lengths)
        enc, enc_lens, _ = self.encoder(speech, lengths)
        return enc, enc_lens
