"""The ``grpo-gsm8k`` command: parses arguments and calls one function per subcommand."""

from __future__ import annotations

import argparse
import os
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


def _eval(args: argparse.Namespace) -> None:
    from .evaluate import EvalSettings, run_eval

    run_eval(
        EvalSettings(
            model=args.model,
            data=args.data,
            out=args.out,
            limit=args.limit,
            shard=args.shard,
            backend=args.backend,
            prompt=args.prompt,
            max_new_tokens=args.max_new_tokens,
            samples=args.samples,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
            dtype=args.dtype,
            tensor_parallel_size=args.tensor_parallel_size,
            data_parallel_size=args.data_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            trust_remote_code=args.trust_remote_code,
            chunk_size=args.chunk_size,
            command=["grpo-gsm8k", *sys.argv[1:]] if args.argv is None else args.argv,
        )
    )


def _merge(args: argparse.Namespace) -> None:
    from .merge import merge_shards

    merge_shards(
        args.shards,
        args.out,
        command=["grpo-gsm8k", *sys.argv[1:]] if args.argv is None else args.argv,
    )


def _compare(args: argparse.Namespace) -> None:
    from .compare import compare_runs

    compare_runs(args.run_a, args.run_b, args.out)


def _train(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    from .recipe import RecipeError
    from .train import train

    try:
        out = train(args.args)
    except RecipeError as e:
        raise UserError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun/accelerate: the main process only
        print(f"wrote {out} (model, checkpoints, metrics.jsonl, grpo_gsm8k_config.json)")


def _export(args: argparse.Namespace) -> None:
    from .train import export

    export(args.adapter, args.out, args.trust_remote_code)
    print(f"wrote {args.out}")


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

    p = sub.add_parser(
        "eval",
        help="evaluate a model on GSM8K (vLLM or HF), write samples.jsonl + summary.json",
        description="Generate answers with vLLM or transformers, grade them (strict and flexible), "
        "and write samples.jsonl (every completion) and summary.json (accuracy with Wilson 95%% "
        "CIs, format rate, pass@k/maj@k when sampling, throughput, settings, versions). An "
        "interrupted run resumes from samples.jsonl in the same --out.",
    )
    p.add_argument(
        "model",
        help="'smollm2-135m' (embedded), a checkpoint/training output/LoRA adapter folder, or a "
        "hub id",
    )
    p.add_argument(
        "--data", default="data/eval.jsonl", help="prepared JSONL (default: %(default)s)"
    )
    p.add_argument("--limit", type=_positive_int, help="only the first N questions")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="only every N-th question (of --limit), starting at I (0 <= I < N); `grpo-gsm8k "
        "merge` combines the N shard folders into one run",
    )
    p.add_argument("--out", help="output folder (default: runs/eval/<model>-<timestamp>)")
    p.add_argument(
        "--backend",
        choices=["auto", "vllm", "hf"],
        default="auto",
        help="vllm, hf (transformers generate) or auto = vllm if installed (default: %(default)s)",
    )
    p.add_argument(
        "--prompt",
        choices=["chat", "raw", "auto"],
        default="chat",
        help="chat template + system prompt, raw text for base models, or auto = chat when the "
        "tokenizer has a chat template (default: %(default)s)",
    )
    p.add_argument(
        "--max-new-tokens", type=_positive_int, default=1024, help="(default: %(default)s)"
    )
    p.add_argument(
        "--samples",
        type=int,
        help="K sampled completions per question (default: one greedy completion); adds pass@k "
        "and maj@k",
    )
    p.add_argument("--temperature", type=float, help="with --samples (default 1.0)")
    p.add_argument("--top-p", type=float, help="with --samples (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument(
        "--batch-size", type=_positive_int, default=32, help="hf backend (default: %(default)s)"
    )
    p.add_argument(
        "--dtype", default="auto", help="model dtype, e.g. bfloat16 (default: %(default)s)"
    )
    p.add_argument("--tensor-parallel-size", type=_positive_int, default=1, help="vllm")
    p.add_argument(
        "--data-parallel-size", type=_positive_int, default=1, help="vllm: engine replicas"
    )
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        help="vllm: share of GPU memory, or of RAM on CPU (default 0.9 on GPU, 0.25 on CPU)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        help="questions per generate call, saved to samples.jsonl after each (default: 64 for "
        "hf, 256 for vllm)",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub")
    p.set_defaults(handler=_eval)

    p = sub.add_parser(
        "merge",
        help="combine the shard folders of one eval (eval --shard I/N) into one run",
        description="Combine the N shard folders of one eval (`eval --shard I/N`, e.g. a Slurm job "
        "array) into one run: samples.jsonl in the data order and summary.json computed as a "
        "single process would. Refuses shards with other settings, duplicate or missing shards.",
    )
    p.add_argument(
        "shards", metavar="SHARD_DIR", nargs="+", help="eval output folders, one per shard"
    )
    p.add_argument("--out", required=True, help="output folder for the merged run (new or empty)")
    p.set_defaults(handler=_merge)

    p = sub.add_parser(
        "compare",
        help="paired comparison of two eval runs (CIs, McNemar)",
        description="Compare eval run B against run A on their common questions (first "
        "completion each): accuracy and format rates with Wilson CIs, B - A with Newcombe's paired "
        "95%% CI, exact McNemar p, fixed/broken counts; writes compare.json and compare.jsonl.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="eval output folder (the baseline)")
    p.add_argument("run_b", metavar="RUN_B", help="eval output folder (the candidate)")
    p.add_argument("--out", help="output folder (default: <RUN_B>/compare-<name of RUN_A>)")
    p.set_defaults(handler=_compare)
    p = sub.add_parser(
        "train",
        help="train with Dr GRPO (TRL GRPOTrainer): --config recipes/X.yaml [--field value ...]",
        description="Train with Dr GRPO on TRL's GRPOTrainer. Settings: our fields (model, "
        "train_file, eval_file, prompt_style, rewards, reward_settings, eval_every, eval_size, "
        "use_peft, lora_*, resume, ...) and every GRPOConfig field, from a YAML recipe "
        "(--config) and overridden on the command line (--learning_rate 1e-5 --max_steps 2). "
        "`grpo-gsm8k train --help` lists them all.",
        add_help=False,
        prefix_chars="+",  # every argument goes to the training parser
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="--config FILE and --field value pairs")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "export",
        help="merge a LoRA adapter into its base model and save a plain checkpoint",
        description="Merge a LoRA adapter (a `train --use_peft` output dir or checkpoint) into "
        "its base model and save a plain transformers checkpoint with the tokenizer.",
    )
    p.add_argument("adapter", help="folder with adapter_config.json")
    p.add_argument("--out", required=True, help="output folder for the merged checkpoint")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own Python code"
    )
    p.set_defaults(handler=_export)
    return parser


def _positive_int(value: str) -> int:
    if not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    from .data import DataError
    from .evaluate import EvalError
    from .models import ModelError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else ["grpo-gsm8k", *argv]
    handler: Handler = args.handler
    try:
        return handler(args) or 0
    except (UserError, DataError, ModelError, EvalError) as e:
        print(f"grpo-gsm8k {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grpo-gsm8k {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
