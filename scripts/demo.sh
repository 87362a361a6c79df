#!/usr/bin/env bash
# `make demo`: the main job on CPU with the embedded model and the local GSM8K copy.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
GSM8K=${GSM8K:-../shared/data/gsm8k}
DATA=${DATA:-data}

echo "== prepare: GSM8K from $GSM8K -> $DATA/"
$BIN/grpo-gsm8k prepare --source "$GSM8K" --out "$DATA"

echo "== grade: the reference solutions of the eval set, graded against themselves"
mkdir -p runs/demo
$BIN/python - "$DATA/eval.jsonl" > runs/demo/gold_as_completions.jsonl <<'PY'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    print(json.dumps({"id": row["id"], "completion": row["answer"], "answer": row["gold"]}))
PY
$BIN/grpo-gsm8k grade runs/demo/gold_as_completions.jsonl > runs/demo/gold_graded.jsonl
echo "files: $DATA/train.jsonl $DATA/eval.jsonl $DATA/manifest.json runs/demo/gold_graded.jsonl"
