"""The memory layout of a classifier's activations on the CPU, per network and precision.

oneDNN picks different kernels for NCHW and channels-last tensors, and which
is faster depends on the network's shapes and on the precision, in both
directions and by factors of 3 or more, so the layout is looked up here from
measurements (benchmarks/memory_format.py; numbers and dates in
docs/training.md) rather than set by one rule. On CUDA `channels_last` in the
config decides, as before.
"""

from __future__ import annotations

# (variant, precision) -> channels-last is faster; pairs not measured use NCHW,
# PyTorch's default and what every CPU run used before this table.
CPU_CHANNELS_LAST: dict[tuple[str, str], bool] = {
    # fp32, this project's 2-core VM, 2026-11-29, two runs (channels-last / NCHW
    # bare-step rate): RGB 1.01 and 1.10 (kept NCHW), RGBS 1.22 and 1.17,
    # FanIn1 1.29 and 1.30, FanIn3 1.34 and 1.16.
    ("RGB", "fp32"): False,
    ("RGBS", "fp32"): True,
    ("FanIn1", "fp32"): True,
    ("FanIn3", "fp32"): True,
    # bf16 on a CPU with AVX512-BF16 (issue 13's measurement: RGB 433 img/s NCHW
    # against 63 channels-last, FanIn3 184 channels-last against 68 NCHW). The
    # VM hid AVX-512 on 2026-11-29, so it could not be repeated there.
    ("RGB", "bf16"): False,
    ("FanIn3", "bf16"): True,
}


def cpu_channels_last(variant: str, precision: str) -> bool:
    """Whether `variant` (a map control like its variant) runs channels-last on the CPU in `precision`."""
    from salclass.models.registry import get_variant

    return CPU_CHANNELS_LAST.get((get_variant(variant).base, precision), False)
