#!/usr/bin/env bash
# `make demo`: the whole loop on CPU with the embedded model (SmolLM2-135M-Instruct) and the local
# GSM8K copy: prepare -> baseline eval -> Dr GRPO -> eval again -> paired compare -> HTML report.
# Re-running it resumes: finished evals are reprinted, training continues from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
GSM8K=${GSM8K:-../shared/data/gsm8k}
DATA=${DATA:-data}
OUT=${OUT:-runs/demo}
N=${DEMO_EVAL_N:-128}          # held-out test questions evaluated before and after
TOKENS=${DEMO_MAX_NEW_TOKENS:-192}
# auto everywhere: the eval backend and dtype, and training's precision and generation engine, are
# decided from the machine (src/grpo_gsm8k/hardware.py), printed and recorded in the run files:
# vLLM on CPUs with AVX-512 (bf16 where the CPU has bf16 units, else fp32), transformers + fp32
# on AVX2-only CPUs.
BACKEND=${DEMO_BACKEND:-auto}
RECIPE=${RECIPE:-recipes/cpu-smollm2.yaml}
start=$(date +%s)

step() { printf '\n== %s  (%ds)\n' "$1" "$(($(date +%s) - start))"; }

step "prepare: GSM8K from $GSM8K -> $DATA/"
$BIN/grpo-gsm8k prepare --source "$GSM8K" --out "$DATA"

step "baseline eval: smollm2-135m on the first $N eval questions (greedy, $TOKENS new tokens)"
$BIN/grpo-gsm8k eval smollm2-135m --data "$DATA/eval.jsonl" --limit "$N" \
  --max-new-tokens "$TOKENS" --backend "$BACKEND" --out "$OUT/eval-before"

step "train: Dr GRPO with $RECIPE -> $OUT/train"
resume=()
if compgen -G "$OUT/train/checkpoint-*" >/dev/null; then resume=(--resume); fi
$BIN/grpo-gsm8k train --config "$RECIPE" --train_file "$DATA/train.jsonl" \
  --eval_file "$DATA/eval.jsonl" --output_dir "$OUT/train" "${resume[@]}"

step "eval after training: the same $N questions, same settings"
$BIN/grpo-gsm8k eval "$OUT/train" --data "$DATA/eval.jsonl" --limit "$N" \
  --max-new-tokens "$TOKENS" --backend "$BACKEND" --out "$OUT/eval-after"

step "compare: before vs after, paired on the same questions"
$BIN/grpo-gsm8k compare "$OUT/eval-before" "$OUT/eval-after" --out "$OUT/compare"

step "report: training curves, both evals, before/after and the reward-hacking watch"
$BIN/grpo-gsm8k report "$OUT/eval-before" "$OUT/eval-after" "$OUT/train" "$OUT/compare" \
  --out "$OUT/report"

step "done"
echo "files:"
for f in "$DATA"/{train.jsonl,eval.jsonl,manifest.json} \
  "$OUT"/eval-before/{samples.jsonl,summary.json} \
  "$OUT"/train/{grpo_gsm8k_config.json,metrics.jsonl,completions.jsonl,model.safetensors} \
  "$OUT"/eval-after/{samples.jsonl,summary.json} "$OUT"/compare/* "$OUT"/report/report.json; do
  [ -e "$f" ] && echo "  $f"
done
echo "wall time: $(($(date +%s) - start)) s"
echo "report (opens offline in any browser): $OUT/report/report.html"
