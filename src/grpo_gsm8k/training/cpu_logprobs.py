"""The trainer's log-probs on CPU: the LM head scores the completion tokens only.

TRL 1.16 computes the per-token log-probs with a fused, chunked LM head that never holds the
full ``(batch, length, 49k vocabulary)`` logits (``trl.trainer.utils.add_fused_lm_head``). On
CUDA/XPU it projects only the positions whose label counts (the completion tokens); on every other
device it projects *all* positions (prompt and padding too) and masks afterwards, so that Neuron
sees one shape per batch and compiles once. A CPU has nothing to compile, and there the head is
about half of a step's forward + backward time for GSM8K prompts (~110 prompt tokens before 128
completion tokens): this module makes TRL take its compact path on CPU too. The numbers are the
same, only fewer rows are projected (and the backward's fp32 gradient GEMMs shrink alike).
"""

from __future__ import annotations

from typing import Any


def score_completion_tokens_only_on_cpu() -> None:
    """Make TRL's fused LM head project only the scored positions on CPU (idempotent)."""
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    def compact(device: Any) -> bool:  # trl_utils uses it only to choose the compact path
        return device.type == "cpu" or _use_triton(device)

    trl_utils._use_triton = compact
