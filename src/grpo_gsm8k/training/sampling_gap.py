"""The sampler/learner log-prob gap of GRPO training with vLLM, logged every step.

TRL logs ``sampling/sampling_logp_difference/{mean,max}`` (|trainer log-prob - vLLM log-prob| of
the sampled tokens) only with its importance-sampling correction on, which costs one extra
forward pass per step. :class:`SamplingGapLog` logs them with the correction off too, at no extra
pass: the loss's own forward, on the weights the engine sampled from, gives the trainer's
log-probs. It also logs the per-sequence gap (|summed log-ratio|,
``sampling/sequence_logp_difference/{mean,max}``) in both cases: a sequence's importance weight
is the exponential of that sum.
"""

from __future__ import annotations

from typing import Any


class SamplingGapLog:
    """Mixin for ``GRPOTrainer``: logs the sampler/learner log-prob gap of every vLLM batch.

    Token level (``sampling/sampling_logp_difference/{mean,max}``, TRL's names and definition)
    when TRL does not, i.e. with its importance-sampling correction off; sequence level
    (``sampling/sequence_logp_difference/{mean,max}``: |sum of the tokens' log-ratios|) always.
    The trainer's log-probs are TRL's ``old_per_token_logps`` when it computed them, else the
    loss forward's own (TRL skips the old log-probs only when the loss runs on the weights that
    sampled), so no forward pass is added."""

    _gap_logps: list[Any] | None = None

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)  # type: ignore[misc]
        if self._gap_logps is not None:
            self._gap_logps.append(out[0].detach())
        return out

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        trainer: Any = self
        sampled = inputs.get("sampling_per_token_logps")
        if sampled is None or not trainer.use_vllm or not model.training:
            return super()._compute_loss(model, inputs)  # type: ignore[misc]
        old = inputs.get("old_per_token_logps")
        self._gap_logps = [] if old is None else None
        try:
            loss = super()._compute_loss(model, inputs)  # type: ignore[misc]
            learner = old if old is not None else next(iter(self._gap_logps or []), None)
        finally:
            self._gap_logps = None
        if learner is None:  # a loss path that scores elsewhere: nothing to compare
            return loss
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        token_level = not trainer.vllm_importance_sampling_correction
        log_sampling_gap(trainer, learner, sampled, mask.bool(), token_level)
        return loss


def log_sampling_gap(
    trainer: Any, learner: Any, sampled: Any, mask: Any, token_level: bool
) -> None:
    """Append the gap metrics of one batch to ``trainer._metrics["train"]`` (gathered over
    processes as TRL gathers its own); tokens vLLM could not score (NaN) are left out."""
    import torch

    diff = (learner - sampled).float()
    valid = mask & ~torch.isnan(diff)
    diff = torch.where(valid, diff, torch.zeros_like(diff))
    metrics = trainer._metrics["train"]
    gather = trainer.accelerator.gather
    zero = torch.zeros((), device=diff.device)
    if token_level:
        tokens = diff.abs()[valid]
        mean = tokens.mean() if tokens.numel() else zero
        top = tokens.max() if tokens.numel() else zero
        metrics["sampling/sampling_logp_difference/mean"].append(gather(mean).mean().item())
        metrics["sampling/sampling_logp_difference/max"].append(gather(top).max().item())
    sequences = diff.sum(dim=-1).abs()[valid.any(dim=-1)]
    mean = sequences.mean() if sequences.numel() else zero
    top = sequences.max() if sequences.numel() else zero
    metrics["sampling/sequence_logp_difference/mean"].append(gather(mean).mean().item())
    metrics["sampling/sequence_logp_difference/max"].append(gather(top).max().item())
