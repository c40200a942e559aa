"""Decoding options as dataclasses (a decode config file holds their fields), as Whisper's DecodingOptions.

    DecodingOptions          Drax (conf/decode_drax.yaml): the sampler, candidates and their scoring
    BaselineDecodingOptions  the ESPnet baselines (conf/decode_ar_greedy.yaml, decode_ctc.yaml, ...)

The AR yardstick decodes greedily and reads only `batch_size`, `model_file`, `output_length` and
`max_token_rate` of the Drax decode config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drax.decode.candidates import SCORINGS
from drax.flow.sampler import ORDERS
from drax.options import check_range, load_options, read_config

BASELINE_METHODS = ("greedy", "beam", "ctc")
OUTPUT_CLEANINGS = ("first_end", "drop_specials")
STARTS = ("source", "pmid")
JUMP_ORDERS = (*ORDERS, "block")


@dataclass(frozen=True)
class DecodingOptions:
    nfe: int = 16  # sampler steps, each one decoder call
    temperature: float = 0.01
    num_candidates: int = 1
    scoring: str = "mbr"  # how one of several candidates is chosen: mode | mbr | ar | elbo
    rescorer: str | None = None  # Whisper for `ar` (default: the recipe's, whose encoder Drax uses)
    use_pmid: bool = False  # add the p_mid term to the sampler's velocity (paper App. D.6)
    output_length: int | None = None  # canvas L (default: the trained one, or the predicted length)
    # at most ceil(rate × encoder frames) + 2 transcript tokens (null: the canvas's); a recipe fits it
    # to its training set (recipe key length_cap)
    max_token_rate: float | None = None
    jump_order: str = "random"  # the paper's independent jumps | confidence | jacobi | block (drax/flow/block.py)
    block_size: int | None = None  # block: positions per block (null: the model's model_conf.active_block)
    threshold: float = 0.9  # block: commit every position at least this probable (and the most probable one)
    # jacobi with a causal decoder: a step re-predicts at most this many positions from the first one
    # that can still change (null: every position up to the furthest end token; the same fixed point)
    jacobi_window: int | None = None
    jacobi_time: float = 1.0  # jacobi: the time t the denoiser reads every canvas at (1: as clean)
    sampling_exponent: float = 1.0  # the sampler's kappa_1 = t^n without use_pmid (1: the paper's)
    # the canvas the sampler starts from: source (a draw of the path's source, the paper's) | pmid (the
    # most likely token of p_mid per position: the audio-conditioned middle distribution as a first guess)
    start: str = "source"
    # the transcript: first_end (the tokens after the prompt up to the first end token) | drop_specials
    # (every <|...|> token dropped, the text after an end token kept: the authors' released decoding)
    output_cleaning: str = "first_end"
    seed: int = 0
    batch_size: int = 16
    model_file: str = "valid.loss.best.pth"

    def __post_init__(self):
        what = "decode config"
        check_range(what, "output_cleaning", self.output_cleaning, choices=OUTPUT_CLEANINGS)
        check_range(what, "start", self.start, choices=STARTS)
        for name, low in (("nfe", 1), ("num_candidates", 1), ("batch_size", 1), ("temperature", 0)):
            check_range(what, name, getattr(self, name), low)
        check_range(what, "sampling_exponent", self.sampling_exponent, 0, strict=True)
        check_range(what, "scoring", self.scoring, choices=SCORINGS)
        check_range(what, "jump_order", self.jump_order, choices=JUMP_ORDERS)
        check_range(what, "block_size", self.block_size, 1)
        check_range(what, "threshold", self.threshold, 0)
        if self.threshold > 1:
            raise ValueError(f"{what} key threshold: {self.threshold!r} must be <= 1 (1: one token per call)")
        check_range(what, "output_length", self.output_length, 2)
        check_range(what, "max_token_rate", self.max_token_rate, 0, strict=True)
        check_range(what, "jacobi_window", self.jacobi_window, 1)
        check_range(what, "jacobi_time", self.jacobi_time, 0, strict=True)
        if self.jacobi_time > 1:
            raise ValueError(f"{what} key jacobi_time: {self.jacobi_time!r} must be <= 1")
        if self.block_size is not None and self.jump_order != "block":
            raise ValueError(f"decode config block_size: {self.block_size} needs jump_order: block "
                             f"(got {self.jump_order}); set block_size: null")
        if self.jacobi_window is not None and self.jump_order != "jacobi":
            raise ValueError(f"decode config jacobi_window: {self.jacobi_window} needs jump_order: jacobi "
                             f"(got {self.jump_order}); set jacobi_window: null")


@dataclass(frozen=True)
class BaselineDecodingOptions:
    method: str = "greedy"  # greedy | beam (attention decoder) | ctc
    beam_size: int = 5
    max_new_tokens: int = 128
    model_file: str = "valid.loss.best.pth"

    def __post_init__(self):
        what = "decode config"
        check_range(what, "method", self.method, choices=BASELINE_METHODS)
        check_range(what, "beam_size", self.beam_size, 1)
        check_range(what, "max_new_tokens", self.max_new_tokens, 1)


def load_decode_options(decode_config: str | Path, train_config: str | Path | None = None):
    """The options a decode config file holds, for the model its train config trains: Drax and the AR
    yardstick read DecodingOptions, a `model: espnet` baseline BaselineDecodingOptions."""
    train = read_config(train_config) if train_config is not None and Path(train_config).is_file() else {}
    cls = BaselineDecodingOptions if train.get("model") == "espnet" else DecodingOptions
    try:
        return load_options(cls, read_config(decode_config), "decode config")
    except ValueError as e:
        raise ValueError(f"{decode_config}: {e}") from None
