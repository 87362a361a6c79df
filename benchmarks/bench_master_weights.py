"""Pure bf16 weights vs fp32 master weights under AdamW at the GPU recipes' learning rate.

    .venv/bin/python benchmarks/bench_master_weights.py [--lr 5e-6] [--steps 10] [--layers N]

The real SmolLM2-135M-Instruct weights, every parameter, two copies: one held in bfloat16 (what a
model loaded with ``dtype: bfloat16`` and trained without DeepSpeed/FSDP gets: AdamW updates the
bf16 tensors themselves), one in float32 (fp32 master weights, as bf16 autocast over an fp32 model,
ZeRO and FSDP2 keep). Both take the same AdamW steps (torch.optim.AdamW, TRL's defaults: betas
0.9/0.999, eps 1e-8, no weight decay) from the same seeded gradients. Adam's step is ~lr per weight
whatever the gradient's scale, so the gradients' values barely matter; what the script measures
is how much of each step survives bf16 rounding: the share of weights that changed at all, and
the norm of the realized change over the fp32 copy's change, after each step. ``--layers N``
keeps the parameters of the first N decoder layers only (less memory; every layer's weights have
the same spread). Then the same on a synthetic tensor of ``--std`` (0.02: the scale of larger
models' linear weights; SmolLM2-135M's are ~6x larger, so more of their updates survive).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--layers", type=int, default=None, help="first N decoder layers only")
    parser.add_argument("--std", type=float, default=0.02, help="std of the synthetic tensor")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from grpo_gsm8k.hardware import cpu_flags
    from grpo_gsm8k.models import resolve_model

    print(f"CPU flags: {' '.join(cpu_flags())}; torch {torch.__version__}; lr {args.lr}")
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m").path)
    kept = [f"layers.{i}." for i in range(args.layers)] if args.layers is not None else None
    start32 = [
        p.detach().float().clone()
        for name, p in model.named_parameters()
        if kept is None or any(k in name for k in kept)
    ]
    magnitudes = torch.cat([w.abs().flatten() for w in start32 if w.dim() == 2])
    p90 = magnitudes.kthvalue(int(0.9 * magnitudes.numel())).values
    median = magnitudes.median()
    print(f"{magnitudes.numel():,} matrix weights: median |w| {median:.4f}, p90 {p90:.4f}")
    del model
    run(start32, args.lr, args.steps)
    synthetic = torch.randn(4_000_000, generator=torch.Generator().manual_seed(1)) * args.std
    print(f"synthetic N(0, {args.std}^2) tensor, {synthetic.numel():,} weights:")
    run([synthetic], args.lr, args.steps)


def run(start32: list[torch.Tensor], lr: float, steps: int) -> None:
    """AdamW from ``start32`` on both copies; one line per step."""
    fp32 = [torch.nn.Parameter(w.clone()) for w in start32]
    bf16 = [torch.nn.Parameter(w.to(torch.bfloat16)) for w in start32]
    start16 = [p.detach().clone() for p in bf16]
    optimizers = [torch.optim.AdamW(ps, lr=lr, weight_decay=0.0) for ps in (fp32, bf16)]
    generator = torch.Generator().manual_seed(0)
    print("step  changed fp32  changed bf16  |realized bf16 change| / |fp32 change|   s")
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        for p32, p16 in zip(fp32, bf16, strict=True):
            grad = torch.randn(p32.shape, generator=generator) * 1e-3
            p32.grad, p16.grad = grad, grad.to(torch.bfloat16)
        for optimizer in optimizers:
            optimizer.step()
        total = changed32 = changed16 = 0
        norm32 = norm16 = 0.0
        for p32, w32, p16, w16 in zip(fp32, start32, bf16, start16, strict=True):
            d32 = p32.detach() - w32
            d16 = p16.detach().float() - w16.float()
            total += d32.numel()
            changed32 += int((d32 != 0).sum())
            changed16 += int((d16 != 0).sum())
            norm32 += float(d32.square().sum())
            norm16 += float(d16.square().sum())
        print(
            f"{step:4d}  {changed32 / total:11.1%}  {changed16 / total:11.1%}  "
            f"{(norm16 / norm32) ** 0.5:38.3f}  {time.perf_counter() - t0:5.1f}"
        )


if __name__ == "__main__":
    main()
