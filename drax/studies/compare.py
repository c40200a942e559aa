"""Baselines side by side (paper Table 1), speculative decoding (Table 3) and the CPU speed study
(recipe stage 13, `conf/compare.yaml`), for one test set, from the recipe's trained experiments.

    table1.md     error per language on a per-language subset of the test set, and RTFx (batch 1,
                  from the waveform) on the runtime set, for CTC greedy, AR greedy, AR beam, Whisper
                  zero-shot, Drax 4/1, 8/1, 16/1, Drax MBR 8/16 and Drax AR-rescored 8/16
    table3.md     speculative decoding: mean accepted tokens per verification step and RTFx, per target
                  (the AR baseline, Whisper) and drafter (Drax, NFE 2; a small AR model drafting 5 / 10),
                  with the check that every output equals the target's greedy output
    speed.md      decoder-only and end-to-end RTFx per duration bin, Drax 2/4/8/16 vs AR greedy; the
                  output length where Drax overtakes AR greedy (sweep over output lengths on a 30 s
                  utterance's encoder states); throughput (utterances/s) of Drax and AR greedy at
                  batch 1 and 16
    speed.png     decoder seconds against output length (the sweep), crossover points
    fig2a.png     end-to-end RTFx against output length on the runtime set, every system (Figure 2a)

Runtime protocol (App. C.2/C.4): utterances drawn equally from 5 s bins up to 30 s; the test sets
hold single sentences, so longer utterances are made by joining same-language test utterances
(audio and text). Each is decoded alone (batch 1, fp32, no compilation) from the waveform. The
models were trained on single sentences, so on joined audio their own stopping would not reflect
the length they must produce: for timing, AR decoders produce exactly the reference number of
tokens (end token suppressed before), Drax uses an output length fitted to the duration (the
training data's 95th-percentile tokens per second, rounded up to 8), CTC is one pass. Whisper
zero-shot uses its standard 30 s padded input.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from drax.data.audio import load_audio, pad_batch
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.autoregressive import ESPnetTransformerAR, WhisperAR, greedy
from drax.decode.baselines import ESPnetBaseline
from drax.decode.candidates import select
from drax.decode.options import DecodingOptions
from drax.decode.scoring import score
from drax.decode.speculative import ARDrafter, DraxDrafter, SubwordMap, TokenMap, speculative
from drax.decode.speech2text import Speech2Text
from drax.fileio import atomic_write_text
from drax.nets.whisper import AudioEncoder
from drax.options import load_options
from drax.pretrained.whisper import load_whisper
from drax.studies.report import SetReport, Timer, figure, md_table, save_figure
from drax.studies.runtime import BINS, Seconds, bin_label
from drax.text.units import EOT, load_units, prompt_names

logger = logging.getLogger(__name__)


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


class Compare(SetReport):
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
        self.audio_encoder = AudioEncoder(self.drax["drax"].model, whisper,  # Whisper encoder, true length
                                          recipe.c.encoder_autocast)
        self.wavs = read_kv_dict(str(self.data_dir / "wav.scp"))
        self.tokens_per_second = self.fit_token_rate()

    # ---- helpers -------------------------------------------------------------------------------
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

    # ---- Table 1: accuracy ---------------------------------------------------------------------
    def accuracy(self) -> dict[str, dict[str, float]]:
        c, hyps = self.c, {}

        def put(system, utt, text):
            hyps.setdefault(system, {})[utt] = text

        for utt in tqdm(self.subset, desc="table 1 accuracy", unit="utt"):
            lang, states = self.langs[utt], self.states(utt)
            put("CTC greedy", utt, self.ctc.text(self.ctc.decode(self.ctc.encode(states[0]), lang, "ctc", 0)))
            enc = self.ar.encode(states[0])
            put("AR greedy", utt, self.ar.text(self.ar.decode(enc, lang, "greedy", c.max_new_tokens)))
            put(f"AR beam {c.beam_size}", utt,
                self.ar.text(self.ar.decode(enc, lang, "beam", c.max_new_tokens, c.beam_size)))

            wenc = self.whisper_encode(load_audio(self.wavs[utt])[0])
            ids = greedy(self.whisper_ar, wenc, self.whisper_prompt(lang), c.max_new_tokens)
            put("Whisper zero-shot greedy", utt, self.whisper_text(ids[:-1] if ids[-1] == self.whisper_ar.eot else ids))
        for name, s2t in self.drax.items():
            tag = getattr(self.c, name)
            for nfe, k in self.drax_configs():
                s2t.options = DecodingOptions(nfe=nfe, num_candidates=k,
                                              temperature=c.temperature if k == 1 else c.candidate_temperature)
                s2t.generator.manual_seed(c.seed)
                for i in range(0, len(self.subset), 8):
                    utts = self.subset[i: i + 8]
                    decoded = s2t.decode_encoded(self.encoded(utts), [self.langs[u] for u in utts],
                                                 ("mbr", "ar") if k > 1 else ("mode",))
                    for utt, d in zip(utts, decoded):
                        if k == 1:
                            put(f"Drax {tag} {nfe}/1", utt, d.best.text)
                        else:
                            for s in ("mbr", "ar"):
                                put(f"Drax {tag} {nfe}/{k} {s.upper()}", utt, d.candidates[d.picks[s]].text)
        return {system: errors_of(h, self.refs, self.langs) for system, h in hyps.items()}

    def drax_configs(self) -> list[tuple[int, int]]:
        return [tuple(row) for row in self.c.drax_rows] + [(self.c.candidates[0], self.c.candidates[1])]

    def encoded(self, utts: list[str]):
        return pad_batch([kaldiio.load_mat(self.feats[u]) for u in utts])

    # ---- Table 1 / speed: runtime set ----------------------------------------------------------
    @torch.no_grad()
    def runtime(self, bins: dict[str, list[RuntimeUtt]]):
        """system -> bin -> Seconds (parts encoder/decoder/scoring), and per-utterance points for Fig. 2a.

        Every utterance goes through each system in turn (one function each, below), seconds per part."""
        table: dict[str, dict[str, Seconds]] = {}
        points = []  # (system, n_tokens, end-to-end RTFx)
        gen = torch.Generator().manual_seed(self.c.seed)
        for label, members in bins.items():
            for utt in tqdm(members, desc=f"runtime {label}", unit="utt"):
                with Timer() as t_enc:
                    states, lens = self.audio_encoder(torch.from_numpy(utt.audio))
                timed = [*self.time_ctc(utt, states, t_enc.seconds), *self.time_ar(utt, states, t_enc.seconds),
                         *self.time_whisper(utt)]
                for name, s2t in self.drax.items():
                    timed += self.time_drax(utt, states, lens, t_enc.seconds, s2t, getattr(self.c, name), gen)
                for system, parts in timed:
                    sec = table.setdefault(system, {}).setdefault(label, Seconds())
                    sec.audio += utt.duration
                    for part, v in parts.items():
                        sec.add(part, v)
                    points.append((system, utt.n_tokens, utt.duration / sum(parts.values())))
                for system, parts in self.time_drax_speed(utt, states, lens, t_enc.seconds, gen):
                    sec = table.setdefault(system, {}).setdefault(label, Seconds())
                    sec.audio += utt.duration
                    for part, v in parts.items():
                        sec.add(part, v)
        return table, points

    def time_ctc(self, utt: RuntimeUtt, states, encoder_seconds: float) -> list[tuple[str, dict]]:
        with Timer() as t_enc:
            enc = self.ctc.encode(states[0])
        with Timer() as t:
            self.ctc.decode(enc, utt.lang, "ctc", 0)
        return [("CTC greedy", {"encoder": encoder_seconds + t_enc.seconds, "decoder": t.seconds})]

    def time_ar(self, utt: RuntimeUtt, states, encoder_seconds: float) -> list[tuple[str, dict]]:
        """AR greedy and beam, made to produce the reference's number of tokens."""
        n, out = utt.n_tokens, []
        with Timer() as t_enc:
            enc = self.ar.encode(states[0])
        for method in ("greedy", "beam"):
            with Timer() as t:
                self.ar.decode(enc, utt.lang, method, n + 1, self.c.beam_size, min_new=n)
            name = "AR greedy" if method == "greedy" else f"AR beam {self.c.beam_size}"
            out.append((name, {"encoder": encoder_seconds + t_enc.seconds, "decoder": t.seconds}))
        return out

    def time_whisper(self, utt: RuntimeUtt) -> list[tuple[str, dict]]:
        """Whisper's own encoder (30 s window) and greedy decoder, the reference's number of tokens."""
        with Timer() as t_enc:
            wenc = self.whisper_encode(utt.audio)
        with Timer() as t:
            greedy(self.whisper_ar, wenc, self.whisper_prompt(utt.lang), utt.n_tokens + 1, min_new=utt.n_tokens)
        return [("Whisper zero-shot greedy", {"encoder": t_enc.seconds, "decoder": t.seconds})]

    def time_drax(self, utt: RuntimeUtt, states, lens, encoder_seconds: float, s2t, tag: str,
                  gen: torch.Generator) -> list[tuple[str, dict]]:
        """Drax at each (NFE, candidates) of the table, several candidates scored by MBR and Whisper."""
        model, c, out = s2t.model, self.c, []
        length = self.drax_length(model, utt.duration)
        prompt_ids = torch.tensor([model.prompt_ids(utt.lang)])
        for nfe, k in self.drax_configs():
            temp = c.temperature if k == 1 else c.candidate_temperature
            with Timer() as t:
                sampled = model.generate_encoded(
                    states, lens, DecodingOptions(nfe=nfe, temperature=temp, num_candidates=k, output_length=length),
                    prompt=prompt_ids, generator=gen)
                texts = [s2t.to_hypothesis(x).text for x in sampled.tokens[0]]
            parts = {"encoder": encoder_seconds, "decoder": t.seconds}
            if k == 1:
                out.append((f"Drax {tag} {nfe}/1", parts))
                continue
            for s in ("mbr", "ar"):
                with Timer() as t_s:
                    scores = s2t.ar_rescorer().score(states[0], texts, utt.lang).tolist() if s == "ar" else None
                    select(s, texts, utt.lang, scores)
                out.append((f"Drax {tag} {nfe}/{k} {s.upper()}", {**parts, "scoring": t_s.seconds}))
        return out

    def time_drax_speed(self, utt: RuntimeUtt, states, lens, encoder_seconds: float,
                        gen: torch.Generator) -> list[tuple[str, dict]]:
        """The decoder-only speed study: Drax (the baselines' size) at every NFE of `speed_nfe`."""
        model, out = self.drax["drax"].model, []
        length = self.drax_length(model, utt.duration)
        prompt_ids = torch.tensor([model.prompt_ids(utt.lang)])
        for nfe in self.c.speed_nfe:
            with Timer() as t:
                model.generate_encoded(states, lens, DecodingOptions(
                    nfe=nfe, temperature=self.c.temperature, output_length=length), prompt=prompt_ids, generator=gen)
            out.append((f"speed Drax {nfe}/1", {"encoder": encoder_seconds, "decoder": t.seconds}))
        return out

    @torch.no_grad()
    def sweep(self, bins) -> dict[str, dict[int, float]]:
        """Median decoder seconds to produce n tokens on the longest runtime utterance's states."""

        longest = max((u for members in bins.values() for u in members), key=lambda u: u.duration)
        states, lens = self.audio_encoder(torch.from_numpy(longest.audio))
        enc = self.ar.encode(states[0])
        model = self.drax["drax"].model
        prompt_ids = torch.tensor([model.prompt_ids(longest.lang)])
        ar_prefix = [self.ar.model.sos] + self.ar.prompt(longest.lang)
        gen = torch.Generator().manual_seed(0)
        out: dict[str, dict[int, float]] = {}
        for n in tqdm(self.c.sweep_lengths, desc="length sweep", unit="length"):
            runs = {}
            for _ in range(self.c.sweep_repeats):
                with Timer() as t:
                    greedy(self.ar.ar, enc, ar_prefix, n, min_new=n)
                runs.setdefault("AR greedy", []).append(t.seconds)
                for nfe in self.c.speed_nfe:
                    with Timer() as t:
                        model.generate_encoded(states, lens, DecodingOptions(
                            nfe=nfe, output_length=model.prompt_length + n), prompt=prompt_ids, generator=gen)
                    runs.setdefault(f"Drax {nfe}/1", []).append(t.seconds)
            for name, secs in runs.items():
                out.setdefault(name, {})[n] = statistics.median(secs)
        self.sweep_duration = longest.duration
        return out

    @torch.no_grad()
    def throughput(self) -> dict[str, float]:
        """Utterances per second on the accuracy subset: Drax and AR greedy at batch `throughput_batch` vs batch 1."""
        c, model, out = self.c, self.drax["drax"].model, {}
        size = c.throughput_batch
        utts = self.subset
        for nfe in c.speed_nfe:
            for batch in (1, size):
                with Timer() as t:
                    for i in range(0, len(utts), batch):
                        chunk = utts[i: i + batch]
                        prompt_ids = torch.tensor([model.prompt_ids(self.langs[u]) for u in chunk])
                        model.generate_encoded(*self.encoded(chunk), DecodingOptions(
                            nfe=nfe, temperature=c.temperature), prompt=prompt_ids)
                out[f"Drax {nfe}/1, batch {batch}"] = len(utts) / t.seconds
        for batch in (1, size):
            with Timer() as t:
                for i in range(0, len(utts), batch):
                    chunk = utts[i: i + batch]
                    self.ar.greedy_batch(*self.encoded(chunk), [self.langs[u] for u in chunk], c.max_new_tokens)
            out[f"AR greedy, batch {batch}"] = len(utts) / t.seconds
        return out

    # ---- Table 3 -------------------------------------------------------------------------------
    @torch.no_grad()
    def speculative_table(self) -> list[list]:
        c = self.c
        tokens = self.ar.token_list
        whisper_target = self.units.kind == "whisper"  # drafters and Whisper share its byte-level BPE
        if not whisper_target:
            logger.warning("units: %s share no vocabulary with Whisper: Table 3 has the AR baseline target only",
                           self.units.kind)
        to_whisper = SubwordMap(tokens, self.units) if whisper_target else None
        identity = TokenMap.identity(len(tokens))
        small = ESPnetTransformerAR(self.ar_small.model.decoder, self.ar_small.model.eos)
        # (target, drafter label, Drax drafter, small AR's block): every Drax drafts for the AR baseline
        # (same units); the Whisper-initialised one (else the other) for Whisper
        drax_models = [(getattr(c, key), self.drax[key].model) for key in ("drax", "drax_pretrained") if key in self.drax]
        configs = [("AR baseline", f"Drax {tag} (NFE {c.draft_nfe})", model, None) for tag, model in drax_models]
        configs += [("AR baseline", f"small AR, {k} tokens", None, k) for k in c.ar_draft_blocks]
        if whisper_target:
            tag, model = drax_models[-1]
            configs += [("Whisper", f"Drax {tag} (NFE {c.draft_nfe})", model, None)]
            configs += [("Whisper", f"small AR, {k} tokens", None, k) for k in c.ar_draft_blocks]
        stats: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (target, drafter) -> running sums
        for utt in tqdm(self.subset, desc="speculative", unit="utt"):
            lang, states = self.langs[utt], self.states(utt)
            audio = load_audio(self.wavs[utt])[0]
            seconds_of_audio = len(audio) / 16000
            with Timer() as t_enc:
                ar_mem = self.ar.encode(states[0])
            small_mem = self.ar_small.encode(states[0])
            targets = {"AR baseline": (self.ar.ar, ar_mem, [self.ar.model.sos] + self.ar.prompt(lang), t_enc.seconds)}
            if whisper_target:
                with Timer() as t_wenc:
                    w_mem = self.whisper_encode(audio)
                targets["Whisper"] = (self.whisper_ar, w_mem, self.whisper_prompt(lang), t_wenc.seconds)
            refs = {}
            for name, (target, mem, prefix, enc_s) in targets.items():
                with Timer() as t:
                    refs[name] = greedy(target, mem, prefix, c.max_new_tokens)
                stats[(name, "none (greedy)")].update(audio=seconds_of_audio, seconds=enc_s + t.seconds,
                                                      decoding=t.seconds, steps=len(refs[name]),
                                                      tokens=len(refs[name]), same=1, n=1)
            for target_name, drafter_name, model, block in configs:
                target, mem, prefix, enc_s = targets[target_name]
                token_map = identity if target_name == "AR baseline" else to_whisper
                if model is not None:
                    drafter = DraxDrafter(model, token_map, nfe=c.draft_nfe, temperature=c.draft_temperature,
                                          output_length=self.drax_length(model, seconds_of_audio),
                                          skip=1 if target_name == "AR baseline" else 0)
                    draft_mem, size = states, c.draft_block
                else:
                    lead = [] if target_name == "AR baseline" else [self.ar_small.model.sos]
                    drafter, draft_mem, size = ARDrafter(small, token_map, lead), small_mem, block
                with Timer() as t:
                    res = speculative(target, drafter, mem, prefix, c.max_new_tokens, size, lang=lang,
                                      draft_memory=draft_mem)
                stats[(target_name, drafter_name)].update(
                    audio=seconds_of_audio, seconds=enc_s + t.seconds, decoding=t.seconds,
                    steps=res.verify_steps + 1, accepted=res.accepted, tokens=len(res.tokens),
                    same=int(res.tokens == refs[target_name]), n=1)
        rows = []
        for (target_name, drafter_name), e in stats.items():
            base = stats[(target_name, "none (greedy)")]
            rtfx = e["audio"] / e["seconds"]
            rows.append([target_name, drafter_name, e["tokens"] / e["steps"],
                         (e["accepted"] / e["steps"]) if drafter_name != "none (greedy)" else None,
                         rtfx, rtfx / (base["audio"] / base["seconds"]), base["decoding"] / e["decoding"],
                         f"{e['same']}/{e['n']}"])
        return rows

    # ---- output --------------------------------------------------------------------------------
    def run(self, command: str = "") -> Path:
        c = self.c
        errors = self.accuracy()
        bins = joined_runtime_set(self.data_dir, self.set_dir, self.units, c.runtime_per_bin, c.seed)
        table, points = self.runtime(bins)
        sweep = self.sweep(bins)
        throughput = self.throughput()
        spec = self.speculative_table()
        self.write_table1(errors, table, bins)
        self.write_speed(table, sweep, throughput, bins)
        self.add("table3", "Table 3: speculative decoding", (
            "Per test-set utterance of the accuracy subset; the target decodes greedily, the drafter proposes "
            "tokens that the target verifies in one forward pass. Tokens/step: output tokens per target forward "
            "pass; accepted/step: drafted tokens kept per verification step; RTFx end to end (target encoder + "
            "decoding, drafting included); speed-up over the target alone, end to end and decoding only (the "
            "target's encoder costs the same with or without a drafter, so it caps the end-to-end gain); "
            "identical: outputs equal to the target's greedy output. Whisper runs on its standard 30 s input, "
            "the drafters on the true-length states."),
            md_table(["target", "drafter", "tokens / step", "accepted / step", "RTFx", "speed-up",
                      "decoding speed-up", "identical"], spec))
        self.plot_fig2a(points)
        head = (f"# Baselines, speculative decoding and speed\n\nWritten on {date.today()} ({platform.machine()}, "
                f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}) by `{command}`. Accuracy subset: "
                f"{c.utts_per_lang} utterances per language of `{self.set_dir.name}`.\n\nConfig: `{json.dumps(asdict(c))}`\n")
        path = self.out_dir / "compare.md"
        atomic_write_text(str(path), "\n".join([head, *self.sections]))
        return path

    def write_table1(self, errors, table, bins) -> None:
        langs = sorted(k for k in next(iter(errors.values())) if k != "avg")
        rows = []
        for system, per in errors.items():
            total = Seconds()
            for sec in table.get(system, {}).values():
                total.audio += sec.audio
                for part, v in sec.parts.items():
                    total.add(part, v)
            rows.append([system] + [per.get(lang) for lang in langs] + [per["avg"], total.rtfx("decoder"), total.rtfx()])
        sizes = ", ".join(f"{label}: {len(m)}" for label, m in bins.items())
        caps = [f"`{getattr(self.c, name)}` decodes at most {s2t.model.decoder.positions.num_embeddings} positions (learned "
                "positions), fewer than the longest runtime utterances need, so its RTFx there is optimistic"
                for name, s2t in self.drax.items() if s2t.model.decoder.positions is not None]
        self.add("table1", "Table 1: baselines side by side", (
            f"Error (WER %, CER % for zh/ja) on {len(self.subset)} test utterances; RTFx (decoder only and end to "
            f"end from the waveform, batch 1) on the runtime set ({sizes} utterances per bin). CTC and AR models: "
            f"the recipe's `{self.c.ctc}` and `{self.c.ar}` (same size as `{self.c.drax}`); Whisper: the "
            "recipe's pretrained model, raw greedy (no token suppression). Drax n/k: NFE n, k candidates."
            + "".join(f" {cap}." for cap in caps)),
            md_table(["system", *langs, "avg", "decoder RTFx", "RTFx"], rows))

    def write_speed(self, table, sweep, throughput, bins) -> None:
        labels = [label for label, members in bins.items() if members]
        systems = ["AR greedy", *[f"speed Drax {nfe}/1" for nfe in self.c.speed_nfe]]
        dec_rows = [[s.replace("speed ", "")] + [table[s][lb].rtfx("decoder") if lb in table.get(s, {}) else None
                                                 for lb in labels] for s in systems]
        e2e_rows = [[s.replace("speed ", "")] + [table[s][lb].rtfx() if lb in table.get(s, {}) else None
                                                 for lb in labels] for s in systems]
        ar = sweep["AR greedy"]
        lengths = sorted(ar)
        sweep_rows = [[name] + [secs[n] * 1000 for n in lengths] for name, secs in sweep.items()]
        cross_rows = []
        for name, secs in sweep.items():
            if name == "AR greedy":
                continue
            faster = [n for n in lengths if secs[n] < ar[n]]
            first = next((n for n in lengths if all(secs[m] < ar[m] for m in lengths if m >= n)), None)
            cross_rows.append([name, str(first) if first is not None else f"not up to {lengths[-1]}",
                               ", ".join(map(str, faster)) or "-"])
        last = labels[-1] if labels else None
        ratio = None
        if last and last in table.get("speed Drax 4/1", {}) and last in table.get("AR greedy", {}):
            ratio = table["speed Drax 4/1"][last].rtfx("decoder") / table["AR greedy"][last].rtfx("decoder")
        self.plot_sweep(sweep)
        self.add("speed", "Speed on this CPU: Drax vs AR greedy (same decoder size)", (
            f"Decoder-only and end-to-end RTFx per duration bin on the runtime set (batch 1; Drax `{self.c.drax}` "
            f"with its output length fitted to the duration at {self.tokens_per_second:.2f} tokens/s, AR "
            f"`{self.c.ar}` producing the reference number of tokens). Drax 4/1 / AR greedy decoder RTFx on the "
            f"last bin ({last}): {'-' if ratio is None else f'{ratio:.2f}x'}.\n\nLength sweep on the states of a "
            f"{getattr(self, 'sweep_duration', 0):.1f} s utterance: median decoder milliseconds to produce n tokens "
            f"({self.c.sweep_repeats} runs; `speed.png`), and the output length from which Drax is faster than AR "
            "greedy at every longer length.\n\nThroughput (utterances/s on the accuracy subset, from dumped states)."),
            "Decoder RTFx:\n\n" + md_table(["system", *labels], dec_rows) + "\nEnd-to-end RTFx:\n\n"
            + md_table(["system", *labels], e2e_rows) + "\nLength sweep (ms):\n\n"
            + md_table(["system", *[f"n={n}" for n in lengths]], sweep_rows) + "\n"
            + md_table(["Drax", "overtakes AR greedy from n =", "faster at n ="], cross_rows) + "\n"
            + md_table(["configuration", "utterances / s"], [[k, v] for k, v in throughput.items()]))

    def plot_sweep(self, sweep) -> None:
        fig, ax = figure(6.5, 4.2)
        for name, secs in sweep.items():
            lengths = sorted(secs)
            ax.plot(lengths, [secs[n] * 1000 for n in lengths], marker="o", label=name,
                    linewidth=2.5 if name == "AR greedy" else 1.2)
        ax.set(xlabel="output length (tokens)", ylabel="decoder time (ms, median)", xscale="log", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, self.out_dir / "speed.png")

    def plot_fig2a(self, points) -> None:
        fig, ax = figure(6.5, 4.2)
        keep = [s for s in dict.fromkeys(p[0] for p in points) if not s.endswith(("MBR", "AR")) or "8/16" in s]
        for system in keep:
            pts = sorted((n, r) for s, n, r in points if s == system)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=system)
        ax.set(xlabel="reference output length (tokens)", ylabel="RTFx (end to end, batch 1)", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        save_figure(fig, self.out_dir / "fig2a.png")
