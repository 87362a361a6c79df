"""Options of every subcommand: one documented dataclass each, parsed the way TRL parses its
configs (``TrlParser``, an ``HfArgumentParser``).

Each field is documented once (``metadata={"help": ...}``) and becomes ``--field_name`` and
``--field-name``; ``--config FILE.yaml`` sets defaults that the command line overrides; unknown
keys (in the file or on the command line) and abbreviated flags are refused in one line. A
subcommand may take some fields as positional arguments (``eval MODEL``, ``compare A B``).
A value that starts with ``-`` (``--shard -1/4``, ``--temperature -1e-5``) is the option's value,
as ``--shard=-1/4`` is, so the command's own check explains what is wrong with it.

:class:`ModelOptions` (how a model is loaded and prompted) and :class:`DecodingOptions` (how it
generates) are the fields that ``eval`` and ``chat`` share: their help is written once here. A
command whose default differs redeclares the field with :func:`same_field`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import OptionsError, UserError

# ------------------------------------------------------------------------------ shared options

MODEL_HELP = (
    "'smollm2-135m' (embedded), a checkpoint / training output / LoRA adapter folder, or a hub id"
)


@dataclass
class ModelOptions:
    """How a model is loaded and prompted (``eval``, ``chat``). The model itself is each
    command's own field: ``eval`` takes one MODEL, ``chat`` several."""

    backend: Literal["auto", "vllm", "hf"] = field(
        default="auto",
        metadata={
            "help": "vllm, hf (transformers generate) or auto: chosen from the machine by "
            "grpo_gsm8k.hardware and printed with the reason (eval: vllm on GPUs and AVX-512 CPUs "
            "when it imports, else hf; chat, one prompt at a time: vllm on a CUDA GPU only)"
        },
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={
            "help": "model dtype, or auto: chosen from the machine (on CPU bfloat16 for vllm "
            "where the CPU has bf16 units, else float32; on GPU the checkpoint's)"
        },
    )
    prompt: Literal["chat", "raw", "seed", "auto"] = field(
        default="chat",
        metadata={
            "help": "chat template + system prompt, raw text for base models, seed (the published "
            "seed scripts' raw prompt, byte for byte), or auto (chat when the tokenizer has a "
            "chat template)"
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the model's own Python code from the hub"}
    )
    gpu_memory_utilization: float | None = field(
        default=None,
        metadata={
            "help": "vllm: share of GPU memory, or of RAM on CPU, for all vLLM engines of the "
            "command (default 0.9 on GPU, 0.25 on CPU)"
        },
    )


@dataclass
class DecodingOptions:
    """How completions are generated (``eval``, ``chat``)."""

    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per completion"})
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "sampling temperature (0 = greedy); eval samples only with --samples "
            "(default 1.0 then)"
        },
    )
    top_p: float | None = field(
        default=None,
        metadata={"help": "nucleus sampling (1.0 = off); eval: with --samples (default 1.0)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed of sampling"})


def same_field(base: type, name: str, default: Any) -> Any:
    """Field ``name`` of dataclass ``base`` with another default and the same help, for a
    command whose default differs: ``temperature: float = same_field(DecodingOptions,
    "temperature", 0.0)``."""
    (found,) = [f for f in dataclasses.fields(base) if f.name == name]
    return field(default=default, metadata=found.metadata)


# ------------------------------------------------------------------------------------- parsing


def _parser(types: list[Any], prog: str, description: str | None) -> Any:
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message: str) -> Any:  # argparse would print usage and exit
            raise OptionsError(message)

    return Parser(types, prog=prog, description=description, allow_abbrev=False)


def field_names(types: list[Any]) -> set[str]:
    return {f.name for t in types for f in dataclasses.fields(t) if f.init}


def read_config_file(path: str, types: list[Any], prog: str) -> dict[str, Any]:
    """The settings of a YAML file; every key must be a field of ``types``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise OptionsError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise OptionsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise OptionsError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(values) - field_names(types))
    if unknown:
        raise OptionsError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (see `{prog} --help`)"
        )
    return values


def _is_list(tp: Any, field: dataclasses.Field) -> bool:
    hints = typing.get_type_hints(tp)
    return "list" in str(hints.get(field.name, field.type))


def attach_dash_values(args: list[str], actions: dict[str, Any]) -> list[str]:
    """``--flag -1/4`` -> ``--flag=-1/4`` for flags that take exactly one value, when the value
    is not itself a flag: argparse reads ``-1/4`` or ``-1e-5`` as an unknown flag and says only
    "expected one argument"."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg, value = args[i], args[i + 1] if i + 1 < len(args) else None
        action = actions.get(arg)
        takes_one = action is not None and action.nargs is None and action.option_strings
        dash_value = value is not None and value.startswith("-") and value != "--"
        if takes_one and dash_value and str(value).split("=", 1)[0] not in actions:
            out.append(f"{arg}={value}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_options(
    types: list[Any],
    argv: list[str],
    prog: str,
    description: str | None = None,
    positional: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    """One instance of each dataclass in ``types`` from ``[--config FILE] [args ...]``.

    ``positional`` names fields that may also be given without their flag, in order.
    ``defaults`` replace the dataclasses' own defaults (a config file and the command line win).
    """
    args = [part for a in argv for part in (a.split("=", 1) if a.startswith("--config=") else [a])]
    config: dict[str, Any] = {}
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise OptionsError("--config needs a YAML file")
        config = read_config_file(args[i + 1], types, prog)
        del args[i : i + 2]
    parser = _parser(types, prog, description)
    parser.set_defaults_with_config(**{**(defaults or {}), **config})
    args = attach_dash_values(args, parser._option_string_actions)
    by_name = {f.name: (t, f) for t in types for f in dataclasses.fields(t) if f.init}
    for name in positional:
        action = parser._option_string_actions[f"--{name}"]
        action.required = False
        tp, f = by_name[name]
        parser.add_argument(
            f"positional_{name}",
            nargs="*" if _is_list(tp, f) else "?",
            metavar=name.upper(),
            help=f"{action.help} (or --{name})",
        )
    if positional:
        namespace, rest = parser.parse_known_intermixed_args(args)
    else:
        namespace, rest = parser.parse_known_args(args)
    if rest:
        raise OptionsError(f"unknown argument(s) {' '.join(rest)}; see `{prog} --help`")
    values = vars(namespace)
    for name in positional:
        given = values.pop(f"positional_{name}")
        if given:
            values[name] = given
        if values.get(name) in (None, []):
            raise OptionsError(f"missing {name.upper()}; see `{prog} --help`")
    out = []
    for tp in types:
        keys = {f.name for f in dataclasses.fields(tp) if f.init}
        try:
            out.append(tp(**{k: v for k, v in values.items() if k in keys}))
        except UserError:
            raise
        except (ValueError, TypeError) as e:  # e.g. GRPOConfig.__post_init__'s batch checks
            raise OptionsError(" ".join(str(e).split())) from None
    return tuple(out)
