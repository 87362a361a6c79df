"""Learning over seeds: does the CPU recipe teach the same thing on every seed, and which variant
teaches it more often?

    .venv/bin/python benchmarks/bench_learning.py [--seeds 1 2 3 4 5] [--variants base no-dynamic]
        [--eval-n 128] [--symbolic-n 64] [--eval-backend auto] [--data data]
        [--out runs/bench_learning] [--max-runs N] [-- --field value ...]

For each variant and seed it trains the CPU recipe (``recipes/cpu-smollm2.yaml`` unless
``--recipe``) with ``--seed S`` and evaluates the trained model greedily on the same held-out
questions as the untrained one: the first ``--eval-n`` GSM8K eval questions and, with
``--symbolic-n``, the first N GSM-Symbolic questions of ``--symbolic-data`` (``prepare --source
gsm-symbolic``). The untrained model's evals are greedy, hence the same for every seed: they run
once. Each trained model is paired with them (:func:`grpo_gsm8k.evaluation.compare.pair_runs`:
the rates, the paired difference and the exact McNemar p) on format (a ``#### N`` line), the one
final answer line (what the ``format`` reward pays for), stopped (not truncated) and accuracy
(flexible and strict).

Variants: ``base`` is the recipe as it is (dynamic sampling on: ``dynamic_sampling_rounds:
2``); ``no-dynamic`` turns it off; ``dynamic`` sets 2 rounds (the recipe's default since
2026-12-02); ``ladder`` pays -0.1 for one answer line with more after it (``format_marker``) and
adds TRL's soft overlong punishment (``overlong``, weight 0.2).
Arguments after ``--`` go to every ``grpo-gsm8k train`` (e.g. ``-- --max_steps 12`` for a
shortened setting).

Every run's folders are kept under ``--out/<variant>-s<seed>/`` and each finished run is one line
of ``--out/results.jsonl`` (with the CPU flags, the settings and the provenance), so a second
invocation runs only what is missing (an interrupted training continues from its checkpoint, an
interrupted eval from its samples); ``--max-runs`` bounds the runs of one invocation. It prints
per run and per variant: before -> after and p for each metric, how many seeds gained
significantly (p < 0.05) in the final answer line, and how many ended with more truncation than
they started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from grpo_gsm8k.evaluation.compare import pair_runs  # noqa: E402
from grpo_gsm8k.hardware import cpu_flags  # noqa: E402
from grpo_gsm8k.runfiles import provenance  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "base": [],
    "no-dynamic": ["--dynamic_sampling_rounds", "0"],
    "dynamic": ["--dynamic_sampling_rounds", "2"],
    # denser rungs: one answer line anywhere earns -0.1 (over -0.2), and TRL's soft overlong
    # punishment (x0.2) costs a completion that runs into the token limit up to 0.2
    "ladder": [
        *("--rewards", "accuracy", "format", "length", "overlong"),
        *("--reward_weights", "1", "1", "1", "0.2"),
        "--reward_settings",
        '{"format_partial": 0.0, "format_marker": -0.1, "overlong_cache": 16}',
    ],
}
METRICS = {  # compare's name -> the label printed
    "format": "format",
    "answer_line": "final line",
    "stopped": "stopped",
    "accuracy_flexible": "acc flex",
    "accuracy_strict": "acc strict",
}
ALPHA = 0.05


def cli(args: list[str], log: Path) -> None:
    """Run ``grpo-gsm8k ARGS`` in a child process, its output appended to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "grpo_gsm8k.cli", *args]
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        status = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise SystemExit(f"bench_learning: grpo-gsm8k {args[0]} failed ({status}); see {log}")


def evaluate(args: argparse.Namespace, model: str, data: str, n: int, out: Path) -> None:
    if (out / "summary.json").is_file():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["eval", model, "--data", data, "--limit", str(n), "--out", str(out)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--backend", args.eval_backend]
    cli(command, out.parent / f"{out.name}.log")


def eval_sets(args: argparse.Namespace) -> dict[str, tuple[str, int]]:
    """Eval name -> (prepared file, questions)."""
    sets = {"gsm8k": (f"{args.data}/eval.jsonl", args.eval_n)}
    if args.symbolic_n:
        sets["symbolic"] = (args.symbolic_data, args.symbolic_n)
    return sets


def train(args: argparse.Namespace, variant: str, seed: int, extra: list[str]) -> Path:
    folder = Path(args.out) / f"{variant}-s{seed}" / "train"
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    resume = ["--resume"] if any(folder.glob("checkpoint-*")) else []
    cli(
        [
            "train",
            "--config",
            args.recipe,
            "--train_file",
            f"{args.data}/train.jsonl",
            "--eval_file",
            f"{args.data}/eval.jsonl",
            "--seed",
            str(seed),
            "--output_dir",
            str(folder),
            *VARIANTS[variant],
            *extra,
            *resume,
        ],
        folder.parent / "train.log",
    )
    return folder


def training_summary(folder: Path) -> dict[str, Any]:
    """Means over the steps of what says whether a step carried signal."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    keys = ["reward", "frac_reward_zero_std", "completions/mean_length"]
    keys += sorted({k for r in steps for k in r if k.startswith("dynamic_sampling/")})
    means = {k: statistics.mean(r[k] for r in steps if k in r) for k in keys if steps}
    config = json.loads((folder / "grpo_gsm8k_config.json").read_text())
    return {"steps": len(steps), "means": means, "hardware": config["hardware"]}


def run_one(args: argparse.Namespace, variant: str, seed: int, extra: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    folder = train(args, variant, seed, extra)
    trained = time.perf_counter()
    paired: dict[str, Any] = {}
    for name, (data, n) in eval_sets(args).items():
        after = folder.parent / f"{name}-after"
        evaluate(args, str(folder), data, n, after)
        summary, _ = pair_runs(str(Path(args.out) / f"{name}-before"), str(after))
        paired[name] = {
            m: {k: summary["metrics"][m][k] for k in ("rate_a", "rate_b", "diff", "mcnemar_p")}
            | {"fixed": summary["metrics"][m]["fixed"], "broken": summary["metrics"][m]["broken"]}
            for m in METRICS
            if m in summary["metrics"]
        } | {"n": summary["n_common"]}
    return {
        "variant": variant,
        "seed": seed,
        "train_args": [*VARIANTS[variant], *extra],
        "eval_settings": {
            "sets": {k: {"data": d, "n": n} for k, (d, n) in eval_sets(args).items()},
            "backend": args.eval_backend,
            "max_new_tokens": args.max_new_tokens,
        },
        "paired": paired,
        "training": training_summary(folder),
        "train_s": round(trained - start, 1),
        "eval_s": round(time.perf_counter() - trained, 1),
        "cpu_flags": list(cpu_flags()),
        **provenance(command=[sys.executable, *sys.argv]),
    }


def cell(m: dict[str, Any]) -> str:
    star = "*" if m["mcnemar_p"] < ALPHA and m["diff"] > 0 else " "
    return f"{100 * m['rate_a']:.0f}->{100 * m['rate_b']:.0f}% p={m['mcnemar_p']:.2g}{star}"


def report(done: list[dict[str, Any]], sets: list[str]) -> None:
    print(f"CPU flags: {' '.join(cpu_flags())}; * = gain with exact McNemar p < {ALPHA}")
    for name in sets:
        print(f"\n{name}: before -> after (greedy), per run")
        print(f"{'variant':10} {'seed':>4}  " + "".join(f"{v:<22}" for v in METRICS.values()))
        for r in sorted(done, key=lambda r: (r["variant"], r["seed"])):
            metrics = r["paired"].get(name, {})
            cells = "".join(f"{cell(metrics[m]) if m in metrics else '-':<22}" for m in METRICS)
            print(f"{r['variant']:10} {r['seed']:>4}  {cells}")
        for variant in VARIANTS:
            rows = [
                r["paired"][name] for r in done if r["variant"] == variant and name in r["paired"]
            ]
            if not rows:
                continue
            gains = {
                m: sum(1 for p in rows if m in p and p[m]["mcnemar_p"] < ALPHA and p[m]["diff"] > 0)
                for m in METRICS
            }
            worse_stop = sum(1 for p in rows if "stopped" in p and p["stopped"]["diff"] < 0)
            after = {
                m: statistics.mean(p[m]["rate_b"] for p in rows if m in p)
                for m in METRICS
                if any(m in p for p in rows)
            }
            print(
                f"{variant}: {len(rows)} seeds; significant gains: "
                + ", ".join(f"{METRICS[m]} {gains[m]}/{len(rows)}" for m in METRICS)
                + f"; more truncation after: {worse_stop}/{len(rows)}; mean after: "
                + ", ".join(f"{METRICS[m]} {100 * v:.1f}%" for m, v in after.items())
            )


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["base", "no-dynamic"])
    ap.add_argument("--eval-n", type=int, default=128, help="GSM8K eval questions (default 128)")
    ap.add_argument("--symbolic-n", type=int, default=0, help="GSM-Symbolic questions (0: none)")
    ap.add_argument("--symbolic-data", default="data/gsm-symbolic/eval.jsonl")
    ap.add_argument("--max-new-tokens", type=int, default=192, help="eval tokens (the demo's)")
    ap.add_argument("--eval-backend", default="auto", help="eval --backend (default: auto)")
    ap.add_argument("--data", default="data", help="prepared GSM8K folder (default: data)")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "cpu-smollm2.yaml"))
    ap.add_argument("--out", default="runs/bench_learning", help="results folder")
    ap.add_argument("--max-runs", type=int, default=100, help="trainings this invocation")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    todo = [
        (v, s)
        for s in args.seeds
        for v in args.variants
        if not any(r["variant"] == v and r["seed"] == s for r in done)
    ]
    for name, (data, n) in eval_sets(args).items():
        evaluate(args, "smollm2-135m", data, n, out / f"{name}-before")
    for variant, seed in todo[: args.max_runs]:
        record = run_one(args, variant, seed, extra)
        with results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        done.append(record)
        print(f"done {variant} seed {seed}: train {record['train_s']} s", flush=True)
    report(done, list(eval_sets(args)))


if __name__ == "__main__":
    main()
