"""The floating-point type a model computes in: float32, or bfloat16 where the hardware computes it natively (CPUs
with AVX-512 BF16 or AMX, GPUs since Ampere), where its matrix products run several times faster."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = (*DTYPES, "auto")  # "auto": bfloat16 where native, else float32


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 products in hardware rather than emulating them."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # torch.cpu's own feature checks (private, so looked up with a default): oneDNN's bf16 kernels need either.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """A `DTYPE_CHOICES` name as the torch dtype to load a model in on `device`."""
    if name == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]
