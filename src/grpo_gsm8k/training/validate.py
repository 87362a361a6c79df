"""Every training value checked for its type and range before a model loads.

- :func:`check_recipe_types`: each value of a YAML recipe has the type its field declares
  (``max_steps: [1, 2]`` is refused naming the file, line and field; a text value is left to the
  parser, which converts ``"5e-5"`` or refuses it in one line).
- :func:`check_ranges`: numbers within what the trainer, torch and numpy accept (a learning rate
  that is finite and positive, a seed numpy can take, at least 2 generations per prompt ...).
- :func:`check_reward_settings`: ``reward_settings`` values of the types the rewards declare.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RecipeError

SEED_LIMIT = 2**32  # transformers' set_seed seeds numpy, which takes 0 <= seed < 2**32


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: _finite(v) and v > 0, "a finite number > 0")
NOT_NEGATIVE: Rule = (lambda v: _finite(v) and v >= 0, "a finite number >= 0")
AT_LEAST_1: Rule = (lambda v: _int(v) and v >= 1, "a whole number >= 1")
AT_LEAST_0: Rule = (lambda v: _int(v) and v >= 0, "a whole number >= 0")
SEED: Rule = (lambda v: _int(v) and 0 <= v < SEED_LIMIT, f"a whole number in [0, {SEED_LIMIT})")

# field -> rule; None values are left to the field's own default meaning
RANGES: dict[str, Rule] = {
    "learning_rate": POSITIVE,
    "temperature": POSITIVE,
    "num_train_epochs": POSITIVE,
    "save_steps": POSITIVE,
    "logging_steps": POSITIVE,
    "warmup_steps": NOT_NEGATIVE,
    "weight_decay": NOT_NEGATIVE,
    "max_grad_norm": NOT_NEGATIVE,
    "beta": NOT_NEGATIVE,
    "top_p": (lambda v: _finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    "num_generations": (lambda v: _int(v) and v >= 2, "a whole number >= 2 (a group to compare)"),
    "per_device_train_batch_size": AT_LEAST_1,
    "gradient_accumulation_steps": AT_LEAST_1,
    "max_completion_length": AT_LEAST_1,
    "seed": SEED,
    "data_seed": SEED,
    "eval_every": AT_LEAST_0,
    "eval_size": AT_LEAST_1,
    "eval_batch_size": AT_LEAST_1,
    "eval_max_new_tokens": AT_LEAST_1,
    "completions_per_step": AT_LEAST_0,
    "prompts_per_step": AT_LEAST_1,
    "lora_r": AT_LEAST_1,
    "lora_alpha": POSITIVE,
    "lora_dropout": (lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)"),
}


def check_ranges(settings: Any) -> None:
    """Every field of the dataclass ``settings`` that :data:`RANGES` names, and
    ``reward_weights``; a RecipeError naming the first one out of range."""
    for name, (ok, what) in RANGES.items():
        value = getattr(settings, name, None)
        if value is not None and not ok(value):
            raise RecipeError(f"{name} must be {what}, got {value!r}")
    weights = getattr(settings, "reward_weights", None)
    if weights is not None and not all(_finite(w) for w in weights):
        raise RecipeError(f"reward_weights must be finite numbers, got {weights!r}")


# -------------------------------------------------------------------------------------- types


def fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value can be the value of a field typed ``hint`` (text is left to the
    parser, which converts it or refuses it)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if isinstance(value, str) and hint in (int, float, bool):
        return True  # argparse converts text ("5e-5") or refuses it in one line
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _int(value)
    if hint is float:
        return _number(value)
    if hint is str or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return isinstance(value, str)
    if origin is list or hint is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # a type the recipe cannot spell (a callable, a config object): not checked


def describe(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    return text.replace("<class '", "").replace("'>", "")


def _lines(path: str) -> dict[str, int]:
    """The line of each top-level key of a YAML mapping (1-based)."""
    import yaml

    node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k.value, str)}


def check_recipe_types(path: str, values: dict[str, Any], classes: list[Any]) -> None:
    """A RecipeError for the first value of the recipe ``path`` whose type its field refuses."""
    hints = {}
    for cls in classes:
        field_types = typing.get_type_hints(cls)
        hints.update({f.name: field_types[f.name] for f in dataclasses.fields(cls) if f.init})
    lines: dict[str, int] | None = None
    for name, value in values.items():
        hint = hints.get(name)
        if hint is not None and not fits(value, _lenient(name, hint)):
            lines = _lines(path) if lines is None else lines
            raise RecipeError(
                f"{path}, line {lines.get(name, '?')}: {name}: expected {describe(hint)}, got "
                f"{type(value).__name__} {value!r}"
            )


def _lenient(name: str, hint: Any) -> Any:
    """A list field also takes one name (``rewards: accuracy``)."""
    if typing.get_origin(hint) is list or list in typing.get_args(hint):
        return hint | str
    return hint


def check_reward_settings(values: Any, settings_class: Any) -> None:
    """``reward_settings``: a mapping whose values have the types of ``settings_class``'s fields
    (unknown names are refused by the class itself)."""
    if values is None:
        return
    if not isinstance(values, dict):
        raise RecipeError(f"reward_settings: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(settings_class)
    for name, value in values.items():
        hint = hints.get(name)
        if hint is None:
            continue
        text_for_number = isinstance(value, str) and hint in (int, float, bool)
        if text_for_number or not fits(value, hint) or (_number(value) and not _finite(value)):
            raise RecipeError(f"reward_settings: {name} must be {describe(hint)}, got {value!r}")
