"""How fast the grader is inside a reward loop: 100k realistic completions, both modes.

    python benchmarks/bench_grading.py [--n 100000] [--gsm8k ../shared/data/gsm8k]

Completions are real GSM8K reference solutions (a `####` line), the same with the `####` line
replaced by "The answer is N." (flexible path), and with no marker at all (last-number fallback).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from grpo_gsm8k.grading import extract_flexible, extract_strict, grade, parse_gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument(
        "--gsm8k", default=str(Path(__file__).parents[1].parent / "shared/data/gsm8k")
    )
    args = parser.parse_args()
    with open(Path(args.gsm8k) / "train.jsonl") as f:
        answers = [json.loads(line)["answer"] for line in f]
    texts, golds = [], []
    for i in range(args.n):
        answer = answers[i % len(answers)]
        body, final = answer.rsplit("####", 1)
        texts.append([answer, f"{body}The answer is {final.strip()}.", body][i % 3])
        golds.append(parse_gold(answer))
    chars = sum(map(len, texts))
    print(
        f"{args.n} completions, mean {chars / args.n:.0f} chars, python {platform.python_version()}"
    )
    for name, fn in [("strict", extract_strict), ("flexible", extract_flexible)]:
        start = time.perf_counter()
        for t in texts:
            fn(t)
        elapsed = time.perf_counter() - start
        print(f"extract {name:8s}: {elapsed:6.2f} s  ({args.n / elapsed:,.0f} completions/s)")
    start = time.perf_counter()
    correct = sum(grade(t, g, "flexible") for t, g in zip(texts, golds, strict=True))
    elapsed = time.perf_counter() - start
    print(
        f"grade flexible  : {elapsed:6.2f} s  ({args.n / elapsed:,.0f} completions/s, "
        f"{correct} correct)"
    )


if __name__ == "__main__":
    main()
