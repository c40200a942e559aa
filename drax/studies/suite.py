"""The paper's decoding tables and figures for one trained experiment (recipe stage 11).

On a per-language subset of a test set (dumped features), with the trained model:

    grid.md               Table 4/8: NFE x candidates x scoring (mode, mbr, ar, elbo, oracle): error and RTFx
    temperature.md        Table 9: error per language at each sampling temperature
    nfe.md, nfe.png       Figure 8: error per language against NFE
    pmid.md, pmid.png     Figure 9: with and without the p_mid term in the sampler's velocity
    generation_path.md    Table 10: one utterance's state at every sampling step
    pmid_samples.md       Table 11: samples from p_mid for a few utterances
    runtime.md            Table 5 (runtime set) and RTFx per part (encoder, decoder, scoring), batch size 1
    rtfx_vs_length.png    Figure 2a: RTFx against reference output length
    pareto.png            Figure 2b: error against RTF (%) over NFE x candidates x scoring, with the front

and `tables.md`, all of the above in one page. Error: WER (%) for space-delimited languages, CER (%)
for zh/ja, with the recipe's normalisers; "avg" is the mean over languages.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import kaldiio
import torch
from tqdm import tqdm

from drax.data.audio import load_audio
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.candidates import SCORINGS, select, select_oracle
from drax.decode.options import DecodingOptions
from drax.decode.scoring import score
from drax.decode.speech2text import Speech2Text
from drax.fileio import atomic_write_text
from drax.flow.elbo import trajectory_elbo
from drax.nets.whisper import AudioEncoder
from drax.options import check_range, load_options
from drax.studies.report import SetReport, Timer, figure, fmt, md_table, save_figure
from drax.studies.runtime import Seconds, runtime_set
from drax.text.units import load_units

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteConfig:
    """Stage 11 (conf/tables.yaml): what the decoding tables decode, and on how much."""

    utts_per_lang: int = 10  # subset of the test set for every table but the runtime one
    batch_size: int = 8  # utterances per sampling batch (x candidates)
    seed: int = 0
    nfe: list = field(default_factory=lambda: [4, 8, 16])  # grid rows (Table 4/8) and runtime configurations
    candidates: list = field(default_factory=lambda: [1, 8, 16])
    scorings: list = field(default_factory=lambda: ["mode", "mbr", "ar", "elbo"])
    temperature: float = 0.01  # single-sample decoding (App. C.3)
    candidate_temperature: float = 0.1  # sampling several candidates (Table 4 caption)
    temperatures: list = field(default_factory=lambda: [0.01, 0.1, 0.3, 0.5, 1.0])
    nfe_curve: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    pmid_nfe: int = 16
    runtime_per_bin: int = 4  # utterances drawn from each 5 s duration bin
    example_utt: str | None = None  # Table 10's utterance (default: the subset's first English one)
    pmid_utts: int = 3
    pmid_samples: int = 4
    model_file: str = "valid.loss.best.pth"

    def __post_init__(self):
        for scoring in self.scorings:
            check_range("tables config", "scorings", scoring, choices=SCORINGS)


class Suite(SetReport):
    def __init__(self, asr_dir: Path, set_dir: Path, data_dir: Path, units_dir: Path, whisper: str | None,
                 out_dir: Path, conf: dict, encoder_options: dict | None = None):
        """encoder_options: AudioEncoder's keywords, as stage 3 ran the encoder (Recipe.encoder_options)."""
        self.conf = load_options(SuiteConfig, conf, "tables config")
        super().__init__(set_dir, out_dir, self.conf.utts_per_lang, self.conf.seed)
        self.whisper, self.encoder_options = whisper, encoder_options or {}  # the encoder that made the states
        self.s2t = Speech2Text(Path(asr_dir) / "config.yaml", Path(asr_dir) / self.conf.model_file,
                               units_dir=units_dir, rescorer=whisper)
        self.model = self.s2t.model
        self.units = load_units(units_dir)
        self.data_dir = Path(data_dir)

    # ---- decoding and scoring ------------------------------------------------------------------
    def decode(self, nfe: int, candidates: int, temperature: float, use_pmid: bool = False,
               scorings: tuple[str, ...] = ("mode",)) -> dict:
        """utt -> Decoded for the subset, seeded identically for every configuration."""
        s2t = self.s2t
        s2t.options = DecodingOptions(nfe=nfe, num_candidates=candidates, temperature=temperature, use_pmid=use_pmid)
        s2t.generator.manual_seed(self.conf.seed)
        out, size = {}, self.conf.batch_size
        desc = f"nfe {nfe} x {candidates} t={temperature}{' +pmid' if use_pmid else ''}"
        for i in tqdm(range(0, len(self.subset), size), desc=desc, unit="batch", leave=False):
            utts = self.subset[i: i + size]
            arrays = [kaldiio.load_mat(self.feats[u]) for u in utts]
            for utt, decoded in zip(utts, s2t.batch(arrays, [self.langs[u] for u in utts], scorings)):
                out[utt] = decoded
        return out

    def errors(self, hyps: dict[str, str]) -> dict[str, float]:
        """lang -> error (%), plus 'avg' over languages."""
        refs = {u: self.refs[u] for u in hyps}
        scores, _ = score(refs, hyps, self.langs)
        per = {s.lang: (s.wer if s.wer is not None else s.cer) for s in scores}
        per["avg"] = sum(per.values()) / len(per)
        return per

    def single(self, nfe: int, temperature: float, use_pmid: bool = False) -> dict[str, float]:
        """Errors of one sample per utterance."""
        return self.errors(self.pick(self.decode(nfe, 1, temperature, use_pmid), "mode", 1))

    def pick(self, decoded: dict, scoring: str, k: int) -> dict[str, str]:
        """Hypotheses chosen by `scoring` among the first k candidates of each utterance."""
        hyps = {}
        for utt, d in decoded.items():
            cands = d.candidates[:k]
            texts = [h.text for h in cands]
            lang = self.langs[utt]
            if k == 1:
                i = 0
            elif scoring == "oracle":
                i = select_oracle(texts, self.refs[utt], lang)
            else:
                scores = [h.scores[scoring] for h in cands] if scoring in ("ar", "elbo") else None
                i = select(scoring, texts, lang, scores)
            hyps[utt] = texts[i]
        return hyps

    # ---- tables --------------------------------------------------------------------------------
    def grid(self, rtfx: dict | None) -> dict:
        """Table 4/8. Several candidate counts share one sampling run: the first k of k_max samples."""
        c = self.conf
        scorings = [*c.scorings, "oracle"]
        errors = {}
        for nfe in c.nfe:
            single = self.decode(nfe, 1, c.temperature)
            for s in scorings:
                errors[(nfe, 1, s)] = self.errors(self.pick(single, s, 1))["avg"]
            multi = [k for k in c.candidates if k > 1]
            if multi:
                decoded = self.decode(nfe, max(multi), c.candidate_temperature, scorings=tuple(c.scorings))
                for k in multi:
                    for s in scorings:
                        errors[(nfe, k, s)] = self.errors(self.pick(decoded, s, k))["avg"]
        header = ["NFE", "candidates"] + [f"{s} {m}" for s in scorings for m in ("err", "RTFx")]
        rows = []
        for nfe in c.nfe:
            for k in c.candidates:
                row = [str(nfe), str(k)]
                for s in scorings:
                    speed = None if rtfx is None or s == "oracle" else rtfx.get((nfe, k, s))
                    row += [errors[(nfe, k, s)], speed]
                rows.append(row)
        self.add("grid", "Table 4/8: NFE x candidates x scoring",
                 f"Average error (%) over languages on {len(self.subset)} utterances; one sample at temperature "
                 f"{c.temperature}, several at {c.candidate_temperature}; oracle = the candidate closest to "
                 "the reference (an upper bound). RTFx: end to end, batch size 1, on the runtime set.",
                 md_table(header, rows))
        return errors

    def temperature(self) -> None:
        """Table 9."""
        c = self.conf
        per = {t: self.single(16, t) for t in c.temperatures}
        langs = list(next(iter(per.values())))
        rows = [[f"{t:g}"] + [per[t][lang] for lang in langs] for t in c.temperatures]
        self.add("temperature", "Table 9: sampling temperature", "Error (%) per language, NFE 16, one sample.",
                 md_table(["temperature", *langs], rows))

    def nfe_curve(self) -> None:
        """Figure 8."""
        c = self.conf
        per = {n: self.single(n, c.temperature) for n in c.nfe_curve}
        langs = list(next(iter(per.values())))
        rows = [[str(n)] + [per[n][lang] for lang in langs] for n in c.nfe_curve]
        self.plot_lines("nfe.png", c.nfe_curve, {lang: [per[n][lang] for n in c.nfe_curve] for lang in langs},
                        "NFE", "error (%)", log_x=True)
        self.add("nfe", "Figure 8: error against NFE", "One sample, temperature "
                 f"{c.temperature}. Plot: `nfe.png`.", md_table(["NFE", *langs], rows))

    def pmid(self) -> None:
        """Figure 9."""
        c = self.conf
        if self.model.pmid is None:
            self.add("pmid", "Figure 9: p_mid at inference", "", "This model's path has no audio p_mid.\n")
            return
        without = self.single(c.pmid_nfe, c.temperature)
        with_ = self.single(c.pmid_nfe, c.temperature, use_pmid=True)
        langs = list(without)
        self.plot_bars("pmid.png", langs, {"without p_mid": [without[x] for x in langs],
                                           "with p_mid": [with_[x] for x in langs]}, "error (%)")
        self.add("pmid", "Figure 9: p_mid in the sampler's velocity",
                 f"NFE {c.pmid_nfe}, one sample; with p_mid the sampler uses the training scheduler's "
                 "alpha_mid term (App. D.6). Plot: `pmid.png`.",
                 md_table(["sampling", *langs], [["without p_mid", *[without[x] for x in langs]],
                                                 ["with p_mid", *[with_[x] for x in langs]]]))

    def unit_text(self, ids: list[int]) -> list[str]:
        return [self.s2t.detokenize([tok]) for tok in self.s2t.converter.ids2tokens(ids)]

    def generation_path(self) -> None:
        """Table 10: the state at every step; '—' where a position still holds its initial noise."""
        c = self.conf
        utt = c.example_utt or next((u for u in self.subset if self.langs[u] == "en"), self.subset[0])
        feats = torch.from_numpy(kaldiio.load_mat(self.feats[utt]).copy())[None]
        gen = torch.Generator().manual_seed(c.seed)
        out = self.model.generate(feats, torch.tensor([feats.shape[1]]),
                                  DecodingOptions(nfe=16, temperature=c.temperature),
                                  prompt=torch.tensor([self.model.prompt_ids(self.langs[utt])]), generator=gen,
                                  return_trajectory=True)
        p = self.model.prompt_length
        final = out.samples.tokens[0]
        text_len = len(self.model.strip(final))
        width = min(final.shape[0] - p, text_len + 1)  # the text and its end token
        states = [*out.samples.trajectory, out.samples.tokens]
        initial = states[0][0, p: p + width]
        rows = []
        for k, state in enumerate(states):
            cells = self.unit_text(state[0, p: p + width].tolist())
            same = (state[0, p: p + width] == initial).tolist()
            label = f"t = {out.samples.times[k]:.3f}" if k < len(out.samples.times) else "final"
            rows.append([label] + ["—" if s and k > 0 else f"`{x.strip() or '␣'}`" for x, s in zip(cells, same)])
        self.add("generation_path", "Table 10: generation path",
                 f"Utterance `{utt}` ({self.langs[utt]}), NFE 16, temperature {c.temperature}. Reference: "
                 f"{self.refs[utt]}. Each row is the state fed to the model at that step (the first row is the "
                 "uniform noise); '—' marks tokens unchanged from the noise.",
                 md_table(["step", *[str(i) for i in range(width)]], rows))

    def pmid_samples(self) -> None:
        """Table 11."""
        c = self.conf
        if self.model.pmid is None:
            return
        gen = torch.Generator().manual_seed(c.seed)
        rows = []
        for utt in self.subset[:: max(1, len(self.subset) // c.pmid_utts)][: c.pmid_utts]:
            feats = torch.from_numpy(kaldiio.load_mat(self.feats[utt]).copy())[None]
            enc, lens = self.model.encode(feats, torch.tensor([feats.shape[1]]))
            with torch.no_grad():
                probs = self.model.pmid(enc, lens).softmax(-1)[0]
            rows.append([f"`{utt}` reference", self.refs[utt]])
            for i in range(c.pmid_samples):
                ids = torch.multinomial(probs, 1, generator=gen)[:, 0]
                ids[: self.model.prompt_length] = torch.tensor(self.model.prompt_ids(self.langs[utt]))
                text = self.s2t.detokenize(self.s2t.converter.ids2tokens(self.model.strip(ids)))
                rows.append([f"sample {i + 1}", text])
        self.add("pmid_samples", "Table 11: samples from p_mid",
                 "Each position drawn independently from p_mid(. | audio), read up to the first end token.",
                 md_table(["", "text"], rows))

    # ---- runtime -------------------------------------------------------------------------------
    def runtime(self) -> dict:
        """RTFx per (NFE, candidates, scoring), batch size 1, from the waveform; Figure 2a."""

        c = self.conf
        durations = {u: float(v) for u, v in read_kv_dict(str(self.data_dir / "utt2dur")).items() if u in self.feats}
        bins = runtime_set(durations, c.runtime_per_bin, seed=c.seed)
        utts = [u for members in bins.values() for u in members]
        wavs = read_kv_dict(str(self.data_dir / "wav.scp"))
        encoder = AudioEncoder(self.model, self.whisper, **self.encoder_options)
        seconds: dict = {}
        per_utt = []  # (reference tokens, nfe, RTFx) for k = 1
        gen = torch.Generator().manual_seed(c.seed)
        model = self.model
        for utt in tqdm(utts, desc="runtime", unit="utt"):
            audio = torch.from_numpy(load_audio(wavs[utt])[0])
            with Timer() as t_enc:
                encoded = encoder(audio)
            lang = self.langs[utt]
            prompt = torch.tensor([model.prompt_ids(lang)])
            for nfe in c.nfe:
                for k in c.candidates:
                    temp = c.temperature if k == 1 else c.candidate_temperature
                    with Timer() as t_dec:
                        out = model.generate_encoded(*encoded, DecodingOptions(nfe=nfe, temperature=temp,
                                                                               num_candidates=k),
                                                     prompt=prompt, generator=gen, return_trajectory=k > 1)
                        hyps = [self.s2t.to_hypothesis(t) for t in out.tokens[0]]
                    for s in (c.scorings if k > 1 else ["mode"]):
                        with Timer() as t_score:
                            texts, scores = [h.text for h in hyps], None
                            if s == "ar":
                                scores = self.s2t.ar_rescorer().score(encoded[0][0], texts, lang).tolist()
                            elif s == "elbo":
                                free = torch.ones_like(out.samples.tokens, dtype=torch.bool)
                                free[:, : model.prompt_length] = False
                                memory = model.decoder.encode_audio(*encoded).repeat_interleave(k)
                                scores = trajectory_elbo(lambda x, t: model.decoder(x, t, memory, pinned=~free),
                                                         out.samples.trajectory, out.samples.times,
                                                         out.samples.tokens, free).tolist()
                            select(s, texts, lang, scores)
                        part = Seconds(audio=durations[utt], parts={"encoder": t_enc.seconds, "decoder": t_dec.seconds,
                                                                    "scoring": t_score.seconds})
                        for key in ([(nfe, k, s)] if k > 1 else [(nfe, 1, x) for x in c.scorings]):
                            total = seconds.setdefault(key, Seconds())
                            total.audio += part.audio
                            for name, v in part.parts.items():
                                total.add(name, v)
                        if k == 1:
                            per_utt.append((len(self.units.encode(self.refs[utt])), nfe, part.rtfx(), durations[utt]))
        table5 = [[label, str(len(members)),
                   fmt(sum(durations[u] for u in members) / len(members)) if members else "-"]
                  for label, members in bins.items()]
        rows = []
        for (nfe, k, s), sec in sorted(seconds.items()):
            if k == 1 and s != c.scorings[0]:
                continue
            rows.append([str(nfe), str(k), s if k > 1 else "-", sec.rtfx("encoder"), sec.rtfx("decoder"),
                         sec.rtfx("scoring") if "scoring" in sec.parts else None, sec.rtfx()])
        self.plot_scatter("rtfx_vs_length.png", per_utt)
        self.add("runtime", "Runtime (Table 5 set, RTFx per part)",
                 f"{len(utts)} utterances drawn equally from 5 s duration bins (a bin with fewer gives what it has), "
                 f"decoded one at a time from the waveform on this machine ({os.cpu_count()} CPU cores, fp32, "
                 "no compilation). RTFx = audio seconds / compute seconds; the encoder is "
                 f"{'the model' + chr(39) + 's' if encoder.encoder is None else 'the Whisper encoder of the dumped states'}"
                 " on the true length. Plot: `rtfx_vs_length.png` (Figure 2a).",
                 md_table(["duration bin", "utterances", "mean duration (s)"], table5) + "\n"
                 + md_table(["NFE", "candidates", "scoring", "encoder RTFx", "decoder RTFx", "scoring RTFx",
                             "total RTFx"], rows))
        return {key: sec.rtfx() for key, sec in seconds.items()}

    # ---- plots and output ----------------------------------------------------------------------
    def plot_lines(self, name, xs, series: dict, xlabel, ylabel, log_x=False):
        fig, ax = figure(6, 4)
        for label, ys in series.items():
            ax.plot(xs, ys, marker="o", label=label)
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
        save_figure(fig, self.out_dir / name)

    def plot_bars(self, name, groups, series: dict, ylabel):
        fig, ax = figure(6, 4)
        width = 0.8 / len(series)
        for i, (label, ys) in enumerate(series.items()):
            ax.bar([g + i * width for g in range(len(groups))], ys, width, label=label)
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
        ax.set_ylabel(ylabel)
        ax.legend()
        save_figure(fig, self.out_dir / name)

    def plot_scatter(self, name, per_utt):
        fig, ax = figure(6, 4)
        for nfe in sorted({n for _, n, _, _ in per_utt}):
            pts = sorted((length, r) for length, n, r, _ in per_utt if n == nfe)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-", label=f"Drax NFE {nfe}")
        ax.set_xlabel("reference length (tokens)")
        ax.set_ylabel("RTFx (end to end, batch 1)")
        ax.legend()
        ax.grid(alpha=0.3)
        save_figure(fig, self.out_dir / name)

    def plot_pareto(self, errors: dict, rtfx: dict) -> None:
        """Figure 2b: error against RTF (%) = 100 / RTFx, the lower-left front highlighted."""
        points = [(100.0 / rtfx[key], err, key) for key, err in errors.items() if key in rtfx and rtfx[key] > 0]
        if not points:
            return
        fig, ax = figure(6, 4)
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.6, label="NFE x candidates x scoring")
        front, best = [], float("inf")
        for rtf, err, key in sorted(points):
            if err < best:
                front.append((rtf, err, key))
                best = err
        ax.plot([p[0] for p in front], [p[1] for p in front], color="C3", marker="o", label="Pareto front")
        for rtf, err, (nfe, k, s) in front:
            ax.annotate(f"{nfe}/{k} {s if k > 1 else ''}", (rtf, err), fontsize=7)
        ax.set_xlabel("RTF (%)")
        ax.set_ylabel("average error (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        save_figure(fig, self.out_dir / "pareto.png")

    def run(self, command: str = "") -> Path:
        """Every table and plot; returns the path of tables.md."""
        rtfx = self.runtime()
        errors = self.grid(rtfx)
        self.plot_pareto({k: v for k, v in errors.items() if k[2] != "oracle"}, rtfx)
        self.temperature()
        self.nfe_curve()
        self.pmid()
        self.generation_path()
        self.pmid_samples()
        head = (f"# Decoding tables\n\nWritten on {date.today()} ({platform.machine()}, {os.cpu_count()} CPU cores)"
                + (f" by `{command}`" if command else "") + f". Subset: {self.conf.utts_per_lang} utterances per "
                "language. Figure 2b: `pareto.png`.\n\nConfig: `" + json.dumps(asdict(self.conf)) + "`\n")
        path = self.out_dir / "tables.md"
        atomic_write_text(str(path), "\n".join([head, *self.sections]))
        return path

