"""The ``grpo-gsm8k`` command: parses arguments and calls one function per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__

Handler = Callable[[argparse.Namespace], int | None]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


def _prepare(args: argparse.Namespace) -> None:
    from .data import prepare

    eval_size = None if args.eval_size == "all" else int(args.eval_size)
    manifest = prepare(args.source, args.out, eval_size)
    rows = manifest["rows"]
    print(f"wrote {args.out}/train.jsonl ({rows['train.jsonl']} rows)")
    print(f"wrote {args.out}/eval.jsonl ({rows['eval.jsonl']} rows, {manifest['eval_split']})")
    print(f"wrote {args.out}/manifest.json")


def _grade(args: argparse.Namespace) -> int:
    from .grading import grade_file

    return grade_file(args.file, args.mode)


def _eval_size(value: str) -> str:
    if value != "all" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpo-gsm8k",
        description="RLVR on GSM8K: prepare data, grade answers, evaluate and train with Dr GRPO.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare",
        help="write train/eval JSONL and a manifest from GSM8K",
        description="Load GSM8K (hub or local files) and write train.jsonl, eval.jsonl and "
        "manifest.json (source, row counts, sha256 of each file, package version).",
    )
    p.add_argument(
        "--source",
        default="openai/gsm8k",
        help="hub dataset id (config 'main') or a local folder/file with train/test splits as "
        "JSONL or parquet, e.g. ../shared/data/gsm8k (default: %(default)s)",
    )
    p.add_argument("--out", default="data", help="output folder (default: %(default)s)")
    p.add_argument(
        "--eval-size",
        type=_eval_size,
        default="500",
        help="eval split = the first N test questions, or 'all' (default: %(default)s, as in the "
        "published results)",
    )
    p.set_defaults(handler=_prepare)

    p = sub.add_parser(
        "grade",
        help="re-score saved generations with the answer protocol",
        description="Read JSONL rows with 'completion' and 'answer' (a bare number or a GSM8K "
        "solution ending in '#### N'); write each row to stdout with pred_strict, correct_strict, "
        "pred_flexible, correct_flexible added; print a summary to stderr.",
    )
    p.add_argument("file", help="JSONL file of rows with 'completion' and 'answer'")
    p.add_argument(
        "--mode",
        choices=["strict", "flexible", "both"],
        default="both",
        help="which grading mode(s) to apply (default: %(default)s)",
    )
    p.set_defaults(handler=_grade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .data import DataError

    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args) or 0
    except (UserError, DataError) as e:
        print(f"grpo-gsm8k {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grpo-gsm8k {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
