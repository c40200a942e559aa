"""Benchmark: how many tokens per decoder call a draft-and-verify decoder could commit with draft heads
on a trained causal decoder (the default Drax read at t = 1, or the AR yardstick), Medusa-style.

Head k (k = 1..K) reads the decoder's last hidden state at position j, whose readout predicts token
j + 1, through a residual SiLU layer (zero-initialised: it starts as the readout itself) and the
decoder's own final norm, modulation and output head, and predicts token j + 1 + k. The decoder stays
frozen; only the heads train, teacher-forced on the training transcripts. On the dev set the
decoder's own greedy transcripts are the targets: the agreement of each head's top-1 with greedy at
+1..+K, and the tokens per call of a verifier that keeps the longest drafted prefix equal to greedy
decoding plus its own next token (the output is greedy decoding's, whatever the drafts).

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/draft_heads.py exp/asr_train_drax --heads 3 --steps 400
"""
from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import kaldiio
import torch
import torch.nn.functional as F

from drax.data.audio import pad_batch
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.speech2text import load_model
from drax.nets.dit import modulate


class DraftHeads(torch.nn.Module):
    """K residual SiLU layers on the decoder's last hidden state, read out by the decoder's own head."""

    def __init__(self, decoder, k: int):
        super().__init__()
        d = decoder.hidden_size
        self.layers = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(k))
        for layer in self.layers:
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
        self.decoder = decoder

    def forward(self, states: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, n, V) of heads 1..K at each state (B, n, D)."""
        dec = self.decoder
        shift, scale = dec.condition(t).modulation(dec.final_modulation).chunk(2, dim=-1)
        return torch.stack([dec.head(modulate(dec.final_norm(states + F.silu(layer(states))), shift, scale))
                            for layer in self.layers])


def last_states(decoder, tokens: torch.Tensor, audio) -> torch.Tensor:
    """The last hidden states (B, n, D) of a causal pass over tokens (B, n): row j is the state whose
    readout predicts token j + 1."""
    seen = {}
    hook = decoder.final_norm.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    try:
        decoder.step(tokens, torch.ones(tokens.shape[0]), audio)
    finally:
        hook.remove()
    return seen["x"].float()


def read_set(set_dir: Path, token_index: dict[str, int]) -> list[tuple[str, list[int], str]]:
    """(feats entry, token ids of the text (prompt included), language) of every utterance of a dumped set."""
    feats, langs = read_kv_dict(str(set_dir / "feats.scp")), read_kv_dict(str(set_dir / "utt2lang"))
    texts = read_kv_dict(str(set_dir / "text"))
    return [(feats[u], [token_index[tok] for tok in texts[u].split()], langs[u]) for u in sorted(feats) if u in texts]


def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [fill] * (width - len(row)) for row in rows])


def encode(model, entries: list[str]):
    enc, lens = model.encode(*pad_batch([kaldiio.load_mat(e) for e in entries]))
    return model.decoder.encode_audio(enc, lens)


@torch.no_grad()
def greedy(model, audio, prompt: list[int], max_length: int) -> list[int]:
    """The decoder's greedy sequence (prompt, text, end token) with its key/value cache, at t = 1."""
    seq, cache, t = list(prompt), None, torch.ones(1)
    new = torch.tensor([prompt])
    while len(seq) < max_length:
        logits, cache = model.decoder.step(new, t, audio, cache)
        seq.append(int(logits[0, -1].argmax()))
        if seq[-1] == model.eot_id:
            break
        new = torch.tensor([[seq[-1]]])
    return seq


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path)
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--train", type=Path, default=Path("dump/whisper_states/train"))
    parser.add_argument("--dev", type=Path, default=Path("dump/whisper_states/dev"))
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dev_utts", type=int, default=80, help="every k-th dev utterance, this many")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    model, _ = load_model(args.asr_dir / "config.yaml", args.asr_dir / args.model_file)
    model.requires_grad_(False)
    decoder, eot = model.decoder, model.eot_id
    if decoder.attention_block != 1:
        raise SystemExit(f"{args.asr_dir}: draft heads need a causal decoder (decoder_conf.attention_block: 1)")
    index = {tok: i for i, tok in enumerate(model.token_list)}
    train, dev = read_set(args.train, index), read_set(args.dev, index)
    heads = DraftHeads(decoder, args.heads)
    optimizer = torch.optim.AdamW(heads.layers.parameters(), lr=args.lr)
    losses, positions = [], decoder.positions.num_embeddings if decoder.positions is not None else None
    for step in range(args.steps):
        batch = rng.sample(train, args.batch_size)
        seqs = [(ids + [eot])[:positions] for _, ids, _ in batch]
        tokens = padded(seqs, eot)
        with torch.no_grad():
            states = last_states(decoder, tokens, encode(model, [e for e, _, _ in batch]))
        logits = heads(states, torch.ones(len(batch)))  # (K, B, n, V)
        loss = 0.0
        for k in range(args.heads):  # head k + 1: the token k + 2 positions after its state
            target = tokens[:, k + 2:]
            valid = torch.tensor([[j + k + 2 < len(s) for j in range(target.shape[1])] for s in seqs])
            valid[:, : len(model.prompt_template) - 1] = False  # the prompt is given, never drafted
            loss = loss + F.cross_entropy(logits[k, :, : target.shape[1]][valid], target[valid])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item() / args.heads)
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: mean head CE {statistics.mean(losses[-50:]):.3f}", flush=True)

    every = max(1, len(dev) // args.dev_utts)
    agree, drafted, tokens_made, calls = [0] * args.heads, [0] * args.heads, 0, 0
    length = model.output_length if hasattr(model, "output_length") else model.max_length
    with torch.no_grad():
        for entry, ids, lang in dev[::every][: args.dev_utts]:
            audio = encode(model, [entry])
            prompt = ids[: len(model.prompt_template)]
            seq = greedy(model, audio, prompt, length)
            states = last_states(decoder, torch.tensor([seq]), audio)
            guess = heads(states, torch.ones(1))[:, 0].argmax(-1)  # (K, n): head k's token k + 2 after state j
            for p in range(len(prompt), len(seq)):  # head k + 1 from the state before p: token p + 1 + k
                for k in range(args.heads):
                    if p + 1 + k < len(seq):
                        drafted[k] += 1
                        agree[k] += int(guess[k, p - 1]) == seq[p + 1 + k]
            p = len(prompt)  # the walk of a verifier: position p is its own, p + 1 .. the heads' drafts
            while p < len(seq):
                a = 0
                while a < args.heads and p + 1 + a < len(seq) and int(guess[a, p - 1]) == seq[p + 1 + a]:
                    a += 1
                tokens_made += 1 + a
                calls += 1
                p += 1 + a
    print(f"{args.asr_dir} ({args.model_file}), {args.heads} heads, {args.steps} steps of {args.batch_size}; "
          f"{min(args.dev_utts, len(dev[::every]))} dev utterances, greedy transcripts as targets")
    print("| head | +1 | " + " | ".join(f"+{k + 2}" for k in range(args.heads)) + " | tokens per call |")
    print("|---|---|" + "---|" * args.heads + "---|")
    print("| top-1 agreement with greedy (%) | 100 (the verifier's own) | "
          + " | ".join(f"{100 * a / max(1, d):.1f}" for a, d in zip(agree, drafted)) + f" | {tokens_made / calls:.2f} |")


if __name__ == "__main__":
    main()
