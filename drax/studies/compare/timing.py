"""Every system timed on the runtime set (batch 1, from the waveform): the seconds of Table 1, the
speed study and Figure 2a. AR decoders produce the reference's number of tokens, Drax decodes on an
output length fitted to the duration, CTC is one pass, Whisper reads its 30 s window."""
from __future__ import annotations

import torch
from tqdm import tqdm

from drax.decode.autoregressive import greedy
from drax.decode.candidates import select
from drax.decode.options import DecodingOptions
from drax.studies.compare.systems import RuntimeUtt, Systems
from drax.studies.report import Timer
from drax.studies.runtime import Seconds


@torch.no_grad()
def runtime(ctx: Systems, bins: dict[str, list[RuntimeUtt]]):
    """system -> bin -> Seconds (parts encoder/decoder/scoring), and per-utterance points for Fig. 2a.

    Every utterance goes through each system in turn (one function each, below), seconds per part."""
    table: dict[str, dict[str, Seconds]] = {}
    points = []  # (system, n_tokens, end-to-end RTFx)
    gen = torch.Generator().manual_seed(ctx.c.seed)
    for label, members in bins.items():
        for utt in tqdm(members, desc=f"runtime {label}", unit="utt"):
            with Timer() as t_enc:
                states, lens = ctx.audio_encoder(torch.from_numpy(utt.audio))
            timed = [*time_ctc(ctx, utt, states, t_enc.seconds), *time_ar(ctx, utt, states, t_enc.seconds),
                     *time_whisper(ctx, utt)]
            for name, s2t in ctx.drax.items():
                timed += time_drax(ctx, utt, states, lens, t_enc.seconds, s2t, getattr(ctx.c, name), gen)
            for system, parts in timed:
                sec = table.setdefault(system, {}).setdefault(label, Seconds())
                sec.audio += utt.duration
                for part, v in parts.items():
                    sec.add(part, v)
                points.append((system, utt.n_tokens, utt.duration / sum(parts.values())))
            for system, parts in time_drax_speed(ctx, utt, states, lens, t_enc.seconds, gen):
                sec = table.setdefault(system, {}).setdefault(label, Seconds())
                sec.audio += utt.duration
                for part, v in parts.items():
                    sec.add(part, v)
    return table, points


def time_ctc(ctx: Systems, utt: RuntimeUtt, states, encoder_seconds: float) -> list[tuple[str, dict]]:
    with Timer() as t_enc:
        enc = ctx.ctc.encode(states[0])
    with Timer() as t:
        ctx.ctc.decode(enc, utt.lang, "ctc", 0)
    return [("CTC greedy", {"encoder": encoder_seconds + t_enc.seconds, "decoder": t.seconds})]


def time_ar(ctx: Systems, utt: RuntimeUtt, states, encoder_seconds: float) -> list[tuple[str, dict]]:
    """AR greedy and beam, made to produce the reference's number of tokens."""
    n, out = utt.n_tokens, []
    with Timer() as t_enc:
        enc = ctx.ar.encode(states[0])
    for method in ("greedy", "beam"):
        with Timer() as t:
            ctx.ar.decode(enc, utt.lang, method, n + 1, ctx.c.beam_size, min_new=n)
        name = "AR greedy" if method == "greedy" else f"AR beam {ctx.c.beam_size}"
        out.append((name, {"encoder": encoder_seconds + t_enc.seconds, "decoder": t.seconds}))
    return out


def time_whisper(ctx: Systems, utt: RuntimeUtt) -> list[tuple[str, dict]]:
    """Whisper's own encoder (30 s window) and greedy decoder, the reference's number of tokens."""
    with Timer() as t_enc:
        wenc = ctx.whisper_encode(utt.audio)
    with Timer() as t:
        greedy(ctx.whisper_ar, wenc, ctx.whisper_prompt(utt.lang), utt.n_tokens + 1, min_new=utt.n_tokens)
    return [("Whisper zero-shot greedy", {"encoder": t_enc.seconds, "decoder": t.seconds})]


def time_drax(ctx: Systems, utt: RuntimeUtt, states, lens, encoder_seconds: float, s2t, tag: str,
              gen: torch.Generator) -> list[tuple[str, dict]]:
    """Drax at each (NFE, candidates) of the table, several candidates scored by MBR and Whisper."""
    model, c, out = s2t.model, ctx.c, []
    length = ctx.drax_length(model, utt.duration)
    prompt_ids = torch.tensor([model.prompt_ids(utt.lang)])
    for nfe, k in ctx.drax_configs():
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
        for scoring in ("mbr", "ar"):
            with Timer() as t_s:
                scores = s2t.ar_rescorer().score(states[0], texts, utt.lang).tolist() if scoring == "ar" else None
                select(scoring, texts, utt.lang, scores)
            out.append((f"Drax {tag} {nfe}/{k} {scoring.upper()}", {**parts, "scoring": t_s.seconds}))
    return out


def time_drax_speed(ctx: Systems, utt: RuntimeUtt, states, lens, encoder_seconds: float,
                    gen: torch.Generator) -> list[tuple[str, dict]]:
    """The decoder-only speed study: Drax (the baselines' size) at every NFE of `speed_nfe`."""
    model, out = ctx.drax["drax"].model, []
    length = ctx.drax_length(model, utt.duration)
    prompt_ids = torch.tensor([model.prompt_ids(utt.lang)])
    for nfe in ctx.c.speed_nfe:
        with Timer() as t:
            model.generate_encoded(states, lens, DecodingOptions(
                nfe=nfe, temperature=ctx.c.temperature, output_length=length), prompt=prompt_ids, generator=gen)
        out.append((f"speed Drax {nfe}/1", {"encoder": encoder_seconds, "decoder": t.seconds}))
    return out
