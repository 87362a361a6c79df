"""Training with Dr GRPO on TRL's GRPOTrainer;
the only code that reaches into TRL/vLLM internals."""
