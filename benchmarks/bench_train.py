"""Time N steps of the CPU recipe (recipes/cpu-smollm2.yaml): mean step time and peak RSS.

    .venv/bin/python benchmarks/bench_train.py [--steps 5] [--data data] [-- --field value ...]

Runs ``grpo-gsm8k train`` in a child process with ``--max_steps N``, a temp output dir and no
in-training eval (so the step time is the GRPO step alone: generation + scoring + update), then
reads TRL's per-step ``step_time`` from metrics.jsonl. The first step is reported apart (warm-up).
Arguments after ``--`` are passed to ``train`` (e.g. ``-- --max_completion_length 64``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--data", default="data", help="prepared data folder (default: data)")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "cpu-smollm2.yaml"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_train.") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "grpo_gsm8k.cli",
            "train",
            "--config",
            args.recipe,
            "--train_file",
            f"{args.data}/train.jsonl",
            "--eval_file",
            f"{args.data}/eval.jsonl",
            "--output_dir",
            str(out),
            "--max_steps",
            str(args.steps),
            "--eval_every",
            "0",
            "--save_steps",
            str(args.steps + 1),
            *extra,
        ]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((out / "grpo_gsm8k_config.json").read_text())["grpo_config"]
    steps = [r for r in rows if "step_time" in r]
    times = [r["step_time"] for r in steps]
    later = times[1:] or times
    batch, group = config["per_device_train_batch_size"], config["num_generations"]
    print(
        f"recipe {Path(args.recipe).name}: {batch} completions/step ({group} per prompt), "
        f"{config['max_completion_length']} max tokens, bf16={config['bf16']}"
    )
    print(f"steps            {len(times)}")
    print(f"first step       {times[0]:.1f} s")
    print(f"mean step (2..)  {sum(later) / len(later):.1f} s")
    print(f"mean tokens      {sum(r['completions/mean_length'] for r in steps) / len(steps):.0f}")
    print(f"wall (incl. load) {wall:.0f} s")
    print(f"peak RSS         {rss_gib:.2f} GiB")


if __name__ == "__main__":
    main()
