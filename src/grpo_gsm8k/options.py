"""Options of every subcommand: one documented dataclass each, parsed the way TRL parses its
configs (``TrlParser``, an ``HfArgumentParser``).

Each field is documented once (``metadata={"help": ...}``) and becomes ``--field_name`` and
``--field-name``; ``--config FILE.yaml`` sets defaults that the command line overrides; unknown
keys (in the file or on the command line) and abbreviated flags are refused in one line. A
subcommand may take some fields as positional arguments (``eval MODEL``, ``compare A B``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from .errors import OptionsError, UserError


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
