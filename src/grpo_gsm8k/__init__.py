"""grpo-gsm8k: reinforcement learning with verifiable rewards (Dr GRPO) on GSM8K."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grpo-gsm8k")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
