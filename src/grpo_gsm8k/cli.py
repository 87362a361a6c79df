"""The ``grpo-gsm8k`` command: each subcommand parses its options (one documented dataclass, see
:mod:`grpo_gsm8k.options`) and calls one function."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from . import __version__
from .errors import UserError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``grpo_gsm8k.<module>`` holds its options dataclass ``config`` and its
    ``run(config)``; ``parser`` (``module.function``) replaces the generic parse where a command
    parses more than one dataclass (train: ours and TRL's GRPOConfig)."""

    module: str
    config: str
    help: str
    parser: str | None = None


COMMANDS: dict[str, Command] = {
    "prepare": Command(
        "prepare", "PrepareConfig", "write train/eval JSONL and a manifest (GSM8K, GSM-Symbolic)"
    ),
    "grade": Command("evaluation.grade", "GradeConfig", "re-score saved generations"),
    "eval": Command(
        "evaluation.evaluate",
        "EvalConfig",
        "evaluate a model (vLLM or HF), write samples.jsonl + summary.json",
    ),
    "merge": Command(
        "evaluation.merge", "MergeConfig", "combine the shard folders of one eval into one run"
    ),
    "compare": Command(
        "evaluation.compare", "CompareConfig", "paired comparison of two eval runs (CIs, McNemar)"
    ),
    "filter": Command(
        "difficulty",
        "FilterConfig",
        "keep the questions a sampling eval solved sometimes (0 < pass@K < 1) as train.jsonl",
    ),
    "train": Command(
        "training.train",
        "GSM8KArguments",
        "train with Dr GRPO (TRL GRPOTrainer): --config recipes/X.yaml [--field v]",
        parser="training.recipe.parse_train_args",
    ),
    "export": Command(
        "export", "ExportConfig", "merge a LoRA adapter into its base model, save a checkpoint"
    ),
    "report": Command(
        "report", "ReportConfig", "HTML report (curves, before/after, hacking watch) of run folders"
    ),
    "chat": Command("chat", "ChatConfig", "ask several models at once; /gsm8k grades them"),
}


def run_command(name: str, argv: list[str]) -> int | None:
    """Parse ``argv`` into the command's options and call its ``run``."""
    command = COMMANDS[name]
    module = importlib.import_module(f"grpo_gsm8k.{command.module}")
    if command.parser:
        where, function = command.parser.rsplit(".", 1)
        options = getattr(importlib.import_module(f"grpo_gsm8k.{where}"), function)(argv)
    else:
        from .options import parse_options

        config = getattr(module, command.config)
        options = parse_options(
            [config],
            argv,
            f"grpo-gsm8k {name}",
            description=(config.__doc__ or "").strip() or None,
            positional=getattr(config, "positional", ()),
        )
    result = module.run(*options)
    return result if isinstance(result, int) else None


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: grpo-gsm8k COMMAND [options]   (grpo-gsm8k COMMAND --help for its options)",
        "",
        "RLVR on GSM8K: prepare data, grade answers, evaluate and train with Dr GRPO.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {c.help}" for name, c in COMMANDS.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from .runfiles import set_command

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"grpo-gsm8k {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"grpo-gsm8k: error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    set_command(["grpo-gsm8k", *args])
    try:
        return run_command(command, rest) or 0
    except UserError as e:
        print(f"grpo-gsm8k {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grpo-gsm8k {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
