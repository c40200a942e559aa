"""The speed study: decoder-only and end-to-end RTFx per duration bin (Drax at several NFE against AR
greedy of the same size), the output length from which Drax is faster (a sweep over output lengths
on the longest runtime utterance's states), and throughput at batch 1 and `throughput_batch`."""
from __future__ import annotations

import statistics

import torch
from tqdm import tqdm

from drax.decode.autoregressive import greedy
from drax.decode.options import DecodingOptions
from drax.studies.compare.systems import Systems
from drax.studies.report import Timer, figure, md_table, save_figure


@torch.no_grad()
def sweep(ctx: Systems, bins) -> tuple[dict[str, dict[int, float]], float]:
    """Median decoder seconds to produce n tokens on the longest runtime utterance's states, and its duration."""
    longest = max((u for members in bins.values() for u in members), key=lambda u: u.duration)
    states, lens = ctx.audio_encoder(torch.from_numpy(longest.audio))
    enc = ctx.ar.encode(states[0])
    model = ctx.drax["drax"].model
    prompt_ids = torch.tensor([model.prompt_ids(longest.lang)])
    ar_prefix = [ctx.ar.model.sos] + ctx.ar.prompt(longest.lang)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[int, float]] = {}
    for n in tqdm(ctx.c.sweep_lengths, desc="length sweep", unit="length"):
        runs = {}
        for _ in range(ctx.c.sweep_repeats):
            with Timer() as t:
                greedy(ctx.ar.ar, enc, ar_prefix, n, min_new=n)
            runs.setdefault("AR greedy", []).append(t.seconds)
            for nfe in ctx.c.speed_nfe:
                with Timer() as t:
                    model.generate_encoded(states, lens, DecodingOptions(
                        nfe=nfe, output_length=model.prompt_length + n), prompt=prompt_ids, generator=gen)
                runs.setdefault(f"Drax {nfe}/1", []).append(t.seconds)
        for name, secs in runs.items():
            out.setdefault(name, {})[n] = statistics.median(secs)
    return out, longest.duration


@torch.no_grad()
def throughput(ctx: Systems) -> dict[str, float]:
    """Utterances per second on the accuracy subset: Drax and AR greedy at batch `throughput_batch` vs batch 1."""
    c, model, out = ctx.c, ctx.drax["drax"].model, {}
    size = c.throughput_batch
    utts = ctx.subset
    for nfe in c.speed_nfe:
        for batch in (1, size):
            with Timer() as t:
                for i in range(0, len(utts), batch):
                    chunk = utts[i: i + batch]
                    prompt_ids = torch.tensor([model.prompt_ids(ctx.langs[u]) for u in chunk])
                    model.generate_encoded(*ctx.encoded(chunk), DecodingOptions(
                        nfe=nfe, temperature=c.temperature), prompt=prompt_ids)
            out[f"Drax {nfe}/1, batch {batch}"] = len(utts) / t.seconds
    for batch in (1, size):
        with Timer() as t:
            for i in range(0, len(utts), batch):
                chunk = utts[i: i + batch]
                ctx.ar.greedy_batch(*ctx.encoded(chunk), [ctx.langs[u] for u in chunk], c.max_new_tokens)
        out[f"AR greedy, batch {batch}"] = len(utts) / t.seconds
    return out


def write_speed(ctx: Systems, table, sweep, sweep_duration: float, throughput, bins) -> None:
    labels = [label for label, members in bins.items() if members]
    systems = ["AR greedy", *[f"speed Drax {nfe}/1" for nfe in ctx.c.speed_nfe]]
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
    plot_sweep(ctx, sweep)
    ctx.add("speed", "Speed on this CPU: Drax vs AR greedy (same decoder size)", (
        f"Decoder-only and end-to-end RTFx per duration bin on the runtime set (batch 1; Drax `{ctx.c.drax}` "
        f"with its output length fitted to the duration at {ctx.tokens_per_second:.2f} tokens/s, AR "
        f"`{ctx.c.ar}` producing the reference number of tokens). Drax 4/1 / AR greedy decoder RTFx on the "
        f"last bin ({last}): {'-' if ratio is None else f'{ratio:.2f}x'}.\n\nLength sweep on the states of a "
        f"{sweep_duration:.1f} s utterance: median decoder milliseconds to produce n tokens "
        f"({ctx.c.sweep_repeats} runs; `speed.png`), and the output length from which Drax is faster than AR "
        "greedy at every longer length.\n\nThroughput (utterances/s on the accuracy subset, from dumped states)."),
        "Decoder RTFx:\n\n" + md_table(["system", *labels], dec_rows) + "\nEnd-to-end RTFx:\n\n"
        + md_table(["system", *labels], e2e_rows) + "\nLength sweep (ms):\n\n"
        + md_table(["system", *[f"n={n}" for n in lengths]], sweep_rows) + "\n"
        + md_table(["Drax", "overtakes AR greedy from n =", "faster at n ="], cross_rows) + "\n"
        + md_table(["configuration", "utterances / s"], [[k, v] for k, v in throughput.items()]))


def plot_sweep(ctx: Systems, sweep) -> None:
    fig, ax = figure(6.5, 4.2)
    for name, secs in sweep.items():
        lengths = sorted(secs)
        ax.plot(lengths, [secs[n] * 1000 for n in lengths], marker="o", label=name,
                linewidth=2.5 if name == "AR greedy" else 1.2)
    ax.set(xlabel="output length (tokens)", ylabel="decoder time (ms, median)", xscale="log", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, ctx.out_dir / "speed.png")
