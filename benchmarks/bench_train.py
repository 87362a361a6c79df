"""A CPU GRPO step, ours vs TRL's default configuration, side by side in one run.

    .venv/bin/python benchmarks/bench_train.py [--steps 4] [--data data] [-- --field value ...]
    .venv/bin/python benchmarks/bench_train.py --learning [--seeds 1 2 3] [--learning-steps 12]

Speed (the default): the CPU recipe (recipes/cpu-smollm2.yaml: 2 prompts x 4 completions, 128
tokens) trained for ``--steps`` steps twice, each in its own process, on the same model, prompts
(same seed, so the same questions in the same order), completions per step and completion length:

- ``trl-default``: TRL's ``GRPOTrainer`` as it comes, transformers generation in fp32
  (``--use_vllm false --bf16 false``; the recipe's other settings are Dr GRPO's loss and the batch);
- ``ours``: ``grpo-gsm8k train`` as it is, with what it picks on this machine
  (src/grpo_gsm8k/hardware.py, choose_training: bf16 autocast + colocated vLLM where the CPU has
  bf16 units;
  src/grpo_gsm8k/cpu_logprobs.py: the LM head scores completion tokens only).

It prints, per configuration, the step time (first step apart: warm-up), the time of each part
of a step (generation, weight sync, old log-probs, forward, backward, optimizer, reward), the mean
completion length and the peak RSS of its process, then the ratio of the mean step times.

Learning (``--learning``): both configurations for ``--learning-steps`` steps with each seed, and
the held-out greedy format rate on ``--eval-size`` test questions at the end (the in-training
eval); prints per run the mean format reward over the steps and the final held-out format rate,
then the mean and standard deviation per configuration. Finished runs are kept in
``--out/learning.jsonl`` and not run again; ``--max-runs`` bounds the runs of one invocation.

Arguments after ``--`` go to ``grpo-gsm8k train`` in every run. In-training eval and checkpoints
are off in the speed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS: dict[str, list[str]] = {  # flags for `grpo-gsm8k train`; trl-default runs TRL's class
    "trl-default": ["--use_vllm", "false", "--bf16", "false"],
    "ours": [],
}
PLAIN_TRL = "trl-default"
PARTS = ["generation", "sync", "old_logps", "forward", "backward", "optimizer", "reward", "eval"]


# ---------------------------------------------------------------------------- child: one run


def child(result: str, plain_trl: bool, train_args: list[str]) -> None:
    """Run ``grpo-gsm8k train`` in this process with timers around the parts of a step; with
    ``plain_trl``, on TRL's GRPOTrainer as it comes (none of our CPU changes)."""
    import torch
    from accelerate import Accelerator
    from transformers import Trainer, TrainerCallback
    from trl import GRPOTrainer

    from grpo_gsm8k import train as train_module
    from grpo_gsm8k.cli import main
    from grpo_gsm8k.vllm_sync import CPUVLLMGeneration

    steps: list[dict[str, float]] = []
    current: dict[str, float] = {}

    def timed(owner: Any, name: str, part: Any) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = part() if callable(part) else part
                current[key] = current.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(GRPOTrainer, "_generate_single_turn", "generation")  # includes the sync; see below
    timed(CPUVLLMGeneration, "sync_weights", "sync")
    timed(
        GRPOTrainer,
        "_get_per_token_logps_and_entropies",
        lambda: "forward" if torch.is_grad_enabled() else "old_logps",
    )
    timed(GRPOTrainer, "_calculate_rewards", "reward")
    timed(Accelerator, "backward", "backward")
    timed(Trainer, "_clip_grad_norm", "optimizer")
    timed(train_module.HeldOutEval, "evaluate", "eval")

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            current.clear()
            current["start"] = time.perf_counter()

        def on_pre_optimizer_step(self, *_: Any, **__: Any) -> None:
            current["optimizer_start"] = time.perf_counter()

        def on_optimizer_step(self, *_: Any, **__: Any) -> None:
            took = time.perf_counter() - current.pop("optimizer_start")
            current["optimizer"] = current.get("optimizer", 0.0) + took

        def on_step_end(self, *_: Any, **__: Any) -> None:
            row = {k: v for k, v in current.items() if k != "start"}
            row["step"] = time.perf_counter() - current["start"]
            row["generation"] = row.get("generation", 0.0) - row.get("sync", 0.0)
            steps.append(row)

    class PlainGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer, which also logs the in-training eval (as ours does)."""

        extra_logs: dict[str, float] | None = None

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            logs, self.extra_logs = {**logs, **(self.extra_logs or {})}, None
            super().log(logs, start_time)

    base = PlainGRPOTrainer if plain_trl else train_module.GSM8KGRPOTrainer

    class Timed(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(StepTimer())  # before HeldOutEval: the step time leaves eval out

    train_module.GSM8KGRPOTrainer = Timed  # type: ignore[misc]
    start = time.perf_counter()
    status = main(["train", *train_args])
    wall = time.perf_counter() - start
    Path(result).write_text(json.dumps({"status": status, "steps": steps, "wall": wall}))


# ---------------------------------------------------------------------------- parent


def run_child(name: str, train_args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One training run in a child process: its timings, metrics, config and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench_train.") as tmp:
        result = Path(tmp) / "result.json"
        out = Path(tmp) / "run"
        cmd = [sys.executable, __file__, "--child", str(result)]
        cmd += ["--plain-trl"] if name == PLAIN_TRL else []
        cmd += ["--", *CONFIGS[name], *train_args]
        cmd += ["--output_dir", str(out)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"bench_train: {' '.join(cmd)} failed ({proc.returncode})")
        data = json.loads(result.read_text())
        data["rss_gib"] = usage.ru_maxrss / 2**20  # KiB -> GiB
        data["metrics"] = [
            json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line
        ]
        data["config"] = json.loads((out / "grpo_gsm8k_config.json").read_text())
    return data


def base_args(args: argparse.Namespace, extra: list[str]) -> list[str]:
    return [
        "--config",
        args.recipe,
        "--train_file",
        f"{args.data}/train.jsonl",
        "--eval_file",
        f"{args.data}/eval.jsonl",
        *extra,
    ]


def cpu_line() -> str:
    import torch

    from grpo_gsm8k.hardware import cpu_flags

    return (
        f"CPU: {os.cpu_count()} cores, torch capability {torch.backends.cpu.get_cpu_capability()},"
        f" flags {' '.join(cpu_flags())}"
    )


def describe(run: dict[str, Any]) -> str:
    config = run["config"]["grpo_config"]
    generation = "vLLM" if config["use_vllm"] else "transformers"
    return f"{'bf16' if config['bf16'] else 'fp32'} + {generation}"


def speed(args: argparse.Namespace, extra: list[str], env: dict[str, str]) -> None:
    common = base_args(args, extra)
    common += ["--max_steps", str(args.steps), "--eval_every", "0"]
    common += ["--save_steps", str(args.steps + 1), "--completions_per_step", "0"]
    runs = {name: run_child(name, common, env) for name in CONFIGS}
    config = runs["ours"]["config"]["grpo_config"]
    print(cpu_line())
    print(
        f"recipe {Path(args.recipe).name}: {config['per_device_train_batch_size']} completions/step"
        f" ({config['num_generations']} per prompt), {config['max_completion_length']} max "
        f"tokens, {args.steps} steps (mean over steps 2..{args.steps})"
    )
    names = list(runs)
    width = 16
    print(f"{'':24}" + "".join(f"{n:>{width}}" for n in names))
    print(f"{'setup':24}" + "".join(f"{describe(runs[n]):>{width}}" for n in names))

    def mean_after_first(name: str, key: str) -> float:
        values = [s.get(key, 0.0) for s in runs[name]["steps"]]
        later = values[1:] or values
        return sum(later) / len(later)

    def row(label: str, values: list[str]) -> None:
        print(f"{label:24}" + "".join(f"{v:>{width}}" for v in values))

    row("first step s", [f"{runs[n]['steps'][0]['step']:.1f}" for n in names])
    row("mean step s", [f"{mean_after_first(n, 'step'):.2f}" for n in names])
    for part in PARTS[:-1]:
        row(f"  {part} s", [f"{mean_after_first(n, part):.2f}" for n in names])
    row(
        "  other s",
        [
            f"{mean_after_first(n, 'step') - sum(mean_after_first(n, p) for p in PARTS):.2f}"
            for n in names
        ],
    )
    tokens = {
        n: statistics.mean(m["completions/mean_length"] for m in runs[n]["metrics"] if "loss" in m)
        for n in names
    }
    row("mean completion tokens", [f"{tokens[n]:.0f}" for n in names])
    row("wall s (incl. load)", [f"{runs[n]['wall']:.0f}" for n in names])
    row("peak RSS GiB", [f"{runs[n]['rss_gib']:.2f}" for n in names])
    ratio = mean_after_first("trl-default", "step") / mean_after_first("ours", "step")
    print(f"ours / trl-default step time: {ratio:.2f}x faster (target >= 2.5x on AVX-512)")
    print(f"hardware choice: {runs['ours']['config']['hardware']['reason']}")


def learning(args: argparse.Namespace, extra: list[str], env: dict[str, str]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "learning.jsonl"
    done = []
    if results_file.exists():
        done = [json.loads(line) for line in results_file.read_text().splitlines() if line]
    todo = [
        (name, seed)
        for seed in args.seeds
        for name in CONFIGS
        if not any(r["config"] == name and r["seed"] == seed for r in done)
    ]
    common = base_args(args, extra)
    common += ["--max_steps", str(args.learning_steps), "--eval_every", str(args.learning_steps)]
    common += ["--eval_size", str(args.eval_size), "--eval_at_start", "false"]
    common += ["--save_steps", str(args.learning_steps + 1), "--completions_per_step", "0"]
    for name, seed in todo[: args.max_runs]:
        run = run_child(name, [*common, "--seed", str(seed)], env)
        steps = [m for m in run["metrics"] if "rewards/format/mean" in m]
        final = [m for m in run["metrics"] if "eval/format_rate" in m][-1]
        record = {
            "config": name,
            "setup": describe(run),
            "seed": seed,
            "steps": len(steps),
            "format_reward": [m["rewards/format/mean"] for m in steps],
            "reward": [m["reward"] for m in steps],
            "heldout_format_rate": final["eval/format_rate"],
            "heldout_n": final["eval/n"],
            "step_s": statistics.mean(s["step"] for s in run["steps"][1:] or run["steps"]),
        }
        with results_file.open("a") as f:
            f.write(json.dumps(record) + "\n")
        done.append(record)
        print(f"done {name} seed {seed}", flush=True)
    print(cpu_line())
    header = f"{'config':12} {'seed':>5} {'mean format reward':>19} {'held-out format':>16}"
    print(f"{header} {'step s':>7}")
    for r in sorted(done, key=lambda r: (r["config"], r["seed"])):
        print(
            f"{r['config']:12} {r['seed']:>5} {statistics.mean(r['format_reward']):>19.3f} "
            f"{r['heldout_format_rate']:>16.3f} {r['step_s']:>7.1f}"
        )
    for name in CONFIGS:
        rows = [r for r in done if r["config"] == name]
        if len(rows) < 2:
            continue
        fr = [statistics.mean(r["format_reward"]) for r in rows]
        ho = [r["heldout_format_rate"] for r in rows]
        print(
            f"{name:12} {len(rows)} seeds: mean format reward {statistics.mean(fr):.3f} "
            f"(sd {statistics.stdev(fr):.3f}), held-out format rate {statistics.mean(ho):.3f} "
            f"(sd {statistics.stdev(ho):.3f}, n={rows[0]['heldout_n']} questions each)"
        )


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="speed: steps per run (default 4)")
    ap.add_argument("--data", default="data", help="prepared data folder (default: data)")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "cpu-smollm2.yaml"))
    ap.add_argument("--learning", action="store_true", help="compare learning, not speed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--learning-steps", type=int, default=12)
    ap.add_argument("--eval-size", type=int, default=64)
    ap.add_argument("--out", default="runs/bench_train", help="learning: results folder")
    ap.add_argument("--max-runs", type=int, default=100, help="learning: runs this invocation")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--plain-trl", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.plain_trl, extra)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if args.learning:
        learning(args, extra, env)
    else:
        speed(args, extra, env)


if __name__ == "__main__":
    main()
