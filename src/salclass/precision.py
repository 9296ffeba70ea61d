"""The number format a model computes in: float32, or bfloat16 autocast.

Under bf16 the weights, the optimizer state, the loss and the metrics stay
float32; autocast runs convolutions and matrix products in bfloat16, which is
several times faster than float32 only where the processor multiplies bfloat16
itself (AVX512-BF16 or AMX on x86 CPUs, bf16 tensor cores on GPUs). Elsewhere
PyTorch emulates it: on a CPU without those instructions a bf16 step is an
order of magnitude slower than float32 (measured on this project's 2-core VM,
whose hypervisor hides AVX-512: docs/training.md). So `auto` picks bf16 only
where it is native and says so in one line when it is not.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Literal

import torch

PrecisionSetting = Literal["auto", "fp32", "bf16"]
Precision = Literal["fp32", "bf16"]


def _cpuinfo_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 multiply instructions that oneDNN uses.

    torch.cpu's helpers ask CPUID through the cpuinfo library, which is what
    decides the kernels PyTorch runs; /proc/cpuinfo is the fallback for builds
    without them (the two agree where the kernel lists every flag).
    """
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(p is not None for p in probes):
        return any(p() for p in probes)
    return bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})


def device_has_native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_has_native_bf16()


def resolve_precision(setting: str, device: torch.device, *, say: Callable[[str], None],
                      native: bool | None = None) -> Precision:
    """The precision a run computes in for `setting` on `device`. `native`
    overrides the hardware probe (tests). `say` gets the one-line notice when
    `auto` falls back to fp32 or an explicit bf16 will be emulated."""
    if setting not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {setting!r}")
    if setting == "fp32":
        return "fp32"
    if native is None:
        native = device_has_native_bf16(device)
    if native:
        return "bf16"
    if setting == "bf16":
        say(f"note: precision bf16 on a {device.type} without native bfloat16 instructions: PyTorch emulates it, "
            "which is much slower than fp32 here")
        return "bf16"
    say(f"note: precision auto: this {device.type} has no native bfloat16 instructions, computing in fp32")
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device: torch.device, precision: str):
    """The autocast context of `precision` (a no-op for fp32)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
