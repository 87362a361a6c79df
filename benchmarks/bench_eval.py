"""Eval throughput: our vLLM backend vs our HF backend vs raw ``vllm.LLM.generate``, in one run.

    python benchmarks/bench_eval.py [--n 64] [--max-new-tokens 128] [--rounds 3]
        [--hf-batch-size 32] [--vllm-dtype auto] [--hf-dtype auto] [--skip-vllm-defaults]
        [--gsm8k ../shared/data/gsm8k]

The embedded model (smollm2-135m), the first N GSM8K test questions, chat prompts, greedy; every
part generates from the same token ids (``prompt_ids`` of ``render_prompt``). Each engine lives in
its own worker process, started once; the timed rounds then alternate between them, so a change
of load on a shared machine hits every part alike:

- ``vLLM backend``: :class:`grpo_gsm8k.generation.vllm.VLLMBackend` ``.generate`` (what
  ``grpo-gsm8k eval`` times per chunk), dtype from :mod:`grpo_gsm8k.hardware` (``--dtype auto``);
- ``raw vLLM``: ``LLM.generate`` on that same engine with the same sampling parameters: what our
  pipeline (tokenizing, output conversion) costs over vLLM itself;
- ``HF backend``: :class:`grpo_gsm8k.generation.hf.HFBackend` ``.generate``, dtype ``auto``;
- ``raw vLLM, defaults`` (last, alone: an idle multi-process vLLM engine keeps a core busy):
  ``vllm.LLM(model)`` as vLLM configures itself, i.e. what our engine settings buy.

vLLM's prefix cache is reset before every timed call (each eval prompt is generated once).
Generated tokens/s counts tokens without the EOS over the time of the generate call. Reported:
the median over rounds of each part's tokens/s and of the per-round ratios, and the load average
around each phase. Targets: vLLM backend / HF backend >= 5x on an AVX-512 CPU; vLLM backend / raw
vLLM >= 0.9x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

RESULT = "BENCH-RESULT "


def write_data(gsm8k: str, n: int, folder: Path) -> Path:
    from grpo_gsm8k.data import load_gsm8k_split
    from grpo_gsm8k.runfiles import write_jsonl

    path = folder / "eval.jsonl"
    write_jsonl(path, (e.to_row() for e in load_gsm8k_split(gsm8k, "test")[:n]))
    return path


# ------------------------------------------------------------------------------------- workers


def reply(payload: dict[str, Any]) -> None:
    print(RESULT + json.dumps(payload), flush=True)


def raw_tokens(outputs: list[Any]) -> int:
    return sum(
        len(o.token_ids) - (o.finish_reason == "stop" and not isinstance(o.stop_reason, str))
        for r in outputs
        for o in r.outputs
    )


def worker(kind: str, args: argparse.Namespace) -> None:
    """Load one engine, say so, then answer each stdin line (a part name) with one timed
    generate of every prompt."""
    from transformers import AutoTokenizer

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.generation import SamplingSettings
    from grpo_gsm8k.hardware import choose
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [render_prompt(e.question, tokenizer, "chat") for e in load_prepared(args.data)]
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    sampling = SamplingSettings(args.max_new_tokens, 1, 0.0, 1.0, 0)
    t0 = time.perf_counter()
    llm: Any = None
    backend: Any = None
    if kind == "vllm":
        from grpo_gsm8k.generation.vllm import VLLMBackend

        dtype = choose("vllm", args.vllm_dtype).dtype
        backend = VLLMBackend(path, dtype=dtype)
        llm = backend.llm
    elif kind == "hf":
        from grpo_gsm8k.generation.hf import HFBackend

        dtype = choose("hf", args.hf_dtype).dtype
        backend = HFBackend(path, batch_size=args.hf_batch_size, dtype=dtype)
    else:  # vLLM with its own defaults
        from vllm import LLM

        from grpo_gsm8k.generation.vllm import default_memory_utilization

        llm = LLM(model=path, gpu_memory_utilization=default_memory_utilization(), seed=0)
    if llm is not None:
        dtype = str(llm.llm_engine.model_config.dtype).removeprefix("torch.")
    reply({"ready": True, "load_s": time.perf_counter() - t0, "dtype": dtype})

    from grpo_gsm8k.generation.vllm import sampling_params

    for line in sys.stdin:
        part = line.strip()
        if llm is not None:
            llm.reset_prefix_cache()
        t0 = time.perf_counter()
        if part in ("vllm", "hf"):
            groups = backend.generate(prompts, sampling)
            gen_s = time.perf_counter() - t0
            tokens = sum(c.tokens for g in groups for c in g)
        else:  # raw vLLM on this worker's engine
            from vllm.inputs import TokensPrompt

            params = sampling_params(sampling, per_request_seed=False)  # greedy: no seed
            outputs = llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in ids], params, use_tqdm=False
            )
            gen_s = time.perf_counter() - t0
            tokens = raw_tokens(outputs)
        reply({"gen_s": gen_s, "tokens": tokens, "tok_per_s": tokens / gen_s})


class Worker:
    def __init__(self, kind: str, argv: list[str], log: IO[str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # vLLM logs to stdout too: skip its lines
            if line.startswith(RESULT):
                return dict(json.loads(line[len(RESULT) :]))
        raise SystemExit(f"benchmark worker {self.kind} died (exit {self.proc.wait()})")

    def run(self, part: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(part + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------------------- main


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hf-batch-size", type=int, default=32, help="(eval's default: 32)")
    parser.add_argument("--vllm-dtype", default="auto", help="our vLLM backend (and raw vLLM)")
    parser.add_argument("--hf-dtype", default="auto")
    parser.add_argument(
        "--skip-vllm-defaults", action="store_true", help="no part with vLLM's own settings"
    )
    parser.add_argument(
        "--gsm8k", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k")
    )
    parser.add_argument("--worker", choices=["vllm", "hf", "defaults"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return

    from grpo_gsm8k.hardware import choose

    auto = choose()
    runs: dict[str, list[dict[str, Any]]] = {}
    ready: dict[str, dict[str, Any]] = {}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench_eval.") as tmp:
        data = str(write_data(args.gsm8k, args.n, Path(tmp)))
        argv = ["--data", data, "--max-new-tokens", str(args.max_new_tokens)]
        argv += ["--hf-batch-size", str(args.hf_batch_size)]
        argv += ["--vllm-dtype", args.vllm_dtype, "--hf-dtype", args.hf_dtype]
        with open(f"{tmp}/workers.log", "w") as log:
            loads.append(f"start {load()}")
            print("starting the vLLM backend and the HF backend ...", flush=True)
            workers = {"vllm": Worker("vllm", argv, log), "hf": Worker("hf", argv, log)}
            ready["vLLM backend"] = ready["raw vLLM"] = workers["vllm"].ready
            ready["HF backend"] = workers["hf"].ready
            loads.append(f"engines up {load()}")
            parts = [("vLLM backend", "vllm", "vllm"), ("raw vLLM", "vllm", "raw")]
            parts.append(("HF backend", "hf", "hf"))
            for r in range(args.rounds):
                for name, kind, part in parts:
                    runs.setdefault(name, []).append(workers[kind].run(part))
                print(f"round {r + 1}/{args.rounds} done (load {load()})", flush=True)
            for w in workers.values():
                w.close()
            loads.append(f"rounds done {load()}")
            if not args.skip_vllm_defaults:
                print("raw vLLM with vLLM's defaults ...", flush=True)
                defaults = Worker("defaults", argv, log)
                ready["raw vLLM, defaults"] = defaults.ready
                runs["raw vLLM, defaults"] = [defaults.run("raw") for _ in range(args.rounds)]
                defaults.close()
                loads.append(f"defaults done {load()}")

    print(
        f"\n{args.n} GSM8K prompts, greedy, {args.max_new_tokens} new tokens, smollm2-135m, "
        f"HF batch size {args.hf_batch_size}, {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    machine = auto.machine
    print(
        f"torch CPU capability {machine.cpu_capability}, CPU flags: "
        f"{' '.join(machine.cpu_flags) or '-'}, GPU: {machine.gpu or '-'}"
    )
    print(f"--backend auto --dtype auto here: {auto.log_line()}")
    print(f"load average (1/5/15 min): {'; '.join(loads)}")
    header = ("dtype", "start s", "tokens", "tok/s (median)", "tok/s per round")
    print(f"{'':19} {header[0]:>9} {header[1]:>7} {header[2]:>6}  {header[3]:>14}  {header[4]}")
    med = {}
    for name, rounds in runs.items():
        rates = [x["tok_per_s"] for x in rounds]
        med[name] = statistics.median(rates)
        print(
            f"{name:19} {ready[name]['dtype']:>9} {ready[name]['load_s']:7.1f} "
            f"{rounds[0]['tokens']:6d}  {med[name]:14.1f}  {' '.join(f'{x:.0f}' for x in rates)}"
        )

    def ratio(a: str, b: str) -> str:
        per_round = [x["tok_per_s"] / y["tok_per_s"] for x, y in zip(runs[a], runs[b], strict=True)]
        rounds = " ".join(f"{x:.2f}" for x in per_round)
        return f"{statistics.median(per_round):.2f}x (per round: {rounds})"

    print(f"vLLM backend / HF backend: {ratio('vLLM backend', 'HF backend')} (target >= 5x)")
    print(f"vLLM backend / raw vLLM:   {ratio('vLLM backend', 'raw vLLM')} (target >= 0.9x)")
    if "raw vLLM, defaults" in med:
        print(
            "vLLM backend / raw vLLM with vLLM's defaults (not interleaved): "
            f"{med['vLLM backend'] / med['raw vLLM, defaults']:.2f}x"
        )


if __name__ == "__main__":
    main()
