"""Random draws of a training batch that belong to its utterances, not to the batch.

With one random stream per batch, what an utterance draws (its t, its noised positions, its source
tokens) depends on which utterances share its batch, how wide the batch's canvas is and how many
ranks the batch is split over. `RowNoise` gives each row its own stream, seeded by (seed, utterance,
update): a training run then draws the same noise for every utterance on 1 rank or on N, with any
batch size, and a validation loss is the same function of the weights at every epoch.

    noise = RowNoise.for_utterances(seed, ["utt1", "utt2"], step=7, width=48, device=x.device)
    u = uniform((2, 30), noise, canvas_dims=(1,))    # row i: the first 30 of its 48 draws

`uniform(shape, generator)` draws from `generator` as torch.rand does when it is a torch.Generator or
None, so code written against it works with either.
"""
from __future__ import annotations

import hashlib

import torch


class RowNoise:
    """One random stream per batch row. Dimensions named in `canvas_dims` are drawn `width` wide (the
    longest canvas) and cut to the size asked for: a row's draws do not depend on the batch's width."""

    def __init__(self, seeds: list[int], width: int, device=None):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.width, self.device = width, device

    @classmethod
    def for_utterances(cls, seed: int, utt_ids: list[str], step: int, width: int, device=None) -> RowNoise:
        """Streams seeded by (seed, utterance id, step); step: the update for training, -1 for validation."""
        seeds = [int.from_bytes(hashlib.blake2b(f"{seed}/{utt}/{step}".encode(), digest_size=8).digest(), "little")
                 >> 1 for utt in utt_ids]  # 63 bits: torch seeds are int64
        return cls(seeds, width, device)

    def __len__(self) -> int:
        return len(self.generators)

    def rand(self, shape, canvas_dims: tuple[int, ...] = ()) -> torch.Tensor:
        """U[0, 1) draws of `shape` (rows first)."""
        shape = tuple(shape)
        if shape[0] != len(self):
            raise ValueError(f"RowNoise has {len(self)} rows, asked for a draw of shape {shape}")
        full, cut = [], []
        for dim, size in enumerate(shape[1:], start=1):
            if dim in canvas_dims:
                if size > self.width:
                    raise ValueError(f"dimension {dim} of {shape} exceeds the canvas width {self.width}")
                full.append(self.width)
                cut.append(slice(0, size))
            else:
                full.append(size)
                cut.append(slice(None))
        return torch.stack([torch.rand(full, generator=g, device=self.device)[tuple(cut)] for g in self.generators])


def uniform(shape, generator: torch.Generator | RowNoise | None = None, device=None,
            canvas_dims: tuple[int, ...] = ()) -> torch.Tensor:
    """U[0, 1) draws of `shape`: from the batch's row streams, or as torch.rand(shape, generator)."""
    if isinstance(generator, RowNoise):
        return generator.rand(shape, canvas_dims)
    return torch.rand(shape, generator=generator, device=device)


def randint(high: int, shape, generator: torch.Generator | RowNoise | None = None, device=None,
            canvas_dims: tuple[int, ...] = ()) -> torch.Tensor:
    """Integers uniform in [0, high) of `shape`, drawn like `uniform`."""
    if isinstance(generator, RowNoise):
        return (generator.rand(shape, canvas_dims) * high).long().clamp_(max=high - 1)
    return torch.randint(high, tuple(shape), generator=generator, device=device)
