"""Mixed precision for a network: `autocast: bfloat16` runs its matrix products in bfloat16.

Weights, optimiser state, norms, softmaxes and the returned logits stay float32; only what
`torch.autocast` lists as lower-precision ops (linear, matmul, attention) run in the chosen dtype.
On a CPU with native bf16 instructions (AVX512-BF16 or AMX) a bf16 matrix product is several times
faster than a float32 one (benchmarks/train_step.py). Without them (e.g. an AVX2-only CPU) bf16 is
emulated and about 5x slower than float32 (the Whisper-base encoder, measured), so on such a CPU
`bfloat16` runs float32 instead, with one warning per config key: the same config then computes in
float32 on one machine and in bf16 on another (what that changes at equal steps: the `float32`
variant of egs/mini/conf/default_study.yaml). On a GPU, `bfloat16` / `float16` are the usual mixed-precision choices.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

logger = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(value: str | None, key: str) -> torch.dtype | None:
    """The dtype of config value `value` (null: float32 throughout) for config key `key`."""
    if value is None:
        return None
    if value not in AUTOCAST_DTYPES:
        raise ValueError(f"{key}: unknown choice '{value}'; valid: null (float32), {', '.join(AUTOCAST_DTYPES)}")
    if AUTOCAST_DTYPES[value] == torch.bfloat16 and not native_cpu_bf16():
        _warn_float32_instead(key)
    return AUTOCAST_DTYPES[value]


@functools.cache
def native_cpu_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (oneDNN's check: AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.cache
def _warn_float32_instead(key: str):
    logger.warning("%s: bfloat16, but this CPU has no native bf16 instructions (AVX512-BF16 / AMX), where bf16 "
                   "is emulated and ~5x slower than float32: on the CPU it runs float32 instead", key)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` on `device` to `dtype`; a no-op for None, and for bf16 on a CPU without
    native bf16 (float32 is faster there)."""
    if dtype is None or (device.type == "cpu" and dtype == torch.bfloat16 and not native_cpu_bf16()):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
