"""Eval throughput: our vLLM backend vs our HF backend vs raw ``vllm.LLM.generate``, in one run.

    python benchmarks/bench_eval.py [--n 64] [--max-new-tokens 128] [--hf-batch-size 32]
        [--vllm-dtype auto] [--hf-dtype auto] [--skip-vllm-defaults] [--gsm8k ../shared/data/gsm8k]

The embedded model (smollm2-135m), the first N GSM8K test questions, chat prompts, greedy. Every
part sees the same token ids (``prompt_ids`` of ``render_prompt``) and runs in its own process,
one after another:

- ``vLLM backend`` and ``HF backend``: ``grpo-gsm8k eval`` (``run_eval``) with ``--backend vllm``
  / ``hf`` and ``--dtype auto`` (what :mod:`grpo_gsm8k.hardware` picks for each on this machine;
  ``--vllm-dtype`` / ``--hf-dtype`` override it), and the backends' own engine settings;
- ``raw vLLM``: ``vllm.LLM(...).generate`` with the engine settings of our backend (same dtype,
  same memory share, same process layout): what our pipeline costs over vLLM itself;
- ``raw vLLM, defaults``: ``vllm.LLM(model)`` as vLLM configures itself: what our settings buy.

Generated tokens/s counts tokens without the EOS over the time spent in generate only; model load
/ engine start-up is printed separately. Targets: vLLM backend / HF backend >= 5x on an AVX-512
CPU; vLLM backend / raw vLLM >= 0.9x. The machine facts (torch's CPU capability, the CPU flags
that matter, the hardware choice) are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULT = "BENCH-RESULT "


def write_data(gsm8k: str, n: int, folder: Path) -> Path:
    from grpo_gsm8k.data import load_gsm8k_split
    from grpo_gsm8k.runfiles import write_jsonl

    path = folder / "eval.jsonl"
    write_jsonl(path, (e.to_row() for e in load_gsm8k_split(gsm8k, "test")[:n]))
    return path


def part_eval(
    backend: str, data: str, tokens: int, out: str, batch_size: int, dtype: str
) -> dict[str, Any]:
    from grpo_gsm8k.evaluate import EvalConfig, run_eval

    s = run_eval(
        EvalConfig(
            model="smollm2-135m",
            data=data,
            out=out,
            backend=backend,  # type: ignore[arg-type]
            max_new_tokens=tokens,
            batch_size=batch_size,
            dtype=dtype,  # type: ignore[arg-type]
        )
    )
    return {
        "load_s": s["model_load_s"],
        "gen_s": s["generation_s"],
        "tokens": s["mean_completion_tokens"] * s["completions"],
        "tok_per_s": s["generated_tokens_per_s"],
        "dtype": s["hardware"]["dtype"],
        "hardware": s["hardware"],
    }


def part_raw(data: str, tokens: int, defaults: bool, dtype: str) -> dict[str, Any]:
    """``vllm.LLM.generate`` on the same token ids; ``defaults``: vLLM's own engine settings,
    else ours (the dtype and memory share our backend uses, its process layout on CPU)."""
    from transformers import AutoTokenizer

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.generation.vllm import CPU_ENGINE_ENV, default_memory_utilization, on_gpu
    from grpo_gsm8k.hardware import choose
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = [
        prompt_ids(tokenizer, render_prompt(e.question, tokenizer, "chat"))
        for e in load_prepared(data)
    ]
    engine: dict[str, Any] = {"gpu_memory_utilization": default_memory_utilization(), "seed": 0}
    if not defaults:
        engine["dtype"] = choose("vllm", dtype).dtype
        if not on_gpu():
            for key, value in CPU_ENGINE_ENV.items():
                os.environ.setdefault(key, value)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    t0 = time.perf_counter()
    llm = LLM(model=path, **engine)
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=tokens)
    t0 = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params)
    gen_s = time.perf_counter() - t0
    n_tokens = sum(
        len(o.token_ids) - (o.finish_reason == "stop" and not isinstance(o.stop_reason, str))
        for r in outputs
        for o in r.outputs
    )
    return {
        "load_s": load_s,
        "gen_s": gen_s,
        "tokens": n_tokens,
        "tok_per_s": n_tokens / gen_s,
        "dtype": str(llm.llm_engine.model_config.dtype).removeprefix("torch."),
    }


def run_part(args: list[str]) -> dict[str, Any]:
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
    parser.add_argument("--hf-batch-size", type=int, default=32, help="(eval's default: 32)")
    parser.add_argument("--vllm-dtype", default="auto", help="our vLLM backend and raw vLLM")
    parser.add_argument("--hf-dtype", default="auto")
    parser.add_argument(
        "--skip-vllm-defaults", action="store_true", help="no run with vLLM's own settings"
    )
    parser.add_argument(
        "--gsm8k", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k")
    )
    parser.add_argument(
        "--part", choices=["vllm", "hf", "raw", "raw-defaults"], help=argparse.SUPPRESS
    )
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part in ("raw", "raw-defaults"):
        defaults = args.part == "raw-defaults"
        result = part_raw(args.data, args.max_new_tokens, defaults, args.vllm_dtype)
        print(RESULT + json.dumps(result))
        return
    if args.part:
        dtype = args.vllm_dtype if args.part == "vllm" else args.hf_dtype
        result = part_eval(
            args.part, args.data, args.max_new_tokens, args.out, args.hf_batch_size, dtype
        )
        print(RESULT + json.dumps(result))
        return

    parts = [
        ("raw vLLM", "raw"),
        ("vLLM backend", "vllm"),
        ("HF backend", "hf"),
        ("raw vLLM, defaults", "raw-defaults"),
    ]
    if args.skip_vllm_defaults:
        parts.pop()
    with tempfile.TemporaryDirectory(prefix="bench_eval.") as tmp:
        data = str(write_data(args.gsm8k, args.n, Path(tmp)))
        common = ["--data", data, "--max-new-tokens", str(args.max_new_tokens)]
        common += ["--hf-batch-size", str(args.hf_batch_size)]
        common += ["--vllm-dtype", args.vllm_dtype, "--hf-dtype", args.hf_dtype]
        results = {}
        for name, part in parts:
            print(f"running {name} ...", flush=True)
            results[name] = run_part(["--part", part, *common, "--out", f"{tmp}/{part}"])
    hardware = results["vLLM backend"]["hardware"]
    print(
        f"\n{args.n} GSM8K prompts, greedy, {args.max_new_tokens} new tokens, smollm2-135m, "
        f"HF batch size {args.hf_batch_size}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"torch CPU capability {hardware['cpu_capability']}, CPU flags: "
        f"{' '.join(hardware['cpu_flags']) or '-'}, GPU: {hardware['gpu'] or '-'}"
    )
    from grpo_gsm8k.hardware import choose

    print(f"--backend auto --dtype auto here: {choose().log_line()}")
    header = ("dtype", "load/start s", "generate s", "tokens", "tok/s")
    print(f"{'':19} {header[0]:>9} {header[1]:>12} {header[2]:>10} {header[3]:>7} {header[4]:>8}")
    for name, r in results.items():
        print(
            f"{name:19} {r['dtype']:>9} {r['load_s']:12.1f} {r['gen_s']:10.1f} "
            f"{r['tokens']:7.0f} {r['tok_per_s']:8.1f}"
        )
    ours, hf, raw = (results[k]["tok_per_s"] for k in ("vLLM backend", "HF backend", "raw vLLM"))
    print(f"vLLM backend / HF backend: {ours / hf:.2f}x (target >= 5x on AVX-512)")
    print(f"vLLM backend / raw vLLM:   {ours / raw:.2f}x (target >= 0.9x)")
    if "raw vLLM, defaults" in results:
        defaults = results["raw vLLM, defaults"]["tok_per_s"]
        print(f"vLLM backend / raw vLLM with vLLM's defaults: {ours / defaults:.2f}x")


if __name__ == "__main__":
    main()
