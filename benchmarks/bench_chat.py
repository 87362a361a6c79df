"""Chat streaming overhead: the HF backend's ``stream`` as chat uses it (``generate`` in a thread,
TextIteratorStreamer, a Ctrl-C stopping criterion) vs a plain ``model.generate`` of the same
prompt; and the same stream with one torch thread (one prompt at a time on a busy CPU, torch's
threads wait on each other).

    python benchmarks/bench_chat.py [--questions 8] [--max-new-tokens 64]

The embedded model (smollm2-135m) loaded once, chat prompts of the first N GSM8K eval (test)
questions, greedy, one prompt at a time as the chat sends them; the two ways alternate question by
question so that load on the machine hits them alike. Prints each way's generated tokens/s (EOS
excluded, over the generate call), the ratio streamed / plain (1.0 = streaming costs nothing) and
the ratio of one thread to torch's default.
"""

from __future__ import annotations

import argparse
import platform
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gsm8k", default="../shared/data/gsm8k")
    args = parser.parse_args()

    import torch

    from grpo_gsm8k.data import load_gsm8k_split
    from grpo_gsm8k.generation import SamplingSettings
    from grpo_gsm8k.generation.hf import HFBackend, special_ids
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt

    engine = HFBackend(resolve_model("smollm2-135m").path, batch_size=1, dtype="auto")
    eos, pad_id = special_ids(engine.model, engine.tokenizer)
    questions = [e.question for e in load_gsm8k_split(args.gsm8k, "test")[: args.questions]]
    sampling = SamplingSettings(args.max_new_tokens, 1, 0.0, 1.0, 0)
    default_threads = torch.get_num_threads()
    ways = ["streamed", "plain", "streamed, 1 thread"]
    totals = {way: [0, 0.0] for way in ways}  # tokens, seconds
    same = 0  # questions where streamed and plain generated as many tokens (greedy: same answer)
    warm = render_prompt("Hi", engine.tokenizer, "chat")
    engine.stream(warm, sampling, threading.Event(), lambda text: None)
    for question in questions:
        prompt = render_prompt(question, engine.tokenizer, "chat")
        answer = engine.stream(prompt, sampling, threading.Event(), lambda text: None)
        totals["streamed"][0] += answer.tokens
        totals["streamed"][1] += answer.seconds

        ids = torch.tensor([prompt_ids(engine.tokenizer, prompt)])
        started = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
        seconds = time.perf_counter() - started
        new = out[0, ids.shape[1] :].tolist()
        end = next((j for j, t in enumerate(new) if t in eos), len(new))
        same += end == answer.tokens
        totals["plain"][0] += end
        totals["plain"][1] += seconds

        torch.set_num_threads(1)
        one = engine.stream(prompt, sampling, threading.Event(), lambda text: None)
        torch.set_num_threads(default_threads)
        totals["streamed, 1 thread"][0] += one.tokens
        totals["streamed, 1 thread"][1] += one.seconds

    cpuinfo = Path("/proc/cpuinfo")
    flags = sorted(set(cpuinfo.read_text().split()) & FLAGS) if cpuinfo.exists() else []
    rate = {k: tokens / seconds for k, (tokens, seconds) in totals.items()}
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, torch threads "
        f"{default_threads} (default), CPU flags {' '.join(flags) or '?'}"
    )
    print(
        f"{args.questions} questions x {args.max_new_tokens} tokens, greedy, one at a time; "
        f"same token count both ways on {same}/{args.questions}"
    )
    for k, (tokens, seconds) in totals.items():
        print(f"  {k:18s} {tokens:5d} tokens in {seconds:6.1f} s = {rate[k]:6.1f} tok/s")
    print(f"streamed / plain: {rate['streamed'] / rate['plain']:.2f}x (1.0 = no overhead)")
    one = rate["streamed, 1 thread"] / rate["streamed"]
    print(f"streamed 1 thread / streamed {default_threads} threads: {one:.2f}x")


FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}

if __name__ == "__main__":
    main()
