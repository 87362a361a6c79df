"""Eval throughput: our vLLM backend vs our HF backend vs raw ``vllm.LLM.generate``.

    python benchmarks/bench_eval.py [--n 64] [--max-new-tokens 128] [--gsm8k ../shared/data/gsm8k]

The embedded model (smollm2-135m), the first N GSM8K test questions, chat prompts, greedy. The
three runs see the same token ids (``prompt_ids`` of ``render_prompt``). Each runs in its own
process, one after another; generated tokens/s counts tokens without the EOS over the time spent
in generate only. Model load / engine start-up is printed separately. Targets: vLLM backend / HF
backend >= 5x; our vLLM backend / raw vLLM >= 0.9x.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "BENCH-RESULT "


def write_data(gsm8k: str, n: int, folder: Path) -> Path:
    from grpo_gsm8k.data import load_gsm8k_split
    from grpo_gsm8k.runfiles import write_jsonl

    path = folder / "eval.jsonl"
    write_jsonl(path, (e.to_row() for e in load_gsm8k_split(gsm8k, "test")[:n]))
    return path


def part_eval(backend: str, data: str, tokens: int, out: str) -> dict[str, float]:
    from grpo_gsm8k.evaluate import EvalConfig, run_eval

    s = run_eval(
        EvalConfig(model="smollm2-135m", data=data, out=out, backend=backend, max_new_tokens=tokens)
    )
    return {
        "load_s": s["model_load_s"],
        "gen_s": s["generation_s"],
        "tokens": s["mean_completion_tokens"] * s["completions"],
        "tok_per_s": s["generated_tokens_per_s"],
        "accuracy_flexible": s["accuracy"]["flexible"],
    }


def part_raw(data: str, tokens: int) -> dict[str, float]:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.generation.vllm import default_memory_utilization
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = [
        prompt_ids(tokenizer, render_prompt(e.question, tokenizer, "chat"))
        for e in load_prepared(data)
    ]
    t0 = time.perf_counter()
    llm = LLM(model=path, gpu_memory_utilization=default_memory_utilization(), seed=0)
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=tokens, seed=0)
    t0 = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params)
    gen_s = time.perf_counter() - t0
    n_tokens = sum(
        len(o.token_ids) - (o.finish_reason == "stop" and not isinstance(o.stop_reason, str))
        for r in outputs
        for o in r.outputs
    )
    return {"load_s": load_s, "gen_s": gen_s, "tokens": n_tokens, "tok_per_s": n_tokens / gen_s}


def run_part(args: list[str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT) :]))
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"benchmark part {args[:2]} failed (exit {proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--gsm8k", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k")
    )
    parser.add_argument("--part", choices=["vllm", "hf", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part == "raw":
        print(RESULT + json.dumps(part_raw(args.data, args.max_new_tokens)))
        return
    if args.part:
        result = part_eval(args.part, args.data, args.max_new_tokens, args.out)
        print(RESULT + json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench_eval.") as tmp:
        data = str(write_data(args.gsm8k, args.n, Path(tmp)))
        common = ["--data", data, "--max-new-tokens", str(args.max_new_tokens)]
        results = {}
        for name, part in [("raw vLLM", "raw"), ("vLLM backend", "vllm"), ("HF backend", "hf")]:
            print(f"running {name} ...", flush=True)
            results[name] = run_part(["--part", part, *common, "--out", f"{tmp}/{part}"])
    print(
        f"\n{args.n} GSM8K prompts, greedy, {args.max_new_tokens} new tokens, smollm2-135m, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"{'':14} {'load/start s':>12} {'generate s':>10} {'tokens':>7} {'tok/s':>8}")
    for name, r in results.items():
        print(
            f"{name:14} {r['load_s']:12.1f} {r['gen_s']:10.1f} {r['tokens']:7.0f} "
            f"{r['tok_per_s']:8.1f}"
        )
    ours, hf, raw = (results[k]["tok_per_s"] for k in ("vLLM backend", "HF backend", "raw vLLM"))
    print(f"vLLM backend / HF backend: {ours / hf:.2f}x (target >= 5x)")
    print(f"vLLM backend / raw vLLM:   {ours / raw:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
