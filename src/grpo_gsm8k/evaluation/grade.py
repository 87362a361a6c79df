"""``grpo-gsm8k grade FILE``: re-grade saved generations from any tool with the answer protocol
(:mod:`grpo_gsm8k.grading`)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..data import DataError
from ..grading import MODES, extract, parse_gold, same_number
from ..runfiles import read_jsonl


@dataclass
class GradeConfig:
    """Options of ``grpo-gsm8k grade``: re-score saved generations from any tool. Rows need
    ``completion`` and ``answer`` (a bare number, or a GSM8K solution ending in ``#### N``)."""

    positional: ClassVar[tuple[str, ...]] = ("file",)

    file: str = field(metadata={"help": "JSONL file of rows with 'completion' and 'answer'"})
    mode: Literal["strict", "flexible", "both"] = field(
        default="both", metadata={"help": "which grading mode(s) to apply"}
    )


def run(config: GradeConfig) -> int:
    """Every row is checked before anything is written, so bad input leaves no partial output.
    Graded rows go to stdout as JSONL; a summary goes to stderr. Returns the exit status."""
    path = config.file
    modes = MODES if config.mode == "both" else (config.mode,)
    out = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        completion = row.get("completion")
        if not isinstance(completion, str):
            raise DataError(f"{where}: field 'completion' must be a string")
        answer = row.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)  # a bare number: "answer": 5
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{where}: field 'answer' must be a number or a non-empty string")
        try:
            gold = parse_gold(answer)
        except ValueError:
            raise DataError(f"{where}: field 'answer' has no number") from None
        for m in modes:
            row[f"pred_{m}"] = extract(completion, m)
            row[f"correct_{m}"] = same_number(row[f"pred_{m}"], gold)
        out.append(row)
    if not out:
        raise DataError(f"{path}: no rows")
    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    summary = ", ".join(f"{m} {sum(r[f'correct_{m}'] for r in out) / len(out):.1%}" for m in modes)
    print(f"graded {len(out)} rows: accuracy {summary}", file=sys.stderr)
    return 0
