"""Paper Table 1: error per language on a per-language subset of the test set for CTC greedy, AR
greedy and beam, Whisper zero-shot and Drax at several NFE and candidates, with the RTFx of the
runtime set; Figure 2a."""
from __future__ import annotations

from tqdm import tqdm

from drax.data.audio import load_audio
from drax.decode.autoregressive import greedy
from drax.decode.options import DecodingOptions
from drax.studies.compare.systems import Systems, errors_of
from drax.studies.report import figure, md_table, save_figure
from drax.studies.runtime import Seconds


def accuracy(ctx: Systems) -> dict[str, dict[str, float]]:
    c, hyps = ctx.c, {}

    def put(system, utt, text):
        hyps.setdefault(system, {})[utt] = text

    for utt in tqdm(ctx.subset, desc="table 1 accuracy", unit="utt"):
        lang, states = ctx.langs[utt], ctx.states(utt)
        put("CTC greedy", utt, ctx.ctc.text(ctx.ctc.decode(ctx.ctc.encode(states[0]), lang, "ctc", 0)))
        enc = ctx.ar.encode(states[0])
        put("AR greedy", utt, ctx.ar.text(ctx.ar.decode(enc, lang, "greedy", c.max_new_tokens)))
        put(f"AR beam {c.beam_size}", utt,
            ctx.ar.text(ctx.ar.decode(enc, lang, "beam", c.max_new_tokens, c.beam_size)))

        wenc = ctx.whisper_encode(load_audio(ctx.wavs[utt])[0])
        ids = greedy(ctx.whisper_ar, wenc, ctx.whisper_prompt(lang), c.max_new_tokens)
        put("Whisper zero-shot greedy", utt, ctx.whisper_text(ids[:-1] if ids[-1] == ctx.whisper_ar.eot else ids))
    for name, s2t in ctx.drax.items():
        tag = getattr(ctx.c, name)
        for nfe, k in ctx.drax_configs():
            s2t.options = DecodingOptions(nfe=nfe, num_candidates=k,
                                          temperature=c.temperature if k == 1 else c.candidate_temperature)
            s2t.generator.manual_seed(c.seed)
            for i in range(0, len(ctx.subset), 8):
                utts = ctx.subset[i: i + 8]
                decoded = s2t.decode_encoded(ctx.encoded(utts), [ctx.langs[u] for u in utts],
                                             ("mbr", "ar") if k > 1 else ("mode",))
                for utt, d in zip(utts, decoded):
                    if k == 1:
                        put(f"Drax {tag} {nfe}/1", utt, d.best.text)
                    else:
                        for s in ("mbr", "ar"):
                            put(f"Drax {tag} {nfe}/{k} {s.upper()}", utt, d.candidates[d.picks[s]].text)
    return {system: errors_of(h, ctx.refs, ctx.langs) for system, h in hyps.items()}


def write_table1(ctx: Systems, errors, table, bins) -> None:
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
    caps = [f"`{getattr(ctx.c, name)}` decodes at most {s2t.model.decoder.positions.num_embeddings} positions (learned "
            "positions), fewer than the longest runtime utterances need, so its RTFx there is optimistic"
            for name, s2t in ctx.drax.items() if s2t.model.decoder.positions is not None]
    ctx.add("table1", "Table 1: baselines side by side", (
        f"Error (WER %, CER % for zh/ja) on {len(ctx.subset)} test utterances; RTFx (decoder only and end to "
        f"end from the waveform, batch 1) on the runtime set ({sizes} utterances per bin). CTC and AR models: "
        f"the recipe's `{ctx.c.ctc}` and `{ctx.c.ar}` (same size as `{ctx.c.drax}`); Whisper: the "
        "recipe's pretrained model, raw greedy (no token suppression). Drax n/k: NFE n, k candidates."
        + "".join(f" {cap}." for cap in caps)),
        md_table(["system", *langs, "avg", "decoder RTFx", "RTFx"], rows))


def plot_fig2a(ctx: Systems, points) -> None:
    fig, ax = figure(6.5, 4.2)
    keep = [s for s in dict.fromkeys(p[0] for p in points) if not s.endswith(("MBR", "AR")) or "8/16" in s]
    for system in keep:
        pts = sorted((n, r) for s, n, r in points if s == system)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=system)
    ax.set(xlabel="reference output length (tokens)", ylabel="RTFx (end to end, batch 1)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, ctx.out_dir / "fig2a.png")
