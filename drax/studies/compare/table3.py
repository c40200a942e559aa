"""Paper Table 3: speculative decoding. Per utterance of the accuracy subset a target (the AR baseline,
Whisper) decodes greedily while a drafter (Drax at a few NFE; the small AR model) proposes tokens
that it verifies in one forward pass: accepted tokens per step, RTFx, and whether every output
equals the target's greedy output."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

import torch
from tqdm import tqdm

from drax.data.audio import load_audio
from drax.decode.autoregressive import ESPnetTransformerAR, greedy
from drax.decode.speculative import ARDrafter, DraxDrafter, SubwordMap, TokenMap, speculative
from drax.studies.compare.systems import Systems
from drax.studies.report import Timer, md_table

logger = logging.getLogger(__name__)


@torch.no_grad()
def speculative_table(ctx: Systems) -> list[list]:
    c = ctx.c
    tokens = ctx.ar.token_list
    whisper_target = ctx.units.kind == "whisper"  # drafters and Whisper share its byte-level BPE
    if not whisper_target:
        logger.warning("units: %s share no vocabulary with Whisper: Table 3 has the AR baseline target only",
                       ctx.units.kind)
    to_whisper = SubwordMap(tokens, ctx.units) if whisper_target else None
    identity = TokenMap.identity(len(tokens))
    small = ESPnetTransformerAR(ctx.ar_small.model.decoder, ctx.ar_small.model.eos)
    # (target, drafter label, Drax drafter, small AR's block): every Drax drafts for the AR baseline
    # (same units); the Whisper-initialised one (else the other) for Whisper
    drax_models = [(getattr(c, key), ctx.drax[key].model) for key in ("drax", "drax_pretrained") if key in ctx.drax]
    configs = [("AR baseline", f"Drax {tag} (NFE {c.draft_nfe})", model, None) for tag, model in drax_models]
    configs += [("AR baseline", f"small AR, {k} tokens", None, k) for k in c.ar_draft_blocks]
    if whisper_target:
        tag, model = drax_models[-1]
        configs += [("Whisper", f"Drax {tag} (NFE {c.draft_nfe})", model, None)]
        configs += [("Whisper", f"small AR, {k} tokens", None, k) for k in c.ar_draft_blocks]
    stats: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (target, drafter) -> running sums
    for utt in tqdm(ctx.subset, desc="speculative", unit="utt"):
        lang, states = ctx.langs[utt], ctx.states(utt)
        audio = load_audio(ctx.wavs[utt])[0]
        seconds_of_audio = len(audio) / 16000
        with Timer() as t_enc:
            ar_mem = ctx.ar.encode(states[0])
        small_mem = ctx.ar_small.encode(states[0])
        targets = {"AR baseline": (ctx.ar.ar, ar_mem, [ctx.ar.model.sos] + ctx.ar.prompt(lang), t_enc.seconds)}
        if whisper_target:
            with Timer() as t_wenc:
                w_mem = ctx.whisper_encode(audio)
            targets["Whisper"] = (ctx.whisper_ar, w_mem, ctx.whisper_prompt(lang), t_wenc.seconds)
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
                                      output_length=ctx.drax_length(model, seconds_of_audio),
                                      skip=1 if target_name == "AR baseline" else 0)
                draft_mem, size = states, c.draft_block
            else:
                lead = [] if target_name == "AR baseline" else [ctx.ar_small.model.sos]
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


def write_table3(ctx: Systems, rows: list[list]) -> None:
    ctx.add("table3", "Table 3: speculative decoding", (
        "Per test-set utterance of the accuracy subset; the target decodes greedily, the drafter proposes "
        "tokens that the target verifies in one forward pass. Tokens/step: output tokens per target forward "
        "pass; accepted/step: drafted tokens kept per verification step; RTFx end to end (target encoder + "
        "decoding, drafting included); speed-up over the target alone, end to end and decoding only (the "
        "target's encoder costs the same with or without a drafter, so it caps the end-to-end gain); "
        "identical: outputs equal to the target's greedy output. Whisper runs on its standard 30 s input, "
        "the drafters on the true-length states."),
        md_table(["target", "drafter", "tokens / step", "accepted / step", "RTFx", "speed-up",
                  "decoding speed-up", "identical"], rows))
