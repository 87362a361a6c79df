"""How fast the grader is inside a reward loop: 100k realistic completions, both modes, and
pathological inputs (a policy that degenerates into ``#####…`` must not stall the reward loop).

    python benchmarks/bench_grading.py [--n 100000] [--gsm8k ../shared/data/gsm8k]
                                       [--sizes 50000 100000] [--repeat 3]

Completions are real GSM8K reference solutions (a `####` line), the same with the `####` line
replaced by "The answer is N." (flexible path), and with no marker at all (last-number fallback).

Pathological inputs: one unit repeated to each of ``--sizes`` characters, for every answer marker
(``#``, ``####``, ``answer is``, ``\\boxed{``, ``answer:``, an ``=`` after ``answer is``) and
number-like runs. Each is timed (CPU time, min of ``--repeat`` runs) in both modes at every size;
the last column is the time ratio between the two largest sizes (linear: ~2 for 2x the input;
quadratic: ~4).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from grpo_gsm8k.grading import extract_flexible, extract_strict, grade, parse_gold

# name -> repeated unit
PATHOLOGICAL = {
    "#": "#",
    "####": "####",
    "#### x": "#### x",
    "answer is ": "answer is ",
    "\\boxed{": "\\boxed{",
    "answer:": "answer:",
    "answer is = ": "answer is = ",
    "{": "{",
    "1,": "1,",
    "$-": "$-",
}


def best_of(fn: Callable[[str], object], text: str, repeat: int) -> float:
    """Min process CPU time of ``repeat`` runs (wall time of a long run on a shared machine
    includes the time other processes held the core)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best


def realistic(args: argparse.Namespace) -> None:
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


def pathological(args: argparse.Namespace) -> None:
    sizes = sorted(args.sizes)
    print(f"\npathological inputs, CPU ms (min of {args.repeat}), sizes in characters:")
    header = "".join(f"{s:>10,}" for s in sizes)
    print(f"{'input':14s} {'mode':8s}{header}   ratio {sizes[-1] / sizes[-2]:.0f}x size")
    for name, unit in PATHOLOGICAL.items():
        for mode, fn in [("strict", extract_strict), ("flexible", extract_flexible)]:
            times = [best_of(fn, unit * (size // len(unit)), args.repeat) for size in sizes]
            cells = "".join(f"{t * 1000:10.1f}" for t in times)
            print(f"{name!r:14s} {mode:8s}{cells}   {times[-1] / times[-2]:5.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="realistic completions (0: skip)")
    parser.add_argument(
        "--gsm8k", default=str(Path(__file__).parents[1].parent / "shared/data/gsm8k")
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two sizes")
    if args.n:
        realistic(args)
    pathological(args)


if __name__ == "__main__":
    main()
