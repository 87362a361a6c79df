"""The ``grpo-gsm8k`` command: each subcommand parses its options (one documented dataclass, see
:mod:`grpo_gsm8k.options`) and calls one function."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .errors import UserError


def _parse(types: list[Any], argv: list[str], command: str, **kwargs: Any) -> Any:
    from .options import parse_options

    return parse_options(
        types,
        argv,
        f"grpo-gsm8k {command}",
        description=(types[0].__doc__ or "").strip() or None,
        positional=getattr(types[0], "positional", ()),
        **kwargs,
    )


def _prepare(argv: list[str]) -> None:
    from .data import PrepareConfig, run_prepare

    run_prepare(*_parse([PrepareConfig], argv, "prepare"))


def _grade(argv: list[str]) -> int:
    from .evaluation.evaluate import GradeConfig, grade_file

    return grade_file(*_parse([GradeConfig], argv, "grade"))


def _eval(argv: list[str]) -> None:
    from .evaluation.evaluate import EvalConfig, run_eval

    run_eval(*_parse([EvalConfig], argv, "eval"))


def _merge(argv: list[str]) -> None:
    from .evaluation.merge import MergeConfig, merge_shards

    merge_shards(*_parse([MergeConfig], argv, "merge"))


def _compare(argv: list[str]) -> None:
    from .evaluation.compare import CompareConfig, compare_runs

    compare_runs(*_parse([CompareConfig], argv, "compare"))


def _train(argv: list[str]) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    from .training.recipe import parse_train_args
    from .training.train import train

    out = train(*parse_train_args(argv))
    if os.environ.get("RANK", "0") == "0":  # under torchrun/accelerate: the main process only
        print(f"wrote {out} (model, checkpoints, metrics.jsonl, grpo_gsm8k_config.json)")


def _export(argv: list[str]) -> None:
    from .models import ExportConfig, export

    print(f"wrote {export(*_parse([ExportConfig], argv, 'export'))}")


def _report(argv: list[str]) -> None:
    from .report import ReportConfig, build_report

    path = build_report(*_parse([ReportConfig], argv, "report"))
    print(f"wrote {path} (figures *.png and report.json beside it)")


def _chat(argv: list[str]) -> int:
    from .chat import ChatConfig, run_chat

    return run_chat(*_parse([ChatConfig], argv, "chat"))


COMMANDS: dict[str, tuple[Callable[[list[str]], int | None], str]] = {
    "prepare": (_prepare, "write train/eval JSONL and a manifest from GSM8K"),
    "grade": (_grade, "re-score saved generations with the answer protocol"),
    "eval": (_eval, "evaluate a model on GSM8K (vLLM or HF), write samples.jsonl + summary.json"),
    "merge": (_merge, "combine the shard folders of one eval (eval --shard I/N) into one run"),
    "compare": (_compare, "paired comparison of two eval runs (CIs, McNemar)"),
    "train": (_train, "train with Dr GRPO (TRL GRPOTrainer): --config recipes/X.yaml [--field v]"),
    "export": (_export, "merge a LoRA adapter into its base model, save a plain checkpoint"),
    "report": (_report, "HTML report (curves, before/after, reward-hacking watch) of run folders"),
    "chat": (_chat, "ask several models at once in the terminal; /gsm8k grades them"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: grpo-gsm8k COMMAND [options]   (grpo-gsm8k COMMAND --help for its options)",
        "",
        "RLVR on GSM8K: prepare data, grade answers, evaluate and train with Dr GRPO.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()),
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
        return COMMANDS[command][0](rest) or 0
    except UserError as e:
        print(f"grpo-gsm8k {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grpo-gsm8k {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
