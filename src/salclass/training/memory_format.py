"""The memory layout of a classifier's activations on the CPU, per network and precision.

oneDNN picks different kernels for NCHW and channels-last tensors, and which
is faster depends on the network's shapes and on the precision, in both
directions and by factors of 3 or more, so the layout is looked up here from
measurements (benchmarks/memory_format.py; numbers and dates in
docs/training.md) rather than set by one rule. On CUDA `channels_last` in the
config decides.
"""

from __future__ import annotations

# (variant, precision) -> channels-last is faster; pairs not measured use NCHW,
# PyTorch's default.
CPU_CHANNELS_LAST: dict[tuple[str, str], bool] = {
    # fp32: channels-last where it led the bare training step by at least 5% in
    # both measured runs (docs/benchmarks.md, "Memory layout on the CPU").
    ("RGB", "fp32"): False,
    ("RGBS", "fp32"): True,
    ("FanIn1", "fp32"): True,
    ("FanIn3", "fp32"): True,
    # bf16: from a one-step check on a CPU with AVX512-BF16, where the two
    # layouts differ by factors of about 3 and 7 (docs/benchmarks.md).
    ("RGB", "bf16"): False,
    ("FanIn3", "bf16"): True,
}


def cpu_channels_last(variant: str, precision: str) -> bool:
    """Whether `variant` (a map control like its variant) runs channels-last on the CPU in `precision`."""
    from salclass.models.registry import get_variant

    return CPU_CHANNELS_LAST.get((get_variant(variant).base, precision), False)
