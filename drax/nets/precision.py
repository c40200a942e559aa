"""Mixed precision for a network: `autocast: bfloat16` runs its matrix products in bfloat16.

Weights, optimiser state, norms, softmaxes and the returned logits stay float32; only what
`torch.autocast` lists as lower-precision ops (linear, matmul, attention) run in the chosen dtype.
On a CPU with native bf16 instructions (AVX512-BF16 or AMX) a bf16 matrix product is several times
faster than a float32 one (benchmarks/train_step.py); without them it is emulated and slower, so the
network warns once. On a GPU, `bfloat16` / `float16` are the usual mixed-precision choices.
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
    if AUTOCAST_DTYPES[value] == torch.bfloat16:
        _warn_without_native_bf16(key)
    return AUTOCAST_DTYPES[value]


@functools.cache
def _warn_without_native_bf16(key: str):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logger.warning("%s: bfloat16 but this CPU has no native bf16 instructions (AVX512-BF16 / AMX): its "
                       "matrix products are emulated and slower than float32 here; set %s: null", key, key)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` on `device` to `dtype`, or a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
