"""What a device computes well, and the dtype names users give: one place for both, so that the model loader,
the trainer's precision choice, the CLI and the server read ``--dtype bfloat16`` and "has native bf16" the same way.
"""

from __future__ import annotations

import logging

import torch

from .modes import DType

logger = logging.getLogger(__name__)

_warned_emulated_bf16 = False


def dtype_from_name(name: str) -> torch.dtype | None:
    """``auto`` → ``None`` (the loader decides: :func:`default_dtype`); otherwise the torch dtype so named."""
    DType.require(name, "dtype")
    return None if name == DType.AUTO else getattr(torch, name)


def default_dtype(device: torch.device) -> torch.dtype:
    """What ``dtype auto`` loads weights in: bfloat16 on a GPU that computes it natively, else float32 (CPUs encode
    in float32 by default, AVX512-BF16 ones included: the saved folder's float32 weights give exactly its vectors)."""
    return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else torch.float32


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (CUDA with bf16 support; CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        # torch's default counts an emulated bf16 (pre-Ampere GPUs) as supported; emulated is what we must avoid.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def warn_if_bf16_is_emulated(dtype: torch.dtype | None, device: torch.device) -> None:
    """Log a warning (once per process) when bf16 weights are asked for on a CPU that lacks native bf16 matmuls:
    torch emulates them there (on an AVX2-only EPYC a bf16 matmul ran at 0.008x and a SmolLM2 encode at 0.17x the
    float32 speed: benchmarks/cpu_bf16.py, docs/benchmarks.md)."""
    global _warned_emulated_bf16
    if dtype != torch.bfloat16 or device.type != "cpu" or _warned_emulated_bf16 or native_bf16(device):
        return
    _warned_emulated_bf16 = True
    logger.warning(
        "bfloat16 weights on a CPU without native bf16 (AVX512-BF16 or AMX): torch emulates its matmuls, far "
        "slower than float32; use float32 (dtype auto) on this machine"
    )
