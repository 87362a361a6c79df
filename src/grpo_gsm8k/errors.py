"""The one kind of error a user sees: a problem with their input, told in one line.

Every module raises :class:`UserError` (or a subclass naming where it comes from) for bad input;
the CLI prints ``grpo-gsm8k COMMAND: error: MESSAGE`` and exits with status 2, no traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, a setting, a model name); the message names the file, line and field."""


class OptionsError(UserError):
    """A bad option, in a YAML config or on the command line; the message is one line."""


class RecipeError(OptionsError):
    """A bad training recipe or command-line setting; the message is one line."""
