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

Answers stream through the generation backends' ``stream`` (:mod:`grpo_gsm8k.generation`); which
backend and dtype ``auto`` means is decided by :func:`grpo_gsm8k.hardware.choose` for interactive
use. Ctrl-C stops the answer being generated, skips the models still waiting and keeps the turn
out of the conversation; Ctrl-D (or ``/quit``) leaves.

A command that fails is one line: at the prompt the chat goes on, the models still loaded; in
``--ask`` it ends the chat with status 2. A refused start leaves nothing on disk: the ``--save``
file is checked up front and made at the first answer.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from .data import Example, load_prepared
from .errors import UserError
from .generation import Backend, SamplingSettings, Streamed, load_backend
from .grading import extract, same_number
from .hardware import BACKENDS, DTYPES, HardwareChoice, choose
from .models import ModelError, ResolvedModel, cache_dir, resolve_model
from .options import DecodingOptions, ModelOptions, same_field
from .prompts import (
    SYSTEM_PROMPT,
    Message,
    PromptStyle,
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
class ChatConfig(DecodingOptions, ModelOptions):
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
    temperature: float = same_field(DecodingOptions, "temperature", 0.0)
    top_p: float = same_field(DecodingOptions, "top_p", 1.0)
    max_new_tokens: int = same_field(DecodingOptions, "max_new_tokens", 512)
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
        metadata={"help": "prepared eval JSONL for /gsm8k (`grpo-gsm8k prepare` writes it)"},
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
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads (unset: torch's default, one per core); on a busy CPU one "
            "thread can be several times faster (benchmarks/bench_chat.py)"
        },
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
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ChatError(
                f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        for name, value, allowed in (
            ("backend", self.backend, BACKENDS),
            ("dtype", self.dtype, DTYPES),
            ("prompt", self.prompt, ("chat", "raw", "auto")),
            ("layout", self.layout, ("auto", "columns", "stacked")),
        ):
            if value not in allowed:
                raise ChatError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")


# ------------------------------------------------------------------------------------- models


@dataclass
class ChatModel:
    index: int
    label: str  # unique: the name, with ' #k' when the same name is given more than once
    name: str  # as typed
    resolved: ResolvedModel
    backend: Backend
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
    choice = choose(config.backend, config.dtype, interactive=True)
    console.print(f"hardware: {choice.log_line()}", style="dim", markup=False, **PLAIN)
    n_vllm = len(set(config.models)) if choice.backend == "vllm" else 0
    backends: dict[str, Backend] = {}  # the same checkpoint named twice is loaded once
    models: list[ChatModel] = []
    labels = model_labels(config.models)
    for i, (name, label) in enumerate(zip(config.models, labels, strict=True)):
        started = time.perf_counter()
        try:
            with console.status(f"loading {label} ({i + 1}/{len(labels)}, {choice.backend})…"):
                resolved = resolve_model(name, config.trust_remote_code)
                backend = backends.get(resolved.path)
                if backend is None:
                    backend = _load_backend(choice, resolved.path, config, n_vllm)
                    backends[resolved.path] = backend
                style = resolve_prompt_style(config.prompt, backend.tokenizer)
        except Exception as e:
            reason = _one_line(e).removeprefix(f"{name}: ")
            console.print(f"[red]✗ {escape(label)}[/red]: {escape(reason)}", **PLAIN)
            continue
        load_s = time.perf_counter() - started
        models.append(ChatModel(i, label, name, resolved, backend, style, load_s))
        console.print(
            f"[green]✓ {escape(label)}[/green] [dim]{resolved.source} · {backend.name} · "
            f"{backend.dtype} · {style} prompt · {load_s:.1f} s[/dim]",
            **PLAIN,
        )
    if not models:
        raise ChatError("no model could be loaded (see the lines above)")
    return models


def _load_backend(choice: HardwareChoice, path: str, config: ChatConfig, n_vllm: int) -> Backend:
    """One prompt at a time: hf without batching; vLLM with its engine core in this process
    (so that Ctrl-C reaches only us), the memory share split between the vLLM models."""
    options: dict[str, Any] = {"dtype": choice.dtype, "trust_remote_code": config.trust_remote_code}
    if choice.backend == "hf":
        options["batch_size"] = 1
    else:
        from .generation.vllm import default_memory_utilization

        share = config.gpu_memory_utilization or default_memory_utilization()
        options.update(
            seed=config.seed, gpu_memory_utilization=share / max(n_vllm, 1), in_process=True
        )
    return load_backend(choice.backend, path, **options)


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


def _stats(answer: Streamed, extracted: str | None) -> str:
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
        """Run one input line (a question or a /command); False means quit. A command that
        cannot run raises ChatError."""
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
            raise ChatError(f"unknown command /{name}; /help lists them")
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
        answers: list[tuple[ChatModel, str, Streamed]] = []
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
                prompt = render_messages(messages, model.backend.tokenizer, model.style)
                slot.status = "generating"

                def show(text: str, slot: Slot = slot) -> None:
                    slot.text = text

                try:
                    answer = model.backend.stream(prompt, self.sampling(model), stop, show)
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
        answer: Streamed,
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
            "backend": model.backend.name,
            "dtype": model.backend.dtype,
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
            "prompt_template": prompt_template(model.style, model.backend.tokenizer, self.system),
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
        if self.config.save:  # its folders and the file are made at the first answer
            try:
                append_jsonl(Path(self.config.save).expanduser(), [row])
            except OSError as e:
                raise ChatError(f"--save {self.config.save}: {e.strerror or e}") from None

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
            raise ChatError(f"/temperature needs a number >= 0 (now {self.temperature})")
        self.temperature = value
        self.say(f"temperature {value} ({'greedy' if value == 0 else 'sampling'})")

    def cmd_top_p(self, arg: str) -> None:
        value = _number(arg, float)
        if value is None or not 0 < value <= 1:
            raise ChatError(f"/top-p needs a number in (0, 1] (now {self.top_p})")
        self.top_p = value
        self.say(f"top-p {value}")

    def cmd_max_tokens(self, arg: str) -> None:
        value = _number(arg, int)
        if value is None or value < 1:
            raise ChatError(f"/max-tokens needs a whole number >= 1 (now {self.max_new_tokens})")
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
                m.backend.name,
                m.backend.dtype,
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
            raise ChatError("/save needs a file name")
        try:
            write_jsonl(Path(arg).expanduser(), self.rows)
        except OSError as e:
            raise ChatError(f"/save {arg}: {e.strerror or e}") from None
        self.say(f"wrote {arg} ({len(self.rows)} answers)", "green")

    def examples(self) -> list[Example]:
        """The eval questions of /gsm8k, read at its first use."""
        if self._examples is None:
            path = self.config.eval_file
            if not Path(path).is_file():
                raise ChatError(
                    f"/gsm8k: no eval file {path}; `grpo-gsm8k prepare` writes it, or start the "
                    "chat with --eval-file FILE"
                )
            try:
                self._examples = load_prepared(path)
            except UserError as e:
                raise ChatError(f"/gsm8k: {e}") from None
        return self._examples

    def cmd_gsm8k(self, arg: str) -> None:
        n = len(self.examples())
        if arg:
            index = _number(arg, int)
            if index is None or not 0 <= index < n:
                raise ChatError(f"/gsm8k takes a question number from 0 to {n - 1}, got {arg}")
        else:
            index = self.rng.randrange(n)
        example = self.examples()[index]
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
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    history_path = Path(config.history_file or cache_dir() / "chat_history").expanduser()
    history: History
    try:
        history_path.parent.mkdir(parents=True, exist_ok=True)
        history_path.open("a").close()
        history = FileHistory(str(history_path))
    except OSError as e:  # e.g. a read-only home: this session's history only
        history = InMemoryHistory()
        console.print(
            f"input history not kept: {history_path}: {e.strerror or e} (--history-file)",
            style="yellow",
            markup=False,
            **PLAIN,
        )
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
        history=history,
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


def check_save_file(path: str) -> None:
    """Refuse, before any model loads, a --save file that could not be written; creates nothing
    (the file and its folders are made at the first answer)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ChatError(f"--save {path}: is a folder; name a file")
    if target.exists():
        try:
            target.open("a").close()  # appending nothing changes nothing
        except OSError as e:
            raise ChatError(f"--save {path}: {e.strerror or e}") from None
        return
    parent = target.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ChatError(f"--save {path}: {parent} is not a folder")
    try:  # a real try: os.access says yes to root everywhere
        tempfile.TemporaryFile(dir=parent, prefix=".grpo-gsm8k-probe.").close()
    except OSError as e:
        raise ChatError(f"--save {path}: cannot write in {parent} ({e.strerror or e})") from None


def repl(session: ChatSession, lines: Iterator[str]) -> None:
    """Handle ``lines`` until one quits; a command that fails is one line, and the chat goes on
    with its models loaded."""
    for line in lines:
        try:
            if not session.handle(line):
                return
        except Exception as e:
            session.say(str(e) if isinstance(e, UserError) else _one_line(e), "red")


def run(config: ChatConfig) -> int:
    """``grpo-gsm8k chat``: load the models, then answer --ask inputs (a failing command ends it
    with a ChatError) or the prompt's lines."""
    from rich.console import Console

    config.check()
    if config.save:  # fail before any model loads, not in the middle of a turn
        check_save_file(config.save)
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    console = Console()
    with no_echo():  # keys typed while loading wait for the prompt, shown once, there
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
    repl(session, read_lines(config, console))
    return 0
