"""``grpo-gsm8k chat``: ask several models the same thing in the terminal and compare the answers.

Every line typed goes to every model; each model keeps its own conversation (multi-turn). Answers
are streamed token by token into one panel per model, side by side when the terminal is wide
enough, stacked otherwise, and each ends with its extracted answer (flexible mode), tokens, time
and tokens/s. ``/gsm8k [N]`` asks an eval question the way eval asks it and grades every answer
against the gold in both modes.

Models are resolved by :func:`grpo_gsm8k.models.resolve_model` (as in eval) and loaded once up
front; the same model named twice is loaded once and answers under two labels (``name #1``,
``name #2``) with different sampling seeds. The prompt is the one eval and training use (the
chat template with the same system prompt), extended with the conversation so far.

Backends: ``hf`` streams with transformers' ``TextIteratorStreamer`` (``generate`` runs in a
thread); ``vllm`` streams by stepping the engine (``LLMEngine.step``) with cumulative outputs, the
engine core running in this process so that Ctrl-C reaches only us. Ctrl-C stops the answer being
generated (a stopping criterion for hf, an abort for vLLM), skips the models still waiting and
keeps the turn out of the conversation; Ctrl-D (or ``/quit``) leaves.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from .data import DataError, Example, load_prepared
from .errors import UserError
from .generation import SamplingSettings, vllm_available
from .grading import extract, same_number
from .models import ModelError, ResolvedModel, cache_dir, resolve_model
from .prompts import (
    SYSTEM_PROMPT,
    Message,
    PromptStyle,
    prompt_ids,
    prompt_template,
    render_messages,
    resolve_prompt_style,
)
from .runfiles import append_jsonl, fingerprint, provenance, write_jsonl

MIN_COLUMN_WIDTH = 40  # side by side when the terminal gives every model at least this many columns
HELP = """\
Every line goes to every model; each model keeps its own conversation.
  Enter sends; Esc+Enter (Alt+Enter) or a line ending in \\ starts a new line.
  /system [TEXT|default]  show or set the system prompt (default: the one eval uses)
  /temperature X          0 = greedy; > 0 samples (seed + model k + 1000 x turn t)
  /top-p X                nucleus sampling, with a temperature > 0
  /max-tokens N           new tokens per answer
  /models                 the loaded models, their paths and settings
  /reset                  forget the conversation
  /gsm8k [N]              eval question N (0-based) or a random one, graded against the gold
  /save FILE              write this session's answers as JSONL (one row per model answer)
  /help                   this text
  /quit                   leave (or Ctrl-D); Ctrl-C stops the answer being generated"""

PLAIN: dict[str, Any] = {"highlight": False, "soft_wrap": True}  # lines the terminal wraps


class ChatError(UserError):
    """Bad chat settings, or no model that loads; one-line message."""


@dataclass
class ChatConfig:
    """Options of ``grpo-gsm8k chat``: every line you type goes to every model (each keeps its own
    conversation); the answers stream side by side with the extracted answer, tokens and tokens/s.
    Commands: /system, /temperature, /top-p, /max-tokens, /models, /reset, /gsm8k [N], /save FILE,
    /help, /quit. Ctrl-C stops an answer, Ctrl-D quits."""

    positional: ClassVar[tuple[str, ...]] = ("models",)

    models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "models to ask: 'smollm2-135m' (embedded), a checkpoint / training output / "
            "LoRA adapter folder, or a hub id; name one twice to see two samples side by side"
        },
    )
    system: str | None = field(
        default=None,
        metadata={"help": "system prompt (unset: the one eval and training use)"},
    )
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy, as eval"})
    top_p: float = field(
        default=1.0,
        metadata={"help": "nucleus sampling with temperature > 0"},
    )
    max_new_tokens: int = field(default=512, metadata={"help": "new tokens per answer"})
    backend: Literal["auto", "hf", "vllm"] = field(
        default="auto",
        metadata={
            "help": "hf (transformers generate), vllm, or auto = vllm on a CUDA GPU when "
            "installed, else hf (on CPU vLLM takes minutes to start)"
        },
    )
    dtype: str = field(default="auto", metadata={"help": "model dtype, e.g. bfloat16"})
    prompt: Literal["chat", "raw", "auto"] = field(
        default="chat",
        metadata={
            "help": "chat template + system prompt, raw text for base models, or auto = chat "
            "when the tokenizer has a chat template"
        },
    )
    ask: list[str] = field(
        default_factory=list,
        metadata={
            "help": "ask this (a question or a /command) and print the answers, then exit instead "
            "of starting the prompt; repeat it for several turns",
            "action": "extend",  # --ask A --ask B: both, in order
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "sampling seed: model k (from 0) on turn t (from 0) uses seed + k + 1000 t"
        },
    )
    eval_file: str = field(
        default="data/eval.jsonl",
        metadata={"help": "prepared eval JSONL for /gsm8k"},
    )
    save: str | None = field(
        default=None,
        metadata={"help": "append every answer to this JSONL file as it is made (as /save FILE)"},
    )
    history_file: str | None = field(
        default=None,
        metadata={
            "help": "input history kept across sessions (unset: <cache>/chat_history, the cache "
            "being $GRPO_GSM8K_CACHE or ~/.cache/grpo-gsm8k)"
        },
    )
    layout: Literal["auto", "columns", "stacked"] = field(
        default="auto",
        metadata={
            "help": f"answers side by side, one below the other, or auto = columns when the "
            f"terminal gives each model {MIN_COLUMN_WIDTH}+ characters"
        },
    )
    gpu_memory_utilization: float | None = field(
        default=None,
        metadata={"help": "vllm: share of GPU memory (of RAM on CPU) for all vLLM models together"},
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads (unset: torch's default, one per core); on a busy CPU one "
            "thread can be several times faster (benchmarks/bench_chat.py)"
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow model code from the hub"}
    )

    def check(self) -> None:
        """Every check that needs no model."""
        if not self.models:
            raise ChatError("name at least one model")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ChatError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ChatError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.threads is not None and self.threads < 1:
            raise ChatError(f"--threads must be at least 1, got {self.threads}")
        if self.max_new_tokens < 1:
            raise ChatError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        for name, value, allowed in (
            ("backend", self.backend, ("auto", "hf", "vllm")),
            ("prompt", self.prompt, ("chat", "raw", "auto")),
            ("layout", self.layout, ("auto", "columns", "stacked")),
        ):
            if value not in allowed:
                raise ChatError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")


# ------------------------------------------------------------------------------------ engines


@dataclass
class Answer:
    text: str
    tokens: int  # generated tokens, EOS excluded
    truncated: bool  # stopped by max_new_tokens
    stopped: bool  # stopped by Ctrl-C
    seconds: float  # from the request to the last token, prompt processing included


class Engine(Protocol):
    name: str
    tokenizer: Any
    dtype: str

    def generate(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Answer:
        """One answer to ``prompt``; ``on_text`` gets the text so far as it grows; returns early
        once ``stop`` is set."""
        ...


class HFEngine:
    """transformers ``generate`` in a thread, streamed through ``TextIteratorStreamer``."""

    name = "hf"

    def __init__(self, path: str, dtype: str, trust_remote_code: bool) -> None:
        from .generation.hf import HFBackend

        backend = HFBackend(path, batch_size=1, dtype=dtype, trust_remote_code=trust_remote_code)
        self.model, self.tokenizer = backend.model, backend.tokenizer
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        eos_ids = self.model.generation_config.eos_token_id
        self.eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
        self.eos.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.tokenizer.eos_token_id if pad is None else pad

    def generate(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Answer:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class StopFlag(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device
                )

        ids = prompt_ids(self.tokenizer, prompt)
        input_ids = torch.tensor([ids], device=next(self.model.parameters()).device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        greedy = sampling.temperature == 0
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    result["out"] = self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        max_new_tokens=sampling.max_new_tokens,
                        do_sample=not greedy,
                        temperature=None if greedy else sampling.temperature,
                        top_p=None if greedy else sampling.top_p,
                        top_k=None,
                        pad_token_id=self.pad_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([StopFlag()]),
                    )
            except BaseException as e:  # handed to the caller below
                result["error"] = e
                streamer.end()

        started = time.perf_counter()
        worker = threading.Thread(target=work, name="chat-generate", daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            on_text(text)
        worker.join()
        seconds = time.perf_counter() - started
        if "error" in result:
            raise result["error"]
        new = result["out"][0, len(ids) :].tolist()
        end = next((j for j, t in enumerate(new) if t in self.eos), None)
        kept = new if end is None else new[:end]
        truncated = end is None and len(new) >= sampling.max_new_tokens
        return Answer(
            str(self.tokenizer.decode(kept, skip_special_tokens=True)),
            len(kept),
            truncated,
            stop.is_set() and end is None and not truncated,
            seconds,
        )


class VLLMEngine:
    """vLLM with the engine core in this process, stepped here so that answers stream."""

    name = "vllm"

    def __init__(
        self,
        path: str,
        dtype: str,
        trust_remote_code: bool,
        seed: int,
        gpu_memory_utilization: float,
    ) -> None:
        # in-process engine core: Ctrl-C must stop an answer, not kill an engine process
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoTokenizer

        from .generation.vllm import _engine

        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        llm = _engine(
            path,
            {
                "gpu_memory_utilization": gpu_memory_utilization,
                "dtype": dtype,
                "trust_remote_code": trust_remote_code,
                "seed": seed,
                "use_tqdm_on_load": False,
            },
        )
        self.engine = llm.llm_engine
        self.dtype = str(self.engine.model_config.dtype).removeprefix("torch.")
        self._ids = itertools.count()

    def generate(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Answer:
        from vllm.inputs.engine import tokens_input
        from vllm.sampling_params import RequestOutputKind

        from .generation.vllm import _sampling_params, on_gpu

        params = _sampling_params(sampling, per_request_seed=on_gpu())
        params.output_kind = RequestOutputKind.CUMULATIVE
        ids = prompt_ids(self.tokenizer, prompt)
        started = time.perf_counter()
        request = f"chat-{next(self._ids)}"  # outputs carry this id; vLLM adds a suffix inside
        self.engine.add_request(request, tokens_input(ids, prompt=prompt), params)
        last = None
        while self.engine.has_unfinished_requests():
            if stop.is_set():
                self.engine.abort_request([request])
                break
            for out in self.engine.step():
                if out.request_id == request:
                    last = out
                    on_text(out.outputs[0].text)
        seconds = time.perf_counter() - started
        if last is None:
            return Answer("", 0, False, True, seconds)
        out = last.outputs[0]
        tokens = len(out.token_ids)
        if out.finish_reason == "stop" and not isinstance(out.stop_reason, str) and tokens:
            tokens -= 1  # vLLM counts the EOS token; the hf engine does not
        return Answer(out.text, tokens, out.finish_reason == "length", not last.finished, seconds)


# ------------------------------------------------------------------------------------- models


@dataclass
class ChatModel:
    index: int
    label: str  # unique: the name, with ' #k' when the same name is given more than once
    name: str  # as typed
    resolved: ResolvedModel
    engine: Engine
    style: PromptStyle
    load_s: float
    history: list[Message] = field(default_factory=list)  # user/assistant turns


def model_labels(names: list[str]) -> list[str]:
    """Short unique labels: a folder's name (``run/checkpoint-N`` for checkpoints), and
    ``#1``, ``#2``... for a model named more than once."""

    def short(name: str) -> str:
        path = Path(name.rstrip("/")).expanduser()
        if not path.is_dir():
            return name
        if path.name.startswith("checkpoint") and path.parent.name:
            return f"{path.parent.name}/{path.name}"
        return path.name or name

    counts = Counter(names)
    seen: Counter[str] = Counter()
    labels = []
    for name in names:
        seen[name] += 1
        labels.append(short(name) + (f" #{seen[name]}" if counts[name] > 1 else ""))
    return labels


def choose_backend(name: str) -> str:
    """``auto``: vLLM on a CUDA GPU when it is installed, else hf (on CPU vLLM starts slowly and
    one prompt at a time gains little from it)."""
    if name != "auto":
        return name
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "hf"


def _one_line(e: BaseException) -> str:
    if isinstance(e, ModelError):
        return str(e)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_models(config: ChatConfig, console: Any) -> list[ChatModel]:
    """Resolve and load every model once, with a spinner; a model that fails is reported in one
    line and left out. Raises ChatError when none loads."""
    from rich.markup import escape
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the spinner is the progress display
    hf_logging.set_verbosity_error()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # vLLM's start-up chatter
    backend = choose_backend(config.backend)
    n_vllm = len(set(config.models)) if backend == "vllm" else 0
    engines: dict[str, Engine] = {}  # the same checkpoint named twice is loaded once
    models: list[ChatModel] = []
    labels = model_labels(config.models)
    for i, (name, label) in enumerate(zip(config.models, labels, strict=True)):
        started = time.perf_counter()
        try:
            with console.status(f"loading {label} ({i + 1}/{len(labels)}, {backend})…"):
                resolved = resolve_model(name, config.trust_remote_code)
                engine = engines.get(resolved.path)
                if engine is None:
                    engine = _load_engine(backend, resolved.path, config, n_vllm)
                    engines[resolved.path] = engine
                style = resolve_prompt_style(config.prompt, engine.tokenizer)
        except Exception as e:
            reason = _one_line(e).removeprefix(f"{name}: ")
            console.print(f"[red]✗ {escape(label)}[/red]: {escape(reason)}", **PLAIN)
            continue
        load_s = time.perf_counter() - started
        models.append(ChatModel(i, label, name, resolved, engine, style, load_s))
        console.print(
            f"[green]✓ {escape(label)}[/green] [dim]{resolved.source} · {engine.name} · "
            f"{engine.dtype} · {style} prompt · {load_s:.1f} s[/dim]",
            **PLAIN,
        )
    if not models:
        raise ChatError("no model could be loaded (see the lines above)")
    return models


def _load_engine(backend: str, path: str, config: ChatConfig, n_vllm: int) -> Engine:
    if backend == "hf":
        return HFEngine(path, config.dtype, config.trust_remote_code)
    if backend == "vllm":
        from .generation.vllm import default_memory_utilization

        share = config.gpu_memory_utilization or default_memory_utilization()
        return VLLMEngine(
            path, config.dtype, config.trust_remote_code, config.seed, share / max(n_vllm, 1)
        )
    raise ChatError(f"--backend must be hf, vllm or auto, got {backend!r}")


# ---------------------------------------------------------------------------------- the view


@dataclass
class Slot:
    """One model's panel in the turn on screen."""

    label: str
    text: str = ""
    status: str = "waiting"  # waiting, generating, done, stopped, skipped, error
    stats: str = ""
    grade: Any = None  # a rich Text with ✓/✗ after /gsm8k


def _panel(slot: Slot) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    if slot.status in ("waiting", "skipped"):
        body = Text(slot.status + ("…" if slot.status == "waiting" else ""), style="dim")
    elif slot.status == "error":
        body = Text(slot.text, style="red")
    else:
        body = Text(slot.text or "…", overflow="fold")
    parts: list[Any] = [body]
    if slot.stats:
        parts += [Text(""), Text(slot.stats, style="cyan")]
    if slot.grade is not None:
        parts.append(slot.grade)
    border = {"generating": "yellow", "done": "blue", "stopped": "magenta", "error": "red"}
    return Panel(
        Group(*parts),
        title=Text(slot.label, style="bold"),
        title_align="left",
        border_style=border.get(slot.status, "dim"),
    )


def turn_view(slots: list[Slot], columns: bool) -> Any:
    from rich.console import Group
    from rich.table import Table

    panels = [_panel(s) for s in slots]
    if not columns or len(panels) == 1:
        return Group(*panels)
    grid = Table.grid(expand=True, padding=(0, 1))
    for _ in panels:
        grid.add_column(ratio=1)
    grid.add_row(*panels)
    return grid


def _stats(answer: Answer, extracted: str | None) -> str:
    rate = answer.tokens / answer.seconds if answer.seconds > 0 else 0.0
    parts = [
        f"answer {extracted if extracted is not None else '—'}",
        f"{answer.tokens} tokens" + (" (max)" if answer.truncated else ""),
        f"{answer.seconds:.1f} s",
        f"{rate:.1f} tok/s",
    ]
    if answer.stopped:
        parts.append("stopped")
    return " · ".join(parts)


def _grade_line(answer: str, gold: str) -> tuple[Any, dict[str, Any]]:
    from rich.text import Text

    line = Text(f"gold {gold}")
    graded: dict[str, Any] = {"gold": gold}
    for mode in ("strict", "flexible"):
        pred = extract(answer, mode)
        ok = same_number(pred, gold)
        graded[f"pred_{mode}"], graded[f"correct_{mode}"] = pred, ok
        line.append(" · ")
        line.append(f"{mode} {'✓' if ok else '✗'}", style="bold green" if ok else "bold red")
        line.append(f" {pred if pred is not None else '—'}")
    return line, graded


@contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) sets ``event`` instead of raising KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def no_echo() -> Iterator[None]:
    """While inside, keys typed are not echoed (a ``^C`` would shift the live display); Ctrl-C
    still sends SIGINT, and what was typed waits for the next prompt."""
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (ImportError, OSError, ValueError):  # not a terminal, or no termios (Windows)
        saved = None
    if saved is None:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


# ------------------------------------------------------------------------------- the session


class ChatSession:
    """The state of one chat: models, settings the commands change, the transcript."""

    def __init__(self, config: ChatConfig, models: list[ChatModel], console: Any) -> None:
        self.config = config
        self.models = models
        self.console = console
        self.system = config.system if config.system is not None else SYSTEM_PROMPT
        self.temperature = config.temperature
        self.top_p = config.top_p
        self.max_new_tokens = config.max_new_tokens
        self.turn = 0
        self.rows: list[dict[str, Any]] = []
        self.rng = random.Random(config.seed)
        self._examples: list[Example] | None = None
        # what produced the answers (versions, command line, machine), in every transcript row
        self._provenance = {k: v for k, v in provenance().items() if k != "timestamp"}

    # ---------------------------------------------------------------- input

    def handle(self, line: str) -> bool:
        """Run one input line (a question or a /command); False means quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            self.ask(line)
            return True
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        command = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if command is None:
            self.say(f"unknown command /{name}; /help lists them", "red")
            return True
        return command(arg) is not False

    def say(self, text: str, style: str = "dim") -> None:
        self.console.print(text, style=style, markup=False, **PLAIN)

    # ---------------------------------------------------------------- asking

    def sampling(self, model: ChatModel) -> SamplingSettings:
        seed = self.config.seed + model.index + 1000 * (self.turn - 1)
        return SamplingSettings(self.max_new_tokens, 1, self.temperature, self.top_p, seed)

    def columns(self) -> bool:
        if self.config.layout != "auto":
            return self.config.layout == "columns"
        width = self.console.width
        return self.console.is_terminal and width >= MIN_COLUMN_WIDTH * len(self.models)

    def ask(self, question: str, example: Example | None = None, index: int | None = None) -> None:
        """Send ``question`` to every model, one after the other, streaming into the panels."""
        from rich.live import Live

        self.turn += 1
        slots = [Slot(m.label) for m in self.models]
        stop = threading.Event()
        answers: list[tuple[ChatModel, str, Answer]] = []
        columns = self.columns()
        with (
            ctrl_c_sets(stop),
            no_echo(),
            Live(
                get_renderable=lambda: turn_view(slots, columns),
                console=self.console,
                refresh_per_second=12,
            ),
        ):
            for model, slot in zip(self.models, slots, strict=True):
                if stop.is_set():
                    slot.status = "skipped"
                    continue
                messages = [
                    {"role": "system", "content": self.system},
                    *model.history,
                    {"role": "user", "content": question},
                ]
                prompt = render_messages(messages, model.engine.tokenizer, model.style)
                slot.status = "generating"

                def show(text: str, slot: Slot = slot) -> None:
                    slot.text = text

                try:
                    answer = model.engine.generate(prompt, self.sampling(model), stop, show)
                except Exception as e:
                    slot.status, slot.text = "error", _one_line(e)
                    continue
                extracted = extract(answer.text, "flexible")
                slot.text, slot.stats = answer.text, _stats(answer, extracted)
                slot.status = "stopped" if answer.stopped else "done"
                graded = None
                if example is not None:
                    slot.grade, graded = _grade_line(answer.text, example.gold)
                answers.append((model, prompt, answer))
                self._record(model, question, prompt, answer, extracted, example, index, graded)
        if not self.console.is_terminal:
            self.console.line()  # Live ends a terminal's display with one; not a file's
        if stop.is_set():
            self.say("stopped (Ctrl-C): this turn is left out of the conversation", "magenta")
            return
        for model, _, answer in answers:
            model.history += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer.text},
            ]

    def _record(
        self,
        model: ChatModel,
        question: str,
        prompt: str,
        answer: Answer,
        extracted: str | None,
        example: Example | None,
        index: int | None,
        graded: dict[str, Any] | None,
    ) -> None:
        sampling = self.sampling(model)
        row: dict[str, Any] = {
            "turn": self.turn,
            "label": model.label,
            "model": model.name,
            "model_path": model.resolved.path,
            "model_source": model.resolved.source,
            "backend": model.engine.name,
            "dtype": model.engine.dtype,
            "prompt_style": model.style,
            "system": self.system,
            "question": question,
            "prompt": prompt,
            "answer": answer.text,
            "extracted": extracted,
            "tokens": answer.tokens,
            "truncated": answer.truncated,
            "stopped": answer.stopped,
            "seconds": round(answer.seconds, 3),
            "tokens_per_s": round(answer.tokens / answer.seconds, 2) if answer.seconds else None,
            "settings": {
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_new_tokens": sampling.max_new_tokens,
                "seed": sampling.seed,
                "greedy": sampling.temperature == 0,
            },
            "gsm8k": None,
            "prompt_template": prompt_template(model.style, model.engine.tokenizer, self.system),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self._provenance,
        }
        if example is not None and graded is not None:
            row["gsm8k"] = {
                "id": example.id,
                "index": index,
                **graded,
                "data": fingerprint(self.config.eval_file),
            }
        self.rows.append(row)
        if self.config.save:
            append_jsonl(self.config.save, [row])

    # ---------------------------------------------------------------- commands

    def cmd_help(self, arg: str) -> None:
        self.say(HELP, "")

    def cmd_quit(self, arg: str) -> bool:
        return False

    cmd_exit = cmd_quit

    def cmd_system(self, arg: str) -> None:
        if arg == "default":
            self.system = SYSTEM_PROMPT
        elif arg:
            self.system = arg
        self.say(f"system prompt: {self.system}")

    def cmd_temperature(self, arg: str) -> None:
        value = _number(arg, float)
        if value is None or not (value >= 0 and math.isfinite(value)):
            self.say(f"/temperature needs a number >= 0 (now {self.temperature})", "red")
            return
        self.temperature = value
        self.say(f"temperature {value} ({'greedy' if value == 0 else 'sampling'})")

    def cmd_top_p(self, arg: str) -> None:
        value = _number(arg, float)
        if value is None or not 0 < value <= 1:
            self.say(f"/top-p needs a number in (0, 1] (now {self.top_p})", "red")
            return
        self.top_p = value
        self.say(f"top-p {value}")

    def cmd_max_tokens(self, arg: str) -> None:
        value = _number(arg, int)
        if value is None or value < 1:
            self.say(f"/max-tokens needs a whole number >= 1 (now {self.max_new_tokens})", "red")
            return
        self.max_new_tokens = value
        self.say(f"max new tokens {value}")

    def cmd_reset(self, arg: str) -> None:
        for model in self.models:
            model.history.clear()
        self.say("conversation forgotten")

    def cmd_models(self, arg: str) -> None:
        from rich.table import Table

        table = Table(title=None, show_edge=False)
        for column in ("label", "model", "source", "backend", "dtype", "prompt", "load", "turns"):
            table.add_column(column)
        for m in self.models:
            table.add_row(
                m.label,
                m.resolved.path if m.resolved.path != m.name else m.name,
                m.resolved.source,
                m.engine.name,
                m.engine.dtype,
                m.style,
                f"{m.load_s:.1f} s",
                str(len(m.history) // 2),
            )
        self.console.print(table)
        self.say(
            f"temperature {self.temperature} · top-p {self.top_p} · max new tokens "
            f"{self.max_new_tokens} · seed {self.config.seed}"
        )

    def cmd_save(self, arg: str) -> None:
        if not arg:
            self.say("/save needs a file name", "red")
            return
        try:
            write_jsonl(Path(arg).expanduser(), self.rows)
        except OSError as e:
            self.say(f"couldn't write {arg}: {e.strerror or e}", "red")
            return
        self.say(f"wrote {arg} ({len(self.rows)} answers)", "green")

    def cmd_gsm8k(self, arg: str) -> None:
        try:
            if self._examples is None:
                self._examples = load_prepared(self.config.eval_file)
        except DataError as e:
            self.say(f"{e} (run `grpo-gsm8k prepare`, or pass --eval-file)", "red")
            return
        n = len(self._examples)
        if arg:
            index = _number(arg, int)
            if index is None or not 0 <= index < n:
                self.say(f"/gsm8k takes a question number from 0 to {n - 1}", "red")
                return
        else:
            index = self.rng.randrange(n)
        example = self._examples[index]
        for model in self.models:  # asked exactly as eval asks it: no earlier turns
            model.history.clear()
        from rich.markup import escape

        self.console.print(
            f"[bold]GSM8K question {index}[/bold] [dim]({escape(example.id)} in "
            f"{escape(self.config.eval_file)}; conversation reset)[/dim]",
            **PLAIN,
        )
        self.say(example.question, "")
        self.ask(example.question, example, index)


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------- input


def read_lines(config: ChatConfig, console: Any) -> Iterator[str]:
    """Lines typed at the prompt (prompt_toolkit: line editing, history across sessions,
    multi-line with Esc+Enter or a trailing backslash); from stdin when it is not a terminal."""
    if not sys.stdin.isatty():
        for line in sys.stdin:
            yield line.rstrip("\n")
        return
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    history_path = Path(config.history_file or cache_dir() / "chat_history").expanduser()
    history_path.parent.mkdir(parents=True, exist_ok=True)
    keys = KeyBindings()

    @keys.add("enter")
    def _send(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.text.endswith("\\"):
            buffer.text = buffer.text[:-1] + "\n"
            buffer.cursor_position = len(buffer.text)
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_path)),
        key_bindings=keys,
        multiline=True,
        prompt_continuation="... ",
    )
    while True:
        try:
            yield session.prompt("you> ")
        except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
            continue
        except EOFError:  # Ctrl-D
            return


def run_chat(config: ChatConfig) -> int:
    """``grpo-gsm8k chat``: load the models, then answer --ask inputs or the prompt's lines."""
    from rich.console import Console

    config.check()
    if config.save:  # fail before any model loads, not in the middle of a turn
        try:
            Path(config.save).parent.mkdir(parents=True, exist_ok=True)
            Path(config.save).open("a").close()
        except OSError as e:
            raise ChatError(f"--save {config.save}: {e.strerror or e}") from None
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    console = Console()
    models = load_models(config, console)
    session = ChatSession(config, models, console)
    if config.ask:
        for line in config.ask:
            if not session.handle(line):
                break
        return 0
    console.print(
        "[dim]Enter sends to every model · Esc+Enter or a trailing \\ adds a line · /help · "
        "Ctrl-D quits[/dim]",
        **PLAIN,
    )
    for line in read_lines(config, console):
        if not session.handle(line):
            break
    return 0
