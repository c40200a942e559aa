"""What the tables of stage 13 share: its config, the recipe's trained systems loaded once (Drax,
the ESPnet AR / CTC / small AR baselines, Whisper), the test set, and the runtime set of joined
utterances."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import kaldiio
import numpy as np
import torch

from drax.data.audio import load_audio, pad_batch
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.autoregressive import WhisperAR
from drax.decode.baselines import ESPnetBaseline
from drax.decode.scoring import score
from drax.decode.speech2text import Speech2Text
from drax.nets.whisper import AudioEncoder
from drax.options import load_options
from drax.pretrained.whisper import load_whisper
from drax.studies.report import SetReport
from drax.studies.runtime import BINS, bin_label
from drax.text.units import EOT, load_units, prompt_names


@dataclass(frozen=True)
class CompareConfig:
    """Stage 13 (conf/compare.yaml): the experiments compared, and the accuracy and speed protocols."""

    drax: str = "train_drax_scratch"  # Drax with a decoder of the baselines' size (tag of its experiment)
    drax_pretrained: str | None = "train_drax"  # Drax with a Whisper-initialised decoder (optional: null)
    ar: str = "train_ar"  # `model: espnet` attention decoder
    ctc: str = "train_ctc"  # `model: espnet` CTC
    ar_small: str = "train_ar_small"  # the small AR drafter
    model_file: str = "valid.loss.best.pth"
    utts_per_lang: int = 10  # accuracy subset of the test set
    runtime_per_bin: int = 2  # runtime-set utterances per 5 s bin (joined test sentences)
    drax_rows: list = field(default_factory=lambda: [[4, 1], [8, 1], [16, 1]])
    candidates: list = field(default_factory=lambda: [8, 16])  # NFE x candidates for MBR and AR rescoring
    temperature: float = 0.01
    candidate_temperature: float = 0.1
    beam_size: int = 5
    max_new_tokens: int = 128
    speed_nfe: list = field(default_factory=lambda: [2, 4, 8, 16])
    sweep_lengths: list = field(default_factory=lambda: [8, 16, 32, 64, 128, 192])
    sweep_repeats: int = 3
    throughput_batch: int = 16
    draft_nfe: int = 2
    draft_temperature: float = 0.01
    draft_block: int = 16  # Drax proposes up to this many tokens per step
    ar_draft_blocks: list = field(default_factory=lambda: [5, 10])
    seed: int = 0


@dataclass
class RuntimeUtt:
    id: str
    lang: str
    audio: np.ndarray
    duration: float
    text: str
    n_tokens: int  # reference length in output units


def joined_runtime_set(data_dir: Path, set_dir: Path, units, per_bin: int, seed: int = 0) -> dict[str, list[RuntimeUtt]]:
    """bin label -> utterances whose durations fall in the bin, each made of consecutive same-language
    test utterances (one for the short bins), languages taken in turn."""

    langs = read_kv_dict(str(set_dir / "utt2lang"))
    refs = read_kv_dict(str(set_dir / "text.raw"))
    durs = {u: float(d) for u, d in read_kv_dict(str(data_dir / "utt2dur")).items() if u in refs}
    wavs = read_kv_dict(str(data_dir / "wav.scp"))
    rng = random.Random(seed)
    by_lang = {}
    for u in sorted(durs):
        by_lang.setdefault(langs[u], []).append(u)
    order = sorted(by_lang)
    out, turn = {}, 0
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        members = []
        for attempt in range(50 * per_bin):
            if len(members) == per_bin:
                break
            lang = order[turn % len(order)]
            turn += 1
            pool = by_lang[lang][:]
            rng.shuffle(pool)
            target = rng.uniform(lo, hi)
            parts, total = [], 0.0
            for u in pool:
                if total + durs[u] > hi:
                    continue
                parts.append(u)
                total += durs[u]
                if total >= max(lo, target):
                    break
            if not lo <= total < hi or not parts:
                continue
            audio = np.concatenate([load_audio(wavs[u])[0] for u in parts])
            text = " ".join(refs[u] for u in parts) if lang not in ("zh", "ja") else "".join(refs[u] for u in parts)
            members.append(RuntimeUtt("+".join(parts), lang, audio, len(audio) / 16000, text, len(units.encode(text))))
        out[bin_label(lo, hi)] = members
    return out


def errors_of(hyps: dict[str, str], refs: dict[str, str], langs: dict[str, str]) -> dict[str, float]:
    scores, _ = score({u: refs[u] for u in hyps}, hyps, langs)
    per = {s.lang: (s.wer if s.wer is not None else s.cer) for s in scores}
    per["avg"] = sum(per.values()) / len(per)
    return per


class Systems(SetReport):
    """The recipe's trained systems on one test set, and the helpers every table uses."""

    def __init__(self, recipe, test_set: str, conf: dict):
        self.r, self.c = recipe, load_options(CompareConfig, conf, "compare config")
        self.set_dir, self.data_dir = recipe.dump / test_set, recipe.data / test_set
        super().__init__(self.set_dir, recipe.exp / "compare" / test_set, self.c.utts_per_lang, self.c.seed)
        self.units = load_units(recipe.units_dir)
        whisper = recipe.whisper_dir()
        exp = lambda key: recipe.exp / f"asr_{getattr(self.c, key)}"  # noqa: E731
        self.drax = {"drax": Speech2Text(exp("drax") / "config.yaml", exp("drax") / self.c.model_file,
                                         units_dir=recipe.units_dir, rescorer=whisper)}
        if self.c.drax_pretrained:
            self.drax["drax_pretrained"] = Speech2Text(exp("drax_pretrained") / "config.yaml",
                                                       exp("drax_pretrained") / self.c.model_file,
                                                       units_dir=recipe.units_dir, rescorer=whisper)
        base = lambda key: ESPnetBaseline(exp(key) / "config.yaml", exp(key) / self.c.model_file, recipe.units_dir)  # noqa: E731
        self.ar, self.ctc, self.ar_small = base("ar"), base("ctc"), base("ar_small")
        self.whisper_model, self.processor = load_whisper(whisper)
        self.whisper_model.eval()
        self.tok = self.processor.tokenizer
        self.whisper_ar = WhisperAR(self.whisper_model, self.tok.convert_tokens_to_ids(EOT))
        self.audio_encoder = AudioEncoder(self.drax["drax"].model, whisper, **recipe.encoder_options())
        self.wavs = read_kv_dict(str(self.data_dir / "wav.scp"))
        self.tokens_per_second = self.fit_token_rate()

    def fit_token_rate(self) -> float:
        """95th percentile of text tokens per second of audio over the training set."""
        durations = {u: float(v) for u, v in read_kv_dict(str(self.r.data / self.r.train_name / "utt2dur")).items()}
        tokens = {u: int(v.split(",")[0])
                  for u, v in read_kv_dict(str(self.r.dump / self.r.train_name / "text_shape")).items()}
        prompt_length = self.drax["drax"].model.prompt_length
        rates = sorted((tokens[u] - prompt_length) / durations[u] for u in tokens if durations.get(u))
        return rates[int(0.95 * (len(rates) - 1))]

    def drax_length(self, model, duration: float) -> int:
        length = model.prompt_length + math.ceil(self.tokens_per_second * duration) + 1
        length = 8 * math.ceil(length / 8)
        cap = model.decoder.positions.num_embeddings if model.decoder.positions is not None else None
        return min(length, cap) if cap else length

    def whisper_prompt(self, lang: str) -> list[int]:
        return self.tok.convert_tokens_to_ids(prompt_names(lang))

    def whisper_text(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True).strip()

    @torch.no_grad()
    def whisper_encode(self, audio: np.ndarray) -> torch.Tensor:
        """Whisper's standard input: log-mel padded to 30 s, then its encoder."""
        features = self.processor(audio, sampling_rate=16000, return_tensors="pt").input_features
        return self.whisper_model.model.encoder(features).last_hidden_state

    def states(self, utt: str) -> torch.Tensor:
        return torch.from_numpy(kaldiio.load_mat(self.feats[utt]).copy())[None]

    def encoded(self, utts: list[str]):
        return pad_batch([kaldiio.load_mat(self.feats[u]) for u in utts])

    def drax_configs(self) -> list[tuple[int, int]]:
        return [tuple(row) for row in self.c.drax_rows] + [(self.c.candidates[0], self.c.candidates[1])]
